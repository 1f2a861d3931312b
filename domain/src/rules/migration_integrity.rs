//! Migration integrity and phases as pure rules: the state of each migration
//! (applied, pending, edited after it was applied, missing from this build,
//! unknown history) from the files this build embeds, diesel's list of
//! applied versions and our record of them (`atelier_migrations`); and when
//! a contract migration may run, from the deployments live in the
//! environment. No I/O: `store::migrations` reads and writes, this decides.

use super::migration_lint::Phase;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The migration that creates our record. Applied migrations before it may
/// predate checksums (adopted on the next run); from it on, an applied
/// migration without a record was applied unrecorded (a crash between
/// applying and recording, or a deleted record).
pub const RECORDED_SINCE: &str = "20261201000023";

/// SHA-256 of a migration file, lower-case hex.
pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// A migration this build knows: its name, diesel version and checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub name: String,
    pub version: String,
    pub up_sha256: String,
    pub down_sha256: String,
    pub phase: Phase,
}

/// Our record of an applied migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub version: String,
    pub name: String,
    pub up_sha256: String,
    pub down_sha256: String,
    pub phase: Phase,
    pub applied_by: String,
    /// RFC 3339.
    pub applied_at: String,
    pub duration_ms: Option<i64>,
    pub adopted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// Applied, and its file changed since: the checksums differ.
    Edited,
    /// Applied, but this build does not know it (a newer version applied it).
    Missing,
    /// Applied, without our record of it.
    UnknownHistory,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Edited => "edited",
            State::Missing => "missing",
            State::UnknownHistory => "unknown_history",
        }
    }
}

/// One file whose checksum differs from the one recorded when it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edit {
    /// `migrations/<name>/up.sql`
    pub file: String,
    pub recorded: String,
    pub current: String,
}

/// The verdict on one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    pub version: String,
    pub state: State,
    /// The file's phase; for a missing migration, the recorded one (None: no record).
    pub phase: Option<Phase>,
    pub edits: Vec<Edit>,
    /// Unknown history that predates checksums (before `RECORDED_SINCE`, or
    /// no record table yet): adopted on the next run whatever the policy.
    pub predates_checksums: bool,
    pub record: Option<Record>,
}

impl Verdict {
    /// Whether a careful environment's `migrate run` refuses over it.
    pub fn is_drift(&self) -> bool {
        match self.state {
            State::Edited | State::Missing => true,
            State::UnknownHistory => !self.predates_checksums,
            State::Applied | State::Pending => false,
        }
    }
}

/// Each known migration in order, then each applied one this build does not
/// know. `records` is None while the record table does not exist.
pub fn classify(known: &[Known], applied: &HashSet<String>, records: Option<&[Record]>) -> Vec<Verdict> {
    let record_of = |v: &str| records.and_then(|r| r.iter().find(|r| r.version == v)).cloned();
    let mut out: Vec<Verdict> = known
        .iter()
        .map(|k| {
            let record = record_of(&k.version);
            let mut edits = Vec::new();
            let state = if !applied.contains(&k.version) {
                State::Pending
            } else if let Some(r) = &record {
                for (file, recorded, current) in
                    [("up.sql", &r.up_sha256, &k.up_sha256), ("down.sql", &r.down_sha256, &k.down_sha256)]
                {
                    if recorded != current {
                        edits.push(Edit {
                            file: format!("migrations/{}/{file}", k.name),
                            recorded: recorded.clone(),
                            current: current.clone(),
                        });
                    }
                }
                if edits.is_empty() { State::Applied } else { State::Edited }
            } else {
                State::UnknownHistory
            };
            Verdict {
                name: k.name.clone(),
                version: k.version.clone(),
                state,
                phase: Some(k.phase),
                edits,
                predates_checksums: records.is_none() || k.version.as_str() < RECORDED_SINCE,
                record: if state == State::Pending { None } else { record },
            }
        })
        .collect();
    let mut missing: Vec<&String> = applied.iter().filter(|v| !known.iter().any(|k| &k.version == *v)).collect();
    missing.sort();
    for version in missing {
        let record = record_of(version);
        out.push(Verdict {
            name: record.as_ref().map_or_else(|| version.clone(), |r| r.name.clone()),
            version: version.clone(),
            state: State::Missing,
            phase: record.as_ref().map(|r| r.phase),
            edits: Vec::new(),
            predates_checksums: false,
            record,
        });
    }
    out
}

