//! Which dead letters a `dlq` command means: the command line's selection
//! (`DlqSelect`: ids, handler, event type, fingerprint, `--since`/`--until`
//! as an age or a time, error text) as the store's `dlq::Filter`, checked
//! against what exists so that nothing is silent. Shared by the `letters` and
//! `replay` commands.
//!
//! - a handler that is neither in this build's registry nor on any stored
//!   letter, or an event type neither known nor stored, is a wrong command
//!   line (exit 2) naming the known ones;
//! - ids (or a fingerprint) no letter has exit 5 naming them;
//! - a change (replay, archive, restore, purge) without any selector needs
//!   `--all` (exit 2 without it);
//! - a selection that names only real things but matches nothing is
//!   legitimately empty: the command says so and exits 0.

use crate::cli::DlqSelect;
use crate::exit::{Code, Failure};
use atelier_domain::bus::handlers;
use atelier_domain::events::EventType;
use atelier_domain::store::PooledConn;
use atelier_domain::store::dlq::{self, Filter, LetterRef};
use chrono::{DateTime, Utc};

/// What a command does with its selection.
#[derive(Debug, Clone, Copy)]
pub enum Use {
    /// Reads the letters (`list`).
    Read,
    /// Changes them (`replay`, `archive`, ...); `all` is `--all`.
    Change { verb: &'static str, all: bool },
}

/// The store's filter for a selection, checked against the store; any status
/// (the caller may narrow it).
pub async fn resolve(conn: &mut PooledConn, s: &DlqSelect, using: Use) -> Result<Filter, Failure> {
    let filter = filter(s)?;
    if let Use::Change { verb, all: false } = using
        && is_everything(&filter)
    {
        return Err(Failure::new(
            Code::Usage,
            format!(
                "dlq {verb} without ids or a filter would act on every letter: give ids or a filter \
                 (--handler, --type, --fingerprint, --since, --until, --error), or --all"
            ),
        ));
    }
    let stored = dlq::stored(conn, &filter).await?;
    if let Some(h) = &filter.handler
        && !stored.handler
        && !handlers::STANDARD.iter().any(|b| b.name == h)
    {
        let known: Vec<_> = handlers::STANDARD.iter().map(|b| b.name).collect();
        return Err(Failure::new(
            Code::Usage,
            format!("--handler '{h}': no such handler; the handlers are {}", known.join(", ")),
        ));
    }
    if let Some(t) = &filter.event_type
        && !stored.event_type
        && EventType::parse(t).is_none()
    {
        let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        return Err(Failure::new(
            Code::Usage,
            format!("--type '{t}': no such event type (and no letter has it); the types are {}", known.join(", ")),
        ));
    }
    let absent = dlq::absent_ids(conn, &filter.ids).await?;
    if !absent.is_empty() {
        return Err(not_found(&absent.iter().map(|id| LetterRef::Id(*id)).collect::<Vec<_>>()));
    }
    if let Some(f) = &filter.fingerprint
        && !stored.fingerprint
    {
        return Err(Failure::new(
            Code::CheckFailed,
            format!("--fingerprint '{f}': no dead letter has it (`dlq stats` lists the fingerprints)"),
        ));
    }
    Ok(filter)
}

/// Exit 5: the named letters do not exist.
pub fn not_found(which: &[LetterRef]) -> Failure {
    let names: Vec<_> = which.iter().map(ToString::to_string).collect();
    Failure::new(Code::CheckFailed, format!("no dead letter {} (`dlq list` shows the ids)", names.join(", ")))
}

/// Whether the filter selects every letter (no id, no criterion).
pub fn is_everything(f: &Filter) -> bool {
    f.ids.is_empty()
        && f.handler.is_none()
        && f.event_type.is_none()
        && f.fingerprint.is_none()
        && f.since.is_none()
        && f.until.is_none()
        && f.error.is_none()
}

/// `dlq show`'s argument: a row id, or the dead-letter id (UUID) of the logs.
pub fn letter_ref(value: &str) -> Result<LetterRef, Failure> {
    let v = value.trim().trim_start_matches('#');
    if let Ok(id) = v.parse::<i64>() {
        return Ok(LetterRef::Id(id));
    }
    uuid::Uuid::parse_str(v).map(LetterRef::Key).map_err(|_| {
        Failure::new(
            Code::Usage,
            format!("'{value}': give a dead letter's id (as `dlq list` shows it) or its dead-letter id (a UUID)"),
        )
    })
}

/// The store's filter for a selection, unchecked.
fn filter(s: &DlqSelect) -> Result<Filter, Failure> {
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

/// What a command that found nothing to act on says: plainly that nothing
/// matches, and which matching letters it left aside for their status
/// (`others`: matching letters by status; `takes`: the statuses it acts on).
pub fn nothing_matches(filter: &Filter, others: &std::collections::BTreeMap<String, i64>, takes: &str) -> String {
    if is_everything(filter) && others.is_empty() {
        return "No dead letters.".into();
    }
    if others.is_empty() {
        return "No dead letters match.".into();
    }
    let held: Vec<_> = others.iter().map(|(status, n)| format!("{n} {status}")).collect();
    format!("No dead letters match that are {takes}: the selection holds {}.", held.join(", "))
}
