//! The seam between the core and OpenTelemetry. Every call the core makes to telemetry goes
//! through this file; without the `otel` feature each body is empty and each type is zero-sized,
//! so the core's files carry no `cfg` and cost nothing when the feature is off.

use std::sync::Weak;
use std::time::Duration;

use crate::detect::NPlusOne;
use crate::fingerprint::Fingerprint;
use crate::health::StatsSource;
use crate::report::{Execution, Report};

/// A pool's telemetry settings (they only matter with the `otel` feature).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Put raw SQL (literal values included) in `db.query.text`.
    pub(crate) record_raw_sql: bool,
    /// One CLIENT span per statement.
    pub(crate) statement_spans: bool,
    /// Consecutive statements of a scope with the same fingerprint under the same parent
    /// become one span.
    pub(crate) compress_spans: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Literal values are personal data until proven otherwise.
            record_raw_sql: false,
            statement_spans: true,
            compress_spans: false,
        }
    }
}

/// Where a pool's statements run, as given at connect time.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) struct ServerInfo {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) user: String,
    /// The connection's startup `options` (`-c search_path=…`), if any.
    pub(crate) options: Option<String>,
}

/// Spans and metrics of one pool.
pub(crate) struct PoolTelemetry {
    #[cfg(feature = "otel")]
    inner: crate::otel::PoolTelemetry,
}

/// The span of one statement in flight.
pub(crate) struct StatementSpan {
    #[cfg(feature = "otel")]
    inner: crate::otel::StatementSpan,
}

impl StatementSpan {
    /// Whether the span waits for its scope to merge it with its neighbours (compression).
    pub(crate) fn is_deferred(&self) -> bool {
        #[cfg(feature = "otel")]
        return matches!(self.inner, crate::otel::StatementSpan::Deferred(_));
        #[cfg(not(feature = "otel"))]
        false
    }
}

/// A scope's run of consecutive equal statements, waiting to be exported as one span.
#[derive(Default)]
pub(crate) struct PendingRun {
    #[cfg(feature = "otel")]
    inner: crate::otel::PendingRun,
}

/// Spans ready to export; built outside any lock.
#[derive(Default)]
#[must_use]
pub(crate) struct Flushed {
    #[cfg(feature = "otel")]
    spans: Vec<crate::otel::Compressed>,
}

impl Flushed {
    pub(crate) fn export(self) {
        #[cfg(feature = "otel")]
        for span in self.spans {
            span.export();
        }
    }
}

impl PendingRun {
    /// Adds an ended statement's deferred span; returns the spans the run no longer holds.
    pub(crate) fn add(&mut self, span: &mut StatementSpan) -> Flushed {
        #[cfg(feature = "otel")]
        return Flushed {
            spans: span
                .inner
                .take_deferred()
                .map(|d| self.inner.add(d))
                .unwrap_or_default(),
        };
        #[cfg(not(feature = "otel"))]
        {
            let _ = span;
            Flushed::default()
        }
    }

    /// Ends the run.
    pub(crate) fn take(&mut self) -> Flushed {
        #[cfg(feature = "otel")]
        return Flushed {
            spans: self.inner.take().into_iter().collect(),
        };
        #[cfg(not(feature = "otel"))]
        Flushed::default()
    }
}

impl PoolTelemetry {
    /// `server`: `None` when unknown (statements seen by the observer); `stats`: the pool's
    /// reading for the connection gauges, `None` without a pool.
    pub(crate) fn new(
        options: &Options,
        server: Option<&ServerInfo>,
        pool_name: &str,
        stats: Option<Weak<dyn StatsSource>>,
    ) -> Self {
        #[cfg(feature = "otel")]
        {
            let server = match server {
                Some(s) => crate::otel::Server::new(
                    &s.host,
                    s.port,
                    &s.database,
                    crate::otel::connect_schema(s.options.as_deref(), &s.user).as_deref(),
                ),
                None => crate::otel::Server::unknown(),
            };
            PoolTelemetry {
                inner: crate::otel::PoolTelemetry::new(
                    server,
                    pool_name,
                    stats,
                    options.record_raw_sql,
                    options.statement_spans,
                    options.compress_spans,
                ),
            }
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = (options, server, pool_name, stats);
            PoolTelemetry {}
        }
    }

    /// A statement starts; `scoped`: it runs in a scope (which can merge its span).
    pub(crate) fn start(&self, fp: &Fingerprint, sql: &str, scoped: bool) -> StatementSpan {
        #[cfg(feature = "otel")]
        return StatementSpan {
            inner: self.inner.start(fp, sql, None, scoped),
        };
        #[cfg(not(feature = "otel"))]
        {
            let _ = (fp, sql, scoped);
            StatementSpan {}
        }
    }

    /// A statement that has just ended after `elapsed` (seen by the observer): its span starts
    /// back-dated.
    pub(crate) fn start_ended(
        &self,
        fp: &Fingerprint,
        sql: &str,
        elapsed: Duration,
    ) -> StatementSpan {
        #[cfg(feature = "otel")]
        return StatementSpan {
            inner: self.inner.start(
                fp,
                sql,
                std::time::SystemTime::now().checked_sub(elapsed),
                false,
            ),
        };
        #[cfg(not(feature = "otel"))]
        {
            let _ = (fp, sql, elapsed);
            StatementSpan {}
        }
    }

