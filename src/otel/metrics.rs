//! Metric instruments: semantic-convention `db.client.*` metrics per pool, and pgscope's own
//! per-route metrics, with capped attribute sets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::Duration;

use dashmap::DashSet;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableUpDownCounter};

use super::semconv::ErrorAttributes;
use super::server::Server;
use super::{attr, metric};
use crate::detect::NPlusOne;
use crate::fingerprint::Fingerprint;
use crate::health::{PoolStats, StatsSource};
use crate::report::Report;

/// Bucket boundaries recommended by the semantic conventions for `db.client.operation.duration`.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
const OTHER: &str = "other";

static ATTRIBUTE_LIMIT: AtomicUsize = AtomicUsize::new(1000);

/// Caps the number of distinct values of high-cardinality metric attributes (query summaries,
/// routes, route × fingerprint pairs); values beyond the cap are reported as `other`, so a flood
/// of unique SQL cannot explode metric cardinality. By default, 1000.
pub fn set_attribute_limit(limit: usize) {
    ATTRIBUTE_LIMIT.store(limit, Ordering::Relaxed);
}

/// A set of attribute values that admits at most `ATTRIBUTE_LIMIT` distinct members.
#[derive(Default)]
struct Capped(DashSet<String>);

impl Capped {
    fn admit<'a>(&self, value: &'a str) -> &'a str {
        if self.0.contains(value) {
            return value;
        }
        if self.0.len() >= ATTRIBUTE_LIMIT.load(Ordering::Relaxed) {
            return OTHER;
        }
        self.0.insert(value.to_owned());
        value
    }
}

fn meter() -> Meter {
    opentelemetry::global::meter("pgscope")
}

/// Instruments of one pool.
pub(crate) struct PoolMetrics {
    base: Vec<KeyValue>,
    pool: KeyValue,
    duration: Histogram<f64>,
    wait_time: Histogram<f64>,
    use_time: Histogram<f64>,
    idle_time: Histogram<f64>,
    timeouts: Counter<u64>,
    summaries: Capped,
    _observed: Vec<ObservableUpDownCounter<i64>>,
}

