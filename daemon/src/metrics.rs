//! Metrics in Prometheus text format, served at `/metrics`: a small
//! hand-written registry of atomics (no dependency, nothing allocated per
//! event once a (handler, type) series exists). Event counters per handler
//! and type, a handling-latency histogram, outbox backlog and lag, broker and
//! consumer state, HTTP requests by method, route and status with their
//! latency, the sales writer's batches; dead letters by status are read from
//! the database when scraped.

use atelier_domain::store::sales::writer::WriterStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the handling-latency histogram's buckets.
const BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A latency histogram over [`BUCKETS`]. Each observation adds to its own
/// bucket only (one atomic add, not one per bucket above it); the buckets
/// are summed into Prometheus' cumulative form when read.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket; the last is above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS.iter().position(|le| secs <= *le).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.cumulative().1
    }

    /// (upper bound, observations at or below it) per bucket, then the count.
    fn cumulative(&self) -> ([(f64, u64); BUCKETS.len()], u64) {
        let mut running = 0;
        let below = std::array::from_fn(|i| {
            running += self.buckets[i].load(Relaxed);
            (BUCKETS[i], running)
        });
        (below, running + self.buckets[BUCKETS.len()].load(Relaxed))
    }

    /// The latency below which a share `q` (0..1) of observations fall: the
    /// upper bound of the bucket holding that quantile (None: no data or above
    /// the last bucket).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let (below, count) = self.cumulative();
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil() as u64;
        below.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
    }

    /// Its `_bucket`, `_sum` and `_count` lines for `name` with `labels`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let (below, count) = self.cumulative();
        for (le, n) in below {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The counters of one (handler, event type).
#[derive(Default)]
pub struct Series {
    pub consumed: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub transient: AtomicU64,
    /// Delivery to a durable outcome.
    pub handling: Histogram,
}

/// method → route (its template) → status: the HTTP requests answered.
type HttpSeries = BTreeMap<String, BTreeMap<String, BTreeMap<u16, Arc<Histogram>>>>;

#[derive(Default)]
pub struct Metrics {
    /// handler → event type → series (nested so a lookup allocates nothing).
    series: Mutex<BTreeMap<String, BTreeMap<String, Arc<Series>>>>,
    pub outbox_backlog: AtomicI64,
    /// Age of the oldest unpublished outbox row, in milliseconds (0 when none).
    pub outbox_lag_ms: AtomicI64,
    pub outbox_published: AtomicU64,
    pub broker_connected: AtomicBool,
    pub consumers_running: AtomicUsize,
    pub consumers_expected: AtomicUsize,
    pub reconnects: AtomicU64,
    /// The API's sales written together (group commit).
    pub sales_writer: Arc<WriterStats>,
    http: Mutex<HttpSeries>,
}

impl Metrics {
    /// The series of (handler, event type), created on first use.
    pub fn series(&self, handler: &str, event_type: &str) -> Arc<Series> {
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(handler).and_then(|m| m.get(event_type)) {
            return s.clone();
        }
        let s = Arc::new(Series::default());
        map.entry(handler.to_owned()).or_default().insert(event_type.to_owned(), s.clone());
        s
    }

    /// The histogram of HTTP requests answered `status` on `route` (the
    /// route's template, never the raw path, so the series stay few),
    /// created on first use.
    pub fn http(&self, method: &str, route: &str, status: u16) -> Arc<Histogram> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(method).and_then(|m| m.get(route)).and_then(|m| m.get(&status)) {
            return h.clone();
        }
        let h = Arc::new(Histogram::default());
        map.entry(method.to_owned()).or_default().entry(route.to_owned()).or_default().insert(status, h.clone());
        h
    }

    /// Sum of one counter over every series of `handler` (tests, readiness).
    pub fn total(&self, handler: &str, pick: impl Fn(&Series) -> u64) -> u64 {
        let map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        map.get(handler).map(|m| m.values().map(|s| pick(s)).sum()).unwrap_or(0)
    }

    /// The Prometheus text exposition; `dead_letters` are (status, count).
    pub fn render(&self, dead_letters: &[(String, i64)]) -> String {
        let mut out = String::new();
        let map: Vec<((String, String), Arc<Series>)> = {
            let m = self.series.lock().unwrap_or_else(|p| p.into_inner());
            m.iter().flat_map(|(h, ts)| ts.iter().map(move |(t, s)| ((h.clone(), t.clone()), s.clone()))).collect()
        };
        type Pick = fn(&Series) -> u64;
        let counters: [(&str, &str, Pick); 5] = [
            ("consumed", "Deliveries taken from a handler's queue", |s| s.consumed.load(Relaxed)),
            ("succeeded", "Deliveries handled and acked", |s| s.succeeded.load(Relaxed)),
            ("retried", "Deliveries sent to a delayed-retry level", |s| s.retried.load(Relaxed)),
            ("dead_lettered", "Deliveries dead-lettered", |s| s.dead_lettered.load(Relaxed)),
            (
                "transient_failures",
                "Transient failures (a dependency down): the delivery kept and handled again",
                |s| s.transient.load(Relaxed),
            ),
        ];
        for (name, help, pick) in counters {
            let _ = writeln!(out, "# HELP atelier_events_{name}_total {help}.");
            let _ = writeln!(out, "# TYPE atelier_events_{name}_total counter");
            for ((h, t), s) in &map {
                let _ = writeln!(out, "atelier_events_{name}_total{{handler=\"{h}\",event_type=\"{t}\"}} {}", pick(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP atelier_event_handling_seconds Time from delivery to a durable outcome (ack queued), per handler and type."
        );
        let _ = writeln!(out, "# TYPE atelier_event_handling_seconds histogram");
        for ((h, t), s) in &map {
            s.handling.render(
                &mut out,
                "atelier_event_handling_seconds",
                &format!("handler=\"{h}\",event_type=\"{t}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP atelier_http_request_duration_seconds Time to answer an HTTP request (to its headers), by method, route and status; its _count is the requests."
        );
        let _ = writeln!(out, "# TYPE atelier_http_request_duration_seconds histogram");
        {
            let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
            for (method, routes) in http.iter() {
                for (route, statuses) in routes {
                    for (status, h) in statuses {
                        let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
                        h.render(&mut out, "atelier_http_request_duration_seconds", &labels);
                    }
                }
            }
        }
        let gauges: [(&str, &str, &str, i64); 8] = [
            ("atelier_outbox_backlog", "gauge", "Outbox rows not yet published", self.outbox_backlog.load(Relaxed)),
            (
                "atelier_outbox_lag_seconds",
                "gauge",
                "Age of the oldest unpublished outbox row",
                self.outbox_lag_ms.load(Relaxed) / 1000,
            ),
            (
                "atelier_outbox_published_total",
                "counter",
                "Outbox rows published and confirmed",
                i64::try_from(self.outbox_published.load(Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "atelier_broker_connected",
                "gauge",
                "1 when connected to RabbitMQ",
                self.broker_connected.load(Relaxed) as i64,
            ),
            (
                "atelier_consumers_running",
                "gauge",
                "Consumers running (handlers and dead-letter ingest)",
                self.consumers_running.load(Relaxed) as i64,
            ),
            (
                "atelier_broker_reconnects_total",
                "counter",
                "Connections to RabbitMQ re-established",
                i64::try_from(self.reconnects.load(Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "atelier_sales_batches_total",
                "counter",
                "Statements that wrote the API's sales, concurrent ones together",
                i64::try_from(self.sales_writer.batches.load(Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "atelier_sales_written_total",
                "counter",
                "Sales those statements wrote (divided by the batches: the mean batch size)",
                i64::try_from(self.sales_writer.sales.load(Relaxed)).unwrap_or(i64::MAX),
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(out, "# HELP atelier_dead_letters Dead letters by status.\n# TYPE atelier_dead_letters gauge");
        for (status, n) in dead_letters {
            let _ = writeln!(out, "atelier_dead_letters{{status=\"{status}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        let s = m.series("production", "sale.created");
        s.consumed.fetch_add(2, Relaxed);
        s.handling.observe(Duration::from_millis(3));
        s.handling.observe(Duration::from_millis(300));
        let text = m.render(&[("dead".into(), 4)]);
        assert!(text.contains("atelier_events_consumed_total{handler=\"production\",event_type=\"sale.created\"} 2"));
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.5\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("atelier_dead_letters{status=\"dead\"} 4"));
        assert_eq!(m.total("production", |s| s.consumed.load(Relaxed)), 2);
        assert_eq!(s.handling.quantile_bound(0.5), Some(0.005));
        assert_eq!(s.handling.quantile_bound(0.99), Some(0.5));
        // Above the last bound: counted in +Inf only.
        s.handling.observe(Duration::from_secs(20));
        let text = m.render(&[]);
        assert!(text.contains("le=\"10\"} 2") && text.contains("le=\"+Inf\"} 3"), "{text}");
        assert_eq!(s.handling.quantile_bound(0.99), None);
    }
}
