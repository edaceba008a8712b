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
//!   statement costs almost nothing. [`PoolOptions::statement_spans`](crate::PoolOptions::statement_spans)
//!   turns them off for a pool.
//! - **Scope spans** (`pgscope.scope`) are `tracing` spans (a `tracing_opentelemetry` layer
//!   exports them). They get `pgscope.queries`, `pgscope.db_time_ms`,
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

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use self::init::{OtelBuilder, OtelError, OtelGuard, Protocol, init, try_init};
pub use self::metrics::set_attribute_limit;
pub(crate) use self::metrics::{CreateTime, Gauges, PoolGauges, PoolMetrics};

use crate::detect::NPlusOne;
use crate::fingerprint::Fingerprint;
use crate::report::Report;

/// Metric names (semantic conventions v1.44.0 for `db.client.*`).
pub mod metric {
    /// Histogram (s) of statement durations.
    pub const DB_CLIENT_OPERATION_DURATION: &str = "db.client.operation.duration";
    /// Connections by `db.client.connection.state` (`idle` / `used`).
    pub const DB_CLIENT_CONNECTION_COUNT: &str = "db.client.connection.count";
    /// The pool's maximum size.
    pub const DB_CLIENT_CONNECTION_MAX: &str = "db.client.connection.max";
    /// Tasks waiting for a connection.
    pub const DB_CLIENT_CONNECTION_PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
    /// Acquires that timed out.
    pub const DB_CLIENT_CONNECTION_TIMEOUTS: &str = "db.client.connection.timeouts";
    /// Histogram (s) of the time taken to open a connection.
    pub const DB_CLIENT_CONNECTION_CREATE_TIME: &str = "db.client.connection.create_time";
    /// Histogram (s) of the time waited for a connection.
    pub const DB_CLIENT_CONNECTION_WAIT_TIME: &str = "db.client.connection.wait_time";
    /// Histogram (s) of the time a connection was held.
    pub const DB_CLIENT_CONNECTION_USE_TIME: &str = "db.client.connection.use_time";
    /// Histogram of statements per scope, by `pgscope.route`.
    pub const PGSCOPE_SCOPE_QUERIES: &str = "pgscope.scope.queries";
    /// Counter of N+1 patterns, by `pgscope.route` and `pgscope.fingerprint`.
    pub const PGSCOPE_N_PLUS_ONE_DETECTED: &str = "pgscope.n_plus_one.detected";
    /// Counter of statements refused by a query budget, by `pgscope.route`.
    pub const PGSCOPE_QUERY_BUDGET_EXCEEDED: &str = "pgscope.query_budget.exceeded";
}

/// Attribute names used by pgscope (semantic conventions v1.44.0 where they exist).
pub mod attr {
    /// Database system: always `"postgresql"`.
    pub const DB_SYSTEM_NAME: &str = "db.system.name";
    /// `{database}|{schema}` given at connect time (the database alone without a
    /// `search_path`).
    pub const DB_NAMESPACE: &str = "db.namespace";
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
    /// Database port, when not the default 5432.
    pub const SERVER_PORT: &str = "server.port";
    /// Pool name on connection metrics.
    pub const DB_CLIENT_CONNECTION_POOL_NAME: &str = "db.client.connection.pool.name";
    /// `idle` or `used` on `db.client.connection.count`.
    pub const DB_CLIENT_CONNECTION_STATE: &str = "db.client.connection.state";
    /// 16-hex fingerprint id.
    pub const PGSCOPE_FINGERPRINT: &str = "pgscope.fingerprint";
    /// Scope (route) name, on metrics and N+1 events.
    pub const PGSCOPE_ROUTE: &str = "pgscope.route";
    /// Scope name, on the scope's span.
    pub const PGSCOPE_SCOPE: &str = "pgscope.scope";
    /// Statements run in the scope.
    pub const PGSCOPE_QUERIES: &str = "pgscope.queries";
    /// Time the scope's statements spent in the database, in milliseconds.
    pub const PGSCOPE_DB_TIME_MS: &str = "pgscope.db_time_ms";
    /// Time the scope held connections, in milliseconds.
    pub const PGSCOPE_CONNECTION_HOLD_MS: &str = "pgscope.connection_hold_ms";
    /// Time the scope waited for the pool, in milliseconds.
    pub const PGSCOPE_POOL_WAIT_MS: &str = "pgscope.pool_wait_ms";
    /// N+1 patterns found in the scope (on the span); also the name of the span event per
    /// pattern.
    pub const PGSCOPE_N_PLUS_ONE: &str = "pgscope.n_plus_one";
    /// Repetitions of the statement, on an N+1 event.
    pub const PGSCOPE_COUNT: &str = "pgscope.count";
    /// The threshold the repetitions crossed, on an N+1 event.
    pub const PGSCOPE_THRESHOLD: &str = "pgscope.threshold";
    /// `file:line` of the repeated statement's call site, on an N+1 event.
    pub const CODE_LOCATION: &str = "code.location";
    /// File of the call site (semantic conventions).
    pub const CODE_FILE_PATH: &str = "code.file.path";
    /// Line of the call site (semantic conventions).
    pub const CODE_LINE_NUMBER: &str = "code.line.number";
}

