//! What every command starts from: the chosen environment's resolved
//! configuration, its secrets, the output mode, and confirmation of changes
//! (in environments whose `policy.confirm_changes` is set) and of destructive
//! actions (in any environment).

use crate::cli::Global;
use crate::exit::{Code, Failure};
use crate::output::Output;
use atelier_domain::config::{self, Resolved};
use atelier_domain::secrets::{self, SecretStore};
use atelier_domain::store::DatabaseUrl;
use std::io::{BufRead, IsTerminal, Write};

pub struct Context {
    pub config: Resolved,
    pub out: Output,
    pub yes: bool,
}

impl Context {
    pub fn load(global: &Global, out: Output) -> Result<Context, Failure> {
        let env = config::choose_env(global.env.as_deref());
        let dir = config::config_dir()?;
        let config = config::load(&dir, &env)?;
        Ok(Context { config, out, yes: global.yes })
    }

    pub fn env(&self) -> &str {
        &self.config.env
    }

    pub fn secrets(&self) -> Box<dyn SecretStore> {
        secrets::open(&self.config)
    }

    pub fn database_url(&self) -> Result<DatabaseUrl, Failure> {
        Ok(DatabaseUrl::resolve(&self.config.settings.database, self.secrets().as_ref())?)
    }

    /// Asks before a destructive `action`, in any environment. Without a
    /// terminal, only `--yes` confirms.
    pub fn confirm_destructive(&self, action: &str) -> Result<(), Failure> {
        if self.yes {
            return Ok(());
        }
        let refused =
            || Failure::new(Code::NotConfirmed, format!("{action} was not confirmed (pass --yes to confirm)"));
        if self.out.is_json() || !std::io::stdin().is_terminal() {
            return Err(refused());
        }
        eprint!("{action} in {}? [y/N] ", self.env());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|_| refused())?;
        if matches!(answer.trim(), "y" | "Y" | "yes") { self.confirm(action) } else { Err(refused()) }
    }

    /// Asks before `action` changes an environment whose policy is to
    /// confirm changes. Without a terminal, only `--yes` confirms.
    pub fn confirm(&self, action: &str) -> Result<(), Failure> {
        if self.yes || !self.config.settings.policy.confirm_changes {
            return Ok(());
        }
        let refused = || {
            Failure::new(
                Code::NotConfirmed,
                format!("{action} in {} was not confirmed (pass --yes to confirm)", self.env()),
            )
        };
        if self.out.is_json() || !std::io::stdin().is_terminal() {
            return Err(refused());
        }
        eprint!("{action} in {}? Type the environment's name to confirm: ", self.env());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|_| refused())?;
        if answer.trim() == self.env() { Ok(()) } else { Err(refused()) }
    }
}