/// Values to observe, each with an optional `db.client.connection.state`.
type Observations = Vec<(i64, Option<&'static str>)>;

impl PoolMetrics {
    /// Without `pool` (statements seen by the observer), no connection gauges.
    pub(crate) fn new(
        server: &Server,
        pool_name: &str,
        pool: Option<Weak<dyn StatsSource>>,
    ) -> Self {
        let meter = meter();
        let pool_kv = KeyValue::new(attr::DB_CLIENT_CONNECTION_POOL_NAME, pool_name.to_owned());
        let observe = |pool: &Weak<dyn StatsSource>,
                       name: &'static str,
                       unit: &'static str,
                       pick: fn(PoolStats) -> Observations| {
            let (pool, pool_kv) = (pool.clone(), pool_kv.clone());
            meter
                .i64_observable_up_down_counter(name)
                .with_unit(unit)
                .with_callback(move |obs| {
                    if let Some(p) = pool.upgrade() {
                        for (value, state) in pick(p.stats()) {
                            match state {
                                Some(s) => obs.observe(
                                    value,
                                    &[
                                        pool_kv.clone(),
                                        KeyValue::new(attr::DB_CLIENT_CONNECTION_STATE, s),
                                    ],
                                ),
                                None => obs.observe(value, std::slice::from_ref(&pool_kv)),
                            }
                        }
                    }
                })
                .build()
        };
        let observed = match &pool {
            None => Vec::new(),
            Some(pool) => vec![
                observe(
                    pool,
                    metric::DB_CLIENT_CONNECTION_COUNT,
                    "{connection}",
                    |s| {
                        vec![
                            (i64::from(s.idle()), Some("idle")),
                            (i64::from(s.in_use()), Some("used")),
                        ]
                    },
                ),
                observe(
                    pool,
                    metric::DB_CLIENT_CONNECTION_MAX,
                    "{connection}",
                    |s| vec![(i64::from(s.max_connections()), None)],
                ),
                observe(
                    pool,
                    metric::DB_CLIENT_CONNECTION_PENDING_REQUESTS,
                    "{request}",
                    |s| vec![(i64::try_from(s.waiters()).unwrap_or(i64::MAX), None)],
                ),
            ],
        };
        PoolMetrics {
            base: server.attributes.to_vec(),
            pool: pool_kv,
            duration: meter
                .f64_histogram(metric::DB_CLIENT_OPERATION_DURATION)
                .with_unit("s")
                .with_description("Duration of database client operations.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            wait_time: meter
                .f64_histogram(metric::DB_CLIENT_CONNECTION_WAIT_TIME)
                .with_unit("s")
                .with_description("The time it took to obtain an open connection from the pool.")
                .build(),
            use_time: meter
                .f64_histogram(metric::DB_CLIENT_CONNECTION_USE_TIME)
                .with_unit("s")
                .with_description(
                    "The time between borrowing a connection and returning it to the pool.",
                )
                .build(),
            idle_time: meter
                .f64_histogram(metric::PGSCOPE_CONNECTION_IDLE_TIME)
                .with_unit("s")
                .with_description(
                    "The part of a held connection's use time with no statement running on it.",
                )
                .build(),
            timeouts: meter
                .u64_counter(metric::DB_CLIENT_CONNECTION_TIMEOUTS)
                .with_unit("{timeout}")
                .with_description("Connection attempts that timed out waiting for the pool.")
                .build(),
            summaries: Capped::default(),
            _observed: observed,
        }
    }

    pub(crate) fn record_duration(&self, secs: f64, attributes: &[KeyValue]) {
        self.duration.record(secs, attributes);
    }

    /// `db.client.operation.duration` attributes: the server's, the (capped) summary, and
    /// the error's.
    pub(crate) fn operation_attributes(
        &self,
        fp: &Fingerprint,
        error: Option<&ErrorAttributes>,
    ) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(self.base.len() + 4);
        attrs.extend_from_slice(&self.base);
        let summary = self.summaries.admit(fp.summary());
        attrs.push(KeyValue::new(attr::DB_QUERY_SUMMARY, summary.to_owned()));
        if let Some((kind, code)) = error {
            attrs.push(KeyValue::new(attr::ERROR_TYPE, kind.clone()));
            if let Some(code) = code {
                attrs.push(KeyValue::new(attr::DB_RESPONSE_STATUS_CODE, code.clone()));
            }
        }
        attrs
    }

    pub(crate) fn record_wait(&self, waited: Duration, timed_out: bool) {
        let attrs = std::slice::from_ref(&self.pool);
        self.wait_time.record(waited.as_secs_f64(), attrs);
        if timed_out {
            self.timeouts.add(1, attrs);
        }
    }

    pub(crate) fn record_use(&self, held: Duration, idle: Option<Duration>) {
        self.use_time
            .record(held.as_secs_f64(), std::slice::from_ref(&self.pool));
        if let Some(idle) = idle {
            self.idle_time
                .record(idle.as_secs_f64(), std::slice::from_ref(&self.pool));
        }
    }
}

/// Measures `db.client.connection.create_time` from inside sqlx's `after_connect` hook.
///
/// sqlx opens connections internally and reports no timing, so the time is read from the
/// server: `clock_timestamp() - backend_start` of the new backend, i.e. from the moment
/// PostgreSQL accepted the connection (before TLS, authentication and startup) to the end of
/// this one extra round trip. That leaves out the client's TCP handshake and counts one extra
/// round trip, roughly cancelling out. Values above the pool's acquire timeout (a backend that
/// is older than the connection: a transaction-mode pooler such as PgBouncer in between) are
/// dropped rather than recorded.
#[cfg(feature = "pool")]
#[derive(Clone)]
pub(crate) struct CreateTime {
    histogram: Histogram<f64>,
    pool: [KeyValue; 1],
    bound: Duration,
}

#[cfg(feature = "pool")]
const BACKEND_AGE: &str = "SELECT EXTRACT(EPOCH FROM clock_timestamp() - backend_start)::float8 \
     FROM pg_stat_activity WHERE pid = pg_backend_pid()";

#[cfg(feature = "pool")]
impl CreateTime {
    pub(crate) fn new(pool_name: &str, bound: Duration) -> Self {
        CreateTime {
            histogram: meter()
                .f64_histogram(metric::DB_CLIENT_CONNECTION_CREATE_TIME)
                .with_unit("s")
                .with_description("The time it took to create a new connection.")
                .build(),
            pool: [KeyValue::new(
                attr::DB_CLIENT_CONNECTION_POOL_NAME,
                pool_name.to_owned(),
            )],
            bound,
        }
    }

    /// Never fails the connection: a failed measurement is only not recorded.
    pub(crate) async fn measure(&self, conn: &mut sqlx::PgConnection) {
        let age = sqlx::query_scalar::<_, Option<f64>>(BACKEND_AGE)
            .persistent(false)
            .fetch_optional(conn)
            .await;
        if let Ok(Some(Some(secs))) = age
            && secs >= 0.0
            && secs <= self.bound.as_secs_f64()
        {
            self.histogram.record(secs, &self.pool);
        }
    }
}

/// pgscope's own instruments, shared by all pools (scopes are not tied to one pool).
struct ScopeMetrics {
    queries: Histogram<u64>,
    n_plus_one: Counter<u64>,
    duplicates: Counter<u64>,
    budget: Counter<u64>,
    held_idle: Counter<u64>,
    plan_changes: Counter<u64>,
    routes: Capped,
    pairs: Capped,
}

fn scope_metrics() -> &'static ScopeMetrics {
    static METRICS: OnceLock<ScopeMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = meter();
        ScopeMetrics {
            queries: meter
                .u64_histogram(metric::PGSCOPE_SCOPE_QUERIES)
                .with_unit("{query}")
                .with_description("Statements per scope (request), by route.")
                .with_boundaries(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
                ])
                .build(),
            n_plus_one: meter
                .u64_counter(metric::PGSCOPE_N_PLUS_ONE_DETECTED)
                .with_unit("{detection}")
                .with_description("N+1 patterns detected, by route and fingerprint.")
                .build(),
            duplicates: meter
                .u64_counter(metric::PGSCOPE_DUPLICATE_DETECTED)
                .with_unit("{detection}")
                .with_description(
                    "Statements repeated with the same parameters, by route and fingerprint.",
                )
                .build(),
            budget: meter
                .u64_counter(metric::PGSCOPE_QUERY_BUDGET_EXCEEDED)
                .with_unit("{query}")
                .with_description("Statements refused because the scope's query budget was spent.")
                .build(),
            held_idle: meter
                .u64_counter(metric::PGSCOPE_HELD_IDLE_DETECTED)
                .with_unit("{finding}")
                .with_description("Connections held idle past the threshold, by route.")
                .build(),
            plan_changes: meter
                .u64_counter(metric::PGSCOPE_PLAN_CHANGES)
                .with_unit("{change}")
                .with_description("Plan shape changes of a statement, by fingerprint.")
                .build(),
            routes: Capped::default(),
            pairs: Capped::default(),
        }
    })
}