/// Server facts known at connect time, for span and metric attributes.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// `db.system.name`, `db.namespace`, `server.address`, `server.port` (when not 5432): the
    /// attributes every statement of a pool shares (reference-counted strings, cloned without
    /// copying).
    pub(crate) attributes: Vec<KeyValue>,
}

impl Server {
    /// `schema` is the first `search_path` entry given at connect time, if any.
    pub(crate) fn new(address: &str, port: u16, database: &str, schema: Option<&str>) -> Self {
        // Semantic conventions: `{database}|{schema}`, or the one that is known.
        let namespace = match schema {
            Some(schema) => format!("{database}|{schema}"),
            None => database.to_owned(),
        };
        let mut attributes = vec![
            KeyValue::new(attr::DB_SYSTEM_NAME, "postgresql"),
            KeyValue::new(attr::DB_NAMESPACE, shared_str(&namespace)),
            KeyValue::new(attr::SERVER_ADDRESS, shared_str(address)),
        ];
        // Conditionally required only when it is not PostgreSQL's default.
        if port != 5432 {
            attributes.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
        }
        Server { attributes }
    }
}

/// The schema a connection starts in when the connect options set `search_path` (as
/// `PgConnectOptions::options([("search_path", …)])` or `?options=-c search_path=…` do): its
/// first entry, with `$user` resolved to `user`. `None` when no `search_path` is given.
pub(crate) fn connect_schema(options: Option<&str>, user: &str) -> Option<String> {
    // Split on unescaped whitespace, undoing sqlx's `\ ` / `\\` escaping.
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options?.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut path = None;
    let mut iter = words.iter().map(String::as_str);
    while let Some(w) = iter.next() {
        let setting = match w {
            "-c" => iter.next(),
            w => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")),
        };
        if let Some(value) = setting.and_then(|s| s.strip_prefix("search_path=")) {
            path = Some(value);
        }
    }
    let first = path?.split(',').next()?.trim().trim_matches('"');
    match first {
        "" => None,
        "$user" => Some(user.to_owned()),
        schema => Some(schema.to_owned()),
    }
}

fn shared_str(s: &str) -> opentelemetry::StringValue {
    opentelemetry::StringValue::from(std::sync::Arc::<str>::from(s))
}

/// The statement-specific span attributes of one fingerprint, built on its first export and
/// kept with it (so bounded by the fingerprint cache): `db.query.summary`,
/// `pgscope.fingerprint` and the normalized `db.query.text`.
pub(crate) struct FingerprintAttributes {
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    text: KeyValue,
}

