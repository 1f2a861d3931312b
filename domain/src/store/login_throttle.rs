//! Login lockout state (`login_throttle`) and the operators' account audit
//! (`account_audit`). The rule (what locks, for how long) is
//! `rules::lockout`; this module reads and writes the rows, so that every
//! atelierd sharing the database shares the counts and the locks.

use super::schema::{account_audit, login_throttle};
use super::{Conn, StoreError};
use crate::rules::lockout::{self, Limits, Throttle};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

#[derive(Queryable, Selectable)]
#[diesel(table_name = login_throttle)]
struct Row {
    failures: i32,
    window_started_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
}

impl Row {
    fn throttle(&self) -> Throttle {
        Throttle {
            failures: u32::try_from(self.failures).unwrap_or(0),
            window_started_at: self.window_started_at,
            locked_until: self.locked_until,
        }
    }
}

/// The longest any of `keys` stays locked from `now`, in seconds; `None`
/// when none is locked.
pub async fn locked_for(conn: &mut Conn, keys: &[String], now: DateTime<Utc>) -> Result<Option<u64>, StoreError> {
    let rows: Vec<Row> =
        login_throttle::table.filter(login_throttle::key.eq_any(keys)).select(Row::as_select()).load(conn).await?;
    Ok(rows.iter().filter_map(|r| lockout::locked_for(&r.throttle(), now)).max())
}

/// Counts one failed login against `key` (locking it when it reaches the
/// limit) and returns its new state. Concurrent failures on one key are
/// serialized by the row lock, so none is lost.
pub async fn record_failure(
    conn: &mut Conn,
    key: &str,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Throttle, StoreError> {
    conn.transaction(async |conn| {
        diesel::insert_into(login_throttle::table)
            .values((
                login_throttle::key.eq(key),
                login_throttle::failures.eq(0),
                login_throttle::window_started_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let row: Row = login_throttle::table
            .filter(login_throttle::key.eq(key))
            .for_update()
            .select(Row::as_select())
            .first(conn)
            .await?;
        let previous = (row.failures > 0 || row.locked_until.is_some()).then(|| row.throttle());
        let next = lockout::after_failure(previous.as_ref(), limits, now);
        diesel::update(login_throttle::table.filter(login_throttle::key.eq(key)))
            .set((
                login_throttle::failures.eq(i32::try_from(next.failures).unwrap_or(i32::MAX)),
                login_throttle::window_started_at.eq(next.window_started_at),
                login_throttle::locked_until.eq(next.locked_until),
            ))
            .execute(conn)
            .await?;
        Ok(next)
    })
    .await
}

/// Forgets up to 100 keys whose window started and whose lock (if any)
/// ended before `before`: called as failures come in, so the table holds
/// only keys still counting or locked. Returns how many were forgotten.
pub async fn forget_stale(conn: &mut Conn, before: DateTime<Utc>) -> Result<usize, StoreError> {
    let stale = login_throttle::table
        .filter(
            login_throttle::window_started_at
                .lt(before)
                .and(login_throttle::locked_until.is_null().or(login_throttle::locked_until.lt(before))),
        )
        .select(login_throttle::key)
        .limit(100)
        .load::<String>(conn)
        .await?;
    if stale.is_empty() {
        return Ok(0);
    }
    // A key counting again since it was read has a new window: kept.
    let still_stale = login_throttle::window_started_at.lt(before);
    Ok(diesel::delete(login_throttle::table.filter(login_throttle::key.eq_any(&stale).and(still_stale)))
        .execute(conn)
        .await?)
}

/// Forgets `key`'s failures (a successful login of the account).
pub async fn clear(conn: &mut Conn, key: &str) -> Result<(), StoreError> {
    diesel::delete(login_throttle::table.filter(login_throttle::key.eq(key))).execute(conn).await?;
    Ok(())
}

/// Lifts the lock and the failures of `key` and records who did it, in one
/// transaction. Returns whether the key had failures or a lock.
pub async fn unlock(conn: &mut Conn, key: &str, actor: &str) -> Result<bool, StoreError> {
    conn.transaction(async |conn| {
        let n = diesel::delete(login_throttle::table.filter(login_throttle::key.eq(key))).execute(conn).await?;
        audit(conn, actor, "unlock", key).await?;
        Ok(n > 0)
    })
    .await
}

/// Records an operator's action on an account (`unlock`, `enable`, `disable`).
pub async fn audit(conn: &mut Conn, actor: &str, action: &str, subject: &str) -> Result<(), StoreError> {
    diesel::insert_into(account_audit::table)
        .values((account_audit::actor.eq(actor), account_audit::action.eq(action), account_audit::subject.eq(subject)))
        .execute(conn)
        .await?;
    Ok(())
}

/// An audit row, newest first (`audit_of`).
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = account_audit)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
}

/// The audit rows of `subject`, newest first.
pub async fn audit_of(conn: &mut Conn, subject: &str) -> Result<Vec<AuditRow>, StoreError> {
    Ok(account_audit::table
        .filter(account_audit::subject.eq(subject))
        .order(account_audit::id.desc())
        .select(AuditRow::as_select())
        .load(conn)
        .await?)
}
