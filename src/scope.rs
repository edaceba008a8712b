//! Scopes: the unit of attribution. A scope is one request, one task or one test.
//!
//! The current scope travels in a Tokio task-local, so it costs one pointer copy to find on every
//! query. Work that leaves the task is covered two ways: [`spawn`] carries the scope into the
//! new task, and a `tracing` span created inside a scope remembers it, so a future
//! `.instrument(span)`-ed into any task still counts for the request that created the span.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::Instrument;

use crate::detect::{Allowlist, Mode, NPlusOne, NestedAcquire};
use crate::fingerprint::Fingerprint;
use crate::report::{FingerprintStats, Report};

/// Per-scope fingerprint rows are capped so a scope that runs thousands of distinct statements
/// (a migration, a fuzzer) cannot grow without bound; the rest is folded into one row.
pub(crate) const MAX_ROWS_PER_SCOPE: usize = 512;

tokio::task_local! {
    static CURRENT: Arc<ScopeInner>;
    static BATCH: ();
}

/// Whether the caller runs inside [`batch`].
pub(crate) fn in_batch() -> bool {
    BATCH.try_with(|_| ()).is_ok()
}

/// Marks deliberate repetition: statements run inside `fut` still count in the scope's report,
/// but are never reported as N+1 (a loop that must write row by row, a paginated export).
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool, rows: Vec<i64>) -> Result<(), sqlx::Error> {
/// pgscope::batch(async {
///     for id in &rows {
///         sqlx::query("SELECT pg_notify('row', $1::text)").bind(id).execute(&pool).await?;
///     }
///     Ok::<_, sqlx::Error>(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn batch<F: Future>(fut: F) -> F::Output {
    BATCH.scope((), fut).await
}

/// Settings a scope may override; `None` means "use the pool's".
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) n_plus_one_threshold: Option<u32>,
    pub(crate) n_plus_one_mode: Option<Mode>,
    pub(crate) query_budget: Option<u32>,
    pub(crate) allow: Allowlist,
    /// Use the current span as the scope's span when possible.
    pub(crate) use_current_span: bool,
}

pub(crate) struct ScopeInner {
    pub(crate) name: Cow<'static, str>,
    pub(crate) overrides: Overrides,
    parent: Option<Arc<ScopeInner>>,
    /// The scope's span: the span current when the scope started (a request span), or a new
    /// `pgscope.scope` span when there was none or it already belonged to a scope. Attribution
    /// never looks at its fields; it carries the scope so spans created inside the scope have
    /// an ancestor that leads back to it (see [`current`]), and receives the scope's summary.
    pub(crate) span: tracing::Span,
    /// Whether `span` was made for this scope (and must be entered around its future).
    owns_span: bool,
    pub(crate) state: Mutex<State>,
}

/// Everything a scope accumulates. Behind one short-held lock per scope: queries of one request
/// contend only with each other, never with other requests.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) closed: bool,
    pub(crate) totals: Totals,
    pub(crate) rows: HashMap<u64, Row>,
    pub(crate) overflow: Option<Row>,
    pub(crate) n_plus_one: Vec<NPlusOne>,
    pub(crate) nested: Vec<NestedAcquire>,
    /// Connections this scope holds right now, with where each was acquired.
    pub(crate) held: Vec<(u64, &'static Location<'static>)>,
    /// Pools this scope acquired from: told about its hold time when it ends.
    pub(crate) pools: Vec<Arc<crate::pool::Shared>>,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Totals {
    pub(crate) queries: u64,
    pub(crate) failed: u64,
    pub(crate) rejected: u64,
    pub(crate) transaction_statements: u64,
    pub(crate) rows: u64,
    pub(crate) db_time: Duration,
    pub(crate) hold_time: Duration,
    pub(crate) pool_wait: Duration,
    pub(crate) acquires: u64,
    pub(crate) max_held: u64,
}

#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) fingerprint: Option<Fingerprint>,
    pub(crate) count: u64,
    pub(crate) failed: u64,
    pub(crate) rows: u64,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
}

