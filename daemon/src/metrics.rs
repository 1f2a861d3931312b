//! Metrics in Prometheus text format, served at `/metrics`: a small
//! hand-written registry of atomics (no dependency, nothing allocated per
//! event once a (handler, type) series exists). Event counters per handler
//! and type, a handling-latency histogram, outbox backlog and lag, broker and
//! consumer state, HTTP requests by method, route and status with their
//! latency, the sales writer's batches; dead letters by status are read from
//! the database when scraped.
//!
//! Every label takes its values from a closed set, so nothing a client or a
//! publisher sends can add series: the labels are types ([`HttpMethod`],
//! [`Route`], [`HttpStatus`], [`EventLabel`]) that cannot hold an open
//! string, and a handler's name is a `&'static str` of the handler registry
//! (`atelier_domain::bus::handlers`). The dead letters' `status` is bounded
//! by the table's CHECK constraint.

use atelier_domain::events::EventType;
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

/// An HTTP method label: the standard methods, any other is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
    Other,
}

impl HttpMethod {
    pub const ALL: [HttpMethod; 10] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Options,
        HttpMethod::Connect,
        HttpMethod::Trace,
        HttpMethod::Other,
    ];

    pub fn of(method: &axum::http::Method) -> HttpMethod {
        use axum::http::Method as M;
        match *method {
            M::GET => HttpMethod::Get,
            M::HEAD => HttpMethod::Head,
            M::POST => HttpMethod::Post,
            M::PUT => HttpMethod::Put,
            M::PATCH => HttpMethod::Patch,
            M::DELETE => HttpMethod::Delete,
            M::OPTIONS => HttpMethod::Options,
            M::CONNECT => HttpMethod::Connect,
            M::TRACE => HttpMethod::Trace,
            _ => HttpMethod::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Other => "other",
        }
    }
}

/// The statuses counted by their code; any other is counted by its class
/// (`4xx`), and one outside 100..=599 as `other`.
pub const KNOWN_STATUSES: [u16; 24] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 406, 408, 409, 413, 414, 415, 422, 429, 431, 500, 502, 503,
    504,
];

/// An HTTP status label: a code of [`KNOWN_STATUSES`], a class, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpStatus(StatusKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum StatusKind {
    Known(u16),
    /// 1 to 5.
    Class(u8),
    Other,
}

impl HttpStatus {
    pub fn of(code: u16) -> HttpStatus {
        HttpStatus(if KNOWN_STATUSES.contains(&code) {
            StatusKind::Known(code)
        } else if (100..600).contains(&code) {
            StatusKind::Class((code / 100) as u8)
        } else {
            StatusKind::Other
        })
    }

    /// How many values the label can take.
    pub const COUNT: usize = KNOWN_STATUSES.len() + 5 + 1;

    fn label(self) -> std::borrow::Cow<'static, str> {
        match self.0 {
            StatusKind::Known(c) => c.to_string().into(),
            StatusKind::Class(c) => format!("{c}xx").into(),
            StatusKind::Other => "other".into(),
        }
    }
}

/// An HTTP route label: one of the facade's route templates (fixed when
/// [`Metrics`] is built) or `unmatched`. Made only by [`Metrics::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route(Option<u16>);

/// An event type label: a type this build knows, any other is `other` (the
/// type of an undecodable message is whatever its publisher wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventLabel(Option<u8>);

impl EventLabel {
    /// How many values the label can take.
    pub const COUNT: usize = EventType::ALL.len() + 1;

    /// The label of a type read from a message.
    pub fn of(event_type: &str) -> EventLabel {
        EventType::parse(event_type).map_or(EventLabel(None), EventLabel::from)
    }

    pub fn as_str(self) -> &'static str {
        match self.0 {
            Some(i) => EventType::ALL[usize::from(i)].as_str(),
            None => "other",
        }
    }
}

