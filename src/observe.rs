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
//! Statements count for the scope of the task that ran them, as with the wrapper; work moved
//! to another task with `.instrument(span)` counts for the scope when the span was created
//! inside it and some layer enables `pgscope` spans (target `pgscope`, INFO).
//!
//! The layer filters for itself (`sqlx::query` at every level), so the application's other
//! layers keep their own filters: give your fmt/JSON layer a
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
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::detect::{Finding, OnFinding, Rules, Settings, Verdict};
use crate::fingerprint::{Fingerprint, FingerprintCache};
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
/// and no error mode (see the [module docs](mod@crate::observe)).
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

    /// Report an N+1 only once its repetitions add up to `min` of database time; see
    /// [`PoolOptions::n_plus_one_min_total`](crate::PoolOptions::n_plus_one_min_total). By
    /// default, off.
    pub fn n_plus_one_min_total(mut self, min: Duration) -> Self {
        self.settings.n_plus_one_min_total = Some(min);
        self
    }

    /// Calls `f` with every N+1 the observer finds; see
    /// [`PoolOptions::on_finding`](crate::PoolOptions::on_finding).
    pub fn on_finding(mut self, f: impl Fn(&Finding<'_>) + Send + Sync + 'static) -> Self {
        self.settings.on_finding = OnFinding::new(f);
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

    /// The layer, with its own filter: `sqlx::query` events at every level, whatever the
    /// subscriber's other layers filter.
    pub fn layer<S>(self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // Statement events only. Scope spans stay as cheap as the application's filters make
        // them: enabling them here would create and enter a span on every poll of every scope
        // (measured: +5-9 % client CPU per statement), for attribution the task-local already
        // gives in all but `.instrument(span)`-into-another-task cases.
        let filter = Targets::new().with_target(SQLX_TARGET, LevelFilter::TRACE);
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
        let mut fields = Fields::new(&shared().cache, self.inner.options.record_raw_sql);
        event.record(&mut fields);
        if let Some(fp) = fields.fingerprint() {
            let raw = fields.raw.as_deref().unwrap_or_default();
            crate::detect::dispatching(|| {
                self.inner
                    .statement(&fp, raw, fields.elapsed(), fields.rows())
            });
        }
    }
}

impl Inner {
    /// One statement that ran: the wrapper's life of a query, after the fact.
    /// `raw`: the statement's text when raw SQL is exported, else empty.
    fn statement(&self, fp: &Fingerprint, raw: &str, elapsed: Duration, rows: u64) {
        let shared = shared();
        let scope = scope::current();
        if scope.is_none() {
            static HINTED: std::sync::Once = std::sync::Once::new();
            // Not from inside this event's dispatch (see `scope::deferring`): from a thread of
            // its own, once per process.
            HINTED.call_once(|| {
                let _ = std::thread::Builder::new()
                    .name("pgscope-hint".into())
                    .spawn(|| crate::detect::hint_unscoped("sqlx (observed)"));
            });
        }
        let owner = scope.as_deref().unwrap_or(&shared.unscoped);
        let rules = Rules::observed(&self.settings, &owner.overrides);
        let run = Execution {
            elapsed,
            rows,
            outcome: Outcome::Ok,
        };
        // Admitted and finished at once: it already ran.
        let verdict = scope::with_state(scope.as_ref(), &shared.unscoped, |state| {
            // Bound values are not in sqlx's event: the parameter set is unknown, so a
            // repetition is an N+1 (unless it is a locking read, a queue claim), never a
            // duplicate.
            let verdict = state.admit(fp, rules, scope::in_allowed_repetition(), |_| {
                crate::report::Params::Unknown
            });
            state.finished(fp, &run);
            state.observed_statement();
            verdict
        });
        if let Verdict::NPlusOne(crossing) = verdict {
            // Never refused: the statement already ran.
            scope::n_plus_one(
                scope.as_ref(),
                &shared.unscoped,
                fp,
                crossing,
                &self.settings,
            );
        }
        let telemetry = self
            .telemetry
            .get_or_init(|| PoolTelemetry::new(&self.options, None, "observed", None));
        let mut span = telemetry.start_ended(fp, raw, elapsed);
        telemetry.finish(&mut span, fp, &run);
    }
}

/// The fields of one `sqlx::query` event. The statement is fingerprinted as it is visited
/// (a cache hit, no copy of the text).
struct Fields<'a> {
    cache: &'a FingerprintCache,
    /// Keep the text (raw SQL export is on).
    keep_raw: bool,
    summary: String,
    statement: Option<Fingerprint>,
    raw: Option<String>,
    rows_affected: u64,
    rows_returned: u64,
    elapsed_secs: Option<f64>,
}

impl<'a> Fields<'a> {
    fn new(cache: &'a FingerprintCache, keep_raw: bool) -> Self {
        Fields {
            cache,
            keep_raw,
            summary: String::new(),
            statement: None,
            raw: None,
            rows_affected: 0,
            rows_returned: 0,
            elapsed_secs: None,
        }
    }

    fn sql(&mut self, sql: &str) -> Option<Fingerprint> {
        let sql = sql.trim();
        if sql.is_empty() {
            return None;
        }
        if self.keep_raw {
            self.raw = Some(sql.to_owned());
        }
        Some(self.cache.get(sql))
    }

    /// The statement: `db.statement` (`"\n\n<SQL>\n"`) when sqlx gave it, else `summary`,
    /// which is then the whole statement (short statements, `COMMIT`).
    fn fingerprint(&mut self) -> Option<Fingerprint> {
        match self.statement.take() {
            Some(fp) => Some(fp),
            None => {
                let summary = std::mem::take(&mut self.summary);
                self.sql(&summary)
            }
        }
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

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => self.statement = self.sql(value),
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
        let cache = FingerprintCache::new(16);
        let mut f = Fields::new(&cache, true);
        f.summary = "SELECT id, name FROM …".into();
        f.statement = f.sql("\n\nSELECT id, name FROM users WHERE id = $1\n");
        let fp = f.fingerprint().expect("statement");
        assert_eq!(fp.normalized(), "SELECT id, name FROM users WHERE id = $1");
        assert_eq!(
            f.raw.as_deref(),
            Some("SELECT id, name FROM users WHERE id = $1")
        );
        let mut short = Fields::new(&cache, false);
        short.summary = "COMMIT".into();
        assert_eq!(short.fingerprint().expect("summary").normalized(), "COMMIT");
        assert_eq!(short.raw, None, "raw text is kept only when exported");
        assert!(Fields::new(&cache, false).fingerprint().is_none());
    }

    #[test]
    fn rows_and_elapsed_follow_the_wrapper() {
        let cache = FingerprintCache::new(16);
        let mut f = Fields::new(&cache, false);
        f.rows_affected = 3;
        f.elapsed_secs = Some(0.25);
        assert_eq!(f.rows(), 3);
        assert_eq!(f.elapsed(), Duration::from_millis(250));
        f.rows_returned = 2;
        assert_eq!(f.rows(), 2);
        f.elapsed_secs = Some(f64::NAN);
        assert_eq!(f.elapsed(), Duration::ZERO);
    }
}
