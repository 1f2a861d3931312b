//! Migration lint, the pure part: which statements of a migration's `up.sql`
//! break the version still running (destroy or rename what it reads, refuse
//! its writes), take a lock that stops a table's traffic while PostgreSQL
//! scans or rewrites it, or cannot run the way the file says it runs. Each
//! rule has a stable id, a severity, the reason and the safe way around it
//! ([`RULES`]); the README's table is written from the same list.
//!
//! A file steers the lint, and how it runs, with directive comments of its own
//! line:
//!
//! ```sql
//! -- atelier:phase contract             (default: expand; see below)
//! -- atelier:no-transaction             (statements run one by one, outside a transaction)
//! -- atelier:allow drop-column: nothing reads sales.legacy_code since 0.3.0
//! ```
//!
//! Phases: an `expand` migration is additive and backward compatible (deploy
//! applies it while the old version still runs); a `contract` migration
//! removes what no running version reads any more (run by `migrate run
//! --phase contract` once no old slot runs). Drops belong in contract
//! migrations; additions in expand ones.
//!
//! Statements on a table the same file creates are never findings of the
//! locking or destroying rules (nobody uses that table yet). A finding of an
//! `error` rule refuses the migration unless the file allows the rule with a
//! reason; a `warning` is reported and refuses nothing.

use serde::Serialize;

/// How much a finding weighs: an error refuses the migration (unless
/// allowed), a warning only says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A migration's phase, from its `-- atelier:phase` line (default expand).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Expand,
    Contract,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Contract => "contract",
        }
    }
}

/// A rule: its stable id (for `atelier:allow` and `--output json`), its
/// severity, what it finds and the way around it.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub why: &'static str,
    pub instead: &'static str,
}

const fn error(id: &'static str, why: &'static str, instead: &'static str) -> Rule {
    Rule { id, severity: Severity::Error, why, instead }
}

const fn warning(id: &'static str, why: &'static str, instead: &'static str) -> Rule {
    Rule { id, severity: Severity::Warning, why, instead }
}

