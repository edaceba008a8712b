//! OpenTelemetry: database spans and metrics following the semantic conventions (v1.44.0,
//! stable database conventions since v1.33.0), and an OTLP setup helper.
//!
//! pgscope emits everything through the standard stack, so there is nothing pgscope-specific
//! to install if you already configure OpenTelemetry:
//! - **Spans** are `tracing` spans carrying semantic-convention fields; a
//!   `tracing_opentelemetry` layer turns them into OpenTelemetry CLIENT spans. One per statement,
//!   named by `db.query.summary` (e.g. `SELECT users`), a child of the current span.
//! - **Scope spans** (`pgscope.scope`) get `pgscope.queries`, `pgscope.db_time_ms`,
//!   `pgscope.connection_hold_ms`, `pgscope.pool_wait_ms` and `pgscope.n_plus_one` when the scope
//!   ends, plus one `pgscope.n_plus_one` span event per N+1 found (fingerprint, statement, count,
//!   call site), so the N+1 shows on the trace in Jaeger.
//! - **Metrics** use the global meter provider (`opentelemetry::global`). Create pools *after*
//!   installing it (as [`init`] does), because instruments are created with the pool.
//!
//! `db.query.text` is the normalized statement (`$1` placeholders, never literal values) unless
//! [`PoolOptions::record_raw_sql`](crate::PoolOptions::record_raw_sql) opts in. `db.namespace`
//! is the database name given at connect time (the schema is not known without an extra query).
//! `error.type` is the SQLSTATE for database errors, else a short name of the failure
//! (`io`, `protocol`, `cancelled`, …).
//!
//! Not emitted: `db.client.connection.create_time` (sqlx opens connections internally and does
//! not expose how long that took).

mod init;
mod metrics;

use std::time::Duration;

use opentelemetry::KeyValue;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use self::init::{OtelBuilder, OtelError, OtelGuard, Protocol, init, try_init};
pub use self::metrics::set_attribute_limit;
pub(crate) use self::metrics::{Gauges, PoolGauges, PoolMetrics};

use crate::detect::NPlusOne;
use crate::fingerprint::Fingerprint;
use crate::report::Report;

/// Attribute and metric names used by pgscope (semantic conventions v1.44.0 where they exist).
pub mod attr {
    /// Database system: always `"postgresql"`.
    pub const DB_SYSTEM_NAME: &str = "db.system.name";
    /// The database name given at connect time.
    pub const DB_NAMESPACE: &str = "db.namespace";
    /// First operation of the summary (`SELECT`, `INSERT`, …).
    pub const DB_OPERATION_NAME: &str = "db.operation.name";
    /// The table, when the statement has exactly one operation on one table.
    pub const DB_COLLECTION_NAME: &str = "db.collection.name";
    /// Low-cardinality summary, e.g. `SELECT users`.
    pub const DB_QUERY_SUMMARY: &str = "db.query.summary";
    /// The normalized (parameterized) statement.
    pub const DB_QUERY_TEXT: &str = "db.query.text";
    /// Rows returned.
    pub const DB_RESPONSE_RETURNED_ROWS: &str = "db.response.returned_rows";
    /// SQLSTATE of a failed statement.
    pub const DB_RESPONSE_STATUS_CODE: &str = "db.response.status_code";
    /// Class of failure.
    pub const ERROR_TYPE: &str = "error.type";
    /// Database host.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// Database port.
    pub const SERVER_PORT: &str = "server.port";
    /// Pool name on connection metrics.
    pub const DB_CLIENT_CONNECTION_POOL_NAME: &str = "db.client.connection.pool.name";
    /// `idle` or `used` on `db.client.connection.count`.
    pub const DB_CLIENT_CONNECTION_STATE: &str = "db.client.connection.state";
    /// 16-hex fingerprint id.
    pub const PGSCOPE_FINGERPRINT: &str = "pgscope.fingerprint";
    /// Scope (route) name.
    pub const PGSCOPE_ROUTE: &str = "pgscope.route";
}

/// Server facts known at connect time, for span and metric attributes.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) database: String,
}

