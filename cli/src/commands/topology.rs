//! `atelier topology apply | verify`: the environment's RabbitMQ topology
//! (DESIGN.md, "Topology") for this build's handlers. `apply` declares it
//! (idempotent); `verify` reports drift (missing, or declared with other
//! arguments) and exits 5 when there is any.

use crate::cli::TopologyCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::bus::{self, AmqpUrl, BusError, Topology};
use serde_json::json;

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        let code = match &e {
            BusError::Secret(_) | BusError::InvalidUrl => Code::Config,
            BusError::Connect { .. } | BusError::Timeout { .. } => Code::Unavailable,
            _ => Code::Failure,
        };
        Failure::new(code, e.to_string())
    }
}

pub async fn run(cmd: TopologyCommand, ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings;
    let url = AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref())?;
    let conn = bus::connect(&url, "atelier topology", settings.amqp.connect_timeout).await?;
    let topology = Topology::standard(settings);
    let timeout = settings.amqp.publish_timeout;
    let result = match cmd {
        TopologyCommand::Apply => {
            ctx.confirm(&format!("Declare the topology of namespace '{}'", topology.ns))?;
            match topology.apply(&conn, timeout).await {
                Ok(()) => {
                    let queues = topology.queue_names();
                    let doc = json!({"success": true, "data": {"env": ctx.env(), "namespace": topology.ns, "queues": queues}, "count": queues.len()});
                    ctx.out.emit(&doc, || {
                        format!(
                            "topology of namespace '{}' declared ({} queues) in {}",
                            topology.ns,
                            queues.len(),
                            ctx.env()
                        )
                    });
                    Ok(Code::Ok)
                }
                Err(e) if e.reply_code() == Some(406) => Err(Failure::new(
                    Code::CheckFailed,
                    format!("{e}\nsomething exists with other arguments: run `atelier topology verify` to see what"),
                )),
                Err(e) => Err(e.into()),
            }
        }
        TopologyCommand::Verify => {
            let drift = topology.verify(&conn, timeout).await?;
            let ok = drift.is_empty();
            let doc = json!({"success": ok, "data": {"env": ctx.env(), "namespace": topology.ns, "drift": drift}, "count": drift.len()});
            ctx.out.emit(&doc, || {
                if ok {
                    format!("topology of namespace '{}' matches ({})", topology.ns, ctx.env())
                } else {
                    drift.iter().map(|d| format!("drift: {d}\n")).collect::<String>()
                        + &format!("{} difference(s); `atelier topology apply` creates what is missing", drift.len())
                }
            });
            Ok(if ok { Code::Ok } else { Code::CheckFailed })
        }
    };
    let _ = conn.close(200, "OK".into()).await;
    result
}