/// Every rule, in the order the README lists them. Ids never change.
pub const RULES: &[Rule] = &[
    error(
        "drop-table",
        "drops a table and its data while the running version may still use it",
        "stop using it in one release, drop it in a later contract migration (-- atelier:phase contract)",
    ),
    error(
        "drop-column",
        "drops a column the running version may still read",
        "stop reading it in one release, drop it in a later contract migration (-- atelier:phase contract)",
    ),
    error(
        "rename",
        "renames what the running version still names",
        "add the new name, dual-write, backfill, move the readers, then drop the old one in a contract migration",
    ),
    error("truncate", "deletes every row of a table", "delete what must go, in batches, in a data migration"),
    error(
        "delete-all",
        "deletes every row of an existing table in one statement, holding its row locks to the end",
        "delete in batches with a WHERE on the key, outside the schema migration",
    ),
    error(
        "column-type",
        "changing a column's type rewrites the table under an ACCESS EXCLUSIVE lock",
        "add a column of the new type, backfill it in batches, switch readers, drop the old one later",
    ),
    error(
        "set-not-null",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT c, then SET NOT NULL",
    ),
    error(
        "index-lock",
        "CREATE INDEX without CONCURRENTLY blocks the table's writes while it builds",
        "CREATE INDEX CONCURRENTLY, alone in a file with -- atelier:no-transaction",
    ),
    error(
        "drop-index-lock",
        "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table",
        "DROP INDEX CONCURRENTLY, alone in a file with -- atelier:no-transaction",
    ),
    error(
        "reindex-lock",
        "REINDEX without CONCURRENTLY blocks the table's writes (and reads through the index)",
        "REINDEX ... CONCURRENTLY, alone in a file with -- atelier:no-transaction",
    ),
    error(
        "validate-lock",
        "a new FOREIGN KEY or CHECK checks every row while holding a lock",
        "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later statement",
    ),
    error(
        "unique-without-index",
        "a new UNIQUE or PRIMARY KEY constraint builds its index under an ACCESS EXCLUSIVE lock",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX",
    ),
    error(
        "volatile-default",
        "a column added with a volatile default (random(), gen_random_uuid(), clock_timestamp(), a serial, \
         a stored generated or identity column) rewrites the table under an ACCESS EXCLUSIVE lock",
        "add the column without a default (or with a constant one), then backfill it in batches",
    ),
    error(
        "not-null-without-default",
        "a column added NOT NULL without a default fails on a table with rows, and the running version's \
         inserts, which do not name it, fail too",
        "add it nullable or with a constant DEFAULT; backfill; then enforce NOT NULL (see set-not-null)",
    ),
    error(
        "table-rewrite",
        "SET LOGGED, SET UNLOGGED and SET TABLESPACE rewrite the table under an ACCESS EXCLUSIVE lock",
        "do it in a maintenance window, or build a new table and move the data in batches",
    ),
    error(
        "vacuum-full",
        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock",
        "plain VACUUM (or pg_repack) outside the migration",
    ),
    error(
        "cluster",
        "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock",
        "pg_repack outside the migration, or leave the physical order alone",
    ),
    error(
        "lock-table",
        "an explicit LOCK TABLE blocks the table's traffic for the rest of the transaction",
        "rely on the statements' own locks, with lock_timeout",
    ),
    error(
        "refresh-lock",
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks the view's readers",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY (the view needs a unique index)",
    ),
    error(
        "whole-table-backfill",
        "an UPDATE without WHERE rewrites every row of an existing table in one transaction, \
         holding every row lock and bloating it",
        "backfill in batches of a few thousand rows by key, outside the schema migration",
    ),
    error(
        "enum-value-used",
        "a value added by ALTER TYPE ... ADD VALUE cannot be used in the same transaction (a file runs as one)",
        "use the new value in a later migration",
    ),
    error(
        "needs-no-transaction",
        "CONCURRENTLY and VACUUM cannot run inside a transaction block: a migration runs in one by default, \
         and a file of several statements runs as one even with -- atelier:no-transaction",
        "put the statement alone in a file that says -- atelier:no-transaction",
    ),
    error(
        "missing-lock-timeout",
        "the file sets its own session settings but not lock_timeout: a statement waiting for a lock \
         queues every query of that table behind it",
        "SET lock_timeout = '2s' as well (or leave the settings to atelier, which sets both)",
    ),
    error(
        "contract-in-expand",
        "drops a type, view, sequence, schema or domain in an expand migration, which runs while the old \
         version still uses it",
        "move it to a contract migration (-- atelier:phase contract)",
    ),
    error(
        "expand-in-contract",
        "adds a table, column, index, type or view in a contract migration, which deploy does not run: \
         the new version would start without it",
        "move the additions to an expand migration; keep the contract migration to removals",
    ),
    error(
        "directive",
        "an atelier: comment this build does not understand (a typo would silently change nothing)",
        "write one of: -- atelier:phase expand|contract, -- atelier:no-transaction, \
         -- atelier:allow <rule-id>: <reason>",
    ),
    warning(
        "prefer-identity",
        "SERIAL types leave the sequence's ownership and permissions apart from the column",
        "BIGINT GENERATED ALWAYS AS IDENTITY",
    ),
    warning(
        "prefer-timestamptz",
        "TIMESTAMP without time zone stores wall-clock time that means something else on each server",
        "TIMESTAMPTZ",
    ),
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// A statement a rule found, with the line it starts on and, when the file
/// allows the rule, its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub line: usize,
    /// The statement, whitespace collapsed, cut at 120 characters.
    pub statement: String,
    pub allowed: Option<String>,
}

impl Finding {
    pub fn rule(&self) -> &'static Rule {
        rule(self.rule).expect("findings name known rules")
    }

    /// Whether this finding stops the migration: an error no line allows.
    pub fn refuses(&self) -> bool {
        self.rule().severity == Severity::Error && self.allowed.is_none()
    }
}

/// What a migration file says of itself in its `-- atelier:` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub phase: Phase,
    /// `-- atelier:no-transaction`: its statements run one by one, each on its own.
    pub no_transaction: bool,
    /// (rule id, reason) of each `-- atelier:allow` line with a reason.
    allows: Vec<(String, String)>,
    /// Lines this build does not understand: (line, text).
    unknown: Vec<(usize, String)>,
}

/// The directives of `sql`.
pub fn directives(sql: &str) -> Directives {
    let mut d = Directives::default();
    for (i, line) in sql.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix("--").map(str::trim) else { continue };
        let Some(directive) = rest.strip_prefix("atelier:") else { continue };
        let unknown = |d: &mut Directives| d.unknown.push((i + 1, line.trim().to_owned()));
        match directive.split_once([' ', ':']).map_or((directive, ""), |(k, v)| (k, v)) {
            ("phase", v) => match v.trim() {
                "expand" => d.phase = Phase::Expand,
                "contract" => d.phase = Phase::Contract,
                _ => unknown(&mut d),
            },
            ("no-transaction", "") => d.no_transaction = true,
            ("allow", v) => match v.split_once(':') {
                Some((id, reason)) if rule(id.trim()).is_some() && !reason.trim().is_empty() => {
                    d.allows.push((id.trim().to_owned(), reason.trim().to_owned()))
                }
                _ => unknown(&mut d),
            },
            _ => unknown(&mut d),
        }
    }
    d
}

