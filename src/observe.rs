//! Observer mode: a `tracing` layer that turns sqlx's own statement events into pgscope
//! statements, for code that cannot use [`Pool`](crate::Pool): a raw `sqlx::PgPool`,
//! migrations, `PgListener`, advisory locks, libraries that take a `&PgPool`, SeaORM, and
//! applications on sqlx 0.7 or 0.8.
//!
//! Every statement sqlx runs on a PostgreSQL connection ends in one `tracing` event on target
//! `sqlx::query` (fields `summary`, `db.statement`, `rows_affected`, `rows_returned`,
//! `elapsed_secs`), emitted in the task that ran the statement. The layer fingerprints it,
//! attributes it to the current scope (task-local, then span), counts it, checks it for N+1,
//! and exports it like the wrapper does (a CLIENT span back-dated by its duration, the
//! duration metric). Statements run through [`Pool`](crate::Pool) are counted once: the wrapper
//! marks its own statements and the layer skips them.
//!
//! The layer filters for itself (`sqlx::query` at every level, `pgscope` spans at INFO), so
//! the application's other layers keep their own filters: give your fmt/JSON layer a
//! per-layer filter (`.with_filter(EnvFilter::from_default_env())`) and statement events stay
//! out of its output. A *global* filter that hides `sqlx::query` (an `EnvFilter` added with
//! `.with(filter)` at `info`) hides it from this layer too: pgscope warns once, with the fix,
//! when a scope ends while statement events are disabled.
//!
//! What the observer cannot do, because it learns of a statement after it ran: refuse it
//! (query budgets and [`Mode::Error`](crate::Mode::Error) need the wrapper), measure pool wait
//! and connection hold time, or tell failed statements from successful ones.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::detect::{Rules, Settings, Verdict};
use crate::fingerprint::FingerprintCache;
use crate::report::{Execution, Outcome, Report};
use crate::scope::{self, ScopeInner};
use crate::telemetry::{self, PoolTelemetry};
use crate::wrapped;

/// The target of sqlx's statement events (sqlx 0.7, 0.8 and 0.9).
const SQLX_TARGET: &str = "sqlx::query";

/// The `tracing` layer of observer mode with pgscope's default settings. Add it to your
/// subscriber beside your other layers.
///
/// # Examples
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::new("info")))
///     .with(pgscope::observe())
///     .init();
/// # async fn f(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// // Any sqlx pool, any path: counted in the scope.
/// let (_, report) = pgscope::capture(async {
///     sqlx::query("SELECT 1").execute(&pool).await
/// })
/// .await;
/// assert_eq!(report.queries(), 1);
/// # Ok(()) }
/// ```
pub fn observe<S>() -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Observer::new().layer()
}

/// Settings of the observer layer; [`layer`](Observer::layer) builds it.
///
/// Only settings that make sense for statements that already ran are here: no query budget
/// and no error mode (see the [module docs](crate::observe)).
///
/// # Examples
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// let observer = pgscope::Observer::new().n_plus_one_threshold(10).query_spans(false);
/// tracing_subscriber::registry().with(observer.layer()).init();
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Observer {
    settings: Settings,
    telemetry: telemetry::Options,
}

impl Observer {
    /// By default: N+1 threshold 5, `SELECT` only, raw SQL never exported, one span per
    /// statement (with the `otel` feature).
    pub fn new() -> Self {
        Self::default()
    }

    /// A statement seen more than `threshold` times in one scope is an N+1. By default, 5.
    pub fn n_plus_one_threshold(mut self, threshold: u32) -> Self {
        self.settings.n_plus_one_threshold = threshold;
        self
    }

    /// Also check statements other than `SELECT` for N+1. By default, false.
    pub fn n_plus_one_includes_writes(mut self, include: bool) -> Self {
        self.settings.n_plus_one_writes = include;
        self
    }

