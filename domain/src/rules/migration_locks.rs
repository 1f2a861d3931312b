//! What a migration statement does to the table it touches, the pure part of
//! `migrate plan`: the table-level lock it takes (named as in PostgreSQL's
//! "Table-level Lock Modes" table), and whether it rewrites the table, scans
//! it, or only changes the catalog. The store adds the live size and row
//! estimate of the relation named here (`store::migrations::relation_sizes`).
//! No I/O.

use serde::Serialize;

/// PostgreSQL's table-level lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// As PostgreSQL's documentation and `pg_locks.mode` name it, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the lock stops while it is held.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => "only schema changes",
            LockMode::ShareUpdateExclusive => "schema changes and vacuum; reads and writes go on",
            LockMode::Share | LockMode::ShareRowExclusive => "writes; reads go on",
            LockMode::Exclusive => "writes and SELECT ... FOR UPDATE; plain reads go on",
            LockMode::AccessExclusive => "every read and write",
        }
    }

    fn parse(words: &[&str]) -> Option<LockMode> {
        let mode = words.join(" ");
        [
            LockMode::AccessExclusive,
            LockMode::ShareRowExclusive,
            LockMode::ShareUpdateExclusive,
            LockMode::AccessShare,
            LockMode::RowShare,
            LockMode::RowExclusive,
            LockMode::Exclusive,
            LockMode::Share,
        ]
        .into_iter()
        .find(|m| mode == m.as_str())
    }
}

/// How much of the table a statement reads or writes while it holds its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Only the catalog (or a table the statement creates): instant once locked.
    Catalog,
    /// Some rows (an INSERT, a DML statement with WHERE).
    Rows,
    /// Reads every row (an index build, a constraint check, SET NOT NULL).
    Scan,
    /// Writes a new copy of the table (a type change, a volatile default, VACUUM FULL).
    Rewrite,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Catalog => "catalog only",
            Effect::Rows => "some rows",
            Effect::Scan => "scans the table",
            Effect::Rewrite => "rewrites the table",
        }
    }
}

/// What one statement does to the relation it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    /// The table (or, for DROP INDEX and REINDEX INDEX, the index) as written;
    /// None when the statement touches no existing table (CREATE TABLE, a type, a function).
    pub relation: Option<String>,
    /// The strongest table-level lock the statement takes on it; None when it takes none on a table.
    pub lock: Option<LockMode>,
    pub effect: Effect,
}

impl LockInfo {
    fn none() -> Self {
        LockInfo { relation: None, lock: None, effect: Effect::Catalog }
    }

    fn on(relation: &str, lock: LockMode, effect: Effect) -> Self {
        LockInfo { relation: Some(relation.trim_end_matches(',').to_owned()), lock: Some(lock), effect }
    }
}