    /// A statement ends: its span ends and its duration is recorded.
    pub(crate) fn finish(&self, span: &mut StatementSpan, fp: &Fingerprint, run: &Execution<'_>) {
        #[cfg(feature = "otel")]
        self.inner.finish(&mut span.inner, fp, run);
        #[cfg(not(feature = "otel"))]
        let _ = (span, fp, run);
    }

    /// An acquire ended after waiting `waited`.
    pub(crate) fn waited(&self, waited: Duration, timed_out: bool) {
        #[cfg(feature = "otel")]
        self.inner.record_wait(waited, timed_out);
        #[cfg(not(feature = "otel"))]
        let _ = (waited, timed_out);
    }

    /// A connection went back to the pool after being held for `held`, `idle` of it unused
    /// (`None`: a query's connection, never idle).
    pub(crate) fn released(&self, held: Duration, idle: Option<Duration>) {
        #[cfg(feature = "otel")]
        self.inner.record_use(held, idle);
        #[cfg(not(feature = "otel"))]
        let _ = (held, idle);
    }
}

/// The pool options sqlx builds with: with `otel`, plus the hook that measures
/// `db.client.connection.create_time` for every connection the pool opens.
#[cfg(feature = "pool")]
pub(crate) fn connect_hook(
    options: sqlx::postgres::PgPoolOptions,
    pool_name: &str,
    acquire_timeout: Duration,
) -> sqlx::postgres::PgPoolOptions {
    #[cfg(feature = "otel")]
    {
        let hook = crate::otel::CreateTime::new(pool_name, acquire_timeout);
        options.after_connect(move |conn, _meta| {
            let hook = hook.clone();
            Box::pin(async move {
                crate::wrapped::Wrapped::new(std::pin::pin!(hook.measure(conn))).await;
                Ok(())
            })
        })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = (pool_name, acquire_timeout);
        options
    }
}

/// A scope ended: its summary goes on its span (`named`: the span still needs the scope's
/// name), and into the per-route metrics.
pub(crate) fn scope_ended(span: &tracing::Span, report: &Report, named: bool) {
    #[cfg(feature = "otel")]
    {
        crate::otel::summarize_scope(span, report, named);
        crate::otel::record_scope(report);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, report, named);
}

/// An N+1 was found.
pub(crate) fn n_plus_one(item: &NPlusOne) {
    #[cfg(feature = "otel")]
    crate::otel::record_n_plus_one(item);
    #[cfg(not(feature = "otel"))]
    let _ = item;
}

/// The W3C `traceparent` of the current span, when it is exported (feature `otel`).
#[cfg(feature = "pool")]
pub(crate) fn traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    return crate::otel::traceparent();
    #[cfg(not(feature = "otel"))]
    None
}

/// A connection was held idle past the threshold.
pub(crate) fn held_idle(item: &crate::detect::HeldIdle) {
    #[cfg(feature = "otel")]
    crate::otel::record_held_idle(item);
    #[cfg(not(feature = "otel"))]
    let _ = item;
}

/// A duplicate was found.
pub(crate) fn duplicate(item: &crate::detect::Duplicate) {
    #[cfg(feature = "otel")]
    crate::otel::record_duplicate(item);
    #[cfg(not(feature = "otel"))]
    let _ = item;
}

/// A statement's plan changed; the event goes on `span` (the request's, while it is open).
/// `shapes` and `sizes` are (from, to).
#[cfg(feature = "pool")]
pub(crate) fn plan_changed(
    span: &tracing::Span,
    fingerprint: u64,
    statement: &str,
    shapes: [&str; 2],
    sizes: [String; 2],
    call_site: &str,
) {
    #[cfg(feature = "otel")]
    crate::otel::plan_change_event(span, fingerprint, statement, shapes, sizes, call_site);
    #[cfg(not(feature = "otel"))]
    let _ = (span, fingerprint, statement, shapes, sizes, call_site);
}

/// A statement's plan changed: the `pgscope.plan.changes` counter (the event follows through
/// [`plan_changed`]).
#[cfg(feature = "pool")]
pub(crate) fn plan_change_counted(fingerprint: u64) {
    #[cfg(feature = "otel")]
    crate::otel::record_plan_change(fingerprint);
    #[cfg(not(feature = "otel"))]
    let _ = fingerprint;
}

/// A statement was refused by the query budget of scope `route`.
pub(crate) fn budget_exceeded(route: &str) {
    #[cfg(feature = "otel")]
    crate::otel::record_budget_exceeded(route);
    #[cfg(not(feature = "otel"))]
    let _ = route;
}

/// Whether attributes set on `span` reach the exported trace. Without the `otel` feature
/// nothing is exported, and any span may carry a scope.
pub(crate) fn is_exported(span: &tracing::Span) -> bool {
    #[cfg(feature = "otel")]
    return crate::otel::is_exported(span);
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        true
    }
}
