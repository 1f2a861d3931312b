//! The operator's view of dead letters (`atelier dlq`): statistics, lists with
//! filters, one letter with its replay history, archive/restore/purge, and the
//! bookkeeping of a replay, the counts by status `/metrics` shows, and the
//! daemon's ingest ([`ingest`]) that writes the rows. This module reads them
//! and moves them through their statuses:
//!
//! `dead` → (replay) `replaying` → `replayed`; `dead` ⇄ `archived`; purge
//! deletes `archived` rows only.
//!
//! A replay is crash-safe: [`begin_replay`] records a replay (with its own id)
//! and marks the letter `replaying` before anything is published;
//! [`finish_replay`] marks it `replayed` after the broker confirmed. A replay
//! interrupted between the two is resumed by the next run with the same replay
//! id, and the handler's `processed_events` record keeps its effects single.
//! A streamed replay does the same a page at a time ([`claim_replay_page`],
//! [`finish_replays`]: a few set-based statements per page, not per letter).
//!
//! A replayed letter that fails again is linked to the letter it came from:
//! the ingest finds the replay by the message's `x-atelier-replay-id` and
//! records on it the letter it became (`failed_again_as`). A value nobody knows (no type in the message or its
//! envelope, no handler header) is spelled [`UNKNOWN`] everywhere.

use super::schema::{dead_letter_replays, dead_letters};
use super::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

pub const STATUSES: [&str; 4] = ["dead", "replaying", "replayed", "archived"];

/// The one spelling of a value the message did not tell (event type, handler,
/// error kind). Bracketed so it never reads as a real name.
pub const UNKNOWN: &str = "(unknown)";

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = dead_letters, check_for_backend(diesel::pg::Pg))]
pub struct DeadLetter {
    pub id: i64,
    pub dead_letter_key: Uuid,
    pub handler: String,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub headers: serde_json::Value,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub last_error: String,
    pub error_kind: String,
    pub fingerprint: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The original body: JSON when it parses, else lossy text.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = dead_letter_replays, check_for_backend(diesel::pg::Pg))]
pub struct Replay {
    pub id: i64,
    pub dead_letter_id: i64,
    pub replay_id: Uuid,
    pub actor: String,
    pub target_queue: String,
    pub requested_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    /// The letter this replay became when it failed again.
    pub failed_again_as: Option<i64>,
}

/// Which dead letters a command acts on. Empty means all (of the statuses the
/// command accepts).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    pub ids: Vec<i64>,
    pub handler: Option<String>,
    pub event_type: Option<String>,
    pub fingerprint: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the last error.
    pub error: Option<String>,
}

impl Filter {
    fn query(&self) -> dead_letters::BoxedQuery<'_, diesel::pg::Pg> {
        let mut q = dead_letters::table.into_boxed();
        if !self.ids.is_empty() {
            q = q.filter(dead_letters::id.eq_any(&self.ids));
        }
        if let Some(h) = &self.handler {
            q = q.filter(dead_letters::handler.eq(h));
        }
        if let Some(t) = &self.event_type {
            q = q.filter(dead_letters::event_type.eq(t));
        }
        if let Some(f) = &self.fingerprint {
            q = q.filter(dead_letters::fingerprint.eq(f));
        }
        if let Some(s) = &self.status {
            q = q.filter(dead_letters::status.eq(s));
        }
        if let Some(since) = self.since {
            q = q.filter(dead_letters::last_failed_at.ge(since));
        }
        if let Some(until) = self.until {
            q = q.filter(dead_letters::last_failed_at.lt(until));
        }
        if let Some(e) = &self.error {
            let pattern = format!("%{}%", e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q = q.filter(dead_letters::last_error.ilike(pattern));
        }
        q
    }

    /// Checks the status filter names a status.
    pub fn validate(&self) -> Result<(), StoreError> {
        match &self.status {
            Some(s) if !STATUSES.contains(&s.as_str()) => {
                Err(StoreError::invalid("status", format!("expected one of {}", STATUSES.join(", "))))
            }
            _ => Ok(()),
        }
    }
}