pub(crate) fn record_plan_change(fingerprint: u64) {
    let m = scope_metrics();
    let hex = format!("{fingerprint:016x}");
    let fingerprint = m.pairs.admit(&hex).to_owned();
    m.plan_changes
        .add(1, &[KeyValue::new(attr::PGSCOPE_FINGERPRINT, fingerprint)]);
}

pub(crate) fn record_scope(report: &Report) {
    let m = scope_metrics();
    let route = m.routes.admit(report.name()).to_owned();
    m.queries.record(
        report.queries(),
        &[KeyValue::new(attr::PGSCOPE_ROUTE, route)],
    );
}

pub(crate) fn record_n_plus_one(item: &NPlusOne) {
    let m = scope_metrics();
    record_finding(&m.n_plus_one, item.scope(), item.fingerprint());
}

pub(crate) fn record_duplicate(item: &crate::detect::Duplicate) {
    let m = scope_metrics();
    record_finding(&m.duplicates, item.scope(), item.fingerprint());
}

/// Counts a finding by route and fingerprint (the pair capped: a flood of findings lands in
/// `other`).
fn record_finding(counter: &Counter<u64>, scope: &str, fp: &Fingerprint) {
    let m = scope_metrics();
    let key = format!("{scope}\u{0}{:016x}", fp.id());
    let (route, fingerprint) = if m.pairs.admit(&key) == OTHER {
        (OTHER.to_owned(), OTHER.to_owned())
    } else {
        (m.routes.admit(scope).to_owned(), fp.hex())
    };
    counter.add(
        1,
        &[
            KeyValue::new(attr::PGSCOPE_ROUTE, route),
            KeyValue::new(attr::PGSCOPE_FINGERPRINT, fingerprint),
        ],
    );
}

pub(crate) fn record_held_idle(item: &crate::detect::HeldIdle) {
    let m = scope_metrics();
    let route = m.routes.admit(item.scope()).to_owned();
    m.held_idle
        .add(1, &[KeyValue::new(attr::PGSCOPE_ROUTE, route)]);
}

pub(crate) fn record_budget_exceeded(route: &str) {
    let m = scope_metrics();
    let route = m.routes.admit(route).to_owned();
    m.budget
        .add(1, &[KeyValue::new(attr::PGSCOPE_ROUTE, route)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_attribute_values_overflow_to_other() {
        set_attribute_limit(3);
        let capped = Capped::default();
        let admitted: Vec<&str> = ["a", "b", "c", "d", "a", "e"]
            .iter()
            .map(|v| capped.admit(v))
            .collect();
        assert_eq!(admitted, vec!["a", "b", "c", OTHER, "a", OTHER]);
        for i in 0..10_000 {
            capped.admit(&format!("flood-{i}"));
        }
        assert_eq!(
            capped.0.len(),
            3,
            "a flood of unique values cannot grow the set"
        );
        set_attribute_limit(1000);
    }
}
