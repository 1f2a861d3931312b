//! Telemetry: tracing to stderr, pretty in dev and JSON elsewhere
//! (`log.format`), filtered by `log.level` or `RUST_LOG`; colour off when
//! `NO_COLOR` is set or stderr is not a terminal; Sentry when the environment
//! names a DSN secret. Call [`init`] before building the tokio runtime and keep
//! the guard alive until exit.

use atelier_domain::config::{LogFormat, Resolved};
use atelier_domain::secrets;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps Sentry flushing until dropped.
pub struct Guard {
    _sentry: Option<sentry::ClientInitGuard>,
}

pub fn init(config: &Resolved) -> Result<Guard, String> {
    let settings = &config.settings;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .map_err(|e| format!("log.level '{}' is not a valid filter: {e}", settings.log.level))?;
    let sentry = match &settings.sentry.dsn_secret {
        Some(name) => {
            let store = secrets::open(config);
            let dsn = store.require(name).map_err(|e| e.to_string())?;
            let dsn = dsn.expose().parse().map_err(|_| format!("secret '{name}' is not a Sentry DSN"))?;
            let mut options = sentry::ClientOptions::default();
            options.dsn = Some(dsn);
            options.release = Some(env!("CARGO_PKG_VERSION").into());
            options.environment = Some(config.env.clone().into());
            options.send_default_pii = false;
            options.before_send = Some(std::sync::Arc::new(|event| Some(scrub(event))));
            Some(sentry::init(options))
        }
        None => None,
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(sentry.as_ref().map(|_| sentry::integrations::tracing::layer()));
    let result = match settings.log.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => {
            let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal();
            registry.with(tracing_subscriber::fmt::layer().with_ansi(color).with_writer(std::io::stderr)).try_init()
        }
    };
    // A subscriber already set (tests starting several apps) is fine.
    let _ = result;
    Ok(Guard { _sentry: sentry })
}

/// Log fields a breadcrumb may carry to Sentry: identifiers and kinds. Any
/// other field (an error's text, a reason, a phone) is replaced.
const BREADCRUMB_FIELDS: &[&str] = &[
    "handler",
    "kind",
    "error_kind",
    "event_type",
    "event_id",
    "dead_letter_id",
    "attempt",
    "level",
    "delay_ms",
    "deliveries",
    "env",
    "secret",
];

/// Personal data (phones, message text) and error texts never leave for Sentry.
fn scrub(mut event: sentry::protocol::Event<'static>) -> sentry::protocol::Event<'static> {
    event.user = None;
    event.request = None;
    for crumb in event.breadcrumbs.values.iter_mut() {
        for (key, value) in crumb.data.iter_mut() {
            if !BREADCRUMB_FIELDS.contains(&key.as_str()) {
                *value = "[scrubbed]".into();
            }
        }
    }
    for (key, value) in event.extra.iter_mut() {
        if ["phone", "text", "body", "message"].iter().any(|k| key.contains(k)) {
            *value = "[scrubbed]".into();
        }
    }
    event
}