/// Counts of dead letters by status, handler, event type, fingerprint and age.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    /// Of the letters still `dead` (waiting for an operator):
    pub by_handler: BTreeMap<String, i64>,
    pub by_event_type: BTreeMap<String, i64>,
    pub by_fingerprint: BTreeMap<String, i64>,
    pub by_age: BTreeMap<String, i64>,
    pub oldest_dead: Option<DateTime<Utc>>,
}

/// status, handler, event type, fingerprint, last failure.
type StatsRow = (String, String, Option<String>, String, DateTime<Utc>);

pub async fn stats(conn: &mut Conn, now: DateTime<Utc>) -> Result<Stats, StoreError> {
    let rows: Vec<StatsRow> = dead_letters::table
        .select((
            dead_letters::status,
            dead_letters::handler,
            dead_letters::event_type,
            dead_letters::fingerprint,
            dead_letters::last_failed_at,
        ))
        .load(conn)
        .await?;
    let mut s = Stats { total: rows.len() as i64, ..Default::default() };
    for (status, handler, event_type, fingerprint, at) in rows {
        *s.by_status.entry(status.clone()).or_default() += 1;
        if status != "dead" {
            continue;
        }
        *s.by_handler.entry(handler).or_default() += 1;
        *s.by_event_type.entry(event_type.unwrap_or_else(|| UNKNOWN.into())).or_default() += 1;
        *s.by_fingerprint.entry(fingerprint).or_default() += 1;
        *s.by_age.entry(age_bucket(now - at).into()).or_default() += 1;
        s.oldest_dead = Some(s.oldest_dead.map_or(at, |o| o.min(at)));
    }
    Ok(s)
}

/// How many letters each status holds (`/metrics`), one cheap grouped count.
pub async fn counts_by_status(conn: &mut Conn) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(dead_letters::table
        .group_by(dead_letters::status)
        .select((dead_letters::status, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)
        .await?)
}

fn age_bucket(age: chrono::TimeDelta) -> &'static str {
    if age < chrono::TimeDelta::hours(1) {
        "< 1h"
    } else if age < chrono::TimeDelta::days(1) {
        "1h – 1d"
    } else if age < chrono::TimeDelta::days(7) {
        "1d – 7d"
    } else {
        "> 7d"
    }
}

/// A page of dead letters, newest failure first, with the total count.
pub async fn list(
    conn: &mut Conn,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeadLetter>, i64), StoreError> {
    filter.validate()?;
    super::page(
        conn,
        || filter.query(),
        |q| q.order((dead_letters::last_failed_at.desc(), dead_letters::id.desc())),
        super::Page::new(limit, offset),
    )
    .await
}

/// How an operator names one letter: its row number (`dlq list`) or its
/// key, the UUID the daemon's log prints as `dead_letter_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterRef {
    Id(i64),
    Key(Uuid),
}

impl std::fmt::Display for LetterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LetterRef::Id(id) => write!(f, "#{id}"),
            LetterRef::Key(key) => write!(f, "{key}"),
        }
    }
}

/// One letter with its replays and the letters its replays became when they
/// failed again.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub letter: DeadLetter,
    pub replays: Vec<Replay>,
    /// The letter whose replay this one failed as.
    pub replay_of: Option<i64>,
}

/// One dead letter, its replay history and what its replays became.
pub async fn show(conn: &mut Conn, which: LetterRef) -> Result<Detail, StoreError> {
    let q = dead_letters::table.select(DeadLetter::as_select()).into_boxed();
    let q = match which {
        LetterRef::Id(id) => q.filter(dead_letters::id.eq(id)),
        LetterRef::Key(key) => q.filter(dead_letters::dead_letter_key.eq(key)),
    };
    let letter = q.first(conn).await.optional()?.ok_or(StoreError::NotFound("dead letter"))?;
    let replays = dead_letter_replays::table
        .filter(dead_letter_replays::dead_letter_id.eq(letter.id))
        .order(dead_letter_replays::id.asc())
        .select(Replay::as_select())
        .load(conn)
        .await?;
    let replay_of = dead_letter_replays::table
        .filter(dead_letter_replays::failed_again_as.eq(letter.id))
        .select(dead_letter_replays::dead_letter_id)
        .first(conn)
        .await
        .optional()?;
    Ok(Detail { letter, replays, replay_of })
}