impl FingerprintAttributes {
    pub(crate) fn new(fp: &Fingerprint) -> Self {
        let summary = fp.summary();
        // No `db.operation.name` / `db.collection.name`: the PostgreSQL conventions say they
        // SHOULD NOT be extracted from the query text; the summary carries both.
        let mut attributes = Vec::with_capacity(2);
        if !summary.is_empty() {
            attributes.push(KeyValue::new(attr::DB_QUERY_SUMMARY, shared_str(summary)));
        }
        attributes.push(KeyValue::new(attr::PGSCOPE_FINGERPRINT, fp.hex()));
        FingerprintAttributes {
            // Semantic conventions: the span name is `db.query.summary` when there is one, else
            // the system.
            name: if summary.is_empty() {
                Cow::Borrowed("postgresql")
            } else {
                Cow::Owned(summary.to_owned())
            },
            attributes,
            text: KeyValue::new(attr::DB_QUERY_TEXT, shared_str(fp.normalized())),
        }
    }
}

/// Instrumentation scope of pgscope's statement spans.
fn instrumentation_scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| {
        InstrumentationScope::builder("pgscope")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(SCHEMA_URL)
            .build()
    })
}

/// Semantic conventions version pgscope follows.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// The CLIENT span of one statement, built with the OpenTelemetry API from the global tracer
/// provider (as OpenTelemetry instrumentation libraries do), as a child of the current
/// `tracing` span's OpenTelemetry context (or of the current OpenTelemetry context outside
/// any `tracing` span). Non-recording, and nearly free, when no provider is installed or the
/// sampler drops the trace.
pub(crate) struct StatementSpan(Option<BoxedSpan>);

impl StatementSpan {
    /// No span (statement spans turned off for the pool).
    pub(crate) fn none() -> Self {
        StatementSpan(None)
    }

    pub(crate) fn start(server: &[KeyValue], fp: &Fingerprint, raw_sql: Option<&str>) -> Self {
        let current = tracing::Span::current();
        let mut parent = if current.is_none() {
            opentelemetry::Context::current()
        } else {
            current.context()
        };
        if !parent.has_active_span() {
            // The current `tracing` span is not exported (filtered out of the OpenTelemetry
            // layer): the nearest exported one is the active OpenTelemetry context.
            parent = opentelemetry::Context::current();
        }
        let tracer = opentelemetry::global::tracer_with_scope(instrumentation_scope().clone());
        let own = fp.otel_attributes();
        let mut attributes = Vec::with_capacity(server.len() + own.attributes.len() + 3);
        attributes.extend_from_slice(server);
        attributes.extend_from_slice(&own.attributes);
        attributes.push(match raw_sql {
            Some(sql) => KeyValue::new(attr::DB_QUERY_TEXT, sql.to_owned()),
            None => own.text.clone(),
        });
        let span = tracer
            .span_builder(own.name.clone())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        StatementSpan(Some(span))
    }

    /// Ends the span with the row count, and on failure `error.type`,
    /// `db.response.status_code` and status Error.
    fn end(&mut self, rows: u64, error: Option<&(String, Option<String>)>) {
        let Some(mut span) = self.0.take() else {
            return;
        };
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                attr::DB_RESPONSE_RETURNED_ROWS,
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
            if let Some((kind, code)) = error {
                span.set_attribute(KeyValue::new(attr::ERROR_TYPE, kind.clone()));
                if let Some(code) = code {
                    span.set_attribute(KeyValue::new(attr::DB_RESPONSE_STATUS_CODE, code.clone()));
                }
                // The description is the error class, never the server's message (which can
                // quote values).
                span.set_status(Status::error(kind.clone()));
            }
        }
        span.end();
    }
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

/// Whether `span` is exported as an OpenTelemetry span (seen by a `tracing-opentelemetry`
/// layer), so attributes set on it reach the trace.
pub(crate) fn is_exported(span: &tracing::Span) -> bool {
    !span.is_none() && span.context().span().span_context().is_valid()
}