    /// Export the raw SQL, literal values included, in `db.query.text`. **PII risk.** By
    /// default, false. Only matters with the `otel` feature.
    pub fn record_raw_sql(mut self, enabled: bool) -> Self {
        self.telemetry.record_raw_sql = enabled;
        self
    }

    /// One OpenTelemetry CLIENT span per statement. By default, true. Only matters with the
    /// `otel` feature.
    pub fn query_spans(mut self, enabled: bool) -> Self {
        self.telemetry.statement_spans = enabled;
        self
    }

    /// The layer, with its own filter: `sqlx::query` events at every level and pgscope's
    /// scope spans, whatever the subscriber's other layers filter.
    pub fn layer<S>(self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let filter = Targets::new()
            .with_target(SQLX_TARGET, LevelFilter::TRACE)
            .with_target("pgscope", LevelFilter::INFO);
        ObserverLayer {
            inner: Arc::new(Inner {
                settings: self.settings,
                options: self.telemetry,
                telemetry: OnceLock::new(),
            }),
        }
        .with_filter(filter)
    }

    /// Everything the observer saw outside any scope (or after its scope ended), since the
    /// process started.
    pub fn unscoped_report() -> Report {
        shared().unscoped.snapshot()
    }
}

/// The observer's process-wide state: statements outside any scope, fingerprints by text.
struct Shared {
    cache: FingerprintCache,
    unscoped: Arc<ScopeInner>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        // As a pool's: real applications have hundreds to a few thousand statement texts.
        cache: FingerprintCache::new(10_000),
        unscoped: ScopeInner::unscoped(),
    })
}

struct Inner {
    settings: Settings,
    options: telemetry::Options,
    /// Built on the first statement, after the application installed its OpenTelemetry
    /// providers.
    telemetry: OnceLock<PoolTelemetry>,
}

struct ObserverLayer {
    inner: Arc<Inner>,
}

impl<S: Subscriber> Layer<S> for ObserverLayer {
    fn on_layer(&mut self, _subscriber: &mut S) {
        wrapped::set_observer_installed();
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != SQLX_TARGET || wrapped::claim_event() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(sql) = fields.sql() {
            scope::deferring(|| self.inner.statement(sql, fields.elapsed(), fields.rows()));
        }
    }
}

impl Inner {
    /// One statement that ran: the wrapper's life of a query, after the fact.
    fn statement(&self, sql: &str, elapsed: Duration, rows: u64) {
        let shared = shared();
        let fp = shared.cache.get(sql);
        let scope = scope::current();
        let owner = scope.as_deref().unwrap_or(&shared.unscoped);
        let rules = Rules::observed(&self.settings, &owner.overrides);
        let verdict = scope::with_state(scope.as_ref(), &shared.unscoped, |state| {
            state.admit(&fp, rules, scope::in_allowed_repetition())
        });
        if let Verdict::NPlusOne(crossing) = verdict {
            // Never refused: the statement already ran.
            scope::n_plus_one(scope.as_ref(), &shared.unscoped, &fp, crossing);
        }
        let run = Execution {
            elapsed,
            rows,
            outcome: Outcome::Ok,
        };
        scope::with_state(scope.as_ref(), &shared.unscoped, |state| {
            state.finished(&fp, &run)
        });
        let telemetry = self
            .telemetry
            .get_or_init(|| PoolTelemetry::new(&self.options, None, "observed", None));
        let mut span = telemetry.start(&fp, sql, SystemTime::now().checked_sub(elapsed));
        telemetry.finish(&mut span, &fp, &run);
    }
}

/// The fields of one `sqlx::query` event.
#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
    rows_affected: u64,
    rows_returned: u64,
    elapsed_secs: Option<f64>,
}

impl Fields {
    /// The statement: `db.statement` (`"\n\n<SQL>\n"`) when sqlx gave it, else `summary`,
    /// which is then the whole statement (short statements, `COMMIT`).
    fn sql(&self) -> Option<&str> {
        let statement = self.statement.trim();
        let sql = if statement.is_empty() {
            self.summary.trim()
        } else {
            statement
        };
        (!sql.is_empty()).then_some(sql)
    }

