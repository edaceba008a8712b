//! Scopes: the unit of attribution. A scope is one request, one task or one test.
//!
//! The current scope travels in a Tokio task-local, so it costs one pointer copy to find on every
//! query. Work that leaves the task is covered two ways: [`spawn`] carries the scope into the
//! new task, and a `tracing` span created inside a scope remembers it, so a future
//! `.instrument(span)`-ed into any task still counts for the request that created the span.

mod capture;
mod finding;
mod span;
mod state;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;

use crate::detect::{Mode, Overrides};
use crate::report::Report;

pub use self::capture::Capture;
pub(crate) use self::finding::n_plus_one;
pub(crate) use self::state::{CURRENT, ScopeInner, State, current, with_state};

tokio::task_local! {
    static REPETITION: ();
}

/// Whether the caller runs inside [`allow_repetition`].
pub(crate) fn in_allowed_repetition() -> bool {
    REPETITION.try_with(|_| ()).is_ok()
}

/// Marks deliberate repetition: statements run inside `fut` still count in the scope's report,
/// but are never reported as N+1 (a loop that must write row by row, a paginated export).
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool, rows: Vec<i64>) -> Result<(), sqlx::Error> {
/// pgscope::allow_repetition(async {
///     for id in &rows {
///         sqlx::query("SELECT pg_notify('row', $1::text)").bind(id).execute(&pool).await?;
///     }
///     Ok::<_, sqlx::Error>(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn allow_repetition<F: Future>(fut: F) -> F::Output {
    REPETITION.scope((), fut).await
}

/// A scope to run a future in, with optional per-scope settings.
///
/// [`capture`] and [`capture_named`] cover the common case; use `Scope` to override the pool's
/// detection settings for one scope.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let (rows, report) = pgscope::Scope::new("GET /api/feed")
///     .query_budget(50)
///     .n_plus_one_threshold(10)
///     .capture(async { sqlx::query("SELECT 1").fetch_all(&pool).await })
///     .await;
/// rows?;
/// report.assert_queries(1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Scope {
    name: Cow<'static, str>,
    overrides: Overrides,
    use_current_span: bool,
    on_report: Option<OnReport>,
}

/// A hook called with a scope's report when it ends.
pub(crate) type OnReport = Arc<dyn Fn(&Report) + Send + Sync>;

/// `next` after the hooks already in `hooks`: every `on_report` call adds a hook, and all run,
/// in the order they were added.
pub(crate) fn add_hook(
    hooks: Option<OnReport>,
    next: impl Fn(&Report) + Send + Sync + 'static,
) -> OnReport {
    match hooks {
        None => Arc::new(next),
        Some(first) => Arc::new(move |report: &Report| {
            first(report);
            next(report);
        }),
    }
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.name)
            .field("overrides", &self.overrides)
            .field("use_current_span", &self.use_current_span)
            .field("on_report", &self.on_report.is_some())
            .finish()
    }
}

