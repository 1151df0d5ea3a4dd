//! What `GET /metrics` shows, in Prometheus' text format.
//!
//! Each server has a recorder of its own rather than the `metrics` crate's
//! global one, so that servers sharing a process (the tests') count apart.
//! No metric is labelled by tenant: a series per tenant would grow with the
//! fleet, and every scrape would list every tenant's slug.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::app::App;

const REQUESTS: &str = "strata_graphql_requests_total";
const ERRORS: &str = "strata_graphql_errors_total";
const DURATION: &str = "strata_graphql_request_duration_seconds";

/// Upper bounds of the request-duration histogram's buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests between two foldings of the recorded durations into the
/// histogram, so that they do not pile up between scrapes (or with no
/// scraper at all).
const UPKEEP_EVERY: u64 = 1024;

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// What kind of GraphQL request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Query,
    Mutation,
    Subscription,
    /// A request that did not get as far as an operation: a body that is
    /// not a GraphQL request, a document that did not parse, or one that
    /// names an operation it does not hold.
    Unknown,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Query,
        Operation::Mutation,
        Operation::Subscription,
        Operation::Unknown,
    ];

    /// The operation `op` names, if it is one.
    pub fn of(op: Option<async_graphql::parser::types::OperationType>) -> Self {
        use async_graphql::parser::types::OperationType;
        match op {
            Some(OperationType::Query) => Operation::Query,
            Some(OperationType::Mutation) => Operation::Mutation,
            Some(OperationType::Subscription) => Operation::Subscription,
            None => Operation::Unknown,
        }
    }

    /// Its counter's place in [`Telemetry`]'s list (the order of `ALL`).
    fn index(self) -> usize {
        match self {
            Operation::Query => 0,
            Operation::Mutation => 1,
            Operation::Subscription => 2,
            Operation::Unknown => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Operation::Query => "query",
            Operation::Mutation => "mutation",
            Operation::Subscription => "subscription",
            Operation::Unknown => "unknown",
        }
    }
}

/// The server's metrics: what it records as requests are served, and what
/// it reads from its parts when scraped.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: [Counter; 4],
    duration: Histogram,
    served: AtomicU64,
}

/// One GraphQL request being served (from [`Telemetry::serving`]), counted
/// when dropped: once answered, with its operation and its errors' codes;
/// ended by a panic, with one `INTERNAL_SERVER_ERROR` (the answer the
/// client gets); ended because the client went away, with no error.
pub struct Served<'t> {
    telemetry: &'t Telemetry,
    started: Instant,
    operation: Operation,
    codes: Vec<String>,
    answered: bool,
}

impl Served<'_> {
    /// The request is of this operation.
    pub fn operation(&mut self, operation: Operation) {
        self.operation = operation;
    }

    /// The request was answered, with errors of these codes.
    pub fn answered<'a>(&mut self, codes: impl Iterator<Item = &'a str>) {
        self.codes.extend(codes.map(str::to_owned));
        self.answered = true;
    }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        if !self.answered && std::thread::panicking() {
            self.codes.push("INTERNAL_SERVER_ERROR".to_owned());
        }
        let codes = std::mem::take(&mut self.codes);
        self.telemetry
            .graphql_request(self.operation, self.started.elapsed(), codes);
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A recorder with nothing recorded yet.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), BUCKETS)
            // BUCKETS is a fixed, non-empty list: this cannot fail.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, text: &'static str| {
            recorder.describe_counter(name.into(), None, SharedString::const_str(text));
        };
        describe(REQUESTS, "GraphQL requests served, by operation type.");
        describe(ERRORS, "Errors in GraphQL responses, by extensions.code.");
        recorder.describe_histogram(
            DURATION.into(),
            Some(Unit::Seconds),
            SharedString::const_str(
                "Time to answer a GraphQL request, from its body read to its response ready.",
            ),
        );
        let requests = Operation::ALL.map(|op| {
            let labels = [("operation", op.label())];
            recorder.register_counter(&Key::from_parts(REQUESTS, &labels), &META)
        });
        let duration = recorder.register_histogram(&Key::from_static_name(DURATION), &META);
        Telemetry {
            recorder,
            handle,
            requests,
            duration,
            served: AtomicU64::new(0),
        }
    }

    /// A GraphQL request being served, counted when the guard is dropped.
    pub fn serving(&self) -> Served<'_> {
        Served {
            telemetry: self,
            started: Instant::now(),
            operation: Operation::Unknown,
            codes: Vec::new(),
            answered: false,
        }
    }

    /// Records one GraphQL request: its operation, how long it took, and the
    /// code of each error in its response.
    fn graphql_request(&self, operation: Operation, took: Duration, codes: Vec<String>) {
        self.requests[operation.index()].increment(1);
        self.duration.record(took.as_secs_f64());
        for code in codes {
            let labels = vec![Label::new("code", code)];
            let key = Key::from_parts(ERRORS, labels);
            self.recorder.register_counter(&key, &META).increment(1);
        }
        if self.served.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// The page `GET /metrics` serves: what `app`'s parts count, read now,
    /// and what was recorded.
    pub fn render(&self, app: &App) -> String {
        // Rendering shows only the durations already folded in.
        self.handle.run_upkeep();
        let stats = &app.query_stats;
        let counters: [(&'static str, &'static str, u64); 5] = [
            (
                "strata_db_statements_total",
                "Statements the pool's connections sent (BEGIN and COMMIT included).",
                stats.statements(),
            ),
            (
                "strata_db_connections_recycled_total",
                "Connections closed for having served too many tenants.",
                stats.recycled(),
            ),
            (
                "strata_db_lane_waits_total",
                "Tenant transactions that queued for a busy tenant lane.",
                stats.lane_waits(),
            ),
            (
                "strata_db_lane_spills_total",
                "Tenant transactions that found their lanes busy and used the general pool.",
                stats.spills(),
            ),
            (
                "strata_task_pages_from_memory_total",
                "Task pages answered from memory rather than by the GraphQL executor.",
                app.pages_from_memory.load(Ordering::Relaxed),
            ),
        ];
        for (name, text, value) in counters {
            self.recorder
                .describe_counter(name.into(), None, SharedString::const_str(text));
            self.recorder
                .register_counter(&Key::from_static_name(name), &META)
                .absolute(value);
        }
        let (open, idle) = app.pool.connections();
        let name = "strata_db_connections";
        self.recorder.describe_gauge(
            name.into(),
            None,
            SharedString::const_str(
                "Open database connections (every lane and the general pool), by state.",
            ),
        );
        for (state, value) in [("idle", idle), ("busy", open.saturating_sub(idle))] {
            let labels = [("state", state)];
            let gauge = self
                .recorder
                .register_gauge(&Key::from_parts(name, &labels), &META);
            gauge.set(f64::from(value));
        }
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_counter() {
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?} indexes its own counter");
        }
    }
}
