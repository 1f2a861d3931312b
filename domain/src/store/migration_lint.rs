//! Migration lint, the pure part: which statements of a migration's
//! `up.sql` destroy data the running version still reads, or take a lock
//! that stops the tables' traffic while they scan or rewrite them. A
//! migration may still do it when its file says so, with a reason:
//!
//! ```sql
//! -- atelier:allow drop-column: nothing reads sales.legacy_code since 0.3.0
//! ```
//!
//! Statements on a table the same file creates are never findings (nobody
//! uses it yet). What each rule finds, and what to do instead, is in
//! [`RULES`].

/// A rule: its name (for `atelier:allow`), what it finds and the way around it.
pub struct Rule {
    pub name: &'static str,
    pub why: &'static str,
    pub instead: &'static str,
}

pub const RULES: [Rule; 8] = [
    Rule {
        name: "drop-table",
        why: "drops a table and its data",
        instead: "stop using it in one release, drop it in a later one",
    },
    Rule {
        name: "drop-column",
        why: "drops a column the running version may still read",
        instead: "stop reading it in one release, drop it in a later one",
    },
    Rule {
        name: "rename",
        why: "renames what the running version still names",
        instead: "add the new name, move the readers, then drop the old one",
    },
    Rule { name: "truncate", why: "deletes every row of a table", instead: "delete what must go, in batches" },
    Rule {
        name: "column-type",
        why: "rewrites the table under an exclusive lock",
        instead: "add a column of the new type, backfill it, switch readers",
    },
    Rule {
        name: "set-not-null",
        why: "scans the table under an exclusive lock",
        instead: "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
    },
    Rule {
        name: "index-lock",
        why: "builds an index while blocking the table's writes",
        instead: "CREATE INDEX CONCURRENTLY, in a migration with run_in_transaction = false",
    },
    Rule {
        name: "validate-lock",
        why: "checks every row for a new constraint while holding a lock",
        instead: "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later statement",
    },
];

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
        RULES.iter().find(|r| r.name == self.rule).expect("findings name known rules")
    }
}

/// The findings of one migration's `up.sql`, in file order.
pub fn lint(sql: &str) -> Vec<Finding> {
    let statements = split(sql);
    let created: Vec<String> = statements.iter().filter_map(|s| created_table(&s.text)).collect();
    let allowed = allowances(sql);
    let mut findings = Vec::new();
    for s in &statements {
        for rule in rules_of(&s.text, &created) {
            let short: String = s.written.chars().take(120).collect();
            let reason = allowed.iter().find(|(r, _)| r == rule).map(|(_, why)| why.clone());
            findings.push(Finding { rule, line: s.line, statement: short, allowed: reason });
        }
    }
    findings
}

/// `-- atelier:allow <rule>: <reason>` lines: (rule, reason), reason not empty.
fn allowances(sql: &str) -> Vec<(String, String)> {
    sql.lines()
        .filter_map(|l| l.trim().strip_prefix("--")?.trim().strip_prefix("atelier:allow")?.split_once(':'))
        .map(|(rule, reason)| (rule.trim().to_owned(), reason.trim().to_owned()))
        .filter(|(_, reason)| !reason.is_empty())
        .collect()
}

/// The rules `statement` (upper-cased, whitespace collapsed) breaks.
fn rules_of(statement: &str, created: &[String]) -> Vec<&'static str> {
    let words: Vec<&str> = statement.split(' ').collect();
    let starts = |prefix: &[&str]| words.len() >= prefix.len() && words[..prefix.len()] == *prefix;
    let has = |needle: &str| statement.contains(needle);
    let mut found = Vec::new();
    if starts(&["DROP", "TABLE"]) {
        found.push("drop-table");
    }
    if starts(&["TRUNCATE"]) {
        found.push("truncate");
    }
    if starts(&["ALTER", "TABLE"]) {
        let table = table_after(&words, 2);
        if created.contains(&table) {
            return found;
        }
        // DROP [COLUMN] c, not DROP CONSTRAINT / DEFAULT / NOT NULL / IDENTITY / EXPRESSION.
        let keeps = ["CONSTRAINT", "DEFAULT", "NOT", "IDENTITY", "EXPRESSION"];
        if words.windows(2).any(|w| w[0] == "DROP" && !keeps.contains(&w[1])) {
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
    }
    if (starts(&["CREATE", "INDEX"]) || starts(&["CREATE", "UNIQUE", "INDEX"])) && !has(" CONCURRENTLY ") {
        let on = words.iter().position(|w| *w == "ON").map(|i| table_after(&words, i + 1));
        if on.is_some_and(|t| !created.contains(&t)) {
            found.push("index-lock");
        }
    }
    found
}

/// The table named at `words[i]` (after IF EXISTS / ONLY), without schema
/// or quotes, lower-cased.
fn table_after(words: &[&str], mut i: usize) -> String {
    while matches!(words.get(i), Some(&"IF") | Some(&"EXISTS") | Some(&"NOT") | Some(&"ONLY")) {
        i += 1;
    }
    let name = words.get(i).copied().unwrap_or_default();
    let name = name.split('(').next().unwrap_or_default();
    name.rsplit('.').next().unwrap_or_default().trim_matches('"').to_lowercase()
}

/// The table a `CREATE TABLE` statement creates.
fn created_table(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split(' ').collect();
    (words.len() > 2 && words[0] == "CREATE" && words[1] == "TABLE").then(|| table_after(&words, 2))
}

/// A statement of a migration: the line it starts on, its text for the
/// rules (upper-cased outside quoted text, a function body as `$BODY$`) and
/// as written; both without comments, whitespace collapsed.
struct Statement {
    line: usize,
    text: String,
    written: String,
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
        assert!(rules("CREATE INDEX CONCURRENTLY sales_notes ON sales (notes);").is_empty());
        assert!(rules("ALTER TABLE sales ADD CONSTRAINT c CHECK (total_minor < 10) NOT VALID;").is_empty());
        assert!(rules("ALTER TABLE sales ADD COLUMN note2 TEXT;").is_empty());
        assert!(rules("ALTER TABLE sales DROP CONSTRAINT c;").is_empty());
        assert!(
            rules("ALTER TABLE sales ALTER COLUMN notes DROP NOT NULL, ALTER total_minor DROP DEFAULT;").is_empty()
        );
        assert_eq!(rules("ALTER TABLE sales DROP legacy;"), ["drop-column"]);
        let new_table = "CREATE TABLE things (id BIGINT);\nCREATE INDEX things_id ON things (id);\n\
            ALTER TABLE things ADD CONSTRAINT c CHECK (id > 0);\nALTER TABLE things RENAME TO stuff;";
        assert!(rules(new_table).is_empty(), "{:?}", lint(new_table));
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
        assert_eq!(found[0].allowed.as_deref(), Some("nothing reads legacy since 0.3.0"));
        assert_eq!(found[0].line, 3);
        // Without a reason the allowance does not count.
        assert_eq!((found[1].rule, found[1].allowed.as_deref()), ("rename", None));
    }
}