/// Of `ids`, those no letter has (in any status), in the order given.
pub async fn absent_ids(conn: &mut Conn, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<i64> =
        dead_letters::table.filter(dead_letters::id.eq_any(ids)).select(dead_letters::id).load(conn).await?;
    Ok(ids.iter().copied().filter(|id| !found.contains(id)).collect())
}

/// Which of a filter's named values some letter (in any status) carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stored {
    pub handler: bool,
    pub event_type: bool,
    pub fingerprint: bool,
}

/// Whether the filter's handler, event type and fingerprint are each on some
/// letter (whatever the other criteria): a name no letter carries may still
/// be a real one (a handler with no failures yet).
pub async fn stored(conn: &mut Conn, filter: &Filter) -> Result<Stored, StoreError> {
    use diesel::dsl::exists;
    let mut s = Stored::default();
    if let Some(h) = &filter.handler {
        s.handler =
            diesel::select(exists(dead_letters::table.filter(dead_letters::handler.eq(h)))).get_result(conn).await?;
    }
    if let Some(t) = &filter.event_type {
        s.event_type =
            diesel::select(exists(dead_letters::table.filter(dead_letters::event_type.eq(t)))).get_result(conn).await?;
    }
    if let Some(f) = &filter.fingerprint {
        s.fingerprint = diesel::select(exists(dead_letters::table.filter(dead_letters::fingerprint.eq(f))))
            .get_result(conn)
            .await?;
    }
    Ok(s)
}

/// How many letters match the filter, by status (what a command that acts on
/// some statuses only left aside).
pub async fn count_by_status(conn: &mut Conn, filter: &Filter) -> Result<BTreeMap<String, i64>, StoreError> {
    filter.validate()?;
    let rows: Vec<String> = filter.query().select(dead_letters::status).load(conn).await?;
    let mut m = BTreeMap::new();
    for s in rows {
        *m.entry(s).or_default() += 1;
    }
    Ok(m)
}

/// Moves the matching letters in `from` to `to`; returns how many moved.
async fn move_status(conn: &mut Conn, filter: &Filter, from: &str, to: &str) -> Result<usize, StoreError> {
    filter.validate()?;
    let ids: Vec<i64> =
        filter.query().filter(dead_letters::status.eq(from)).select(dead_letters::id).load(conn).await?;
    Ok(diesel::update(dead_letters::table.filter(dead_letters::id.eq_any(&ids)).filter(dead_letters::status.eq(from)))
        .set((dead_letters::status.eq(to), dead_letters::updated_at.eq(Utc::now())))
        .execute(conn)
        .await?)
}

/// Archives matching `dead` letters (kept, out of the way).
pub async fn archive(conn: &mut Conn, filter: &Filter) -> Result<usize, StoreError> {
    move_status(conn, filter, "dead", "archived").await
}

/// Brings matching `archived` letters back to `dead`.
pub async fn restore(conn: &mut Conn, filter: &Filter) -> Result<usize, StoreError> {
    move_status(conn, filter, "archived", "dead").await
}

/// How many `archived` letters match (what purge would delete).
pub async fn count_archived(conn: &mut Conn, filter: &Filter) -> Result<i64, StoreError> {
    filter.validate()?;
    Ok(filter.query().filter(dead_letters::status.eq("archived")).count().get_result(conn).await?)
}

/// Deletes matching `archived` letters (only those) with their replay history.
pub async fn purge(conn: &mut Conn, filter: &Filter) -> Result<usize, StoreError> {
    filter.validate()?;
    let ids: Vec<i64> =
        filter.query().filter(dead_letters::status.eq("archived")).select(dead_letters::id).load(conn).await?;
    Ok(diesel::delete(
        dead_letters::table.filter(dead_letters::id.eq_any(&ids)).filter(dead_letters::status.eq("archived")),
    )
    .execute(conn)
    .await?)
}

/// The letters a replay with `filter` would publish: `dead` ones, and
/// `replaying` ones an interrupted replay left, oldest first.
pub async fn replay_candidates(conn: &mut Conn, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
    filter.validate()?;
    Ok(filter
        .query()
        .filter(dead_letters::status.eq_any(["dead", "replaying"]))
        .order(dead_letters::id.asc())
        .select(DeadLetter::as_select())
        .load(conn)
        .await?)
}