impl Row {
    fn new(fingerprint: Option<Fingerprint>) -> Self {
        Row {
            fingerprint,
            count: 0,
            failed: 0,
            rows: 0,
            total: Duration::ZERO,
            max: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: &Row) {
        self.count += other.count;
        self.failed += other.failed;
        self.rows += other.rows;
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

impl State {
    /// The row for `fp`, created on first use; past the cap, the shared overflow row.
    pub(crate) fn row(&mut self, fp: &Fingerprint) -> &mut Row {
        if !self.rows.contains_key(&fp.id()) && self.rows.len() >= MAX_ROWS_PER_SCOPE {
            return self.overflow.get_or_insert_with(|| Row::new(None));
        }
        self.rows
            .entry(fp.id())
            .or_insert_with(|| Row::new(Some(fp.clone())))
    }

    fn merge_from(&mut self, child: &State) {
        let t = &mut self.totals;
        let c = &child.totals;
        t.queries += c.queries;
        t.failed += c.failed;
        t.rejected += c.rejected;
        t.transaction_statements += c.transaction_statements;
        t.rows += c.rows;
        t.db_time += c.db_time;
        t.hold_time += c.hold_time;
        t.pool_wait += c.pool_wait;
        t.acquires += c.acquires;
        t.max_held = t.max_held.max(c.max_held);
        for row in child.rows.values() {
            match &row.fingerprint {
                Some(fp) => self.row(fp).merge(row),
                None => self
                    .overflow
                    .get_or_insert_with(|| Row::new(None))
                    .merge(row),
            }
        }
        if let Some(row) = &child.overflow {
            self.overflow
                .get_or_insert_with(|| Row::new(None))
                .merge(row);
        }
        self.n_plus_one.extend(child.n_plus_one.iter().cloned());
        self.nested.extend(child.nested.iter().cloned());
        for pool in &child.pools {
            if !self.pools.iter().any(|p| Arc::ptr_eq(p, pool)) {
                self.pools.push(Arc::clone(pool));
            }
        }
    }
}

impl ScopeInner {
    pub(crate) fn new(
        name: Cow<'static, str>,
        overrides: Overrides,
        parent: Option<Arc<ScopeInner>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let claimed = if overrides.use_current_span {
                claim_current_span(weak)
            } else {
                None
            };
            let (span, owns_span) = match claimed {
                Some(span) => (span, false),
                None => {
                    let span = tracing::info_span!(
                        target: "pgscope", "pgscope.scope", pgscope.scope = %name
                    );
                    // A new span: always free to carry the scope.
                    claim(&span, weak);
                    (span, true)
                }
            };
            ScopeInner {
                name,
                overrides,
                parent,
                span,
                owns_span,
                state: Mutex::new(State::default()),
            }
        })
    }

    /// The pool's catch-all scope for statements outside any scope; it never closes.
    pub(crate) fn unscoped() -> Arc<Self> {
        Arc::new(ScopeInner {
            name: Cow::Borrowed("unscoped"),
            overrides: Overrides::default(),
            parent: None,
            span: tracing::Span::none(),
            owns_span: false,
            state: Mutex::new(State::default()),
        })
    }

    /// The report so far.
    pub(crate) fn snapshot(&self) -> Report {
        let state = self.state.lock();
        build_report(&self.name, &state)
    }

    /// Closes the scope and returns its final report; later records go to the unscoped report.
    /// A nested scope's totals are added to its parent's.
    fn close(&self) -> Report {
        let mut state = self.state.lock();
        state.closed = true;
        let report = build_report(&self.name, &state);
        let pools = std::mem::take(&mut state.pools);
        match &self.parent {
            Some(parent) => {
                let mut p = parent.state.lock();
                if !p.closed {
                    state.pools = pools;
                    p.merge_from(&state);
                }
            }
            None => {
                drop(state);
                // Top-level scopes are requests: feed the pools' starvation diagnosis.
                for pool in pools {
                    pool.health
                        .record_request(&self.name, report.connection_hold_time());
                }
            }
        }
        report
    }
}

fn build_report(name: &str, state: &State) -> Report {
    let mut fingerprints: Vec<FingerprintStats> = state
        .rows
        .values()
        .chain(state.overflow.iter())
        .map(FingerprintStats::from_row)
        .collect();
    fingerprints.sort_by(|a, b| {
        b.count()
            .cmp(&a.count())
            .then(b.total_time().cmp(&a.total_time()))
    });
    let mut n_plus_one = state.n_plus_one.clone();
    for item in &mut n_plus_one {
        if let Some(row) = state.rows.get(&item.fingerprint().id()) {
            item.count = row.count;
        }
    }
    Report::new(
        name.to_owned(),
        state.totals,
        fingerprints,
        n_plus_one,
        state.nested.clone(),
    )
}

/// The scope queries started here count for: the task-local one, else the nearest enclosing
/// `tracing` span that was created inside a scope.
pub(crate) fn current() -> Option<Arc<ScopeInner>> {
    CURRENT.try_with(Arc::clone).ok().or_else(from_span)
}

/// A newtype so the span extension cannot collide with anyone else's `Arc<…>`.
struct SpanScope(std::sync::Weak<ScopeInner>);

/// Makes `span` carry `scope` (checked and set under the span's extension lock), unless a
/// scope has used it before: a span carries at most one scope's summary. False also when the
/// span is not in a `Registry` (nothing could find the scope through it).
fn claim(span: &tracing::Span, scope: &std::sync::Weak<ScopeInner>) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan;
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        let mut ext = data.extensions_mut();
        if ext.get_mut::<SpanScope>().is_some() {
            return Some(false);
        }
        ext.insert(SpanScope(scope.clone()));
        Some(true)
    })
    .flatten()
        == Some(true)
}

