//! The deployment checklist's decisions (pure): the steps in order, which
//! slot is idle, the post-switch analysis of a slot's `/metrics`, and how a
//! deployment whose command died is reconciled.

/// The checklist's steps, in order.
pub const STEPS: [&str; 11] =
    ["lock", "preflight", "gate", "migrate", "start", "ready", "canary", "switch", "analysis", "drain", "record"];

/// A blue/green slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "blue" => Some(Slot::Blue),
            "green" => Some(Slot::Green),
            _ => None,
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
}

/// The slot a new deployment goes to: the one the current deployment is not
/// in (blue when there is none).
pub fn idle_slot(current: Option<Slot>) -> Slot {
    current.map_or(Slot::Blue, Slot::other)
}

/// What the analysis reads from a slot's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// API requests answered (every status; `/api/` routes only).
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    /// Deliveries this process dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries this process sent to a retry level.
    pub retried: u64,
    /// Deliveries this process took from its queues.
    pub consumed: u64,
}

/// Sums the counters out of Prometheus text (atelierd's `/metrics`).
pub fn parse_metrics(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let v = v.max(0.0) as u64;
        // The API's requests only: probes of /ready and /metrics say nothing of its health.
        if series.starts_with("atelier_http_request_duration_seconds_count") && series.contains("route=\"/api/") {
            c.requests += v;
            if series.contains("status=\"5") {
                c.server_errors += v;
            }
        } else if series.starts_with("atelier_events_dead_lettered_total") {
            c.dead_lettered += v;
        } else if series.starts_with("atelier_events_retried_total") {
            c.retried += v;
        } else if series.starts_with("atelier_events_consumed_total") {
            c.consumed += v;
        }
    }
    c
}

/// The analysis's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_5xx_ratio: f64,
    pub max_dead_letters: u64,
}

/// Whether the slot is healthy since `baseline` (counters at the switch):
/// an error in words when its 5xx ratio or dead letters are over the limits.
pub fn analyse(baseline: Counters, now: Counters, limits: Limits) -> Result<String, String> {
    let requests = now.requests.saturating_sub(baseline.requests);
    let errors = now.server_errors.saturating_sub(baseline.server_errors);
    let dead = now.dead_lettered.saturating_sub(baseline.dead_lettered);
    let ratio = if requests == 0 { 0.0 } else { errors as f64 / requests as f64 };
    if errors > 0 && ratio > limits.max_5xx_ratio {
        return Err(format!(
            "5xx ratio {ratio:.3} ({errors} of {requests} requests) is over deploy.max_5xx_ratio {}",
            limits.max_5xx_ratio
        ));
    }
    if dead > limits.max_dead_letters {
        return Err(format!(
            "{dead} deliveries dead-lettered, over deploy.max_dead_letters {}",
            limits.max_dead_letters
        ));
    }
    Ok(format!("{requests} requests, {errors} 5xx (ratio {ratio:.3}), {dead} dead-lettered"))
}

/// What to do with a deployment whose command died after starting `last_step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Traffic is on the new slot and it passed its analysis: finish (drain the old slot, record success).
    Finish,
    /// Anything before: put traffic back on the previous slot, stop the new one.
    RollBack,
}

pub fn reconcile(last_step: Option<&str>) -> Reconcile {
    match last_step {
        Some("drain" | "record") => Reconcile::Finish,
        _ => Reconcile::RollBack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
atelier_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/me\",status=\"200\"} 90\n\
atelier_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/x\",status=\"500\"} 10\n\
atelier_http_request_duration_seconds_count{method=\"GET\",route=\"/metrics\",status=\"200\"} 7\n\
atelier_http_request_duration_seconds_bucket{method=\"GET\",route=\"/x\",status=\"500\",le=\"+Inf\"} 10\n\
atelier_events_dead_lettered_total{handler=\"production\",event_type=\"sale.created\"} 2\n\
atelier_events_retried_total{handler=\"production\",event_type=\"sale.created\"} 3\n\
atelier_events_consumed_total{handler=\"production\",event_type=\"sale.created\"} 30\n";

    #[test]
    fn reads_requests_5xx_and_dead_letters() {
        assert_eq!(
            parse_metrics(TEXT),
            Counters { requests: 100, server_errors: 10, dead_lettered: 2, retried: 3, consumed: 30 }
        );
    }

    #[test]
    fn analysis_compares_with_the_baseline() {
        let limits = Limits { max_5xx_ratio: 0.05, max_dead_letters: 0 };
        let base = Counters { requests: 50, server_errors: 10, dead_lettered: 2, ..Counters::default() };
        let ok = Counters { requests: 150, server_errors: 12, dead_lettered: 2, ..Counters::default() };
        assert!(analyse(base, ok, limits).is_ok());
        let bad = Counters { requests: 150, server_errors: 30, ..ok };
        assert!(analyse(base, bad, limits).unwrap_err().contains("5xx ratio 0.200"));
        let dead = Counters { dead_lettered: 3, ..ok };
        assert!(analyse(base, dead, limits).unwrap_err().contains("1 deliveries dead-lettered"));
        assert!(analyse(Counters::default(), Counters::default(), limits).is_ok());
    }

    #[test]
    fn slots_alternate_and_a_dead_deploy_finishes_only_once_drained() {
        assert_eq!(idle_slot(None), Slot::Blue);
        assert_eq!(idle_slot(Some(Slot::Blue)), Slot::Green);
        assert_eq!(Slot::parse("green"), Some(Slot::Green));
        assert_eq!(reconcile(Some("drain")), Reconcile::Finish);
        assert_eq!(reconcile(Some("analysis")), Reconcile::RollBack);
        assert_eq!(reconcile(None), Reconcile::RollBack);
    }
}