/// Claims letter `id` for a replay by `actor` to `target_queue`: marks it
/// `replaying` and records the replay, or finds the unfinished replay an
/// interrupted run left (same replay id). `None` when the letter is no longer
/// `dead` or `replaying` (another operator replayed or archived it meanwhile).
pub async fn begin_replay(
    conn: &mut Conn,
    id: i64,
    actor: &str,
    target_queue: &str,
) -> Result<Option<(DeadLetter, Replay)>, StoreError> {
    conn.transaction(async |conn| {
        let Some(letter) = dead_letters::table
            .find(id)
            .filter(dead_letters::status.eq_any(["dead", "replaying"]))
            .select(DeadLetter::as_select())
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let unfinished = dead_letter_replays::table
            .filter(dead_letter_replays::dead_letter_id.eq(id).and(dead_letter_replays::published_at.is_null()))
            .select(Replay::as_select())
            .first(conn)
            .await
            .optional()?;
        let replay = match unfinished {
            Some(r) => r,
            None => {
                diesel::insert_into(dead_letter_replays::table)
                    .values((
                        dead_letter_replays::dead_letter_id.eq(id),
                        dead_letter_replays::replay_id.eq(Uuid::now_v7()),
                        dead_letter_replays::actor.eq(actor),
                        dead_letter_replays::target_queue.eq(target_queue),
                    ))
                    .returning(Replay::as_returning())
                    .get_result(conn)
                    .await?
            }
        };
        diesel::update(dead_letters::table.find(id))
            .set((dead_letters::status.eq("replaying"), dead_letters::updated_at.eq(Utc::now())))
            .execute(conn)
            .await?;
        Ok(Some((letter, replay)))
    })
    .await
}

