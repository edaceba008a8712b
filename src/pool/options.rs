//! [`PoolOptions`]: sqlx's `PgPoolOptions` plus pgscope's own settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::Pool;
use super::inner::PoolInner;
use crate::detect::{Finding, Mode, OnFinding, Settings};
use crate::plan::{ExplainOptions, Planner};
use crate::telemetry;

/// Configuration for a [`Pool`], mirroring `sqlx::postgres::PgPoolOptions` plus pgscope's own
/// settings.
///
/// # Examples
/// ```no_run
/// # async fn f() -> Result<(), sqlx::Error> {
/// use std::time::Duration;
/// let pool = pgscope::PoolOptions::new()
///     .max_connections(5)
///     .acquire_timeout(Duration::from_secs(2))
///     .n_plus_one_threshold(5)
///     .query_budget(100)
///     .connect("postgres://postgres@127.0.0.1/test")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct PoolOptions {
    /// sqlx's own settings: the one copy of them (getters read it back).
    sqlx: PgPoolOptions,
    cache_capacity: usize,
    settings: Settings,
    telemetry: telemetry::Options,
    name: Option<String>,
    starvation_window: Duration,
    explain: Option<ExplainOptions>,
    tags: Option<crate::tags::Tags>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolOptions")
            .field("max_connections", &self.get_max_connections())
            .field("acquire_timeout", &self.get_acquire_timeout())
            .field("fingerprint_cache_capacity", &self.cache_capacity)
            .field("settings", &self.settings)
            .field("telemetry", &self.telemetry)
            .field("name", &self.name)
            .field("explain", &self.explain)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl PoolOptions {
    /// Defaults: sqlx's pool defaults (10 connections, 30 s acquire timeout), a fingerprint
    /// cache of 10 000 statements, N+1 threshold 5 in [`Mode::Warn`], no query budget.
    pub fn new() -> Self {
        PoolOptions {
            // Same as sqlx so swapping the type changes no behaviour.
            sqlx: PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(30)),
            // Real applications have hundreds to a few thousand distinct statement texts.
            cache_capacity: 10_000,
            settings: Settings::default(),
            telemetry: telemetry::Options::default(),
            name: None,
            // "Waiters > 0 for more than a few seconds" is the classic sign of an N+1-bound pool.
            starvation_window: Duration::from_secs(5),
            explain: None,
            tags: None,
        }
    }

    /// Maximum connections. By default, 10.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.sqlx = self.sqlx.max_connections(max);
        self
    }

    /// The configured maximum connections.
    pub fn get_max_connections(&self) -> u32 {
        self.sqlx.get_max_connections()
    }

    /// Connections kept open even when idle. By default, 0.
    pub fn min_connections(mut self, min: u32) -> Self {
        self.sqlx = self.sqlx.min_connections(min);
        self
    }

    /// The configured minimum connections.
    pub fn get_min_connections(&self) -> u32 {
        self.sqlx.get_min_connections()
    }

    /// How long `acquire` waits before failing with `sqlx::Error::PoolTimedOut` (counted in
    /// [`PoolStats::acquire_timeouts`](crate::PoolStats::acquire_timeouts)). By default, 30 s.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.sqlx = self.sqlx.acquire_timeout(timeout);
        self
    }

    /// The configured acquire timeout.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.sqlx.get_acquire_timeout()
    }

    /// Close connections idle for longer than this. By default, sqlx's (10 minutes).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.sqlx = self.sqlx.idle_timeout(timeout);
        self
    }

    /// The configured idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.sqlx.get_idle_timeout()
    }

    /// Close connections older than this. By default, sqlx's (30 minutes).
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.sqlx = self.sqlx.max_lifetime(lifetime);
        self
    }

    /// The configured maximum lifetime.
    pub fn get_max_lifetime(&self) -> Option<Duration> {
        self.sqlx.get_max_lifetime()
    }

    /// Ping connections before handing them out. By default, true (as in sqlx).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.sqlx = self.sqlx.test_before_acquire(test);
        self
    }

    /// Whether connections are pinged before they are handed out.
    pub fn get_test_before_acquire(&self) -> bool {
        self.sqlx.get_test_before_acquire()
    }

    /// Entries in the fingerprint cache (0 disables it). By default, 10 000.
    pub fn fingerprint_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The configured fingerprint cache capacity.
    pub fn get_fingerprint_cache_capacity(&self) -> usize {
        self.cache_capacity
    }

    /// A statement that runs more than `threshold` times in one scope is an N+1 (flagged on
    /// the `threshold + 1`-th execution). By default, 5.
    pub fn n_plus_one_threshold(mut self, threshold: u32) -> Self {
        self.settings.n_plus_one_threshold = threshold;
        self
    }

    /// The configured N+1 threshold.
    pub fn get_n_plus_one_threshold(&self) -> u32 {
        self.settings.n_plus_one_threshold
    }

    /// What to do on an N+1. By default, [`Mode::Warn`].
    pub fn n_plus_one_mode(mut self, mode: Mode) -> Self {
        self.settings.n_plus_one_mode = mode;
        self
    }

    /// The configured N+1 mode.
    pub fn get_n_plus_one_mode(&self) -> Mode {
        self.settings.n_plus_one_mode
    }

    /// Also check statements other than `SELECT` (`INSERT`, `UPDATE`, …) for N+1. By default,
    /// false: repeated writes in a loop are often deliberate.
    pub fn n_plus_one_includes_writes(mut self, include: bool) -> Self {
        self.settings.n_plus_one_writes = include;
        self
    }

    /// Whether writes are checked for N+1.
    pub fn get_n_plus_one_includes_writes(&self) -> bool {
        self.settings.n_plus_one_writes
    }

    /// Whether a repeated statement's findings count its parameter sets exactly. By default,
    /// true: every execution of a statement that runs more than once in a scope has its bound
    /// values read (through their `Debug` rendering, the only way sqlx offers, about 1–2 µs
    /// each), so an N+1 says how many distinct values its loop had ("20x … with 4 distinct
    /// values") and a loop that also repeats values gets its duplicate note with the exact
    /// count. With `false`, reading stops once two different sets have been seen (usually the
    /// second execution): the class (N+1 or duplicate) is decided the same way, but an N+1's
    /// [`distinct_values`](crate::NPlusOne::distinct_values) is a lower bound ("with at least
    /// 2 distinct values") and a duplicate note inside an N+1 counts only the executions read.
    /// For production services where an N+1 runs on every request of a hot route.
    pub fn exact_repetition_counts(mut self, exact: bool) -> Self {
        self.settings.exact_counts = exact;
        self
    }

    /// Whether repetitions are counted exactly (see
    /// [`exact_repetition_counts`](Self::exact_repetition_counts)).
    pub fn get_exact_repetition_counts(&self) -> bool {
        self.settings.exact_counts
    }

    /// Report an N+1 only once its repetitions add up to `min` of database time (checked on
    /// each execution past the threshold), so production warnings carry weight: fast repeats
    /// of a cached lookup stay quiet. By default, off (every N+1 counts, as tests want); 50 ms
    /// is a production default that matches Sentry's N+1 detector.
    pub fn n_plus_one_min_total(mut self, min: Duration) -> Self {
        self.settings.n_plus_one_min_total = Some(min);
        self
    }

    /// The configured N+1 time gate.
    pub fn get_n_plus_one_min_total(&self) -> Option<Duration> {
        self.settings.n_plus_one_min_total
    }

    /// Calls `f` with every finding when it is made: an N+1 (once per scope and statement), a
    /// nested acquire, a statement refused by the query budget. One place to send findings to
    /// Sentry, a metric, or a panic in CI. It runs on the statement's path: keep it short
    /// (reading an N+1's call site the first time resolves symbols).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), sqlx::Error> {
    /// let pool = pgscope::PoolOptions::new()
    ///     .on_finding(|finding| {
    ///         if let pgscope::Finding::NPlusOne(n) = finding {
    ///             eprintln!("N+1 in {}: {}", n.scope(), n.fingerprint().normalized());
    ///         }
    ///     })
    ///     .connect("postgres://postgres@127.0.0.1/test")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_finding(mut self, f: impl Fn(&Finding<'_>) + Send + Sync + 'static) -> Self {
        self.settings.on_finding = OnFinding::new(f);
        self
    }

    /// At most this many statements per scope; the next one fails with
    /// [`Error::QueryBudgetExceeded`](crate::Error::QueryBudgetExceeded) before reaching
    /// PostgreSQL. By default, no budget.
    pub fn query_budget(mut self, budget: u32) -> Self {
        self.settings.query_budget = Some(budget);
        self
    }

    /// The configured query budget.
    pub fn get_query_budget(&self) -> Option<u32> {
        self.settings.query_budget
    }

    /// Whether to warn when one scope holds two connections at once. By default,
    /// [`Mode::Warn`] (`Error` behaves like `Warn` here: the acquire still succeeds).
    pub fn nested_acquire_mode(mut self, mode: Mode) -> Self {
        self.settings.nested_acquire_mode = mode;
        self
    }

    /// The configured nested-acquire mode.
    pub fn get_nested_acquire_mode(&self) -> Mode {
        self.settings.nested_acquire_mode
    }

    /// Appends a comment in the sqlcommenter format to each statement sent inside a scope, so
    /// the server (`pg_stat_activity`, the slow-query log, `auto_explain`) sees which route sent
    /// it: `… /*application='shop',route='GET%20%2Fapi%2Ffeed'*/`. See [`Tags`](crate::tags::Tags) and
    /// the [`tags` module](crate::tags) for the prepared-statement cache, `pg_stat_statements`
    /// and `application_name`. By default, no tags.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), sqlx::Error> {
    /// let pool = pgscope::PoolOptions::new()
    ///     .tag_statements(pgscope::Tags::new().route().application("shop"))
    ///     .connect("postgres://postgres@127.0.0.1/test")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tag_statements(mut self, tags: crate::tags::Tags) -> Self {
        self.tags = Some(tags);
        self
    }

    /// The configured statement tags.
    pub fn get_tag_statements(&self) -> Option<&crate::tags::Tags> {
        self.tags.as_ref()
    }

    /// Reports a connection held idle ([`HeldIdle`](crate::HeldIdle)): a scope that holds a
    /// connection (from `acquire` or `begin`) and leaves it unused for at least `threshold`
    /// between two statements, before `COMMIT`, or before releasing it. WARN on target
    /// `pgscope::held_idle`, [`Report::held_idle`](crate::Report::held_idle), `on_finding`, and
    /// with `otel` the span event and the `pgscope.held_idle.detected` counter. Idle time is
    /// measured on every held connection either way ([`Report::idle_hold_time`](crate::Report::idle_hold_time));
    /// queries on `&Pool` hold a connection for one statement and are never idle. By default,
    /// 100 ms; `None` turns the finding off.
    pub fn held_idle_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.settings.held_idle_threshold = threshold.into();
        self
    }

    /// The configured held-idle threshold.
    pub fn get_held_idle_threshold(&self) -> Option<Duration> {
        self.settings.held_idle_threshold
    }

    /// Explains, on a connection of its own and off the request's path, the executions
    /// `options` picks (slow ones, a sample), keeps a plan shape per statement and size class,
    /// and reports plan changes (WARN on target `pgscope::plan_change`, the
    /// `pgscope.plan.changes` counter, an event on the request's span). Off by default; read
    /// the plans with [`Pool::plans`]. See [`ExplainOptions`].
    pub fn explain(mut self, options: ExplainOptions) -> Self {
        self.explain = Some(options);
        self
    }

    /// The explain settings, if explaining is on.
    pub fn get_explain(&self) -> Option<&ExplainOptions> {
        self.explain.as_ref()
    }

    /// When tasks wait for a connection continuously for this long, the pool logs a WARN
    /// (target `pgscope::pool_starvation`) naming the routes that hold connections longest,
    /// at most once per window. Also the window [`Pool::diagnose`] reports on. By default, 5 s.
    pub fn starvation_window(mut self, window: Duration) -> Self {
        self.starvation_window = window;
        self
    }

    /// The configured starvation window.
    pub fn get_starvation_window(&self) -> Duration {
        self.starvation_window
    }

    /// Put the raw SQL, literal values included, in `db.query.text` of exported spans instead
    /// of the normalized text. **PII risk**: values such as emails and tokens leave the process.
    /// By default, false. Only matters with the `otel` feature.
    pub fn record_raw_sql(mut self, enabled: bool) -> Self {
        self.telemetry.record_raw_sql = enabled;
        self
    }

    /// Whether raw SQL is exported.
    pub fn get_record_raw_sql(&self) -> bool {
        self.telemetry.record_raw_sql
    }

    /// Whether to export one OpenTelemetry CLIENT span per statement. By default, true.
    /// Turned off, scope spans, their N+1 events and all metrics are still exported; use it
    /// (or a sampler, `OTEL_TRACES_SAMPLER`) when statement volume makes per-statement spans
    /// too costly. Only matters with the `otel` feature.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), sqlx::Error> {
    /// let pool = pgscope::PoolOptions::new()
    ///     .query_spans(false) // a hot batch pool: scope summaries and metrics only
    ///     .connect("postgres://localhost/app")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn query_spans(mut self, enabled: bool) -> Self {
        self.telemetry.statement_spans = enabled;
        self
    }

    /// Whether query spans are exported.
    pub fn get_query_spans(&self) -> bool {
        self.telemetry.statement_spans
    }

    /// Span compression: consecutive statements of one scope with the same fingerprint under
    /// the same parent span are exported as one span, from the first one's start to the last
    /// one's end, with `pgscope.composite.count` and `pgscope.composite.duration_sum_ms` (and
    /// the rows summed). An N+1 then reads as one bar marked ×50 in Jaeger instead of 50
    /// identical bars, and costs one span's export. Failed statements are never merged. Off
    /// by default. Only matters with the `otel` feature.
    pub fn compress_query_spans(mut self, enabled: bool) -> Self {
        self.telemetry.compress_spans = enabled;
        self
    }

    /// Whether query spans are compressed.
    pub fn get_compress_query_spans(&self) -> bool {
        self.telemetry.compress_spans
    }

    /// A name for the pool in metrics (`db.client.connection.pool.name`). By default,
    /// `host:port/database`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The configured name, if any.
    pub fn get_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Connects to the database at `url`, like `PgPoolOptions::connect`.
    pub async fn connect(self, url: &str) -> Result<Pool, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        self.connect_with(options).await
    }

    /// Connects with explicit connect options, like `PgPoolOptions::connect_with`.
    pub async fn connect_with(self, options: PgConnectOptions) -> Result<Pool, sqlx::Error> {
        let inner = self.sqlx_options(&options).connect_with(options).await?;
        Ok(self.build(inner))
    }

    /// Creates the pool without connecting; connections open on first use. Like
    /// `PgPoolOptions::connect_lazy`.
    pub fn connect_lazy(self, url: &str) -> Result<Pool, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        Ok(self.connect_lazy_with(options))
    }

    /// Creates the pool from connect options without connecting, like
    /// `PgPoolOptions::connect_lazy_with`.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f() {
    /// use sqlx::postgres::PgConnectOptions;
    /// let options = PgConnectOptions::new().host("127.0.0.1").database("test");
    /// let pool = pgscope::PoolOptions::new().max_connections(4).connect_lazy_with(options);
    /// # }
    /// ```
    pub fn connect_lazy_with(self, options: PgConnectOptions) -> Pool {
        let inner = self.sqlx_options(&options).connect_lazy_with(options);
        self.build(inner)
    }

    fn sqlx_options(&self, options: &PgConnectOptions) -> PgPoolOptions {
        telemetry::connect_hook(
            self.sqlx.clone(),
            &self.pool_name(options),
            self.get_acquire_timeout(),
        )
    }

    fn pool_name(&self, o: &PgConnectOptions) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "{}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or(o.get_username())
            )
        })
    }

    /// Wraps an existing sqlx pool with these pgscope settings (its own sqlx settings, such as
    /// `max_connections`, are kept).
    pub fn wrap(self, pool: PgPool) -> Pool {
        self.build(pool)
    }

    fn build(self, sqlx: PgPool) -> Pool {
        let name = self.pool_name(&sqlx.connect_options());
        Pool(Arc::new_cyclic(|weak: &std::sync::Weak<PoolInner>| {
            let stats: std::sync::Weak<dyn crate::health::StatsSource> = weak.clone();
            let connect = sqlx.connect_options();
            let server = telemetry::ServerInfo {
                host: connect.get_host().to_owned(),
                port: connect.get_port(),
                database: connect
                    .get_database()
                    .unwrap_or(connect.get_username())
                    .to_owned(),
                user: connect.get_username().to_owned(),
                options: connect.get_options().map(str::to_owned),
            };
            let planner = self
                .explain
                .clone()
                .map(|o| Arc::new(Planner::new(o, &connect, stats.clone())));
            let telemetry =
                telemetry::PoolTelemetry::new(&self.telemetry, Some(&server), &name, Some(stats));
            let mut inner = PoolInner::new(
                sqlx,
                name,
                self.cache_capacity,
                self.settings,
                self.starvation_window,
                telemetry,
                planner,
            );
            inner.tagger = self.tags.map(crate::tags::Tagger::new);
            inner
        }))
    }
}
