//! `atelier topology apply | verify`: the environment's RabbitMQ topology
//! (DESIGN.md, "Topology") for this build's handlers. `apply` declares it
//! (idempotent), after recreating the queues `--recreate` names with this
//! build's arguments, messages kept (`bus::recreate`); `verify` reports drift
//! (missing, or declared with other arguments) and exits 5 when there is any.

use crate::cli::TopologyCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::bus::Drift;
use atelier_domain::bus::{self, AmqpUrl, BusError, RecreateError, Topology};
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

impl From<RecreateError> for Failure {
    fn from(e: RecreateError) -> Self {
        match e {
            RecreateError::NotInTopology { .. } => Failure::new(Code::Usage, e.to_string()),
            RecreateError::ConsumersAttached { .. } => Failure::new(Code::CheckFailed, e.to_string()),
            RecreateError::Bus(b) => b.into(),
        }
    }
}

pub async fn run(cmd: TopologyCommand, ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings;
    let url = AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref())?;
    let conn = bus::connect(&url, "atelier topology", settings.amqp.connect_timeout).await?;
    let topology = Topology::standard(settings);
    let timeout = settings.amqp.publish_timeout;
    let result = match cmd {
        TopologyCommand::Apply { recreate } => apply(ctx, &conn, &topology, &recreate).await,
        TopologyCommand::Verify => {
            let drift = topology.verify(&conn, timeout).await?;
            let ok = drift.is_empty();
            let doc = json!({"success": ok, "data": {"env": ctx.env(), "namespace": topology.ns, "drift": drift}, "count": drift.len()});
            ctx.out.emit(&doc, || {
                if ok {
                    format!("topology of namespace '{}' matches ({})", topology.ns, ctx.env())
                } else {
                    drift.iter().map(|d| format!("drift: {d}\n")).collect::<String>() + &advice(&drift)
                }
            });
            Ok(if ok { Code::Ok } else { Code::CheckFailed })
        }
    };
    // A connection the broker already closed (a refused declare can take it
    // down) never answers a close: do not wait for it longer than a publish.
    let _ = tokio::time::timeout(timeout, conn.close(200, "OK".into())).await;
    result
}

/// What to run about `drift`: `apply` creates what is missing, and a queue
/// declared with other arguments needs `apply --recreate` (a plain `apply`
/// would be refused by the broker).
fn advice(drift: &[Drift]) -> String {
    let differs: Vec<&str> = drift
        .iter()
        .filter_map(|d| match d {
            Drift::Differs { kind: "queue", name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut s = format!("{} difference(s)", drift.len());
    if drift.iter().any(|d| matches!(d, Drift::Missing { .. })) {
        s.push_str("; `atelier topology apply` creates what is missing");
    }
    if !differs.is_empty() {
        let flags: String = differs.iter().map(|q| format!(" --recreate {q}")).collect();
        s.push_str(&format!(
            "; `atelier topology apply{flags}` redeclares the queues with other arguments, keeping their messages \
             (stop atelierd's events role first)"
        ));
    }
    if drift.iter().any(|d| matches!(d, Drift::Differs { kind: "exchange", .. })) {
        s.push_str("; an exchange with other arguments must be deleted by hand (rabbitmqctl) before `apply`");
    }
    s
}

async fn apply(
    ctx: &Context,
    conn: &lapin::Connection,
    topology: &Topology,
    recreate: &[String],
) -> Result<Code, Failure> {
    let timeout = ctx.config.settings.amqp.publish_timeout;
    if recreate.is_empty() {
        ctx.confirm(&format!("Declare the topology of namespace '{}'", topology.ns))?;
    } else {
        ctx.confirm(&format!(
            "Recreate {} (messages kept) and declare the topology of namespace '{}'",
            recreate.join(", "),
            topology.ns
        ))?;
    }
    let mut recreated = Vec::new();
    for queue in recreate {
        let bar = ctx.out.progress(0, &format!("recreating {queue}"));
        let mut progress = |phase: &'static str, done: u64, total: u64| {
            bar.set_length(total.max(done));
            bar.set_position(done);
            bar.set_message(format!("{queue}: moving messages {phase}"));
        };
        let outcome = topology.recreate_queue(conn, queue, timeout, &mut progress).await;
        bar.finish_and_clear();
        let done = outcome?;
        tracing::debug!(queue, moved_out = done.moved_out, moved_back = done.moved_back, "queue recreated");
        recreated.push(done);
    }
    match topology.apply(conn, timeout).await {
        Ok(()) => {
            let queues = topology.queue_names();
            let doc = json!({"success": true, "data": {"env": ctx.env(), "namespace": topology.ns, "queues": queues, "recreated": recreated}, "count": queues.len()});
            ctx.out.emit(&doc, || {
                let mut s: String = recreated
                    .iter()
                    .map(|r| {
                        if r.existed {
                            format!(
                                "recreated {} with this build's arguments: {} message(s) moved out and {} back\n",
                                r.queue, r.moved_out, r.moved_back
                            )
                        } else {
                            format!(
                                "{} did not exist: declared ({} message(s) moved back from {})\n",
                                r.queue, r.moved_back, r.temporary
                            )
                        }
                    })
                    .collect();
                s.push_str(&format!(
                    "topology of namespace '{}' declared ({} queues) in {}",
                    topology.ns,
                    queues.len(),
                    ctx.env()
                ));
                s
            });
            Ok(Code::Ok)
        }
        Err(e) if e.reply_code() == Some(406) => Err(Failure::new(
            Code::CheckFailed,
            format!(
                "{e}\nsomething exists with other arguments: `atelier topology verify` names it, and \
                 `atelier topology apply --recreate QUEUE` redeclares such a queue keeping its messages"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