/// Records that the broker confirmed the replay: the letter is `replayed`.
pub async fn finish_replay(conn: &mut Conn, replay: &Replay) -> Result<(), StoreError> {
    conn.transaction(async |conn| {
        let now = Utc::now();
        diesel::update(dead_letter_replays::table.find(replay.id))
            .set(dead_letter_replays::published_at.eq(now))
            .execute(conn)
            .await?;
        diesel::update(dead_letters::table.find(replay.dead_letter_id))
            .set((dead_letters::status.eq("replayed"), dead_letters::updated_at.eq(now)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// How many letters a replay with `filter` would publish (`dead` and
/// `replaying`), without loading them.
pub async fn count_replay_candidates(conn: &mut Conn, filter: &Filter) -> Result<i64, StoreError> {
    filter.validate()?;
    Ok(filter.query().filter(dead_letters::status.eq_any(["dead", "replaying"])).count().get_result(conn).await?)
}

/// The handlers of the letters a replay with `filter` would publish.
pub async fn replay_handlers(conn: &mut Conn, filter: &Filter) -> Result<Vec<String>, StoreError> {
    filter.validate()?;
    Ok(filter
        .query()
        .filter(dead_letters::status.eq_any(["dead", "replaying"]))
        .select(dead_letters::handler)
        .distinct()
        .load(conn)
        .await?)
}

/// What a dry run shows of each candidate: id, handler, fingerprint (no body).
pub async fn replay_outline(conn: &mut Conn, filter: &Filter) -> Result<Vec<(i64, String, String)>, StoreError> {
    filter.validate()?;
    Ok(filter
        .query()
        .filter(dead_letters::status.eq_any(["dead", "replaying"]))
        .order(dead_letters::id.asc())
        .select((dead_letters::id, dead_letters::handler, dead_letters::fingerprint))
        .load(conn)
        .await?)
}

/// One page of a streamed replay, claimed in one transaction.
#[derive(Debug, Default)]
pub struct ClaimedPage {
    /// Letters now `replaying`, each with its replay (a new one, or the
    /// unfinished one an interrupted run left: same replay id), in id order.
    pub claimed: Vec<(DeadLetter, Replay)>,
    /// Letters of the page whose handler has no queue here (left `dead`).
    pub unroutable: Vec<(i64, String)>,
    /// Candidates of the page another replay holds (locked) or that left
    /// `dead`/`replaying` meanwhile: not this run's.
    pub taken_elsewhere: usize,
    /// The highest id this page looked at: the next page starts after it.
    /// `None` when no candidate is left after `after`.
    pub last_id: Option<i64>,
}

/// Claims the next page of a replay: up to `limit` candidates (`dead` or
/// `replaying`) with an id above `after`, in id order, locked `SKIP LOCKED`
/// (a letter another replay holds is left to it). In one transaction, with
/// set-based statements (one per step, not per letter): finds the unfinished
/// replays an interrupted run left, records a new replay for every other
/// letter, and marks the page `replaying`. `queue_of` gives a handler's
/// queue, `None` for a handler this build does not know (left as it is).
/// The memory a replay holds is one page, whatever the number of letters.
pub async fn claim_replay_page(
    conn: &mut Conn,
    filter: &Filter,
    after: i64,
    limit: i64,
    actor: &str,
    queue_of: impl Fn(&str) -> Option<String> + Sync,
) -> Result<ClaimedPage, StoreError> {
    filter.validate()?;
    let ids: Vec<i64> = filter
        .query()
        .filter(dead_letters::status.eq_any(["dead", "replaying"]))
        .filter(dead_letters::id.gt(after))
        .order(dead_letters::id.asc())
        .limit(limit)
        .select(dead_letters::id)
        .load(conn)
        .await?;
    let Some(&last) = ids.last() else {
        return Ok(ClaimedPage::default());
    };
    conn.transaction(async |conn| {
        let letters: Vec<DeadLetter> = dead_letters::table
            .filter(dead_letters::id.eq_any(&ids))
            .filter(dead_letters::status.eq_any(["dead", "replaying"]))
            .order(dead_letters::id.asc())
            .select(DeadLetter::as_select())
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        let mut page =
            ClaimedPage { last_id: Some(last), taken_elsewhere: ids.len() - letters.len(), ..Default::default() };
        let mut routed: Vec<(DeadLetter, String)> = Vec::with_capacity(letters.len());
        for l in letters {
            match queue_of(&l.handler) {
                Some(q) => routed.push((l, q)),
                None => page.unroutable.push((l.id, l.handler)),
            }
        }
        if routed.is_empty() {
            return Ok(page);
        }
        let routed_ids: Vec<i64> = routed.iter().map(|(l, _)| l.id).collect();
        let unfinished: Vec<Replay> = dead_letter_replays::table
            .filter(dead_letter_replays::dead_letter_id.eq_any(&routed_ids))
            .filter(dead_letter_replays::published_at.is_null())
            .order(dead_letter_replays::id.asc())
            .select(Replay::as_select())
            .load(conn)
            .await?;
        let mut by_letter: std::collections::HashMap<i64, Replay> = std::collections::HashMap::new();
        for r in unfinished {
            by_letter.entry(r.dead_letter_id).or_insert(r);
        }
        let fresh: Vec<_> = routed
            .iter()
            .filter(|(l, _)| !by_letter.contains_key(&l.id))
            .map(|(l, q)| {
                (
                    dead_letter_replays::dead_letter_id.eq(l.id),
                    dead_letter_replays::replay_id.eq(Uuid::now_v7()),
                    dead_letter_replays::actor.eq(actor),
                    dead_letter_replays::target_queue.eq(q.as_str()),
                )
            })
            .collect();
        if !fresh.is_empty() {
            let inserted: Vec<Replay> = diesel::insert_into(dead_letter_replays::table)
                .values(&fresh)
                .returning(Replay::as_returning())
                .get_results(conn)
                .await?;
            for r in inserted {
                by_letter.insert(r.dead_letter_id, r);
            }
        }
        // Only the `dead` ones change: a `replaying` one is resumed as it is.
        let to_mark: Vec<i64> = routed.iter().filter(|(l, _)| l.status == "dead").map(|(l, _)| l.id).collect();
        if !to_mark.is_empty() {
            diesel::update(dead_letters::table.filter(dead_letters::id.eq_any(&to_mark)))
                .set((dead_letters::status.eq("replaying"), dead_letters::updated_at.eq(Utc::now())))
                .execute(conn)
                .await?;
        }
        for (mut l, _) in routed {
            if let Some(r) = by_letter.remove(&l.id) {
                l.status = "replaying".into();
                page.claimed.push((l, r));
            }
        }
        Ok(page)
    })
    .await
}

/// Records that the broker confirmed these replays, in one transaction of two
/// set-based statements: each letter is `replayed`.
pub async fn finish_replays(conn: &mut Conn, replays: &[Replay]) -> Result<(), StoreError> {
    if replays.is_empty() {
        return Ok(());
    }
    let replay_ids: Vec<i64> = replays.iter().map(|r| r.id).collect();
    let letter_ids: Vec<i64> = replays.iter().map(|r| r.dead_letter_id).collect();
    conn.transaction(async |conn| {
        let now = Utc::now();
        diesel::update(dead_letter_replays::table.filter(dead_letter_replays::id.eq_any(&replay_ids)))
            .set(dead_letter_replays::published_at.eq(now))
            .execute(conn)
            .await?;
        diesel::update(dead_letters::table.filter(dead_letters::id.eq_any(&letter_ids)))
            .set((dead_letters::status.eq("replayed"), dead_letters::updated_at.eq(now)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// A dead letter as ingest writes it (the daemon; tests).
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub dead_letter_key: Uuid,
    pub handler: String,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub body: Vec<u8>,
    pub headers: serde_json::Value,
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    pub last_error: String,
    pub error_kind: String,
    /// The `x-atelier-replay-id` the failed message carried: it failed again
    /// after a replay, and the ingest links it to the replayed letter.
    pub replay_id: Option<Uuid>,
}

impl NewDeadLetter {
    /// The letter with every NUL removed from its text and headers:
    /// PostgreSQL refuses NUL in `text` and `\u0000` in `jsonb`, and a
    /// letter must never be refused for what a producer put in a header.
    /// The body (`bytea`) is kept exactly.
    pub fn cleaned(&self) -> NewDeadLetter {
        fn text(s: &str) -> String {
            s.replace('\0', "")
        }
        fn json(v: &serde_json::Value) -> serde_json::Value {
            use serde_json::Value;
            match v {
                Value::String(s) => Value::String(text(s)),
                Value::Array(a) => Value::Array(a.iter().map(json).collect()),
                Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (text(k), json(v))).collect()),
                other => other.clone(),
            }
        }
        NewDeadLetter {
            handler: text(&self.handler),
            event_type: self.event_type.as_deref().map(text),
            headers: json(&self.headers),
            last_error: text(&self.last_error),
            error_kind: text(&self.error_kind),
            body: self.body.clone(),
            ..*self
        }
    }

    /// Groups letters that failed the same way: handler + error kind.
    pub fn fingerprint(&self) -> String {
        format!("{}:{}", self.handler, self.error_kind)
    }
}

/// Stores a dead letter once: a second ingest of the same key changes nothing.
/// A letter that names a replay is recorded on that replay as what it failed
/// again as (nothing when the replayed letter was purged meanwhile). Returns
/// whether it stored it now.
pub async fn ingest(conn: &mut Conn, new: &NewDeadLetter) -> Result<bool, StoreError> {
    conn.transaction(async |conn| {
        let id: Option<i64> = diesel::insert_into(dead_letters::table)
            .values((
                dead_letters::dead_letter_key.eq(new.dead_letter_key),
                dead_letters::handler.eq(&new.handler),
                dead_letters::event_id.eq(new.event_id),
                dead_letters::event_type.eq(&new.event_type),
                dead_letters::body.eq(&new.body),
                dead_letters::headers.eq(&new.headers),
                dead_letters::attempts.eq(new.attempts),
                dead_letters::first_failed_at.eq(new.first_failed_at),
                dead_letters::last_failed_at.eq(new.last_failed_at),
                dead_letters::last_error.eq(&new.last_error),
                dead_letters::error_kind.eq(&new.error_kind),
                dead_letters::fingerprint.eq(new.fingerprint()),
            ))
            .on_conflict(dead_letters::dead_letter_key)
            .do_nothing()
            .returning(dead_letters::id)
            .get_result(conn)
            .await
            .optional()?;
        if let (Some(id), Some(replay_id)) = (id, new.replay_id) {
            // The first letter a replay failed as keeps the link (a redelivery
            // dead-lettered twice makes a second letter, left unlinked).
            diesel::update(
                dead_letter_replays::table
                    .filter(dead_letter_replays::replay_id.eq(replay_id))
                    .filter(dead_letter_replays::failed_again_as.is_null()),
            )
            .set(dead_letter_replays::failed_again_as.eq(id))
            .execute(conn)
            .await?;
        }
        Ok(id.is_some())
    })
    .await
}
