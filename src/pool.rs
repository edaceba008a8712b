//! The instrumented pool: a drop-in for `sqlx::PgPool`.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::detect::{self, Mode, NestedAcquire, Settings};
use crate::fingerprint::FingerprintCache;
use crate::report::Report;
use crate::scope::{self, ScopeInner, State};

/// A PostgreSQL connection pool that attributes every statement to the current scope.
///
/// Use it where you used `sqlx::PgPool`: `&Pool` is a `sqlx::Executor`, [`acquire`](Self::acquire)
/// and [`begin`](Self::begin) return guards whose `&mut *guard` is one too. Cloning is cheap
/// (a reference count), like `PgPool`.
///
/// # Examples
/// ```no_run
/// # async fn f() -> Result<(), sqlx::Error> {
/// let pool = pgscope::Pool::connect("postgres://postgres@127.0.0.1/test").await?;
/// let (n, report) = pgscope::capture(async {
///     sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_class").fetch_one(&pool).await
/// })
/// .await;
/// println!("{} classes\n{report}", n?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) inner: PgPool,
    pub(crate) cache: FingerprintCache,
    pub(crate) settings: Settings,
    pub(crate) unscoped: Arc<ScopeInner>,
    pub(crate) name: String,
    pub(crate) health: crate::health::Health,
    #[cfg(feature = "otel")]
    pub(crate) server: crate::otel::Server,
    #[cfg(feature = "otel")]
    pub(crate) metrics: crate::otel::PoolMetrics,
    waiters: AtomicU64,
    timeouts: AtomicU64,
    acquires: AtomicU64,
    next_conn_id: AtomicU64,
}

impl Shared {
    /// Runs `f` on the state of `scope` if it is still open, else on the unscoped state, so a
    /// record that arrives after its scope ended is kept rather than lost.
    pub(crate) fn with_state<R>(
        &self,
        scope: Option<&Arc<ScopeInner>>,
        f: impl FnOnce(&mut State, &ScopeInner) -> R,
    ) -> R {
        if let Some(scope) = scope {
            let mut state = scope.state.lock();
            if !state.closed {
                return f(&mut state, scope);
            }
        }
        let mut state = self.unscoped.state.lock();
        f(&mut state, &self.unscoped)
    }

