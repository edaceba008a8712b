//! The instrumented pool: a drop-in for `sqlx::PgPool`, laid out like sqlx's own pool: the
//! handle here, [`PoolOptions`] in `options.rs`, shared state in `inner.rs`, the connection
//! guard in `connection.rs`, transactions in `transaction.rs`.

mod connection;
mod explain;
mod inner;
mod options;
mod raw;
mod transaction;
mod usage;

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use crate::health::{Diagnosis, PoolStats};
use crate::report::Report;
use crate::scope;

pub(crate) use self::connection::acquire_in;
pub use self::connection::{Connection, PoolConnection};
pub use self::explain::{assert_plan_stable, explain};
pub(crate) use self::inner::PoolInner;
pub use self::options::PoolOptions;
pub use self::raw::RawConnection;
pub use self::transaction::Transaction;
pub(crate) use self::usage::{Usage, report as report_held_idle};

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
pub struct Pool(pub(crate) Arc<PoolInner>);

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
        &self.0.sqlx
    }

    /// The pool's name (see [`PoolOptions::name`]).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Retrieves a connection, waiting for one when all are in use. The time waiting counts as
    /// the scope's pool wait time; the time holding the guard counts as its connection hold time.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
    /// let mut conn = pool.acquire().await?;
    /// sqlx::query("SET LOCAL statement_timeout = '5s'").execute(&mut *conn).await?;
    /// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *conn).await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl Future<Output = Result<PoolConnection, sqlx::Error>> + Send + 'static {
        let site = Location::caller();
        let pool = Arc::clone(&self.0);
        let scope = scope::current();
        // Boxed: waiting for sqlx's pool is a large state machine, and unboxed it would be part
        // of every future that awaits a connection (copied each time the caller's future
        // moves). sqlx's own `acquire` and `begin` keep their state behind a box likewise.
        Box::pin(async move { acquire_in(pool, scope, Some(site)).await })
    }

    /// Starts a transaction on a newly acquired connection, like `PgPool::begin`.
    #[track_caller]
    pub fn begin(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static>, sqlx::Error>> + Send + 'static {
        let acquire = self.acquire();
        Box::pin(async move { Transaction::begin_owned(acquire.await?).await })
    }

    /// Current size, idle connections, waiters and timeouts.
    pub fn stats(&self) -> PoolStats {
        self.0.stats()
    }

    /// The plans explained so far (empty unless [`PoolOptions::explain`] is set): per
    /// statement, its plan shape per size class, when each was seen, the explained executions'
    /// durations, and how many plan changes were reported.
    pub fn plans(&self) -> crate::plan::Plans {
        self.0
            .planner
            .as_ref()
            .map(|p| p.snapshot())
            .unwrap_or_default()
    }

    /// Which scopes (routes) hold this pool's connections (over the last one to two starvation
    /// windows), whether tasks are waiting, and the pool's capacity in requests per second at
    /// the measured hold times.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f(pool: pgscope::Pool) {
    /// let diagnosis = pool.diagnose();
    /// if diagnosis.is_starving() {
    ///     // e.g. "pool starving for 6.2 s; 12 waiting; … top holders: GET /api/feed 2.3 ms/request"
    ///     eprintln!("{diagnosis}");
    /// }
    /// for scope in diagnosis.scopes() {
    ///     println!("{}: {:?} per request", scope.scope(), scope.mean_hold_time());
    /// }
    /// # }
    /// ```
    pub fn diagnose(&self) -> Diagnosis {
        self.0.health.diagnose(&self.0.name, self.0.stats())
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
        self.0.sqlx.close().await
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.0.sqlx.is_closed()
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