    fn elapsed(&self) -> Duration {
        self.elapsed_secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Duration::ZERO, Duration::from_secs_f64)
    }

    /// Rows returned, or affected for statements that return none (as the wrapper counts).
    fn rows(&self) -> u64 {
        if self.rows_returned > 0 {
            self.rows_returned
        } else {
            self.rows_affected
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%`-formatted strings arrive here; their `Debug` is their `Display`.
        match field.name() {
            "summary" | "db.statement" => self.record_str(field, &format!("{value:?}")),
            _ => {}
        }
    }
}

/// Why [`verify_observed`] found no statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotObserved {
    /// No observer layer is installed in the global subscriber.
    #[error(
        "no pgscope observer layer is installed: add `.with(pgscope::observe())` to your subscriber"
    )]
    NotInstalled,
    /// A filter hides `sqlx::query` events from every layer.
    #[error(
        "a global filter hides `sqlx::query` events from pgscope's observer: let them through \
         (e.g. EnvFilter `info,sqlx::query=debug`) or give your layers per-layer filters \
         (`.with_filter(..)`)"
    )]
    Filtered,
    /// The probe ran, but sqlx emitted no event for it.
    #[error(
        "sqlx logged no statement for the probe: statement logging is off for this connection \
         (`ConnectOptions::log_statements(LevelFilter::Off)`, SeaORM `sqlx_logging(false)`); \
         turn it back on (any level) for the observer to see statements"
    )]
    NotLogged,
}

/// Checks, at startup or in a test, that the observer sees the statements of a pool: runs
/// `probe` (one statement on it, e.g. `SELECT 1`) in a scope and returns its output, or why
/// the observer saw nothing. The reason is also logged once as a WARN (target
/// `pgscope::observe`).
///
/// # Examples
/// ```no_run
/// # async fn f(pool: sqlx::PgPool) {
/// if let Err(why) = pgscope::verify_observed(sqlx::query("SELECT 1").execute(&pool)).await {
///     eprintln!("pgscope cannot see this pool's statements: {why}");
/// }
/// # }
/// ```
pub async fn verify_observed<F: Future>(probe: F) -> Result<F::Output, NotObserved> {
    let (output, report) = scope::Scope::new("pgscope::verify_observed")
        .capture(probe)
        .await;
    if report.queries() > 0 {
        return Ok(output);
    }
    let why = if !wrapped::observer_installed() {
        NotObserved::NotInstalled
    } else if !wrapped::statement_events_visible() {
        NotObserved::Filtered
    } else {
        NotObserved::NotLogged
    };
    tracing::warn!(target: "pgscope::observe", "{why}");
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_db_statement_when_given_else_the_summary() {
        let mut f = Fields {
            summary: "SELECT id, name FROM …".into(),
            statement: "\n\nSELECT id, name FROM users WHERE id = $1\n".into(),
            ..Fields::default()
        };
        assert_eq!(f.sql(), Some("SELECT id, name FROM users WHERE id = $1"));
        f.statement.clear();
        f.summary = "COMMIT".into();
        assert_eq!(f.sql(), Some("COMMIT"));
        f.summary.clear();
        assert_eq!(f.sql(), None);
    }

    #[test]
    fn rows_and_elapsed_follow_the_wrapper() {
        let f = Fields {
            rows_affected: 3,
            elapsed_secs: Some(0.25),
            ..Fields::default()
        };
        assert_eq!(f.rows(), 3);
        assert_eq!(f.elapsed(), Duration::from_millis(250));
        let bad = Fields {
            elapsed_secs: Some(f64::NAN),
            ..Fields::default()
        };
        assert_eq!(bad.elapsed(), Duration::ZERO);
    }
}
