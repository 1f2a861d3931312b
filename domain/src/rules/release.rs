//! Release artifacts (pure): the version marker an `atelierd` build carries
//! and the stamping of a copy with the version it is installed as, so the
//! binary's `/version` truthfully says which release runs. No I/O here: the
//! caller reads and writes the file.

/// The marker's prefix in an atelierd build; the version follows it,
/// NUL-padded to [`VERSION_LEN`] bytes (all NUL: not stamped).
pub const MARKER_PREFIX: &[u8; 24] = b"ATELIER-RELEASE-VERSION\0";
/// Room for the version after the prefix.
pub const VERSION_LEN: usize = 72;

/// A release version: 1 to 72 of `[A-Za-z0-9._+-]`, starting with a letter or digit.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= VERSION_LEN
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a release version: 1 to {VERSION_LEN} letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
            v.chars().take(80).collect::<String>()
        ))
    }
}

/// Writes `version` into the one marker of `binary`.
pub fn stamp(binary: &mut [u8], version: &str) -> Result<(), String> {
    check_version(version)?;
    let at: Vec<usize> =
        binary.windows(MARKER_PREFIX.len()).enumerate().filter(|(_, w)| w == MARKER_PREFIX).map(|(i, _)| i).collect();
    let [at] = at[..] else {
        return Err(format!(
            "not an atelierd build with one release marker ({} found): build atelierd from this repository",
            at.len()
        ));
    };
    let start = at + MARKER_PREFIX.len();
    let Some(slot) = binary.get_mut(start..start + VERSION_LEN) else {
        return Err("the release marker is cut short: not a complete atelierd build".into());
    };
    slot.fill(0);
    slot[..version.len()].copy_from_slice(version.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Vec<u8> {
        let mut b = b"\x7fELF....".to_vec();
        b.extend_from_slice(MARKER_PREFIX);
        b.extend_from_slice(&[0u8; VERSION_LEN]);
        b.extend_from_slice(b"tail");
        b
    }

    #[test]
    fn stamps_the_version_after_the_marker_and_restamps() {
        let mut b = build();
        stamp(&mut b, "2.0.0-rc.1").unwrap();
        let at = 8 + MARKER_PREFIX.len();
        assert_eq!(&b[at..at + 10], b"2.0.0-rc.1");
        assert_eq!(b[at + 10], 0);
        stamp(&mut b, "1.0").unwrap();
        assert_eq!(&b[at..at + 4], b"1.0\0");
        assert!(b.ends_with(b"tail"));
    }

    #[test]
    fn refuses_a_bad_version_and_a_file_without_one_marker() {
        assert!(stamp(&mut build(), "../x").unwrap_err().contains("not a release version"));
        assert!(stamp(&mut build(), &"9".repeat(73)).is_err());
        assert!(stamp(&mut b"no marker".to_vec(), "1.0.0").unwrap_err().contains("0 found"));
        let mut two = build();
        two.extend(build());
        assert!(stamp(&mut two, "1.0.0").unwrap_err().contains("2 found"));
    }
}