impl From<EventType> for EventLabel {
    fn from(t: EventType) -> Self {
        EventLabel(EventType::ALL.iter().position(|k| *k == t).and_then(|i| u8::try_from(i).ok()))
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

/// (method, route, status) → the HTTP requests answered.
type HttpSeries = BTreeMap<(HttpMethod, Route, HttpStatus), Arc<Histogram>>;

pub struct Metrics {
    /// (handler, event type) → series (a lookup allocates nothing).
    series: Mutex<BTreeMap<(&'static str, EventLabel), Arc<Series>>>,
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
    /// The route templates a [`Route`] label can name.
    routes: Vec<String>,
}

impl Default for Metrics {
    /// With the HTTP facade's route templates.
    fn default() -> Self {
        Metrics::new(crate::http::route_templates())
    }
}

impl Metrics {
    /// Metrics whose route label takes one of `routes` (or `unmatched`).
    pub fn new(routes: Vec<String>) -> Metrics {
        Metrics {
            series: Mutex::default(),
            outbox_backlog: AtomicI64::default(),
            outbox_lag_ms: AtomicI64::default(),
            outbox_published: AtomicU64::default(),
            broker_connected: AtomicBool::default(),
            consumers_running: AtomicUsize::default(),
            consumers_expected: AtomicUsize::default(),
            reconnects: AtomicU64::default(),
            sales_writer: Arc::default(),
            http: Mutex::default(),
            routes,
        }
    }

    /// The series of (handler, event type), created on first use.
    pub fn series(&self, handler: &'static str, event_type: EventLabel) -> Arc<Series> {
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((handler, event_type)).or_default().clone()
    }

    /// The label of the route a request matched (its template, never the raw
    /// path): `unmatched` when none did or the template is not one of ours.
    pub fn route(&self, matched: Option<&str>) -> Route {
        Route(matched.and_then(|m| self.routes.iter().position(|r| r == m)).and_then(|i| u16::try_from(i).ok()))
    }

    /// How many values the route label can take (`unmatched` included).
    pub fn route_count(&self) -> usize {
        self.routes.len() + 1
    }

    fn route_label(&self, route: Route) -> &str {
        route.0.and_then(|i| self.routes.get(usize::from(i))).map_or("unmatched", String::as_str)
    }

    /// The histogram of HTTP requests answered `status` on `route`, created
    /// on first use.
    pub fn http(&self, method: HttpMethod, route: Route, status: HttpStatus) -> Arc<Histogram> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((method, route, status)).or_default().clone()
    }

    /// Sum of one counter over every series of `handler` (tests, readiness).
    pub fn total(&self, handler: &str, pick: impl Fn(&Series) -> u64) -> u64 {
        let map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().filter(|((h, _), _)| *h == handler).map(|(_, s)| pick(s)).sum()
    }

    /// The Prometheus text exposition; `dead_letters` are (status, count).
    pub fn render(&self, dead_letters: &[(String, i64)]) -> String {
        let mut out = String::new();
        let map: Vec<((&str, &str), Arc<Series>)> = {
            let m = self.series.lock().unwrap_or_else(|p| p.into_inner());
            m.iter().map(|((h, t), s)| ((*h, t.as_str()), s.clone())).collect()
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
            for ((method, route, status), h) in http.iter() {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{}\"",
                    method.as_str(),
                    self.route_label(*route),
                    status.label()
                );
                h.render(&mut out, "atelier_http_request_duration_seconds", &labels);
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
        let s = m.series("production", EventType::SaleCreated.into());
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

    #[test]
    fn labels_take_values_from_closed_sets() {
        let m = Metrics::new(vec!["/health".into()]);
        let odd = axum::http::Method::from_bytes(b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX").unwrap();
        assert_eq!(HttpMethod::of(&odd), HttpMethod::Other);
        assert_eq!(HttpMethod::of(&axum::http::Method::GET).as_str(), "GET");
        assert_eq!(HttpStatus::of(404).label(), "404");
        assert_eq!(HttpStatus::of(418).label(), "4xx");
        assert_eq!(HttpStatus::of(999).label(), "other");
        assert_eq!(EventLabel::of("sale.created").as_str(), "sale.created");
        assert_eq!(EventLabel::of("made.up.by.a.publisher").as_str(), "other");
        assert_eq!(m.route_label(m.route(Some("/health"))), "/health");
        assert_eq!(m.route_label(m.route(Some("/not/ours"))), "unmatched");
        assert_eq!(m.route_label(m.route(None)), "unmatched");
        for t in EventType::ALL {
            assert_eq!(EventLabel::from(t).as_str(), t.as_str());
        }
        let statuses: std::collections::BTreeSet<_> = (0..1000).map(HttpStatus::of).collect();
        assert_eq!(statuses.len(), HttpStatus::COUNT);
    }
}