/// The current span, when the scope may use it: reusing the request span puts the scope's
/// summary on it (where people look in Jaeger) and spares a second span entered on every poll.
fn claim_current_span(scope: &std::sync::Weak<ScopeInner>) -> Option<tracing::Span> {
    let span = tracing::Span::current();
    // A span the OpenTelemetry layer filters out (a DEBUG request span logged but not
    // exported) cannot carry the summary to the trace: open a `pgscope.scope` span instead.
    #[cfg(feature = "otel")]
    if !crate::otel::is_exported(&span) {
        return None;
    }
    claim(&span, scope).then_some(span)
}

/// Takes this scope off its span, leaving a marker that the span has had its scope: statements
/// under the span after the scope ends no longer count for it, and no later scope reuses it.
fn detach_from_span(scope: &Arc<ScopeInner>) {
    scope.span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan;
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        if let Some(span) = registry.span(id) {
            let mut ext = span.extensions_mut();
            if ext
                .get_mut::<SpanScope>()
                .is_some_and(|w| std::ptr::eq(w.0.as_ptr(), Arc::as_ptr(scope)))
            {
                ext.replace(SpanScope(std::sync::Weak::new()));
            }
        }
    });
}

fn from_span() -> Option<Arc<ScopeInner>> {
    let span = tracing::Span::current();
    span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan;
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| {
            s.extensions()
                .get::<SpanScope>()
                .and_then(|w| w.0.upgrade())
        })
    })
    .flatten()
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
#[derive(Debug, Clone)]
#[must_use]
pub struct Scope {
    name: Cow<'static, str>,
    overrides: Overrides,
}

impl Scope {
    /// A scope with this name (shown in reports and warnings, e.g. `GET /api/feed`).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Scope {
            name: name.into(),
            overrides: Overrides::default(),
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
        self.overrides.use_current_span = true;
        self
    }

    /// Runs `fut` inside this scope and returns its output with the scope's [`Report`].
    ///
    /// Dropping the returned future cancels the work; connections it held go back to the pool.
    pub async fn capture<F: Future>(self, fut: F) -> (F::Output, Report) {
        let scope = ScopeInner::new(self.name, self.overrides, current());
        let fut = CURRENT.scope(Arc::clone(&scope), fut);
        let output = if scope.owns_span {
            fut.instrument(scope.span.clone()).await
        } else {
            // The span is the caller's current span: already entered around this future.
            fut.await
        };
        let report = scope.close();
        detach_from_span(&scope);
        #[cfg(feature = "otel")]
        crate::otel::record_scope(&scope.span, &report, scope.owns_span);
        (output, report)
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
pub async fn capture<F: Future>(fut: F) -> (F::Output, Report) {
    Scope::new("anonymous").capture(fut).await
}

/// Runs `fut` in a new scope called `name` (a route such as `GET /api/feed`, a job, a test).
pub async fn capture_named<F: Future>(
    name: impl Into<Cow<'static, str>>,
    fut: F,
) -> (F::Output, Report) {
    Scope::new(name).capture(fut).await
}

/// `tokio::spawn` that keeps the current scope: queries in the new task count for it.
///
/// Outside any scope it is exactly `tokio::spawn`.
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
pub fn current_report() -> Option<Report> {
    current().map(|s| s.snapshot())
}
