//! Which release this atelierd is, and which deployment slot it serves.
//! The version is a marker in the binary itself ([`MARKER`]): `atelier
//! deploy --artifact` stamps the release's version into the installed copy,
//! so `/version` says what was really deployed; an unstamped build says its
//! crate version. The slot comes from `ATELIER_SLOT` (set by the deploy
//! driver), and test faults from `ATELIER_TEST_FAULT` (see [`Fault`]).

use std::sync::OnceLock;

use atelier_domain::rules::release::{MARKER_PREFIX, VERSION_LEN};

/// The stamp's place: the prefix `atelier deploy --artifact` looks for, then
/// the version, NUL-padded (all NUL: not stamped).
#[used]
static MARKER: [u8; MARKER_PREFIX.len() + VERSION_LEN] = {
    let mut m = [0u8; MARKER_PREFIX.len() + VERSION_LEN];
    let mut i = 0;
    while i < MARKER_PREFIX.len() {
        m[i] = MARKER_PREFIX[i];
        i += 1;
    }
    m
};

/// The version this binary was stamped with, else its crate version.
pub fn current() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // Volatile reads: the stamp is written into the file after the build,
        // so the compiler must not fold the (all-NUL) initial value.
        let bytes: Vec<u8> = (MARKER_PREFIX.len()..MARKER.len())
            .map(|i| unsafe { std::ptr::read_volatile(MARKER.as_ptr().add(i)) })
            .take_while(|b| *b != 0)
            .collect();
        match String::from_utf8(bytes) {
            Ok(v) if !v.is_empty() => v,
            _ => env!("CARGO_PKG_VERSION").to_owned(),
        }
    })
}

/// Who handles work here: the deployment slot (`ATELIER_SLOT`), else host:pid.
pub fn instance() -> String {
    match std::env::var("ATELIER_SLOT") {
        Ok(slot) if !slot.is_empty() => slot,
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}:{}", host.trim(), std::process::id())
        }
    }
}

/// Faults a test release turns on (`ATELIER_TEST_FAULT`), so the deploy
/// tests' bad versions misbehave deterministically. Never set in real use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `/ready` always answers 503.
    NeverReady,
    /// The canary handler takes pings and records nothing.
    DropCanaries,
    /// Every `/api/v1` request answers 500.
    ServerErrors,
}

pub fn fault() -> Option<Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    *FAULT.get_or_init(|| match std::env::var("ATELIER_TEST_FAULT").as_deref() {
        Ok("never_ready") => Some(Fault::NeverReady),
        Ok("drop_canaries") => Some(Fault::DropCanaries),
        Ok("5xx") => Some(Fault::ServerErrors),
        _ => None,
    })
}
