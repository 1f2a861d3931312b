//! Secret rotation rules (pure): how a secret's versions move between the
//! stages `pending` → `current` → `previous`, when `finish` may drop the
//! previous version, and when a secret is due for rotation. The caller passes
//! `now`; the file backend and the CLI apply what these functions decide.

use crate::secrets::document::{Entry, Stage};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What [`activate_due`] did: `version` became current at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    pub version: u32,
    pub at: DateTime<Utc>,
}

/// Promotes `entry`'s pending version when its `activates_at` has come: the
/// current version becomes previous (still accepted), an older previous is
/// dropped. Daemons apply this to what they read, so a version activates on
/// time without anyone writing the file; the CLI writes it down.
pub fn activate_due(entry: &mut Entry, now: DateTime<Utc>) -> Option<Activated> {
    let at = entry.stage(Stage::Pending)?.activates_at.filter(|t| *t <= now)?;
    Some(promote(entry, at))
}

/// Makes the pending version current at `at` (see [`activate_due`]).
/// Panics never: without a pending version it changes nothing and says version 0.
pub fn promote(entry: &mut Entry, at: DateTime<Utc>) -> Activated {
    if entry.stage(Stage::Pending).is_none() {
        return Activated { version: 0, at };
    }
    entry.versions.retain(|v| v.stage != Stage::Previous);
    if let Some(current) = entry.stage_mut(Stage::Current) {
        current.stage = Stage::Previous;
        current.retired_at = Some(at);
    }
    let pending = entry.stage_mut(Stage::Pending).expect("checked above");
    pending.stage = Stage::Current;
    pending.activates_at = None;
    pending.current_since = Some(at);
    Activated { version: pending.version, at }
}

/// Why `finish` may not drop the previous version yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishRefused {
    #[error("there is no previous version to drop")]
    NoPrevious,
    #[error("a pending version is not current yet (it activates at {0}): finish after it has")]
    PendingNotActive(DateTime<Utc>),
    #[error(
        "tokens signed with the previous version may still be valid until {0} (the longest token lifetime after it stopped signing): finish after that, or pass --force to log those users out"
    )]
    TooEarly(DateTime<Utc>),
}

/// Whether `finish` may drop the previous version at `now`: only once
/// `overlap` (the longest lifetime of anything it signed) has passed since
/// it stopped being current.
pub fn finish_allowed(entry: &Entry, now: DateTime<Utc>, overlap: Duration) -> Result<u32, FinishRefused> {
    if let Some(p) = entry.stage(Stage::Pending) {
        return Err(FinishRefused::PendingNotActive(p.activates_at.unwrap_or(now)));
    }
    let previous = entry.stage(Stage::Previous).ok_or(FinishRefused::NoPrevious)?;
    let retired = previous.retired_at.unwrap_or(previous.created_at);
    let until = retired + chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
    if now < until { Err(FinishRefused::TooEarly(until)) } else { Ok(previous.version) }
}

/// When the current version is due for rotation under `max_age`.
pub fn due_at(entry: &Entry, max_age: Duration) -> Option<DateTime<Utc>> {
    let current = entry.stage(Stage::Current)?;
    let since = current.current_since.unwrap_or(current.created_at);
    Some(since + chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX))
}

/// Whether the secret is overdue at `now`.
pub fn overdue(entry: &Entry, max_age: Duration, now: DateTime<Utc>) -> bool {
    due_at(entry, max_age).is_some_and(|due| due <= now)
}

/// The versions a reader accepts, the signing (current) one first.
pub fn accepted(entry: &Entry) -> Vec<u32> {
    let mut out: Vec<u32> = entry.stage(Stage::Current).map(|v| v.version).into_iter().collect();
    for stage in [Stage::Pending, Stage::Previous] {
        out.extend(entry.stage(stage).map(|v| v.version));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::document::{Kind, Version};
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
    }

    fn v(version: u32, stage: Stage, activates_at: Option<DateTime<Utc>>) -> Version {
        Version {
            version,
            stage,
            created_at: t(0),
            activates_at,
            current_since: None,
            retired_at: None,
            user: None,
            value: String::new(),
        }
    }

    #[test]
    fn a_pending_version_activates_on_time_and_the_current_one_stays_accepted() {
        let mut e =
            Entry { kind: Kind::JwtKeys, versions: vec![v(1, Stage::Current, None), v(2, Stage::Pending, Some(t(2)))] };
        assert_eq!(accepted(&e), [1, 2]);
        assert_eq!(activate_due(&mut e, t(1)), None);
        assert_eq!(activate_due(&mut e, t(3)), Some(Activated { version: 2, at: t(2) }));
        assert_eq!(accepted(&e), [2, 1]);
        assert_eq!(e.stage(Stage::Previous).unwrap().retired_at, Some(t(2)));
        // Nothing pending: nothing moves.
        assert_eq!(activate_due(&mut e, t(9)), None);
    }

    #[test]
    fn finish_waits_for_the_longest_token_lifetime() {
        let mut e =
            Entry { kind: Kind::JwtKeys, versions: vec![v(1, Stage::Current, None), v(2, Stage::Pending, Some(t(2)))] };
        assert!(matches!(finish_allowed(&e, t(1), Duration::ZERO), Err(FinishRefused::PendingNotActive(_))));
        activate_due(&mut e, t(2));
        let twelve_hours = Duration::from_secs(12 * 3600);
        assert_eq!(finish_allowed(&e, t(13), twelve_hours), Err(FinishRefused::TooEarly(t(14))));
        assert_eq!(finish_allowed(&e, t(14), twelve_hours), Ok(1));
        e.versions.retain(|v| v.stage != Stage::Previous);
        assert_eq!(finish_allowed(&e, t(20), twelve_hours), Err(FinishRefused::NoPrevious));
    }

    #[test]
    fn due_counts_from_when_the_version_became_current() {
        let mut e = Entry { kind: Kind::Token, versions: vec![v(1, Stage::Current, None)] };
        let day = Duration::from_secs(86_400);
        assert!(!overdue(&e, day, t(23)));
        assert!(overdue(&e, Duration::from_secs(3600), t(1)));
        e.versions[0].current_since = Some(t(5));
        assert_eq!(due_at(&e, Duration::from_secs(3600)), Some(t(6)));
    }
}
