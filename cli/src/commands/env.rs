//! `atelier env list | show`: the environments and their resolved configuration.

use crate::cli::{EnvCommand, Global};
use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Output;
use atelier_domain::config;
use serde_json::json;

pub fn run(cmd: EnvCommand, global: &Global, out: Output) -> Result<Code, Failure> {
    match cmd {
        EnvCommand::List => {
            let dir = config::config_dir()?;
            let names = config::environments(&dir)?;
            let current = config::choose_env(global.env.as_deref());
            let doc = json!({"success": true, "data": names.iter().map(|n| json!({"name": n, "selected": *n == current})).collect::<Vec<_>>(), "count": names.len()});
            out.emit(&doc, || {
                names.iter().map(|n| if *n == current { format!("{n} *\n") } else { format!("{n}\n") }).collect()
            });
            Ok(Code::Ok)
        }
        EnvCommand::Show => {
            let ctx = Context::load(global, out)?;
            let entries = ctx.config.entries();
            let rows: Vec<_> = entries
                .iter()
                .map(|(k, v, layer)| json!({"key": k, "value": v, "source": layer.map(|l| l.to_string()).unwrap_or_else(|| "default".into())}))
                .collect();
            let doc = json!({"success": true, "data": {"env": ctx.env(), "config_dir": ctx.config.dir.display().to_string(), "values": rows}});
            out.emit(&doc, || {
                let width = entries.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
                let mut s = format!("# environment {} ({})\n", ctx.env(), ctx.config.dir.display());
                for (k, v, layer) in &entries {
                    let shown = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let src = layer.map(|l| l.to_string()).unwrap_or_else(|| "default".into());
                    s.push_str(&format!("{k:width$} = {shown}    # {src}\n"));
                }
                s
            });
            Ok(Code::Ok)
        }
    }
}