/// The findings of one migration's `up.sql`, in file order.
pub fn lint(sql: &str) -> Vec<Finding> {
    let statements = split(sql);
    let d = directives(sql);
    let file = File {
        created: statements.iter().filter_map(|s| created_table(&s.text)).collect(),
        phase: d.phase,
        in_transaction: !d.no_transaction,
    };
    let mut found: Vec<(usize, &'static str, String)> = Vec::new();
    let short = |s: &Statement| s.written.chars().take(120).collect::<String>();
    let mut new_enum_values: Vec<String> = Vec::new();
    for s in &statements {
        for id in rules_of(&s.text, &file) {
            found.push((s.line, id, short(s)));
        }
        if new_enum_values.iter().any(|v| s.text.contains(v.as_str())) {
            found.push((s.line, "enum-value-used", short(s)));
        }
        if let Some(value) = added_enum_value(&s.text) {
            new_enum_values.push(value);
        }
    }
    if d.no_transaction
        && let Some(second) = statements.get(1)
    {
        found.push((second.line, "needs-no-transaction", short(second)));
    }
    let sets: Vec<&Statement> = statements.iter().filter(|s| is_session_setting(&s.text)).collect();
    if let Some(first) = sets.first()
        && !sets.iter().any(|s| s.text.contains("LOCK_TIMEOUT"))
    {
        found.push((first.line, "missing-lock-timeout", short(first)));
    }
    for (line, text) in &d.unknown {
        // Cut like a statement (found by the migration_lint fuzz target: a
        // long unknown directive line was echoed whole into the finding).
        found.push((*line, "directive", text.chars().take(120).collect()));
    }
    found.sort_by_key(|(line, _, _)| *line);
    found
        .into_iter()
        .map(|(line, rule, statement)| {
            let allowed = d.allows.iter().find(|(r, _)| r == rule).map(|(_, why)| why.clone());
            Finding { rule, line, statement, allowed }
        })
        .collect()
}

/// What the rules of one statement need to know of its file.
struct File {
    /// Tables the file creates: statements on them are not findings.
    created: Vec<String>,
    phase: Phase,
    in_transaction: bool,
}

const SERIALS: [&str; 6] = ["SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL2", "SERIAL4", "SERIAL8"];
const VOLATILE: [&str; 7] =
    ["RANDOM(", "GEN_RANDOM_UUID(", "UUID_GENERATE_V", "CLOCK_TIMESTAMP(", "TIMEOFDAY(", "NEXTVAL(", "TXID_CURRENT("];

/// The rules `statement` (upper-cased, whitespace collapsed) breaks.
fn rules_of(statement: &str, file: &File) -> Vec<&'static str> {
    let words: Vec<&str> = statement.split(' ').collect();
    let starts = |prefix: &[&str]| words.len() >= prefix.len() && words[..prefix.len()] == *prefix;
    let has = |needle: &str| statement.contains(needle);
    let expand = file.phase == Phase::Expand;
    let mut found = Vec::new();
    let style = |found: &mut Vec<&'static str>| {
        if words.iter().any(|w| SERIALS.contains(&bare(w))) {
            found.push("prefer-identity");
        }
        let timestamp = words.iter().enumerate().any(|(i, w)| {
            (bare(w) == "TIMESTAMP" || w.starts_with("TIMESTAMP(")) && words.get(i + 1).map(|n| bare(n)) != Some("WITH")
        });
        if timestamp {
            found.push("prefer-timestamptz");
        }
    };
    if starts(&["DROP", "TABLE"]) && expand {
        found.push("drop-table");
    }
    if starts(&["TRUNCATE"]) {
        found.push("truncate");
    }
    let dropped_kinds: [&[&str]; 6] = [
        &["DROP", "TYPE"],
        &["DROP", "VIEW"],
        &["DROP", "MATERIALIZED", "VIEW"],
        &["DROP", "SEQUENCE"],
        &["DROP", "SCHEMA"],
        &["DROP", "DOMAIN"],
    ];
    if expand && dropped_kinds.iter().any(|k| starts(k)) {
        found.push("contract-in-expand");
    }
    let created_kinds: [&[&str]; 6] = [
        &["CREATE", "TABLE"],
        &["CREATE", "INDEX"],
        &["CREATE", "UNIQUE", "INDEX"],
        &["CREATE", "TYPE"],
        &["CREATE", "VIEW"],
        &["CREATE", "MATERIALIZED", "VIEW"],
    ];
    if !expand && created_kinds.iter().any(|k| starts(k)) {
        found.push("expand-in-contract");
    }
    if starts(&["CREATE", "TABLE"]) {
        style(&mut found);
    }
    if (starts(&["ALTER", "TYPE"]) || starts(&["ALTER", "VIEW"])) && has(" RENAME ") {
        found.push("rename");
    }
    if starts(&["ALTER", "TABLE"]) {
        let (table, at) = table_at(&words, 2);
        if file.created.contains(&table) {
            return found;
        }
        // DROP [COLUMN] c, not DROP CONSTRAINT / DEFAULT / NOT NULL / IDENTITY / EXPRESSION.
        let keeps = ["CONSTRAINT", "DEFAULT", "NOT", "IDENTITY", "EXPRESSION"];
        if expand && words.windows(2).any(|w| w[0] == "DROP" && !keeps.contains(&w[1])) {
            found.push("drop-column");
        }
        if has(" RENAME ") {
            found.push("rename");
        }
        if has(" TYPE ") && has(" ALTER ") {
            found.push("column-type");
        }
        if has(" SET NOT NULL") {
            found.push("set-not-null");
        }
        if has(" ADD ") && (has(" FOREIGN KEY ") || has(" CHECK ") || has(" REFERENCES ")) && !has(" NOT VALID") {
            found.push("validate-lock");
        }
        if has(" SET LOGGED") || has(" SET UNLOGGED") || has(" SET TABLESPACE ") {
            found.push("table-rewrite");
        }
        for action in actions(&words[(at + 1).min(words.len())..].join(" ")) {
            let a: Vec<&str> = action.split(' ').collect();
            if a.first() != Some(&"ADD") {
                continue;
            }
            let constraint = matches!(a.get(1), Some(&"CONSTRAINT" | &"PRIMARY" | &"UNIQUE" | &"CHECK" | &"FOREIGN"));
            let pads = |needle: &str| format!(" {action} ").contains(needle);
            let pair = |x: &str, y: &str| a.windows(2).any(|w| w[0] == x && bare(w[1]) == y);
            let unique = a.iter().any(|w| bare(w) == "UNIQUE") || pair("PRIMARY", "KEY");
            if unique && !pair("USING", "INDEX") {
                found.push("unique-without-index");
            }
            if constraint || a.get(1) == Some(&"EXCLUDE") {
                continue;
            }
            // ADD [COLUMN] [IF NOT EXISTS] name type ...
            if !expand {
                found.push("expand-in-contract");
            }
            let serial = a.iter().any(|w| SERIALS.contains(&bare(w)));
            let identity = pads(" AS IDENTITY");
            let volatile = serial
                || identity
                || (pads(" GENERATED ALWAYS AS (") && pads(" STORED"))
                || (a.contains(&"DEFAULT") && VOLATILE.iter().any(|f| action.contains(f)));
            if volatile {
                found.push("volatile-default");
            }
            let not_null = a
                .windows(2)
                .enumerate()
                .any(|(i, w)| w[0] == "NOT" && bare(w[1]) == "NULL" && (i == 0 || a[i - 1] != "IS"));
            let default = a.contains(&"DEFAULT");
            if not_null && !default && !serial && !identity {
                found.push("not-null-without-default");
            }
            style(&mut found);
        }
    }
    let concurrently = has(" CONCURRENTLY ");
    if (starts(&["CREATE", "INDEX"]) || starts(&["CREATE", "UNIQUE", "INDEX"])) && !concurrently {
        let on = words.iter().position(|w| *w == "ON").map(|i| table_at(&words, i + 1).0);
        if on.is_some_and(|t| !file.created.contains(&t)) {
            found.push("index-lock");
        }
    }
    if starts(&["DROP", "INDEX"]) && !concurrently {
        found.push("drop-index-lock");
    }
    if starts(&["REINDEX"]) && !concurrently {
        found.push("reindex-lock");
    }
    if starts(&["REFRESH", "MATERIALIZED", "VIEW"]) && !concurrently {
        found.push("refresh-lock");
    }
    if starts(&["VACUUM"]) && (has(" FULL") || has("(FULL")) {
        found.push("vacuum-full");
    }
    if starts(&["CLUSTER"]) {
        found.push("cluster");
    }
    if starts(&["LOCK"]) {
        found.push("lock-table");
    }
    let no_transaction_only = (concurrently
        && (starts(&["CREATE"]) || starts(&["DROP", "INDEX"]) || starts(&["REINDEX"])))
        || starts(&["VACUUM"]);
    if file.in_transaction && no_transaction_only {
        found.push("needs-no-transaction");
    }
    if starts(&["UPDATE"]) && !has(" WHERE ") {
        let (table, _) = table_at(&words, 1);
        if !file.created.contains(&table) {
            found.push("whole-table-backfill");
        }
    }
    if starts(&["DELETE", "FROM"]) && !has(" WHERE ") {
        let (table, _) = table_at(&words, 2);
        if !file.created.contains(&table) {
            found.push("delete-all");
        }
    }
    found
}