impl Scope {
    /// A scope with this name (shown in reports and warnings, e.g. `GET /api/feed`).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Scope {
            name: name.into(),
            overrides: Overrides::default(),
            use_current_span: false,
            on_report: None,
        }
    }

    /// Overrides the pool's N+1 threshold for this scope.
    pub fn n_plus_one_threshold(mut self, threshold: u32) -> Self {
        self.overrides.n_plus_one_threshold = Some(threshold);
        self
    }

    /// Overrides the pool's N+1 mode for this scope.
    pub fn n_plus_one_mode(mut self, mode: Mode) -> Self {
        self.overrides.n_plus_one_mode = Some(mode);
        self
    }

    /// Overrides the pool's query budget for this scope.
    pub fn query_budget(mut self, budget: u32) -> Self {
        self.overrides.query_budget = Some(budget);
        self
    }

    /// Accepts a known repetition: statements with the same fingerprint as `sql` are never
    /// reported as N+1 in this scope.
    pub fn allow_n_plus_one(mut self, sql: &str) -> Self {
        self.overrides
            .allow
            .fingerprints
            .push(crate::fingerprint(sql).id());
        self
    }

    /// Accepts repetition from one place in the code: N+1s whose call site contains `site`
    /// (e.g. `"src/report.rs"` or `"src/report.rs:120"`) are not reported in this scope.
    pub fn allow_call_site(mut self, site: impl Into<String>) -> Self {
        self.overrides.allow.call_sites.push(site.into());
        self
    }

    /// Uses the current `tracing` span (typically the request span opened by tower-http's
    /// `TraceLayer`) as the scope's span instead of opening a `pgscope.scope` child span: the
    /// summary attributes and N+1 events land on the request span, statement spans become its
    /// children, and no second span is entered on every poll.
    /// [`ScopeLayer`](crate::http::ScopeLayer) does this. Falls back to a new `pgscope.scope`
    /// span when there is no current span or a scope has already used it (a span carries one
    /// scope's summary), so under a long-lived span (a worker loop's) only the first scope lands
    /// on it. With the `otel` feature, also when the span is not exported to OpenTelemetry.
    ///
    /// The scope adopts the span as its own: work instrumented with it, or with spans created
    /// under it, counts for the scope, as for spans created inside any scope (a scope started
    /// there in another task is nested in this one).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pgscope::Pool) {
    /// use tracing::Instrument;
    /// let request = tracing::info_span!("GET /api/feed");
    /// let (_rows, report) = pgscope::Scope::new("GET /api/feed")
    ///     .use_current_span()
    ///     .capture(async { sqlx::query("SELECT 1").fetch_all(&pool).await })
    ///     .instrument(request) // the span the scope uses: entered around the whole future
    ///     .await;
    /// report.assert_queries(1);
    /// # }
    /// ```
    pub fn use_current_span(mut self) -> Self {
        self.use_current_span = true;
        self
    }

    /// Calls `f` with the scope's report when it ends (also when its future is dropped
    /// unfinished): for middleware that logs, counts or records reports
    /// ([`Recorder::hook`](crate::Recorder::hook)). Called again, it adds a hook: every hook
    /// runs, in the order added.
    pub fn on_report(mut self, f: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.on_report = Some(add_hook(self.on_report.take(), f));
        self
    }

    /// [`on_report`](Self::on_report) with a hook already shared.
    #[cfg_attr(not(any(feature = "tower", feature = "actix")), allow(dead_code))]
    pub(crate) fn on_report_shared(mut self, f: Option<OnReport>) -> Self {
        self.on_report = f;
        self
    }

    /// Runs `fut` inside this scope and returns its output with the scope's [`Report`].
    ///
    /// Dropping the returned future cancels the work; connections it held go back to the pool.
    pub fn capture<F: Future>(self, fut: F) -> Capture<F> {
        Capture::new(
            self.name,
            self.overrides,
            self.use_current_span,
            self.on_report,
            fut,
        )
    }
}

/// Runs `fut` in a new anonymous scope and returns its output with the scope's [`Report`].
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// let (_, report) = pgscope::capture(async {
///     sqlx::query("SELECT 1").execute(&pool).await
/// })
/// .await;
/// assert_eq!(report.queries(), 1);
/// # }
/// ```
pub fn capture<F: Future>(fut: F) -> Capture<F> {
    Scope::new("anonymous").capture(fut)
}

/// Runs `fut` in a new scope called `name` (a route such as `GET /api/feed`, a job, a test).
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// let (_, report) = pgscope::capture_named("job: send digests", async {
///     sqlx::query("SELECT id FROM users WHERE wants_digest").fetch_all(&pool).await
/// })
/// .await;
/// assert_eq!(report.name(), "job: send digests");
/// # }
/// ```
pub fn capture_named<F: Future>(name: impl Into<Cow<'static, str>>, fut: F) -> Capture<F> {
    Scope::new(name).capture(fut)
}

/// `tokio::spawn` that keeps the current scope: queries in the new task count for it.
///
/// Outside any scope it is exactly `tokio::spawn`.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// let (_, report) = pgscope::capture(async {
///     let p = pool.clone();
///     let audit = pgscope::spawn(async move { sqlx::query("SELECT 1").execute(&p).await });
///     let _ = audit.await;
/// })
/// .await;
/// report.assert_queries(1); // the spawned task's query counts here
/// # }
/// ```
///
/// # Panics
/// Like `tokio::spawn`, when called outside a Tokio runtime.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match CURRENT.try_with(Arc::clone) {
        Ok(scope) => {
            let span = scope.span.clone();
            tokio::spawn(CURRENT.scope(scope, fut).instrument(span))
        }
        Err(_) => tokio::spawn(fut),
    }
}

/// The report of the scope the caller runs in so far, or `None` outside any scope.
///
/// # Examples
/// ```no_run
/// # async fn handler(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// sqlx::query("SELECT 1").execute(&pool).await?;
/// if let Some(report) = pgscope::current_report() {
///     tracing::debug!(queries = report.queries(), "so far in {}", report.name());
/// }
/// # Ok(()) }
/// ```
pub fn current_report() -> Option<Report> {
    current().map(|s| s.snapshot())
}
