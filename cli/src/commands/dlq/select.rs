//! Which dead letters a `dlq` command means: the command line's selection
//! (`DlqSelect`: ids, handler, event type, fingerprint, `--since`/`--until`
//! as an age or a time, error text) as the store's `dlq::Filter`. Shared by
//! the `letters` and `replay` commands.

use crate::cli::DlqSelect;
use crate::exit::{Code, Failure};
use atelier_domain::store::dlq::Filter;
use chrono::{DateTime, Utc};

/// The store's filter for a selection; any status (the caller may narrow it).
pub fn filter(s: &DlqSelect) -> Result<Filter, Failure> {
    Ok(Filter {
        ids: s.ids.clone(),
        handler: s.handler.clone(),
        event_type: s.event_type.clone(),
        fingerprint: s.fingerprint.clone(),
        status: None,
        since: s.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: s.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        error: s.error.clone(),
    })
}

/// `--since 2h` (an age) or `--since 2026-01-08T10:00:00Z` (a time).
fn parse_time(flag: &str, value: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(value).map_err(|_| {
        Failure::new(Code::Usage, format!("--{flag} '{value}': give an RFC 3339 time or an age such as 2h or 7d"))
    })?;
    let age =
        chrono::TimeDelta::from_std(age).map_err(|_| Failure::new(Code::Usage, format!("--{flag}: too far back")))?;
    Ok(Utc::now() - age)
}
