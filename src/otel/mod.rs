//! OpenTelemetry: database spans and metrics following the semantic conventions (v1.44.0,
//! stable database conventions since v1.33.0; see [`SCHEMA_URL`]), and an OTLP setup helper.
//!
//! pgscope emits everything through the standard stack, so there is nothing pgscope-specific
//! to install if you already configure OpenTelemetry:
//! - **Statement spans**: one CLIENT span per statement, named by `db.query.summary` (e.g.
//!   `SELECT users`), built with the OpenTelemetry API from the global tracer provider under the
//!   instrumentation scope `pgscope` (as OpenTelemetry instrumentation libraries do). Its parent
//!   is the current `tracing` span (through `tracing-opentelemetry`), or the current
//!   OpenTelemetry context outside any `tracing` span. Building them directly rather than as
//!   `tracing` spans costs about a third as much per statement; they follow the provider's
//!   sampler (`OTEL_TRACES_SAMPLER`, [`OtelBuilder::trace_sample_ratio`]), and an unsampled
//!   statement costs almost nothing. [`PoolOptions::query_spans`](crate::PoolOptions::query_spans)
//!   turns them off for a pool.
//! - **Scope spans**: a scope puts its summary on the request span it runs in (the current
//!   `tracing` span when it is exported), else on a `pgscope.scope` span of its own. That span is
//!   a DEBUG span on target `pgscope::scope`, so it never shows in an application's log at the
//!   usual levels; a `tracing_opentelemetry` layer exports it when its filter enables that
//!   target ([`init`] does: `pgscope::scope=debug`). With your own setup, add the directive to
//!   the OpenTelemetry layer's filter, not to the log's. They get `pgscope.queries`, `pgscope.db_time_ms`,
//!   `pgscope.connection_hold_ms`, `pgscope.pool_wait_ms` and `pgscope.n_plus_one` when the scope
//!   ends, plus one `pgscope.n_plus_one` span event per N+1 found (fingerprint, statement, count,
//!   call site), so the N+1 shows on the trace in Jaeger.
//! - **Metrics** use the global meter provider (`opentelemetry::global`). Create pools *after*
//!   installing it (as [`init`] does), because instruments are created with the pool.
//!
//! `db.query.text` is the normalized statement (`$1` placeholders, never literal values) unless
//! [`PoolOptions::record_raw_sql`](crate::PoolOptions::record_raw_sql) opts in. `db.namespace`
//! is `{database}|{schema}`, with the database name and the first `search_path` entry given at
//! connect time, or the database name alone when the connect options set no `search_path`
//! (the schema a statement actually ran in is not known without an extra query).
//! `db.operation.name` and `db.collection.name` are not set: the PostgreSQL conventions say
//! they SHOULD NOT be extracted from the query text; `db.query.summary` (e.g.
//! `SELECT posts users`) carries the operations and tables instead.
//! `error.type` is the SQLSTATE for database errors, else a short name of the failure
//! (`io`, `protocol`, `cancelled`, …); the span status description is that same value, never
//! the server's message (which can quote values).
//!
//! `db.client.connection.create_time` is read from the server when a connection opens (sqlx
//! reports no connect timing): one extra round trip per new connection, and not available for
//! pools made with [`Pool::from_sqlx`](crate::Pool::from_sqlx) /
//! [`PoolOptions::wrap`](crate::PoolOptions::wrap), whose connect hooks pgscope does not own.

mod init;
mod metrics;
mod pool;
mod semconv;
mod server;
mod span;

pub use self::init::{OtelBuilder, OtelError, OtelGuard, Protocol, init, try_init};
pub use self::metrics::set_attribute_limit;
pub use self::semconv::{SCHEMA_URL, attr, metric};

#[cfg(feature = "pool")]
pub(crate) use self::metrics::CreateTime;
pub(crate) use self::metrics::{
    record_budget_exceeded, record_duplicate, record_held_idle, record_n_plus_one,
    record_plan_change, record_scope,
};
pub(crate) use self::pool::PoolTelemetry;
pub(crate) use self::server::{Server, connect_schema};
#[cfg(feature = "pool")]
pub(crate) use self::span::plan_change_event;
pub(crate) use self::span::{
    Compressed, PendingRun, StatementSpan, is_exported, summarize_scope, traceparent,
};
