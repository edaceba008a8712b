//! Names from the OpenTelemetry semantic conventions (and pgscope's own), as constants, and
//! how a failed statement maps onto `error.type`.

use crate::report::Outcome;

/// Semantic conventions version pgscope follows.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

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
    /// Counter of duplicates (a statement repeated with the same parameters), by
    /// `pgscope.route` and `pgscope.fingerprint`.
    pub const PGSCOPE_DUPLICATE_DETECTED: &str = "pgscope.duplicate.detected";
    /// Counter of connections held idle past the threshold (one per scope and pair of call
    /// sites), by `pgscope.route`.
    pub const PGSCOPE_HELD_IDLE_DETECTED: &str = "pgscope.held_idle.detected";
    /// Histogram (s) of the part of a held connection's use time with no statement running
    /// (explicitly held connections: `acquire`, `begin`).
    pub const PGSCOPE_CONNECTION_IDLE_TIME: &str = "pgscope.connection.idle_time";
    /// Counter of statements refused by a query budget, by `pgscope.route`.
    pub const PGSCOPE_QUERY_BUDGET_EXCEEDED: &str = "pgscope.query_budget.exceeded";
    /// Counter of plan changes (a statement's plan shape differs across size classes or over
    /// time), by `pgscope.fingerprint`.
    pub const PGSCOPE_PLAN_CHANGES: &str = "pgscope.plan.changes";
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
    /// Span event of a plan change (`pgscope.plan.from`, `pgscope.plan.to`, the size classes,
    /// the statement and its call site).
    pub const PGSCOPE_PLAN_CHANGE: &str = "pgscope.plan_change";
    /// Statements a compressed statement span stands for (consecutive statements of one
    /// scope with the same fingerprint under the same parent).
    pub const PGSCOPE_COMPOSITE_COUNT: &str = "pgscope.composite.count";
    /// The summed duration of the statements of a compressed span, in milliseconds (the span
    /// itself runs from the first one's start to the last one's end).
    pub const PGSCOPE_COMPOSITE_DURATION_SUM_MS: &str = "pgscope.composite.duration_sum_ms";
    /// The plan shape before a change.
    pub const PGSCOPE_PLAN_FROM: &str = "pgscope.plan.from";
    /// The plan shape after a change.
    pub const PGSCOPE_PLAN_TO: &str = "pgscope.plan.to";
    /// The size class of the plan before a change.
    pub const PGSCOPE_PLAN_FROM_SIZE: &str = "pgscope.plan.from_size";
    /// The size class of the plan after a change.
    pub const PGSCOPE_PLAN_TO_SIZE: &str = "pgscope.plan.to_size";
    /// N+1 patterns found in the scope (on the span); also the name of the span event per
    /// pattern.
    pub const PGSCOPE_N_PLUS_ONE: &str = "pgscope.n_plus_one";
    /// Duplicates found in the scope (on the span); also the name of the span event per
    /// duplicate.
    pub const PGSCOPE_DUPLICATE: &str = "pgscope.duplicate";
    /// The batched statement that replaces an N+1, on its event.
    pub const PGSCOPE_SUGGESTION: &str = "pgscope.suggestion";
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

/// `error.type` and, for database errors, `db.response.status_code` (the SQLSTATE).
pub(crate) type ErrorAttributes = (String, Option<String>);

/// The error attributes of a statement that did not succeed.
pub(crate) fn error_attributes(outcome: Outcome<'_>) -> Option<ErrorAttributes> {
    match outcome {
        Outcome::Ok => None,
        Outcome::Cancelled => Some(("cancelled".to_owned(), None)),
        Outcome::Failed(class) => Some((class.kind.to_string(), class.sqlstate.clone())),
    }
}