/// Ends a statement's span and records its duration metric.
pub(crate) fn finish_query(
    span: &mut StatementSpan,
    metrics: Option<&PoolMetrics>,
    fp: &Fingerprint,
    elapsed: Duration,
    rows: u64,
    error: Option<(String, Option<String>)>,
) {
    span.end(rows, error.as_ref());
    if let Some(m) = metrics {
        m.record_operation(fp, elapsed, error.as_ref());
    }
}

/// Scope summary on the scope's span, per-detection span events, and scope metrics.
/// `named`: whether the span still needs the `pgscope.scope` attribute (a span pgscope opened
/// got it as a field at creation; a request span the scope used did not).
pub(crate) fn record_scope(span: &tracing::Span, report: &Report, named: bool) {
    if !span.is_disabled() {
        if !named {
            span.set_attribute(attr::PGSCOPE_SCOPE, report.name().to_owned());
        }
        span.set_attribute(attr::PGSCOPE_QUERIES, report.queries() as i64);
        span.set_attribute(
            attr::PGSCOPE_DB_TIME_MS,
            report.db_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            attr::PGSCOPE_CONNECTION_HOLD_MS,
            report.connection_hold_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(
            attr::PGSCOPE_POOL_WAIT_MS,
            report.pool_wait_time().as_secs_f64() * 1000.0,
        );
        span.set_attribute(attr::PGSCOPE_N_PLUS_ONE, report.n_plus_one().len() as i64);
        for item in report.n_plus_one() {
            span.add_event(attr::PGSCOPE_N_PLUS_ONE, n_plus_one_attributes(item));
        }
    }
    metrics::record_scope(report);
}

fn n_plus_one_attributes(item: &NPlusOne) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(attr::PGSCOPE_FINGERPRINT, item.fingerprint().hex()),
        KeyValue::new(
            attr::DB_QUERY_TEXT,
            item.fingerprint().normalized().to_owned(),
        ),
        KeyValue::new(attr::PGSCOPE_COUNT, item.count() as i64),
        KeyValue::new(attr::PGSCOPE_THRESHOLD, i64::from(item.threshold())),
        KeyValue::new(attr::CODE_LOCATION, item.call_site().to_owned()),
        KeyValue::new(attr::PGSCOPE_ROUTE, item.scope().to_owned()),
    ];
    // The semantic-convention code attributes, when the call site is `file:line`.
    if let Some((file, line)) = item.call_site().rsplit_once(':')
        && let Ok(line) = line.parse::<i64>()
    {
        attributes.push(KeyValue::new(attr::CODE_FILE_PATH, file.to_owned()));
        attributes.push(KeyValue::new(attr::CODE_LINE_NUMBER, line));
    }
    attributes
}

pub(crate) fn record_n_plus_one(item: &NPlusOne) {
    metrics::record_n_plus_one(item);
}

pub(crate) fn record_budget_exceeded(route: &str) {
    metrics::record_budget_exceeded(route);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_comes_from_the_search_path_given_at_connect_time() {
        let opts = |o: sqlx::postgres::PgConnectOptions| connect_schema(o.get_options(), "app");
        let base = sqlx::postgres::PgConnectOptions::new;
        assert_eq!(opts(base()), None);
        assert_eq!(
            opts(base().options([("search_path", "tenant_1,public")])),
            Some("tenant_1".to_owned())
        );
        assert_eq!(
            opts(base().options([
                ("statement_timeout", "5s"),
                ("search_path", "\"$user\", public")
            ])),
            Some("app".to_owned())
        );
        assert_eq!(
            opts(base().options([("search_path", "my schema")])),
            Some("my schema".to_owned())
        );
        assert_eq!(
            connect_schema(Some("-csearch_path=a --work_mem=4MB"), "u"),
            Some("a".to_owned())
        );
        assert_eq!(
            connect_schema(Some("--search_path=b"), "u"),
            Some("b".to_owned())
        );
        assert_eq!(connect_schema(Some("-c work_mem=4MB"), "u"), None);
    }
}
