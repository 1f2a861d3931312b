//! Output: text for people on a terminal, one JSON document for pipelines.
//! Progress bars appear only on a terminal, never in JSON or quiet mode.
//! Every byte the CLI writes to stdout goes through [`stdout`], and every
//! message to stderr through [`stderr`]: a reader that goes away (`| head -1`)
//! stops the output quietly, never a panic; the command still ends with its
//! own exit code.

use crate::cli::Format;
use crate::exit::Failure;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone away: nothing more is written to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stdout and flushes. A closed pipe (or any other write
/// error: nobody is left to read) stops all further stdout output quietly.
pub fn stdout(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `line` and a newline to stderr; a closed stderr is ignored.
pub fn stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n")).and_then(|()| err.flush());
}

/// Writes `line` and a newline to stdout (see [`stdout`]).
fn println(line: &str) {
    stdout(format!("{line}\n").as_bytes());
}

/// One check of a preflight or a gate: what it looked at, whether it
/// passed, and why, in words an operator can act on.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
}

impl Output {
    pub fn new(format: Format, quiet: bool) -> Self {
        Output { format, quiet }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// `-q`: nothing on stderr but errors.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints `value` as JSON in JSON mode, or `text()` otherwise.
    pub fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.is_json() {
            match serde_json::to_string_pretty(value) {
                Ok(s) => println(&s),
                Err(e) => stderr(&format!("error: cannot encode output: {e}")),
            }
        } else {
            let t = text();
            if !t.is_empty() {
                println(t.trim_end());
            }
        }
    }

    /// Prints `checks`: in JSON `{"success", "data": data + "checks"}`, in
    /// text a line per check (`ok  ` or `FAIL`), then `summary`.
    pub fn checks(&self, mut data: serde_json::Value, checks: &[Check], summary: &str) {
        let ok = checks.iter().all(|c| c.ok);
        data["checks"] = serde_json::json!(checks);
        self.emit(&serde_json::json!({"success": ok, "data": data}), || {
            let lines: String = checks
                .iter()
                .map(|c| format!("{} {}: {}\n", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail))
                .collect();
            lines + summary
        });
    }

    pub fn error(&self, failure: &Failure) {
        if self.is_json() {
            let doc = serde_json::json!({
                "success": false,
                "error": {"code": format!("{:?}", failure.code).to_lowercase(), "exit_code": failure.code as u8, "message": failure.message}
            });
            println(&doc.to_string());
        } else {
            stderr(&format!("error: {}", failure.message));
        }
    }

    /// A spinner with `message` on a terminal, for work of unknown length; hidden elsewhere.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if self.quiet || self.is_json() || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(message.to_owned());
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    }

    /// A progress bar of `len` steps on a terminal; hidden elsewhere.
    pub fn progress(&self, len: u64, message: &str) -> ProgressBar {
        if self.quiet || self.is_json() || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {wide_msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar
    }
}