    pub(crate) fn is_unscoped(&self, scope: &ScopeInner) -> bool {
        std::ptr::eq(scope, &*self.unscoped)
    }
}

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
    sqlx: PgPoolOptions,
    max_connections: u32,
    acquire_timeout: Duration,
    cache_capacity: usize,
    settings: Settings,
    name: Option<String>,
    starvation_window: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolOptions")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("fingerprint_cache_capacity", &self.cache_capacity)
            .field("settings", &self.settings)
            .field("name", &self.name)
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
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            // Real applications have hundreds to a few thousand distinct statement texts.
            cache_capacity: 10_000,
            settings: Settings::default(),
            name: None,
            // "Waiters > 0 for more than a few seconds" is the classic sign of an N+1-bound pool.
            starvation_window: Duration::from_secs(5),
        }
    }

    /// Maximum connections. By default, 10.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self.sqlx = self.sqlx.max_connections(max);
        self
    }

    /// The configured maximum connections.
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }

    /// Connections kept open even when idle. By default, 0.
    pub fn min_connections(mut self, min: u32) -> Self {
        self.sqlx = self.sqlx.min_connections(min);
        self
    }

    /// How long `acquire` waits before failing with `sqlx::Error::PoolTimedOut` (counted in
    /// [`PoolStats::acquire_timeouts`]). By default, 30 s.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self.sqlx = self.sqlx.acquire_timeout(timeout);
        self
    }

    /// The configured acquire timeout.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// Close connections idle for longer than this. By default, sqlx's (10 minutes).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.sqlx = self.sqlx.idle_timeout(timeout);
        self
    }

    /// Close connections older than this. By default, sqlx's (30 minutes).
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.sqlx = self.sqlx.max_lifetime(lifetime);
        self
    }

    /// Ping connections before handing them out. By default, true (as in sqlx).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.sqlx = self.sqlx.test_before_acquire(test);
        self
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
        self.settings.record_raw_sql = enabled;
        self
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
    ///     .statement_spans(false) // a hot batch pool: scope summaries and metrics only
    ///     .connect("postgres://localhost/app")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn statement_spans(mut self, enabled: bool) -> Self {
        self.settings.statement_spans = enabled;
        self
    }

    /// A name for the pool in metrics (`db.client.connection.pool.name`). By default,
    /// `host:port/database`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Connects to the database at `url`.
    pub async fn connect(self, url: &str) -> Result<Pool, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        self.connect_with(options).await
    }

    /// Connects with explicit connect options.
    pub async fn connect_with(self, options: PgConnectOptions) -> Result<Pool, sqlx::Error> {
        let inner = self.sqlx_options(&options).connect_with(options).await?;
        Ok(self.build(inner))
    }

    /// Creates the pool without connecting; connections open on first use.
    pub fn connect_lazy(self, url: &str) -> Result<Pool, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        let inner = self.sqlx_options(&options).connect_lazy_with(options);
        Ok(self.build(inner))
    }

    /// The sqlx pool options, plus (with `otel`) the hook that measures
    /// `db.client.connection.create_time` for every connection the pool opens.
    fn sqlx_options(&self, _options: &PgConnectOptions) -> PgPoolOptions {
        #[cfg(feature = "otel")]
        {
            let hook =
                crate::otel::CreateTime::new(&self.pool_name(_options), self.acquire_timeout);
            self.sqlx.clone().after_connect(move |conn, _meta| {
                let hook = hook.clone();
                Box::pin(async move {
                    hook.measure(conn).await;
                    Ok(())
                })
            })
        }
        #[cfg(not(feature = "otel"))]
        self.sqlx.clone()
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

    fn build(self, inner: PgPool) -> Pool {
        if self.settings.n_plus_one_mode != Mode::Off {
            detect::prewarm_symbols();
        }
        let name = self.pool_name(&inner.connect_options());
        #[cfg(feature = "otel")]
        let server = {
            let o = inner.connect_options();
            crate::otel::Server::new(
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or(o.get_username()),
                crate::otel::connect_schema(o.get_options(), o.get_username()).as_deref(),
            )
        };
        Pool(Arc::new_cyclic(|_weak| Shared {
            #[cfg(feature = "otel")]
            metrics: crate::otel::PoolMetrics::new(&server, &name, _weak.clone()),
            #[cfg(feature = "otel")]
            server,
            inner,
            cache: FingerprintCache::new(self.cache_capacity),
            settings: self.settings,
            unscoped: ScopeInner::unscoped(),
            name,
            health: crate::health::Health::new(self.starvation_window),
            waiters: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            acquires: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(0),
        }))
    }
}

/// A point-in-time view of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    size: u32,
    idle: u32,
    max: u32,
    waiters: u64,
    acquire_timeouts: u64,
    acquires: u64,
}

impl PoolStats {
    /// Open connections (idle + in use).
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Open connections not in use.
    pub fn idle(&self) -> u32 {
        self.idle
    }
    /// Connections in use.
    pub fn in_use(&self) -> u32 {
        self.size.saturating_sub(self.idle)
    }
    /// The pool's maximum size.
    pub fn max_connections(&self) -> u32 {
        self.max
    }
    /// Tasks waiting in `acquire` right now.
    pub fn waiters(&self) -> u64 {
        self.waiters
    }
    /// Acquires that failed with `PoolTimedOut` since the pool was created.
    pub fn acquire_timeouts(&self) -> u64 {
        self.acquire_timeouts
    }
    /// Connections handed out since the pool was created.
    pub fn acquires(&self) -> u64 {
        self.acquires
    }
}

/// Decrements the waiter count even when the acquiring future is dropped.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn start(shared: &'a Shared) -> Self {
        if shared.waiters.fetch_add(1, Ordering::Relaxed) == 0 {
            shared.health.waiting_started();
        }
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.health.waiting_stopped();
        }
    }
}

impl Pool {
    /// Connects with default [`PoolOptions`], like `PgPool::connect`.
    pub async fn connect(url: &str) -> Result<Pool, sqlx::Error> {
        PoolOptions::new().connect(url).await
    }