/// A word without the punctuation that follows or precedes it in a column list.
fn bare(word: &str) -> &str {
    word.trim_matches(|c: char| c == ',' || c == '(' || c == ')')
}

/// The actions of an `ALTER TABLE`, split on commas outside parentheses and quotes.
fn actions(rest: &str) -> Vec<String> {
    let (mut out, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in rest.chars() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('(', None) => depth += 1,
            (')', None) => depth -= 1,
            (',', None) if depth == 0 => {
                out.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The value an `ALTER TYPE t ADD VALUE [IF NOT EXISTS] 'v'` adds, quoted as written.
fn added_enum_value(statement: &str) -> Option<String> {
    if !statement.starts_with("ALTER TYPE ") || !statement.contains(" ADD VALUE ") {
        return None;
    }
    let after = statement.split(" ADD VALUE ").nth(1)?;
    let start = after.find('\'')?;
    let end = after[start + 1..].find('\'')? + start + 1;
    Some(after[start..=end].to_owned())
}

/// A statement that changes the session's settings.
fn is_session_setting(statement: &str) -> bool {
    (statement.starts_with("SET ") && !statement.starts_with("SET CONSTRAINTS ")) || statement.contains("SET_CONFIG(")
}

/// The table named at `words[i]` (after IF EXISTS / ONLY), without schema
/// or quotes, lower-cased, and the index of its word.
fn table_at(words: &[&str], mut i: usize) -> (String, usize) {
    while matches!(words.get(i), Some(&"IF") | Some(&"EXISTS") | Some(&"NOT") | Some(&"ONLY")) {
        i += 1;
    }
    let name = words.get(i).copied().unwrap_or_default();
    let name = name.split('(').next().unwrap_or_default();
    (name.rsplit('.').next().unwrap_or_default().trim_matches('"').to_lowercase(), i)
}

/// The table a `CREATE TABLE` statement creates.
fn created_table(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split(' ').collect();
    (words.len() > 2 && words[0] == "CREATE" && words[1] == "TABLE").then(|| table_at(&words, 2).0)
}

/// A statement of a migration: the line it starts on, its text for the
/// rules (upper-cased outside quoted text, a function body as `$BODY$`) and
/// as written; both without comments, whitespace collapsed.
struct Statement {
    line: usize,
    text: String,
    written: String,
}

/// The statements of `sql` (comments out, whitespace collapsed), each as
/// (line it starts on, text upper-cased outside quotes, text as written):
/// what `migration_locks` classifies.
pub fn statements(sql: &str) -> Vec<(usize, String, String)> {
    split(sql).into_iter().map(|s| (s.line, s.text, s.written)).collect()
}

/// The statements of `sql`, split on `;` outside quotes, comments and
/// dollar-quoted bodies.
fn split(sql: &str) -> Vec<Statement> {
    let chars: Vec<char> = sql.chars().collect();
    let (mut out, mut current, mut line, mut start) = (Vec::new(), String::new(), 1, None);
    let mut written = String::new();
    let mut i = 0;
    let collapse = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut push = |current: &mut String, written: &mut String, start: &mut Option<usize>| {
        let text = collapse(current);
        if let (false, Some(at)) = (text.is_empty(), *start) {
            out.push(Statement { line: at, text, written: collapse(written) });
        }
        current.clear();
        written.clear();
        *start = None;
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
        }
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
            continue;
        }
        if !c.is_whitespace() && start.is_none() {
            start = Some(line);
        }
        if c != ';' {
            written.push(c);
        }
        match c {
            ';' => push(&mut current, &mut written, &mut start),
            '\'' | '"' => {
                // Quoted text is kept as is (a name or a value), not upper-cased.
                current.push(c);
                i += 1;
                while i < chars.len() && chars[i] != c {
                    line += usize::from(chars[i] == '\n');
                    current.push(chars[i]);
                    written.push(chars[i]);
                    i += 1;
                }
                current.push(c);
                written.push(c);
            }
            '$' => {
                // A dollar-quoted body ($$ or $tag$): kept out, a function's text is not DDL.
                let tag_end = (i + 1..chars.len()).find(|&j| chars[j] == '$');
                let tag: String = tag_end.map(|e| chars[i..=e].iter().collect()).unwrap_or_default();
                let is_tag = tag.len() >= 2 && tag[1..tag.len() - 1].chars().all(|c| c.is_alphanumeric() || c == '_');
                if !is_tag {
                    current.push(c);
                } else {
                    let body_start = i + tag.len();
                    let rest: String = chars[body_start..].iter().collect();
                    let body_len = rest.find(&tag).map(|p| rest[..p].chars().count()).unwrap_or(rest.chars().count());
                    line += chars[body_start..body_start + body_len].iter().filter(|c| **c == '\n').count();
                    written.extend(&chars[i + 1..(body_start + body_len + tag.chars().count()).min(chars.len())]);
                    current.push_str(" $BODY$ ");
                    i = body_start + body_len + tag.chars().count();
                    continue;
                }
            }
            _ => current.extend(c.to_uppercase()),
        }
        i += 1;
    }
    push(&mut current, &mut written, &mut start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<&'static str> {
        lint(sql).into_iter().map(|f| f.rule).collect()
    }

    /// Each rule: a statement it catches, and a near miss it lets through.
    /// Statements run against an existing table `sales` unless they create one.
    const CASES: &[(&str, &str, &str)] = &[
        ("drop-table", "DROP TABLE old_things;", "-- atelier:phase contract\nDROP TABLE old_things;"),
        ("drop-column", "alter table sales drop column legacy;", "ALTER TABLE sales DROP CONSTRAINT c;"),
        ("rename", "ALTER TABLE sales RENAME COLUMN notes TO remarks;", "ALTER INDEX sales_a RENAME TO sales_b;"),
        ("truncate", "TRUNCATE outbox;", "DELETE FROM outbox WHERE sent_at < now() - interval '7 days';"),
        ("delete-all", "DELETE FROM outbox;", "DELETE FROM outbox WHERE id < 1000;"),
        (
            "column-type",
            "ALTER TABLE sales ALTER COLUMN notes TYPE varchar(50);",
            "ALTER TABLE sales ADD COLUMN kind TEXT;",
        ),
        (
            "set-not-null",
            "ALTER TABLE sales ALTER COLUMN notes SET NOT NULL;",
            "ALTER TABLE sales ALTER COLUMN notes DROP NOT NULL;",
        ),
        (
            "index-lock",
            "CREATE INDEX sales_notes ON sales (notes);",
            "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY sales_notes ON sales (notes);",
        ),
        (
            "drop-index-lock",
            "DROP INDEX sales_notes;",
            "-- atelier:no-transaction\nDROP INDEX CONCURRENTLY sales_notes;",
        ),
        (
            "reindex-lock",
            "REINDEX INDEX sales_notes;",
            "-- atelier:no-transaction\nREINDEX INDEX CONCURRENTLY sales_notes;",
        ),
        (
            "validate-lock",
            "ALTER TABLE sales ADD CONSTRAINT c CHECK (total_minor < 10);",
            "ALTER TABLE sales ADD CONSTRAINT c CHECK (total_minor < 10) NOT VALID;",
        ),
        (
            "unique-without-index",
            "ALTER TABLE sales ADD CONSTRAINT sales_code UNIQUE (code);",
            "ALTER TABLE sales ADD CONSTRAINT sales_code UNIQUE USING INDEX sales_code_idx;",
        ),
        (
            "volatile-default",
            "ALTER TABLE sales ADD COLUMN token UUID DEFAULT gen_random_uuid();",
            "ALTER TABLE sales ADD COLUMN seen_at TIMESTAMPTZ DEFAULT now();",
        ),
        (
            "not-null-without-default",
            "ALTER TABLE sales ADD COLUMN kind TEXT NOT NULL;",
            "ALTER TABLE sales ADD COLUMN kind TEXT NOT NULL DEFAULT 'normal', ADD COLUMN k INT CHECK (k IS NOT NULL) NOT VALID;",
        ),
        ("table-rewrite", "ALTER TABLE sales SET LOGGED;", "ALTER TABLE sales SET (fillfactor = 90);"),
        (
            "vacuum-full",
            "-- atelier:no-transaction\nVACUUM FULL sales;",
            "-- atelier:no-transaction\nVACUUM ANALYZE sales;",
        ),
        ("cluster", "CLUSTER sales USING sales_pkey;", "ANALYZE sales;"),
        ("lock-table", "LOCK TABLE sales IN ACCESS EXCLUSIVE MODE;", "SELECT 1 FROM sales FOR UPDATE SKIP LOCKED;"),
        (
            "refresh-lock",
            "REFRESH MATERIALIZED VIEW sales_daily;",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY sales_daily;",
        ),
        (
            "whole-table-backfill",
            "UPDATE sales SET kind = 'normal';",
            "UPDATE sales SET kind = 'normal' WHERE id BETWEEN 1 AND 5000;",
        ),
        (
            "enum-value-used",
            "ALTER TYPE sale_status ADD VALUE 'void';\nUPDATE sales SET status = 'void' WHERE id = 1;",
            "ALTER TYPE sale_status ADD VALUE 'void';\nUPDATE sales SET status = 'final' WHERE id = 1;",
        ),
        (
            "needs-no-transaction",
            "CREATE INDEX CONCURRENTLY s ON sales (notes);",
            "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY s ON sales (notes);",
        ),
        (
            "missing-lock-timeout",
            "SET statement_timeout = '5min';\nALTER TABLE sales ADD COLUMN kind TEXT;",
            "SET statement_timeout = '5min';\nSET lock_timeout = '2s';\nALTER TABLE sales ADD COLUMN kind TEXT;",
        ),
        ("contract-in-expand", "DROP TYPE sale_kind;", "-- atelier:phase contract\nDROP TYPE sale_kind;"),
        (
            "expand-in-contract",
            "-- atelier:phase contract\nALTER TABLE sales ADD COLUMN kind TEXT;",
            "-- atelier:phase contract\nALTER TABLE sales DROP COLUMN legacy;",
        ),
        ("directive", "-- atelier:phase contrakt\nSELECT 1;", "-- atelier is the ops CLI\nSELECT 1;"),
        (
            "prefer-identity",
            "CREATE TABLE things (id BIGSERIAL PRIMARY KEY);",
            "CREATE TABLE things (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY);",
        ),
        (
            "prefer-timestamptz",
            "CREATE TABLE things (at TIMESTAMP NOT NULL);",
            "CREATE TABLE things (at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP);",
        ),
    ];

    #[test]
    fn every_rule_catches_its_statement_and_lets_the_near_miss_through() {
        for (id, catches, near_miss) in CASES {
            assert!(rule(id).is_some(), "{id} is not a rule");
            assert!(rules(catches).contains(id), "{id} missed {catches:?}: {:?}", lint(catches));
            assert!(!rules(near_miss).contains(id), "{id} flagged {near_miss:?}: {:?}", lint(near_miss));
        }
        for r in RULES {
            assert!(CASES.iter().any(|(id, _, _)| *id == r.id), "rule {} has no case", r.id);
        }
        assert!(RULES.len() >= 20);
    }

    #[test]
    fn the_readme_documents_every_rule_in_its_table() {
        let readme = include_str!("../../../README.md");
        for r in RULES {
            let severity = match r.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let row = format!("| `{}` | {severity} | ", r.id);
            assert!(readme.contains(&row), "README.md has no table row {row:?}");
        }
    }

    #[test]
    fn rule_ids_are_unique_and_stable_in_form() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(r.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{}", r.id);
            assert!(!RULES[..i].iter().any(|o| o.id == r.id), "{} twice", r.id);
        }
    }

    #[test]
    fn destructive_and_locking_statements_on_existing_tables_are_found() {
        assert_eq!(rules("DROP TABLE old_things;"), ["drop-table"]);
        assert_eq!(rules("alter table sales drop column legacy;"), ["drop-column"]);
        assert_eq!(
            lint("alter table Sales\n  drop column legacy;")[0].statement,
            "alter table Sales drop column legacy"
        );
        assert_eq!(rules("ALTER TABLE sales RENAME COLUMN notes TO remarks;"), ["rename"]);
        assert_eq!(rules("ALTER TABLE sales ALTER COLUMN notes TYPE varchar(50);"), ["column-type"]);
        assert_eq!(rules("ALTER TABLE sales ALTER COLUMN notes SET NOT NULL;"), ["set-not-null"]);
        assert_eq!(rules("CREATE INDEX sales_notes ON sales (notes);"), ["index-lock"]);
        assert_eq!(rules("create unique index if not exists x on public.sales (notes);"), ["index-lock"]);
        assert_eq!(
            rules("ALTER TABLE sales ADD CONSTRAINT c CHECK (total_minor < 10);\nTRUNCATE outbox;"),
            ["validate-lock", "truncate"]
        );
    }

    #[test]
    fn the_safe_ways_and_tables_created_in_the_same_file_are_not_findings() {
        let concurrently = "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY sales_notes ON sales (notes);";
        assert!(rules(concurrently).is_empty(), "{:?}", lint(concurrently));
        assert!(rules("ALTER TABLE sales ADD CONSTRAINT c CHECK (total_minor < 10) NOT VALID;").is_empty());
        assert!(rules("ALTER TABLE sales ADD COLUMN note2 TEXT;").is_empty());
        assert!(rules("ALTER TABLE sales DROP CONSTRAINT c;").is_empty());
        assert!(
            rules("ALTER TABLE sales ALTER COLUMN notes DROP NOT NULL, ALTER total_minor DROP DEFAULT;").is_empty()
        );
        assert_eq!(rules("ALTER TABLE sales DROP legacy;"), ["drop-column"]);
        let new_table = "CREATE TABLE things (id BIGINT);\nCREATE INDEX things_id ON things (id);\n\
            ALTER TABLE things ADD CONSTRAINT c CHECK (id > 0);\nALTER TABLE things RENAME TO stuff;\n\
            UPDATE things SET id = 1;\nDELETE FROM things;";
        assert!(rules(new_table).is_empty(), "{:?}", lint(new_table));
    }

    #[test]
    fn a_no_transaction_file_holds_one_statement() {
        let two = "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY a ON sales (notes);\nSELECT 1;";
        let found = lint(two);
        assert_eq!((found[0].rule, found[0].line), ("needs-no-transaction", 3), "{found:?}");
        assert!(rules("-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY a ON sales (notes);").is_empty());
    }

    #[test]
    fn a_contract_migration_may_drop_but_not_add() {
        let sql = "-- atelier:phase contract\nALTER TABLE sales DROP COLUMN legacy;\nDROP TABLE old_things;\n\
            CREATE TABLE new_things (id BIGINT);";
        assert_eq!(directives(sql).phase, Phase::Contract);
        assert_eq!(rules(sql), ["expand-in-contract"]);
        assert_eq!(directives("SELECT 1;").phase, Phase::Expand);
    }

    #[test]
    fn warnings_are_reported_but_refuse_nothing() {
        let found = lint("CREATE TABLE things (id BIGSERIAL PRIMARY KEY, at TIMESTAMP);");
        assert_eq!(found.iter().map(|f| f.rule).collect::<Vec<_>>(), ["prefer-identity", "prefer-timestamptz"]);
        assert!(found.iter().all(|f| !f.refuses()));
        assert!(lint("TRUNCATE outbox;")[0].refuses());
    }

    #[test]
    fn comments_quotes_and_function_bodies_are_not_read_as_statements() {
        let sql = "-- DROP TABLE sales;\n/* TRUNCATE sales; */\nINSERT INTO notes VALUES ('drop table x; truncate y');\n\
            CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n  DROP TABLE t;\nEND;\n$fn$;\n\
            DROP TABLE gone;";
        let found = lint(sql);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].rule, found[0].line), ("drop-table", 9));
        assert_eq!(found[0].statement, "DROP TABLE gone");
    }

    #[test]
    fn a_rule_allowed_with_a_reason_is_found_but_allowed() {
        let sql = "-- atelier:allow drop-column: nothing reads legacy since 0.3.0\n\
            -- atelier:allow rename:\nALTER TABLE sales DROP COLUMN legacy;\nALTER TABLE sales RENAME COLUMN a TO b;";
        let found = lint(sql);
        // An allowance without a reason does not count, and is itself a finding.
        assert_eq!((found[0].rule, found[0].line), ("directive", 2));
        assert_eq!(found[1].allowed.as_deref(), Some("nothing reads legacy since 0.3.0"));
        assert_eq!(found[1].line, 3);
        assert!(!found[1].refuses());
        assert_eq!((found[2].rule, found[2].allowed.as_deref()), ("rename", None));
        // An allowance of a rule that does not exist is a finding too.
        assert_eq!(rules("-- atelier:allow drop-colum: typo\nSELECT 1;"), ["directive"]);
    }

    #[test]
    fn this_builds_migrations_refuse_nothing() {
        for (name, sql) in crate::store::migrations::UP_SQL {
            let refused: Vec<_> = lint(sql).into_iter().filter(Finding::refuses).collect();
            assert!(refused.is_empty(), "{name}: {refused:?}");
        }
    }
}
