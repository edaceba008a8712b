//! The pool's shared state: the sqlx pool, the fingerprint cache, the rules, the catch-all
//! scope, health, telemetry and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::detect::Settings;
use crate::fingerprint::FingerprintCache;
use crate::health::{Health, PoolStats, StatsSource};
use crate::plan::Planner;
use crate::scope::ScopeInner;
use crate::telemetry::PoolTelemetry;

pub(crate) struct PoolInner {
    pub(crate) sqlx: PgPool,
    pub(crate) cache: FingerprintCache,
    pub(crate) settings: Settings,
    /// Statements outside any scope, or after their scope ended.
    pub(crate) unscoped: Arc<ScopeInner>,
    pub(crate) name: String,
    pub(crate) health: Arc<Health>,
    pub(crate) telemetry: PoolTelemetry,
    /// `EXPLAIN` on the side, when [`PoolOptions::explain`](crate::PoolOptions::explain) is set.
    pub(crate) planner: Option<Arc<Planner>>,
    /// Statement tags, when [`PoolOptions::tag_statements`](crate::PoolOptions::tag_statements)
    /// is set.
    pub(crate) tagger: Option<crate::tags::Tagger>,
    waiters: AtomicU64,
    timeouts: AtomicU64,
    acquires: AtomicU64,
    /// The hint about statements outside any scope was given.
    hinted: AtomicBool,
}

impl PoolInner {
    pub(super) fn new(
        sqlx: PgPool,
        name: String,
        cache_capacity: usize,
        settings: Settings,
        starvation_window: Duration,
        telemetry: PoolTelemetry,
        planner: Option<Arc<Planner>>,
    ) -> Self {
        PoolInner {
            sqlx,
            cache: FingerprintCache::new(cache_capacity),
            settings,
            unscoped: ScopeInner::unscoped(),
            name,
            health: Arc::new(Health::new(starvation_window)),
            telemetry,
            planner,
            tagger: None,
            waiters: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            acquires: AtomicU64::new(0),
            hinted: AtomicBool::new(false),
        }
    }

    /// The one reading of the pool's state.
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.sqlx.size(),
            idle: u32::try_from(self.sqlx.num_idle()).unwrap_or(u32::MAX),
            max: self.sqlx.options().get_max_connections(),
            waiters: self.waiters.load(Ordering::Relaxed),
            acquire_timeouts: self.timeouts.load(Ordering::Relaxed),
            acquires: self.acquires.load(Ordering::Relaxed),
        }
    }

    pub(super) fn timed_out(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn acquired(&self) {
        self.acquires.fetch_add(1, Ordering::Relaxed);
    }

    /// A statement ran outside any scope: says once per pool what that misses and what to add.
    pub(crate) fn unscoped_statement(&self) {
        if !self.hinted.load(Ordering::Relaxed) && !self.hinted.swap(true, Ordering::Relaxed) {
            crate::detect::hint_unscoped(&self.name);
        }
    }

    /// An id for a guard the caller holds explicitly.
    /// A new id for an explicitly held connection: unique in the process (ids of two pools'
    /// guards never meet in one scope's timeline), never 0 (a `&Pool` statement's connection).
    pub(super) fn next_guard_id(&self) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts the caller as waiting until the returned guard drops (even when the acquiring
    /// future is dropped), and checks for starvation.
    ///
    /// The first waiter only starts the clock (`now`, already read by the caller): a wait that
    /// has just begun cannot have lasted a window yet, so only callers that find others
    /// already waiting look at how long that has been.
    pub(super) fn wait(&self, now: Instant) -> Waiting<'_> {
        if self.waiters.fetch_add(1, Ordering::Relaxed) == 0 {
            self.health.waiting_started(now);
        } else {
            self.health.check(&self.name, || self.stats());
        }
        Waiting(self)
    }
}

impl StatsSource for PoolInner {
    fn stats(&self) -> PoolStats {
        PoolInner::stats(self)
    }
}

pub(super) struct Waiting<'a>(&'a PoolInner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.health.waiting_stopped();
        }
    }
}