    /// Connects with explicit connect options, like `PgPool::connect_with`.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Pool, sqlx::Error> {
        PoolOptions::new().connect_with(options).await
    }

    /// Creates the pool without connecting, like `PgPool::connect_lazy`.
    pub fn connect_lazy(url: &str) -> Result<Pool, sqlx::Error> {
        PoolOptions::new().connect_lazy(url)
    }

    /// Wraps a pool you already have, with default pgscope settings.
    pub fn from_sqlx(pool: PgPool) -> Pool {
        PoolOptions::new().wrap(pool)
    }

    /// The wrapped sqlx pool. Statements run through it directly are not observed.
    pub fn as_sqlx(&self) -> &PgPool {
        &self.0.inner
    }

    /// The pool's name (see [`PoolOptions::name`]).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Retrieves a connection, waiting for one when all are in use. The time waiting counts as
    /// the scope's pool wait time; the time holding the guard counts as its connection hold time.
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl Future<Output = Result<PoolConnection, sqlx::Error>> + Send + 'static {
        let site = Location::caller();
        let shared = Arc::clone(&self.0);
        let scope = scope::current();
        async move { acquire_in(shared, scope, Some(site)).await }
    }

    /// Starts a transaction on a newly acquired connection, like `PgPool::begin`.
    #[track_caller]
    pub fn begin(
        &self,
    ) -> impl Future<Output = Result<crate::Transaction<'static>, sqlx::Error>> + Send + 'static
    {
        let acquire = self.acquire();
        async move { crate::Transaction::begin_owned(acquire.await?).await }
    }

    /// Current size, idle connections, waiters and timeouts.
    pub fn stats(&self) -> PoolStats {
        let s = &self.0;
        PoolStats {
            size: s.inner.size(),
            idle: u32::try_from(s.inner.num_idle()).unwrap_or(u32::MAX),
            max: s.inner.options().get_max_connections(),
            waiters: s.waiters.load(Ordering::Relaxed),
            acquire_timeouts: s.timeouts.load(Ordering::Relaxed),
            acquires: s.acquires.load(Ordering::Relaxed),
        }
    }

    /// Which routes hold this pool's connections (over the last one to two starvation
    /// windows), whether tasks are waiting, and the pool's capacity in requests per second at
    /// the measured hold times.
    pub fn diagnose(&self) -> crate::health::Diagnosis {
        let s = &self.0;
        s.health.diagnose(
            &s.name,
            s.inner.options().get_max_connections(),
            s.waiters.load(Ordering::Relaxed),
        )
    }

    /// Starvation warnings emitted so far (one per window at most).
    pub fn starvation_warnings(&self) -> u64 {
        self.0.health.warnings()
    }

    /// Everything that ran outside any scope (or after its scope ended), since the pool was
    /// created. Nothing is lost: each statement counts in exactly one report.
    pub fn unscoped_report(&self) -> Report {
        self.0.unscoped.snapshot()
    }

    /// Entries in the fingerprint cache, and how many statements missed it (and were
    /// fingerprinted from scratch) so far.
    pub fn fingerprint_cache_stats(&self) -> (usize, u64) {
        let c = &self.0.cache;
        (c.len(), c.misses())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.0.inner.close().await
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.0.inner.is_closed()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.0.name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Acquires for `scope`; `site` is where an explicit `acquire`/`begin` was called, `None` for
/// the transient connection of a query on `&Pool`.
pub(crate) async fn acquire_in(
    shared: Arc<Shared>,
    scope: Option<Arc<ScopeInner>>,
    site: Option<&'static Location<'static>>,
) -> Result<PoolConnection, sqlx::Error> {
    let start = Instant::now();
    let waiting = Waiting::start(&shared);
    shared.health.check(
        &shared.name,
        shared.inner.options().get_max_connections(),
        shared.waiters.load(Ordering::Relaxed),
    );
    let result = shared.inner.acquire().await;
    drop(waiting);
    let waited = start.elapsed();
    let raw = match result {
        Ok(raw) => raw,
        Err(err) => {
            let timed_out = matches!(err, sqlx::Error::PoolTimedOut);
            if timed_out {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            #[cfg(feature = "otel")]
            shared.metrics.record_wait(waited, timed_out);
            shared.with_state(scope.as_ref(), |state, _| state.totals.pool_wait += waited);
            return Err(err);
        }
    };
    shared.acquires.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "otel")]
    shared.metrics.record_wait(waited, false);
    // Ids are only needed to track explicitly held guards; skip the shared counter otherwise.
    let id = if site.is_some() {
        shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    } else {
        u64::MAX
    };
    let check_nested = shared.settings.nested_acquire_mode != Mode::Off;
    let held_at = shared.with_state(scope.as_ref(), |state, s| {
        state.totals.pool_wait += waited;
        state.totals.acquires += 1;
        let unscoped = shared.is_unscoped(s);
        let held_at = state
            .held
            .first()
            .map(|(_, at)| *at)
            .filter(|_| check_nested && !unscoped);
        if !unscoped && !state.pools.iter().any(|p| Arc::ptr_eq(p, &shared)) {
            state.pools.push(Arc::clone(&shared));
        }
        // Only guards the caller holds explicitly can be held while waiting for another
        // connection; the transient connection of a query on `&Pool` is not tracked.
        if let Some(site) = site {
            state.held.push((id, site));
        }
        state.totals.max_held = state.totals.max_held.max(state.held.len() as u64);
        held_at
    });
    if let Some(held_at) = held_at {
        let item = NestedAcquire {
            scope: scope
                .as_ref()
                .map_or_else(String::new, |s| s.name.to_string()),
            held_at: detect::location(held_at),
            acquired_at: site.map_or_else(detect::call_site, |s| detect::location(s)),
        };
        shared.with_state(scope.as_ref(), |state, _| state.nested.push(item.clone()));
        detect::emit_nested(&item);
    }
    Ok(PoolConnection {
        conn: Connection {
            raw,
            scope,
            shared,
            interrupted: AtomicBool::new(false),
            id,
            acquired_at: Instant::now(),
        },
    })
}

