//! The "Examples:" section of each command's `--help` (and man page), kept in
//! one table so `cli.rs` stays the definition of the arguments. [`command`]
//! is the clap command every part of `atelier` uses (parsing, completions,
//! man pages): the derived one, with each command's examples appended to its
//! long help unless its own `after_help` already has an "Examples:" section.

use clap::CommandFactory;

/// (command path, example lines). The path is the subcommand names below
/// `atelier`, space-separated; "" is `atelier` itself.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "",
        "atelier env list
  atelier --env staging check
  atelier --env staging status -o json
  atelier --env production dlq stats",
    ),
    ("env", "atelier env list\n  atelier --env staging env show\n  atelier env diff staging production"),
    ("env list", "atelier env list\n  atelier env list -o json | jq -r '.data[].name'"),
    (
        "env show",
        "atelier --env staging env show
  atelier --env production env show -o json | jq '.data.values[] | select(.key == \"amqp.namespace\")'
  ATELIER__AMQP__PREFETCH=50 atelier env show",
    ),
    (
        "env diff",
        "atelier env diff staging production
  atelier env diff dev test -o json | jq '.data.differences[].key'",
    ),
    ("check", "atelier --env staging check\n  atelier --env production check -o json | jq '.data.checks[] | select(.ok | not)'"),
    (
        "status",
        "atelier --env production status
  atelier --env staging status -o json | jq '.data.daemons'",
    ),
    (
        "gate",
        "atelier --env staging gate --expect-version 1.4.2
  atelier --env staging gate --expect-version \"$V\" --wait 5m
  atelier --env staging gate --expect-version 1.4.2 --url http://10.0.0.7:8080 -o json",
    ),
    ("migrate", "atelier --env staging migrate status\n  atelier --env staging migrate plan\n  atelier --env staging migrate run"),
    ("migrate status", "atelier --env staging migrate status\n  atelier --env production migrate status -o json"),
    ("migrate plan", "atelier --env production migrate plan\n  atelier --env production migrate plan -o json | jq '.data'"),
    (
        "migrate lint",
        "atelier --env staging migrate lint
  atelier migrate lint --all
  atelier migrate lint migrations/2026-12-05-000033_daemon_instances/up.sql -o json",
    ),
    (
        "migrate run",
        "atelier --env staging migrate run
  atelier --env production --yes migrate run --actor ci-pipeline
  atelier --env production migrate run --phase contract",
    ),
    ("migrate repair", "atelier --env staging migrate status\n  atelier --env staging migrate repair --actor alice"),
    ("migrate rollback", "atelier --env dev migrate rollback\n  atelier --env staging migrate rollback --steps 2"),
    ("topology", "atelier --env staging topology verify\n  atelier --env staging topology apply"),
    ("topology verify", "atelier --env staging topology verify\n  atelier --env production topology verify -o json | jq '.data.drift'"),
    ("dlq", "atelier --env production dlq stats\n  atelier --env production dlq list --handler production\n  atelier --env production dlq replay --handler production --dry-run"),
    ("dlq stats", "atelier --env production dlq stats\n  atelier --env production dlq stats -o json | jq '.data'"),
    (
        "dlq list",
        "atelier --env production dlq list
  atelier --env production dlq list --handler notifications --since 2h
  atelier --env production dlq list --status archived --limit 20 --page 2 -o json",
    ),
    (
        "dlq show",
        "atelier --env production dlq show 12
  atelier --env production dlq show 0193a3f0-7c2e-7d41-9a51-3c1f2b8e4d10 -o json",
    ),
    (
        "dlq replay",
        "atelier --env production dlq replay 12 31
  atelier --env production dlq replay --fingerprint notifications:timeout --dry-run
  atelier --env production --yes dlq replay --handler production --since 1h --rate 20 --actor alice",
    ),
    (
        "dlq archive",
        "atelier --env production dlq archive 12
  atelier --env production dlq archive --type order.ready --until 7d",
    ),
    ("dlq restore", "atelier --env production dlq restore 12\n  atelier --env production dlq restore --handler inbound"),
    ("dlq purge", "atelier --env production dlq purge --until 30d\n  atelier --env staging --yes dlq purge --all"),
    (
        "users",
        "atelier --env staging users list
  atelier --env staging users create --email ana@studio.example --role admin --business-name \"Ana's Studio\"",
    ),
    (
        "users create",
        "atelier --env staging users create --email ana@studio.example --role admin --business-name \"Ana's Studio\" --currency EUR
  printf '%s\\n' \"$PASSWORD\" | atelier --env staging users create --email bo@studio.example --role cashier --business-id 3 --password-stdin",
    ),
    ("users list", "atelier --env staging users list\n  atelier --env staging users list --business-id 3 -o json"),
    ("users disable", "atelier --env production users disable --email bo@studio.example"),
    (
        "secrets",
        "atelier --env staging secrets list
  atelier --env staging secrets rotate jwt_keys
  atelier --env staging secrets history jwt_keys -o json",
    ),
    (
        "lock status",
        "atelier --env production lock status\n  atelier --env production lock status -o json | jq '.data.holder'",
    ),
    (
        "lock acquire",
        "atelier --env production lock acquire --message \"DB maintenance, ask #ops\"
  atelier --env production lock acquire --message \"provider outage\" --ttl 4h",
    ),
    ("lock release", "atelier --env production lock release\n  atelier --env production lock release -o json"),
    ("webhooks", "atelier --env production webhooks urls"),
    ("webhooks urls", "atelier --env production webhooks urls\n  atelier --env staging webhooks urls --business-id 3 -o json"),
    (
        "completions",
        "atelier completions bash > /etc/bash_completion.d/atelier
  atelier completions zsh > \"${fpath[1]}/_atelier\"
  atelier completions fish > ~/.config/fish/completions/atelier.fish",
    ),
    ("manpages", "atelier manpages /usr/local/share/man/man1\n  atelier manpages target/man && man -l target/man/atelier-dlq-replay.1"),
];

