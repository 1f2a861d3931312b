//! `atelier env list | show | diff`: the environments, their resolved
//! configuration, and what differs between two of them (secrets redacted).

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
        EnvCommand::Diff { a, b } => diff(&a, &b, out),
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

/// A value as text, the way `env show` prints it.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `env diff A B`: every key whose resolved value differs (a key only one
/// side has included), values redacted as `env show` redacts them.
fn diff(a: &str, b: &str, out: Output) -> Result<Code, Failure> {
    let dir = config::config_dir()?;
    let (left, right) = (config::load(&dir, a)?, config::load(&dir, b)?);
    let side = |entries: Vec<(String, serde_json::Value, Option<&config::Layer>)>| {
        entries
            .into_iter()
            .map(|(k, v, l)| (k, (v, l.map(|l| l.to_string()).unwrap_or_else(|| "default".into()))))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (l, r) = (side(left.entries()), side(right.entries()));
    let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
    let mut differences = Vec::new();
    for key in keys {
        let (lv, rv) = (l.get(key), r.get(key));
        if lv.map(|v| &v.0) != rv.map(|v| &v.0) {
            let one = |v: Option<&(serde_json::Value, String)>| match v {
                Some((value, source)) => json!({"value": value, "source": source}),
                None => json!(null),
            };
            differences.push((key.clone(), lv.cloned(), rv.cloned(), json!({"key": key, "a": one(lv), "b": one(rv)})));
        }
    }
    let same = l.len().max(r.len()) - differences.len();
    let rows: Vec<_> = differences.iter().map(|d| d.3.clone()).collect();
    let doc =
        json!({"success": true, "data": {"a": a, "b": b, "differences": rows, "same": same}, "count": rows.len()});
    out.emit(&doc, || {
        if differences.is_empty() {
            return format!("{a} and {b} resolve to the same configuration ({same} keys)");
        }
        let width = differences.iter().map(|d| d.0.len()).max().unwrap_or(0);
        let cell = |v: &Option<(serde_json::Value, String)>| match v {
            Some((value, source)) => format!("{} ({source})", shown(value)),
            None => "(not set)".to_owned(),
        };
        let mut s = format!("# {:width$}  {a}  →  {b}\n", "key");
        for (key, lv, rv, _) in &differences {
            s.push_str(&format!("{key:width$}    {}  →  {}\n", cell(lv), cell(rv)));
        }
        s + &format!("{} key(s) differ, {same} the same", differences.len())
    });
    Ok(Code::Ok)
}