/// The lock and effect of `statement` (one statement, as written; comments out).
pub fn classify(statement: &str) -> LockInfo {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let kw = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
    let has = |w: &str| upper.iter().any(|u| u == w);
    // The name at `i`, after optional keywords.
    let name_after = |mut i: usize, skip: &[&str]| -> Option<(usize, String)> {
        while skip.contains(&kw(i)) {
            i += 1;
        }
        words.get(i).map(|w| (i, w.split('(').next().unwrap_or_default().trim_end_matches(',').to_owned()))
    };
    use Effect::*;
    use LockMode::*;
    match (kw(0), kw(1)) {
        ("ALTER", "TABLE") => alter_table(&words, &upper),
        ("CREATE", "INDEX") | ("CREATE", "UNIQUE") => {
            let Some(on) = upper.iter().position(|w| w == "ON") else { return LockInfo::none() };
            let Some((_, table)) = name_after(on + 1, &["ONLY"]) else { return LockInfo::none() };
            let lock = if has("CONCURRENTLY") { ShareUpdateExclusive } else { Share };
            LockInfo::on(&table, lock, Scan)
        }
        ("DROP", "INDEX") => {
            let Some((_, index)) = name_after(2, &["CONCURRENTLY", "IF", "EXISTS"]) else { return LockInfo::none() };
            let lock = if has("CONCURRENTLY") { ShareUpdateExclusive } else { AccessExclusive };
            LockInfo::on(&index, lock, Catalog)
        }
        ("REINDEX", _) => {
            let Some((_, name)) = name_after(1, &["INDEX", "TABLE", "CONCURRENTLY"]) else { return LockInfo::none() };
            let lock = if has("CONCURRENTLY") { ShareUpdateExclusive } else { Share };
            LockInfo::on(&name, lock, Scan)
        }
        ("DROP", "TABLE") => match name_after(2, &["IF", "EXISTS"]) {
            Some((_, t)) => LockInfo::on(&t, AccessExclusive, Catalog),
            None => LockInfo::none(),
        },
        ("TRUNCATE", _) => match name_after(1, &["TABLE", "ONLY"]) {
            Some((_, t)) => LockInfo::on(&t, AccessExclusive, Rewrite),
            None => LockInfo::none(),
        },
        ("LOCK", _) => {
            let Some((_, t)) = name_after(1, &["TABLE", "ONLY"]) else { return LockInfo::none() };
            let mode = upper.iter().position(|w| w == "IN").and_then(|i| {
                let end = upper.iter().position(|w| w == "MODE").unwrap_or(upper.len());
                let mode: Vec<&str> = upper[i + 1..end.max(i + 1)].iter().map(String::as_str).collect();
                LockMode::parse(&mode)
            });
            LockInfo::on(&t, mode.unwrap_or(AccessExclusive), Catalog)
        }
        ("VACUUM", _) => {
            let full = has("FULL") || upper.iter().any(|w| w.contains("(FULL"));
            let Some(t) = words.last().filter(|_| words.len() > 1).filter(|w| !w.ends_with(')')) else {
                return LockInfo::none();
            };
            if full { LockInfo::on(t, AccessExclusive, Rewrite) } else { LockInfo::on(t, ShareUpdateExclusive, Scan) }
        }
        ("CLUSTER", _) => match name_after(1, &["VERBOSE"]) {
            Some((_, t)) => LockInfo::on(&t, AccessExclusive, Rewrite),
            None => LockInfo::none(),
        },
        ("REFRESH", "MATERIALIZED") => match name_after(3, &["CONCURRENTLY"]) {
            Some((_, v)) => LockInfo::on(&v, if has("CONCURRENTLY") { Exclusive } else { AccessExclusive }, Rewrite),
            None => LockInfo::none(),
        },
        ("DROP", "TRIGGER") => {
            let Some(on) = upper.iter().position(|w| w == "ON") else { return LockInfo::none() };
            match name_after(on + 1, &[]) {
                Some((_, t)) => LockInfo::on(&t, AccessExclusive, Catalog),
                None => LockInfo::none(),
            }
        }
        // A new table's foreign key locks the table it references against writes, briefly.
        ("CREATE", "TABLE") | ("CREATE", "UNLOGGED") if has("REFERENCES") => {
            let at = upper.iter().position(|w| w == "REFERENCES").unwrap_or_default();
            match name_after(at + 1, &[]) {
                Some((_, t)) => LockInfo::on(&t, ShareRowExclusive, Catalog),
                None => LockInfo::none(),
            }
        }
        ("CREATE", "TRIGGER") | ("CREATE", "OR") if has("TRIGGER") => {
            let Some(on) = upper.iter().position(|w| w == "ON") else { return LockInfo::none() };
            match name_after(on + 1, &[]) {
                Some((_, t)) => LockInfo::on(&t, ShareRowExclusive, Catalog),
                None => LockInfo::none(),
            }
        }
        ("UPDATE", _) => match name_after(1, &["ONLY"]) {
            Some((_, t)) => LockInfo::on(&t, RowExclusive, if has("WHERE") { Rows } else { Rewrite }),
            None => LockInfo::none(),
        },
        ("DELETE", "FROM") => match name_after(2, &["ONLY"]) {
            Some((_, t)) => LockInfo::on(&t, RowExclusive, if has("WHERE") { Rows } else { Scan }),
            None => LockInfo::none(),
        },
        ("INSERT", "INTO") => match name_after(2, &[]) {
            Some((_, t)) => LockInfo::on(&t, RowExclusive, Rows),
            None => LockInfo::none(),
        },
        // CREATE TABLE, CREATE TYPE, functions, views, ALTER TYPE ... ADD VALUE, COMMENT, SET ...:
        // no lock on an existing table's traffic.
        _ => LockInfo::none(),
    }
}