/// The clap command of `atelier`, with examples and the global options' heading.
pub fn command() -> clap::Command {
    decorate(crate::cli::Args::command(), "")
}

fn decorate(mut cmd: clap::Command, path: &str) -> clap::Command {
    if let Some((_, examples)) = EXAMPLES.iter().find(|(p, _)| *p == path) {
        let own = cmd.get_after_long_help().or(cmd.get_after_help()).map(|h| h.to_string());
        if !own.as_deref().is_some_and(|h| h.contains("Examples:")) {
            let text = match own {
                Some(own) => format!("{own}\n\nExamples:\n  {examples}"),
                None => format!("Examples:\n  {examples}"),
            };
            cmd = cmd.after_long_help(text);
        }
    }
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in names {
        let sub_path = if path.is_empty() { name.clone() } else { format!("{path} {name}") };
        cmd = cmd.mut_subcommand(&name, |s| decorate(s, &sub_path));
    }
    cmd
}

/// Every command path below `atelier` (for tests and man pages).
#[cfg(test)]
fn paths(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
    for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let p = if prefix.is_empty() { s.get_name().to_owned() } else { format!("{prefix} {}", s.get_name()) };
        out.push(p.clone());
        paths(s, &p, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, whoever adds it: its long help has "Examples:" with
    /// real invocations, and every argument it takes is described.
    #[test]
    fn every_command_teaches_with_examples_and_described_arguments() {
        let mut root = command();
        root.build();
        let mut all = vec![String::new()];
        paths(&root, "", &mut all);
        assert!(all.len() > 20, "{all:?}");
        let mut missing = Vec::new();
        for path in &all {
            let mut cmd = root.clone();
            for name in path.split_whitespace() {
                cmd = cmd.find_subcommand(name).expect("a listed subcommand").clone();
            }
            let help = cmd.render_long_help().to_string();
            match help.split_once("Examples:") {
                Some((_, examples)) if examples.contains("atelier ") => {}
                _ => missing.push(format!("`atelier {path}`: no Examples: section")),
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`atelier {path}`: argument {id} has no description"));
                }
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    /// Each row of the table names a command (a renamed or removed command
    /// leaves no row behind) and its examples are invocations of atelier.
    #[test]
    fn every_example_names_a_command() {
        let root = command();
        let mut all = vec![String::new()];
        paths(&root, "", &mut all);
        for (path, examples) in EXAMPLES {
            assert!(all.contains(&(*path).to_owned()), "the examples of `atelier {path}`: no such command");
            for line in examples.lines() {
                assert!(line.contains("atelier"), "{path}: {line}");
            }
        }
    }

    /// The heading of the options every command takes (cli.rs, `Global`).
    const GLOBAL_HEADING: &str = "Global options";

    #[test]
    fn global_options_are_listed_apart() {
        let mut root = command();
        root.build();
        let help = root.find_subcommand("check").unwrap().clone().render_long_help().to_string();
        let (before, after) = help.split_once(GLOBAL_HEADING).expect("a Global options heading");
        assert!(after.contains("--env") && after.contains("--output") && !before.contains("--env"), "{help}");
    }
}