/// The CLIENT span of one statement. Disabled (and nearly free) when no subscriber wants it.
pub(crate) fn query_span(
    server: &Server,
    fp: &Fingerprint,
    raw_sql: Option<&str>,
) -> tracing::Span {
    let summary = fp.summary();
    let name = if summary.is_empty() {
        "postgresql"
    } else {
        summary
    };
    // Everything known up front goes in at creation: each later `record` costs the
    // OpenTelemetry layer a span lookup.
    let (op, collection) = op_and_collection(summary);
    tracing::info_span!(
        target: "pgscope::query",
        "db.query",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = "postgresql",
        db.namespace = server.database.as_str(),
        db.operation.name = op,
        db.collection.name = collection,
        db.query.summary = summary,
        db.query.text = raw_sql.unwrap_or(fp.normalized()),
        server.address = server.address.as_str(),
        server.port = server.port,
        db.response.returned_rows = Empty,
        db.response.status_code = Empty,
        error.type = Empty,
        pgscope.fingerprint = %format_args!("{:016x}", fp.id()),
    )
}

/// `db.operation.name` and, for a single operation on a single table, `db.collection.name`.
fn op_and_collection(summary: &str) -> (Option<&str>, Option<&str>) {
    let mut parts = summary.split(' ');
    let op = parts.next().filter(|s| !s.is_empty());
    let rest: Vec<&str> = parts.collect();
    let collection = match rest.as_slice() {
        [one] if !matches!(*one, "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE") => Some(*one),
        _ => None,
    };
    (op, collection)
}

/// `error.type` and `db.response.status_code` for a failed statement.
pub(crate) fn error_attributes(
    error: Option<&sqlx::Error>,
    cancelled: bool,
) -> Option<(String, Option<String>)> {
    if cancelled {
        return Some(("cancelled".to_owned(), None));
    }
    let error = error?;
    Some(match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => (code.to_string(), Some(code.to_string())),
            None => ("_OTHER".to_owned(), None),
        },
        sqlx::Error::Io(_) => ("io".to_owned(), None),
        sqlx::Error::Tls(_) => ("tls".to_owned(), None),
        sqlx::Error::Protocol(_) => ("protocol".to_owned(), None),
        sqlx::Error::PoolTimedOut => ("pool_timed_out".to_owned(), None),
        sqlx::Error::PoolClosed => ("pool_closed".to_owned(), None),
        sqlx::Error::Encode(_) => ("encode".to_owned(), None),
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => ("decode".to_owned(), None),
        _ => ("_OTHER".to_owned(), None),
    })
}

/// Ends a statement's span and records its duration metric.
pub(crate) fn finish_query(
    span: &tracing::Span,
    metrics: Option<&PoolMetrics>,
    fp: &Fingerprint,
    elapsed: Duration,
    rows: u64,
    error: Option<(String, Option<String>)>,
) {
    if !span.is_disabled() {
        span.record("db.response.returned_rows", rows);
        if let Some((kind, code)) = &error {
            span.record("error.type", kind.as_str());
            if let Some(code) = code {
                span.record("db.response.status_code", code.as_str());
            }
            span.record("otel.status_code", "ERROR");
        }
    }
    if let Some(m) = metrics {
        m.record_operation(fp, elapsed, error.as_ref());
    }
}

/// Scope summary on the scope's span, per-detection span events, and scope metrics.
pub(crate) fn record_scope(span: &tracing::Span, report: &Report) {
    if !span.is_disabled() {
        span.set_attribute("pgscope.scope", report.name().to_owned());
        span.set_attribute("pgscope.queries", report.queries() as i64);
        span.set_attribute(
            "pgscope.db_time_ms",
            report.db_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            "pgscope.connection_hold_ms",
            report.connection_hold_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            "pgscope.pool_wait_ms",
            report.pool_wait_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute("pgscope.n_plus_one", report.n_plus_one().len() as i64);
        for item in report.n_plus_one() {
            span.add_event("pgscope.n_plus_one", n_plus_one_attributes(item));
        }
    }
    metrics::record_scope(report);
}

fn n_plus_one_attributes(item: &NPlusOne) -> Vec<KeyValue> {
    vec![
        KeyValue::new(attr::PGSCOPE_FINGERPRINT, item.fingerprint().hex()),
        KeyValue::new(
            attr::DB_QUERY_TEXT,
            item.fingerprint().normalized().to_owned(),
        ),
        KeyValue::new("pgscope.count", item.count() as i64),
        KeyValue::new("pgscope.threshold", i64::from(item.threshold())),
        KeyValue::new("code.location", item.call_site().to_owned()),
        KeyValue::new(attr::PGSCOPE_ROUTE, item.scope().to_owned()),
    ]
}

pub(crate) fn record_n_plus_one(item: &NPlusOne) {
    metrics::record_n_plus_one(item);
}

pub(crate) fn record_budget_exceeded(route: &str) {
    metrics::record_budget_exceeded(route);
}