/// ALTER TABLE: the strongest lock and effect of its actions.
fn alter_table(words: &[&str], upper: &[String]) -> LockInfo {
    use Effect::*;
    use LockMode::*;
    let mut i = 2;
    while matches!(upper.get(i).map(String::as_str), Some("IF" | "EXISTS" | "ONLY")) {
        i += 1;
    }
    let Some(table) = words.get(i) else { return LockInfo::none() };
    let rest = upper[i + 1..].join(" ");
    let mut lock = ShareUpdateExclusive;
    let mut effect = Catalog;
    let mut take = |l: LockMode, e: Effect| {
        lock = lock.max(l);
        effect = effect.max(e);
    };
    for action in top_level_commas(&rest) {
        let a = action.trim();
        let has = |w: &str| a.split_whitespace().any(|x| x == w);
        if a.starts_with("ADD CONSTRAINT")
            || a.starts_with("ADD FOREIGN")
            || a.starts_with("ADD CHECK")
            || a.starts_with("ADD UNIQUE")
            || a.starts_with("ADD PRIMARY")
            || a.starts_with("ADD EXCLUDE")
        {
            let checked = if has("VALID") && a.contains("NOT VALID") { Catalog } else { Scan };
            if a.contains("FOREIGN KEY") || a.contains("REFERENCES") {
                take(ShareRowExclusive, checked);
            } else if a.contains("USING INDEX") {
                take(AccessExclusive, Catalog);
            } else if has("UNIQUE") || a.contains("PRIMARY KEY") || has("EXCLUDE") {
                take(AccessExclusive, Scan);
            } else {
                take(AccessExclusive, checked);
            }
        } else if a.starts_with("ADD") {
            // ADD [COLUMN]: catalog only unless the default must be computed per row.
            let volatile = ["RANDOM(", "GEN_RANDOM_UUID(", "UUID_GENERATE_V", "CLOCK_TIMESTAMP(", "NEXTVAL("]
                .iter()
                .any(|f| a.contains(f));
            let serial = a.split_whitespace().any(|w| w.trim_end_matches(',').ends_with("SERIAL"));
            let generated = a.contains("GENERATED") && (a.contains("STORED") || a.contains("IDENTITY"));
            let referenced = has("REFERENCES") || has("CHECK");
            let e = if volatile || serial || generated {
                Rewrite
            } else if has("UNIQUE") || a.contains("PRIMARY KEY") || referenced {
                Scan
            } else {
                Catalog
            };
            take(AccessExclusive, e);
        } else if a.starts_with("VALIDATE CONSTRAINT") {
            take(ShareUpdateExclusive, Scan);
        } else if a.starts_with("ALTER") && (a.contains(" TYPE ") || a.contains(" SET DATA TYPE ")) {
            take(AccessExclusive, Rewrite);
        } else if a.starts_with("ALTER") && a.contains("SET NOT NULL") {
            take(AccessExclusive, Scan);
        } else if a.starts_with("ALTER") && a.contains("SET STATISTICS") {
            take(ShareUpdateExclusive, Catalog);
        } else if a.starts_with("SET LOGGED") || a.starts_with("SET UNLOGGED") || a.starts_with("SET TABLESPACE") {
            take(AccessExclusive, Rewrite);
        } else if a.starts_with("SET (")
            || a.starts_with("RESET (")
            || a.starts_with("SET WITHOUT CLUSTER")
            || a.starts_with("CLUSTER ON")
        {
            take(ShareUpdateExclusive, Catalog);
        } else if a.starts_with("ENABLE") || a.starts_with("DISABLE") {
            take(ShareRowExclusive, Catalog);
        } else {
            // DROP [COLUMN|CONSTRAINT], RENAME, SET/DROP DEFAULT, DROP NOT NULL, OWNER, ...
            take(AccessExclusive, Catalog);
        }
    }
    LockInfo::on(table, lock, effect)
}