/// A deployment live in the environment: the newest running or succeeded
/// deployment of a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSlot {
    pub slot: String,
    pub version: String,
    pub status: String,
}

/// The live slot that keeps a contract migration of build `own` waiting: one
/// whose version is older than `own` (it may still use what the migration
/// removes). None: every live slot runs `own` or newer, or none is recorded.
pub fn contract_blocker<'a>(live: &'a [LiveSlot], own: &str) -> Option<&'a LiveSlot> {
    live.iter().find(|s| older(&s.version, own))
}

/// Whether version `a` is older than `b`, comparing dotted numbers
/// (`0.9.3` < `0.10.0`; a leading `v` and a `-pre`/`+build` tail ignored). A
/// version that does not parse counts as older: the careful side.
pub fn older(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Option<Vec<u64>> {
        let v = v.trim().trim_start_matches('v');
        let v = v.split(['-', '+']).next().unwrap_or_default();
        v.split('.').map(|p| p.parse().ok()).collect()
    }
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a < b,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(v: &str) -> Known {
        Known {
            name: format!("m_{v}"),
            version: v.into(),
            up_sha256: checksum(v),
            down_sha256: checksum("down"),
            phase: Phase::Expand,
        }
    }

    fn record(k: &Known) -> Record {
        Record {
            version: k.version.clone(),
            name: k.name.clone(),
            up_sha256: k.up_sha256.clone(),
            down_sha256: k.down_sha256.clone(),
            phase: k.phase,
            applied_by: "me@host".into(),
            applied_at: "2026-12-01T00:00:00Z".into(),
            duration_ms: Some(3),
            adopted: false,
        }
    }

    #[test]
    fn each_state_is_told_apart() {
        let ks = [known("20261125000001"), known("20261201000023"), known("20261201000024"), known("20261201000025")];
        let applied: HashSet<String> =
            ["20261125000001", "20261201000023", "20261201000024", "20261201000099"].map(String::from).into();
        let mut edited = record(&ks[1]);
        edited.up_sha256 = checksum("before");
        let records = [edited, record(&ks[2])];
        let v = classify(&ks, &applied, Some(&records));
        let states: Vec<State> = v.iter().map(|v| v.state).collect();
        assert_eq!(states, [State::UnknownHistory, State::Edited, State::Applied, State::Pending, State::Missing]);
        assert!(v[0].predates_checksums && !v[0].is_drift(), "before the record table: adopted");
        assert_eq!(v[1].edits.len(), 1);
        assert_eq!(v[1].edits[0].file, "migrations/m_20261201000023/up.sql");
        assert_eq!(v[1].edits[0].recorded, checksum("before"));
        assert!(v[1].is_drift() && v[4].is_drift() && !v[2].is_drift() && !v[3].is_drift());
        assert_eq!(v[4].phase, None, "missing without a record: phase unknown");

        // Our record of 24 deleted: applied unrecorded, which is drift.
        let v = classify(&ks, &applied, Some(&records[..1]));
        assert_eq!(v[2].state, State::UnknownHistory);
        assert!(!v[2].predates_checksums && v[2].is_drift());
        // No record table at all: everything applied predates checksums.
        let v = classify(&ks, &applied, None);
        assert!(v[..3].iter().all(|v| v.state == State::UnknownHistory && !v.is_drift()));
    }

    #[test]
    fn a_contract_migration_waits_for_every_live_slot_to_run_this_version() {
        let slot = |s: &str, v: &str| LiveSlot { slot: s.into(), version: v.into(), status: "succeeded".into() };
        assert_eq!(contract_blocker(&[], "0.2.0"), None, "no deployment recorded");
        let live = [slot("green", "0.2.0"), slot("blue", "0.1.9")];
        assert_eq!(contract_blocker(&live, "0.2.0").unwrap().slot, "blue");
        assert_eq!(contract_blocker(&[slot("blue", "0.10.0"), slot("green", "v0.2.0")], "0.2.0"), None);
        assert!(older("0.9.3", "0.10.0") && !older("1.0.0-rc1", "1.0.0") && older("unknown", "0.1.0"));
    }
}