/// A connection from a [`Pool`]: `&mut *conn` is a `sqlx::Executor`. Returned to the pool on
/// drop, which ends its hold time.
pub struct PoolConnection {
    conn: Connection,
}

/// A database connection whose `&mut` is an instrumented `sqlx::Executor`.
///
/// You get one by dereferencing a [`PoolConnection`] or [`Transaction`](crate::Transaction):
/// `sqlx::query("…").execute(&mut *conn)`.
pub struct Connection {
    pub(crate) raw: sqlx::pool::PoolConnection<Postgres>,
    /// The scope the connection was acquired in: its queries count there wherever they run.
    pub(crate) scope: Option<Arc<ScopeInner>>,
    pub(crate) shared: Arc<Shared>,
    /// A query on this connection was dropped before it finished.
    pub(crate) interrupted: AtomicBool,
    id: u64,
    acquired_at: Instant,
}

impl Connection {
    /// The underlying sqlx connection, for APIs pgscope does not wrap (`COPY`, `LISTEN`).
    /// Statements sent through it directly are not observed.
    pub fn as_sqlx_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.raw
    }

    /// Starts a transaction (or a savepoint, inside one) on this connection.
    pub async fn begin(&mut self) -> Result<crate::Transaction<'_>, sqlx::Error> {
        crate::Transaction::begin_borrowed(self).await
    }

    /// How long this connection has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired_at.elapsed()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("scope", &self.scope.as_ref().map(|s| &s.name))
            .field("held_for", &self.held_for())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PoolConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conn.fmt(f)
    }
}

impl Deref for PoolConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl AsMut<Connection> for PoolConnection {
    fn as_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for PoolConnection {
    fn drop(&mut self) {
        let held = self.conn.acquired_at.elapsed();
        #[cfg(feature = "otel")]
        self.conn.shared.metrics.record_use(held);
        let id = self.conn.id;
        let explicit = id != u64::MAX;
        let shared = &self.conn.shared;
        let scope = self.conn.scope.as_deref().unwrap_or(&shared.unscoped);
        let mut state = scope.state.lock();
        // The held list lives in the acquiring scope even after it closed.
        if explicit {
            state.held.retain(|(h, _)| *h != id);
        }
        if state.closed {
            drop(state);
            shared.unscoped.state.lock().totals.hold_time += held;
        } else {
            state.totals.hold_time += held;
        }
        if self.conn.interrupted.load(Ordering::Relaxed) {
            // The server is still busy with (or sending) the abandoned statement; returning the
            // connection would make the next user wait for it. Close it: the pool replaces it.
            self.conn.raw.close_on_drop();
        }
        // `raw` drops after this, returning the connection to sqlx's pool.
    }
}

#[cfg(feature = "otel")]
impl crate::otel::PoolGauges for Shared {
    fn gauges(&self) -> crate::otel::Gauges {
        let size = self.inner.size();
        let idle = u32::try_from(self.inner.num_idle()).unwrap_or(u32::MAX);
        (
            size,
            idle,
            self.inner.options().get_max_connections(),
            self.waiters.load(Ordering::Relaxed),
        )
    }
}