/// `s` split on commas outside parentheses.
fn top_level_commas(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;
    use LockMode::*;

    type Case = (Option<String>, Option<LockMode>, Effect);

    fn of(sql: &str) -> Case {
        let i = classify(sql);
        (i.relation, i.lock, i.effect)
    }

    fn on(t: &str, l: LockMode, e: Effect) -> Case {
        (Some(t.to_owned()), Some(l), e)
    }

    #[test]
    fn each_kind_of_statement_takes_the_lock_postgresql_documents() {
        let cases: &[(&str, Case)] = &[
            ("ALTER TABLE sales ADD COLUMN note TEXT", on("sales", AccessExclusive, Catalog)),
            ("alter table sales add column kind text default 'a'", on("sales", AccessExclusive, Catalog)),
            (
                "ALTER TABLE sales ADD COLUMN token UUID DEFAULT gen_random_uuid()",
                on("sales", AccessExclusive, Rewrite),
            ),
            ("ALTER TABLE sales ADD COLUMN n BIGSERIAL", on("sales", AccessExclusive, Rewrite)),
            ("ALTER TABLE sales ALTER COLUMN note TYPE varchar(20)", on("sales", AccessExclusive, Rewrite)),
            ("ALTER TABLE sales ALTER COLUMN note SET NOT NULL", on("sales", AccessExclusive, Scan)),
            ("ALTER TABLE sales ALTER COLUMN note DROP NOT NULL", on("sales", AccessExclusive, Catalog)),
            ("ALTER TABLE sales DROP COLUMN note", on("sales", AccessExclusive, Catalog)),
            ("ALTER TABLE sales RENAME COLUMN a TO b", on("sales", AccessExclusive, Catalog)),
            (
                "ALTER TABLE sales ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES businesses (id)",
                on("sales", ShareRowExclusive, Scan),
            ),
            (
                "ALTER TABLE sales ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES businesses (id) NOT VALID",
                on("sales", ShareRowExclusive, Catalog),
            ),
            ("ALTER TABLE sales ADD CONSTRAINT c CHECK (total >= 0)", on("sales", AccessExclusive, Scan)),
            ("ALTER TABLE sales ADD CONSTRAINT c CHECK (total >= 0) NOT VALID", on("sales", AccessExclusive, Catalog)),
            ("ALTER TABLE sales VALIDATE CONSTRAINT c", on("sales", ShareUpdateExclusive, Scan)),
            ("ALTER TABLE sales ADD CONSTRAINT u UNIQUE (invoice_no)", on("sales", AccessExclusive, Scan)),
            ("ALTER TABLE sales ADD CONSTRAINT u UNIQUE USING INDEX sales_u", on("sales", AccessExclusive, Catalog)),
            ("ALTER TABLE sales SET (fillfactor = 90)", on("sales", ShareUpdateExclusive, Catalog)),
            ("ALTER TABLE sales SET LOGGED", on("sales", AccessExclusive, Rewrite)),
            ("ALTER TABLE sales ADD COLUMN a TEXT, ALTER COLUMN b TYPE BIGINT", on("sales", AccessExclusive, Rewrite)),
            ("CREATE INDEX sales_note ON sales (note)", on("sales", Share, Scan)),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS s ON ONLY sales(note)",
                on("sales", ShareUpdateExclusive, Scan),
            ),
            ("DROP INDEX sales_note", on("sales_note", AccessExclusive, Catalog)),
            ("DROP INDEX CONCURRENTLY IF EXISTS sales_note", on("sales_note", ShareUpdateExclusive, Catalog)),
            ("REINDEX INDEX CONCURRENTLY sales_note", on("sales_note", ShareUpdateExclusive, Scan)),
            ("DROP TABLE IF EXISTS old", on("old", AccessExclusive, Catalog)),
            ("TRUNCATE outbox", on("outbox", AccessExclusive, Rewrite)),
            ("LOCK TABLE sales IN SHARE ROW EXCLUSIVE MODE", on("sales", ShareRowExclusive, Catalog)),
            ("LOCK sales", on("sales", AccessExclusive, Catalog)),
            ("VACUUM FULL sales", on("sales", AccessExclusive, Rewrite)),
            ("VACUUM sales", on("sales", ShareUpdateExclusive, Scan)),
            ("CLUSTER sales USING sales_pkey", on("sales", AccessExclusive, Rewrite)),
            ("REFRESH MATERIALIZED VIEW CONCURRENTLY totals", on("totals", Exclusive, Rewrite)),
            (
                "CREATE TRIGGER t AFTER INSERT ON sales FOR EACH ROW EXECUTE FUNCTION f()",
                on("sales", ShareRowExclusive, Catalog),
            ),
            ("UPDATE sales SET note = ''", on("sales", RowExclusive, Rewrite)),
            ("UPDATE sales SET note = '' WHERE id < 100", on("sales", RowExclusive, Rows)),
            ("DELETE FROM outbox", on("outbox", RowExclusive, Scan)),
            ("INSERT INTO roles (name) VALUES ('a')", on("roles", RowExclusive, Rows)),
            ("CREATE TABLE t (id BIGINT PRIMARY KEY)", (None, None, Catalog)),
            (
                "CREATE TABLE t (id BIGINT PRIMARY KEY, business_id BIGINT NOT NULL REFERENCES businesses(id))",
                on("businesses", ShareRowExclusive, Catalog),
            ),
            ("DROP TRIGGER outbox_notify ON outbox", on("outbox", AccessExclusive, Catalog)),
            ("ALTER TYPE channel ADD VALUE 'sms'", (None, None, Catalog)),
        ];
        for (sql, want) in cases {
            assert_eq!(&of(sql), want, "{sql}");
        }
    }

    #[test]
    fn lock_modes_order_from_weakest_to_strongest() {
        assert!(AccessShare < RowExclusive && RowExclusive < ShareUpdateExclusive);
        assert!(Share < ShareRowExclusive && Exclusive < AccessExclusive);
        assert_eq!(LockMode::parse(&["SHARE", "UPDATE", "EXCLUSIVE"]), Some(ShareUpdateExclusive));
        assert_eq!(serde_json::to_value(AccessExclusive).unwrap(), "ACCESS_EXCLUSIVE");
    }
}
