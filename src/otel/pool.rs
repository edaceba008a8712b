//! One pool's telemetry: the attributes its statements share, its instruments, and the one
//! per-fingerprint attribute cache both spans and metrics read.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::metrics::PoolMetrics;
use super::semconv::error_attributes;
use super::server::Server;
use super::span::{FingerprintAttributes, StatementSpan};
use crate::fingerprint::Fingerprint;
use crate::health::StatsSource;
use crate::report::Execution;

/// Distinct fingerprints whose attributes are kept. Real applications have hundreds to a few
/// thousand statement shapes; past the cap (a flood of unique SQL) attributes are built per
/// statement and not kept, so memory stays bounded.
const CAPACITY: usize = 10_000;

/// Spans and metrics of one pool.
pub(crate) struct PoolTelemetry {
    server: Server,
    metrics: PoolMetrics,
    fingerprints: DashMap<u64, Arc<FingerprintAttributes>>,
    record_raw_sql: bool,
    statement_spans: bool,
    compress_spans: bool,
}

impl PoolTelemetry {
    pub(crate) fn new(
        server: Server,
        pool_name: &str,
        stats: Option<Weak<dyn StatsSource>>,
        record_raw_sql: bool,
        statement_spans: bool,
        compress_spans: bool,
    ) -> Self {
        PoolTelemetry {
            metrics: PoolMetrics::new(&server, pool_name, stats),
            server,
            fingerprints: DashMap::new(),
            record_raw_sql,
            statement_spans,
            compress_spans,
        }
    }

    fn attributes(&self, fp: &Fingerprint) -> Arc<FingerprintAttributes> {
        if let Some(found) = self.fingerprints.get(&fp.id()) {
            return Arc::clone(&found);
        }
        let ok_metric = self.metrics.operation_attributes(fp, None).into();
        let built = Arc::new(FingerprintAttributes::new(fp, ok_metric));
        if self.fingerprints.len() < CAPACITY {
            self.fingerprints.insert(fp.id(), Arc::clone(&built));
        }
        built
    }

    /// Starts the statement's span (none when statement spans are off). `started`: when it
    /// began, for a statement reported after it ended (observer mode); `None` is now.
    /// `scoped`: the statement runs in a scope, which can merge its span with its neighbours'
    /// when compression is on.
    pub(crate) fn start(
        &self,
        fp: &Fingerprint,
        sql: &str,
        started: Option<SystemTime>,
        scoped: bool,
    ) -> StatementSpan {
        if !self.statement_spans {
            return StatementSpan::none();
        }
        let own = self.attributes(fp);
        StatementSpan::start(
            &self.server.attributes,
            &own,
            self.record_raw_sql.then_some(sql),
            started,
            scoped && self.compress_spans,
        )
    }

    /// Ends the statement's span and records its duration.
    pub(crate) fn finish(&self, span: &mut StatementSpan, fp: &Fingerprint, run: &Execution<'_>) {
        let error = error_attributes(run.outcome);
        span.end(run.rows, run.elapsed, error.as_ref());
        let secs = run.elapsed.as_secs_f64();
        match &error {
            None => self
                .metrics
                .record_duration(secs, &self.attributes(fp).ok_metric),
            Some(_) => self
                .metrics
                .record_duration(secs, &self.metrics.operation_attributes(fp, error.as_ref())),
        }
    }

    pub(crate) fn record_wait(&self, waited: Duration, timed_out: bool) {
        self.metrics.record_wait(waited, timed_out);
    }

    pub(crate) fn record_use(&self, held: Duration, idle: Option<Duration>) {
        self.metrics.record_use(held, idle);
    }
}
