//! Pool health: which routes hold connections, and when the pool starves.
//!
//! Every scope that used a pool adds its connection hold time to that pool's per-route window
//! when it ends (once per request, into a sharded map: no lock shared by all requests). When
//! tasks have been waiting for a connection continuously for longer than the window, the pool
//! emits one WARN per window naming the routes with the largest hold time, and the capacity
//! estimate `max_connections / mean hold time per request` — the arithmetic of "a pool of 25
//! and 100 ms per request serves 250 requests/s", computed from live data.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Routes tracked per pool; the rest share one `other` row, so route names from unmatched
/// paths cannot grow the map without bound.
pub(crate) const MAX_ROUTES: usize = 256;
const OTHER: &str = "other";

/// A point-in-time view of the pool: the one reading behind [`Pool::stats`](crate::Pool::stats),
/// the connection gauges exported with the `otel` feature, and the starvation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    pub(crate) size: u32,
    pub(crate) idle: u32,
    pub(crate) max: u32,
    pub(crate) waiters: u64,
    pub(crate) acquire_timeouts: u64,
    pub(crate) acquires: u64,
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

/// Something that can read a pool's [`PoolStats`] (the pool's inner state; the metrics'
/// callbacks hold it weakly).
// Read only by the exported gauges.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) trait StatsSource: Send + Sync + 'static {
    fn stats(&self) -> PoolStats;
}

pub(crate) struct Health {
    epoch0: Instant,
    window: Duration,
    routes: DashMap<Box<str>, RouteWindow>,
    /// Nanoseconds since `epoch0` when the waiter count last went from 0 to 1; 0 = no waiters.
    waiting_since: AtomicU64,
    /// Window number of the last starvation warning (+1; 0 = never).
    last_warning: AtomicU64,
    warnings: AtomicU64,
}

#[derive(Default, Clone, Copy)]
struct RouteWindow {
    epoch: u64,
    current: Load,
    previous: Load,
}

#[derive(Default, Clone, Copy)]
struct Load {
    hold: Duration,
    idle: Duration,
    requests: u64,
}

impl Health {
    pub(crate) fn new(window: Duration) -> Self {
        Health {
            epoch0: Instant::now(),
            window: window.max(Duration::from_millis(1)),
            routes: DashMap::new(),
            waiting_since: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
            warnings: AtomicU64::new(0),
        }
    }

    fn nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    /// `now` as nanoseconds since the pool started (never 0: 0 means "not waiting").
    fn nanos_at(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch0).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn epoch(&self) -> u64 {
        self.nanos()
            / u64::try_from(self.window.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1)
    }

    /// A scope that used this pool ended, having held its connections for `hold` in total.
    /// `idle` of it with no statement running on a held connection.
    pub(crate) fn record_request(&self, route: &str, hold: Duration, idle: Duration) {
        let epoch = self.epoch();
        let add = |w: &mut RouteWindow| {
            if w.epoch != epoch {
                w.previous = if w.epoch + 1 == epoch {
                    w.current
                } else {
                    Load::default()
                };
                w.current = Load::default();
                w.epoch = epoch;
            }
            w.current.hold += hold;
            w.current.idle += idle;
            w.current.requests += 1;
        };
        // A known route (every request after a route's first): one lookup, no key allocated,
        // no walk over the map's shards to count it.
        if let Some(mut w) = self.routes.get_mut(route) {
            add(&mut w);
            return;
        }
        let route = if self.routes.len() < MAX_ROUTES {
            route
        } else {
            OTHER
        };
        add(&mut self.routes.entry(route.into()).or_default());
    }

    /// The waiter count went from 0 to 1.
    pub(crate) fn waiting_started(&self, now: Instant) {
        let _ = self.waiting_since.compare_exchange(
            0,
            self.nanos_at(now),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The waiter count went back to 0.
    pub(crate) fn waiting_stopped(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// How long tasks have been waiting continuously, if they are.
    fn starving_for(&self) -> Option<Duration> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_nanos(self.nanos().saturating_sub(since))),
        }
    }

    /// Called on the acquire path: cheap unless the pool has been starving for a window and
    /// this window has no warning yet, in which case it emits one.
    /// Warns once per window when tasks have waited longer than the window; reads the pool
    /// only then.
    pub(crate) fn check(&self, pool: &str, stats: impl FnOnce() -> PoolStats) {
        let Some(waited) = self.starving_for() else {
            return;
        };
        if waited < self.window {
            return;
        }
        let epoch = self.epoch() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if last == epoch
            || self
                .last_warning
                .compare_exchange(last, epoch, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.warnings.fetch_add(1, Ordering::Relaxed);
        let d = self.diagnose(pool, stats());
        tracing::warn!(
            target: "pgscope::pool_starvation",
            pool = %d.pool,
            waiters = d.waiters,
            starving_ms = waited.as_millis() as u64,
            top_routes = %d.top_routes_summary(3),
            mean_hold_ms = d.mean_hold_time().map_or(0.0, |h| h.as_secs_f64() * 1000.0),
            capacity_rps = d.capacity_per_second().unwrap_or(0.0),
            "pool starved: tasks waited for a connection for {} ms; {}",
            waited.as_millis(),
            d,
        );
    }

    pub(crate) fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    pub(crate) fn diagnose(&self, pool: &str, stats: PoolStats) -> Diagnosis {
        let epoch = self.epoch();
        let mut scopes: Vec<ScopeLoad> = self
            .routes
            .iter()
            .filter_map(|e| {
                let w = e.value();
                // The current and the previous window, as seen from now.
                let load = match epoch.checked_sub(w.epoch) {
                    Some(0) => Load {
                        hold: w.current.hold + w.previous.hold,
                        idle: w.current.idle + w.previous.idle,
                        requests: w.current.requests + w.previous.requests,
                    },
                    Some(1) => w.current,
                    _ => return None,
                };
                (load.requests > 0).then(|| ScopeLoad {
                    scope: e.key().to_string(),
                    hold: load.hold,
                    idle: load.idle,
                    requests: load.requests,
                })
            })
            .collect();
        scopes.sort_by_key(|r| std::cmp::Reverse(r.hold));
        Diagnosis {
            pool: pool.to_owned(),
            max_connections: stats.max,
            waiters: stats.waiters,
            starving_for: self.starving_for(),
            window: self.window,
            scopes,
        }
    }
}

/// Connection hold time of one route over the last one to two windows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScopeLoad {
    scope: String,
    hold: Duration,
    idle: Duration,
    requests: u64,
}

impl ScopeLoad {
    /// The scope's name (for a request: its route, e.g. `GET /api/feed`).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Total connection hold time of its requests.
    pub fn hold_time(&self) -> Duration {
        self.hold
    }
    /// The part of [`hold_time`](Self::hold_time) with no statement running on a held
    /// connection ([`Report::idle_hold_time`](crate::Report::idle_hold_time) summed).
    pub fn idle_hold_time(&self) -> Duration {
        self.idle
    }

    /// Requests (scopes) that ended.
    pub fn requests(&self) -> u64 {
        self.requests
    }
    /// Mean hold time per request.
    pub fn mean_hold_time(&self) -> Duration {
        self.hold / u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX)
    }
}

/// What [`Pool::diagnose`](crate::Pool::diagnose) found: who holds the pool's connections and
/// how many requests per second the pool can serve at the current hold times.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Diagnosis {
    pool: String,
    max_connections: u32,
    waiters: u64,
    starving_for: Option<Duration>,
    window: Duration,
    scopes: Vec<ScopeLoad>,
}

impl Diagnosis {
    /// Scopes by total hold time, largest first.
    pub fn scopes(&self) -> &[ScopeLoad] {
        &self.scopes
    }

    /// Tasks waiting for a connection now.
    pub fn waiters(&self) -> u64 {
        self.waiters
    }
    /// How long tasks have been waiting continuously, if they are now.
    pub fn starving_for(&self) -> Option<Duration> {
        self.starving_for
    }
    /// Whether tasks have been waiting continuously for at least one window.
    pub fn is_starving(&self) -> bool {
        self.starving_for.is_some_and(|d| d >= self.window)
    }
    /// Mean connection hold time per request over all routes.
    pub fn mean_hold_time(&self) -> Option<Duration> {
        let requests: u64 = self.scopes.iter().map(|r| r.requests).sum();
        let hold: Duration = self.scopes.iter().map(|r| r.hold).sum();
        (requests > 0).then(|| hold / u32::try_from(requests).unwrap_or(u32::MAX))
    }
    /// `max_connections / mean hold time`: requests per second the pool can serve before
    /// requests queue, at the hold times just measured.
    pub fn capacity_per_second(&self) -> Option<f64> {
        self.mean_hold_time()
            .filter(|h| !h.is_zero())
            .map(|h| f64::from(self.max_connections) / h.as_secs_f64())
    }

    /// Scopes by idle hold time, largest first, those with none left out: the routes that hold
    /// connections while doing no database work.
    pub fn scopes_by_idle_hold(&self) -> Vec<&ScopeLoad> {
        let mut idle: Vec<&ScopeLoad> = self.scopes.iter().filter(|s| !s.idle.is_zero()).collect();
        idle.sort_by_key(|s| std::cmp::Reverse(s.idle));
        idle
    }

    /// [`capacity_per_second`](Self::capacity_per_second) if no connection were held idle:
    /// `max_connections / (mean hold - mean idle hold)`, what the pool would serve with the
    /// idle work moved out of the holds.
    pub fn capacity_without_idle_per_second(&self) -> Option<f64> {
        let requests: u64 = self.scopes.iter().map(|r| r.requests).sum();
        let busy: Duration = self
            .scopes
            .iter()
            .map(|r| r.hold.saturating_sub(r.idle))
            .sum();
        (requests > 0 && !busy.is_zero())
            .then(|| f64::from(self.max_connections) * requests as f64 / busy.as_secs_f64())
    }

    fn top_routes_summary(&self, n: usize) -> String {
        self.scopes
            .iter()
            .take(n)
            .map(|r| {
                format!(
                    "{} ({:.0} ms held over {} requests)",
                    r.scope,
                    r.hold.as_secs_f64() * 1000.0,
                    r.requests
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool {}: {} waiting", self.pool, self.waiters)?;
        if let (Some(h), Some(c)) = (self.mean_hold_time(), self.capacity_per_second()) {
            write!(
                f,
                "; {} connections / {:.1} ms mean hold per request = {:.0} requests/s capacity",
                self.max_connections,
                h.as_secs_f64() * 1000.0,
                c
            )?;
        }
        if !self.scopes.is_empty() {
            write!(f, "; top holders: {}", self.top_routes_summary(3))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(max: u32, waiters: u64) -> PoolStats {
        PoolStats {
            size: max,
            idle: 0,
            max,
            waiters,
            acquire_timeouts: 0,
            acquires: 0,
        }
    }

    #[test]
    fn diagnosis_ranks_scopes_by_hold_and_computes_capacity() {
        let health = Health::new(Duration::from_secs(60));
        for _ in 0..4 {
            health.record_request("GET /api/feed", Duration::from_millis(20), Duration::ZERO);
        }
        health.record_request("GET /health", Duration::from_millis(1), Duration::ZERO);
        let d = health.diagnose("db", stats(10, 3));
        let names: Vec<&str> = d.scopes().iter().map(ScopeLoad::scope).collect();
        assert_eq!(names, ["GET /api/feed", "GET /health"]);
        assert_eq!(d.scopes()[0].requests(), 4);
        assert_eq!(d.scopes()[0].mean_hold_time(), Duration::from_millis(20));
        assert_eq!(d.waiters(), 3);
        // 81 ms over 5 requests: 16.2 ms each; 10 connections serve 10 / 16.2 ms = 617/s.
        let capacity = d.capacity_per_second().expect("capacity");
        assert!((capacity - 10.0 / 0.0162).abs() < 1.0, "{capacity}");
        assert!(!d.is_starving());
    }

    #[test]
    fn routes_are_ranked_by_idle_hold_with_the_capacity_without_it() {
        let health = Health::new(Duration::from_secs(60));
        for _ in 0..2 {
            health.record_request(
                "POST /checkout",
                Duration::from_millis(60),
                Duration::from_millis(50),
            );
        }
        health.record_request("GET /feed", Duration::from_millis(30), Duration::ZERO);
        health.record_request(
            "GET /slow",
            Duration::from_millis(80),
            Duration::from_millis(10),
        );
        let d = health.diagnose("db", stats(8, 0));
        let names: Vec<&str> = d.scopes_by_idle_hold().iter().map(|s| s.scope()).collect();
        assert_eq!(
            names,
            ["POST /checkout", "GET /slow"],
            "GET /feed holds nothing idle"
        );
        assert_eq!(
            d.scopes_by_idle_hold()[0].idle_hold_time(),
            Duration::from_millis(100)
        );
        // 230 ms held over 4 requests (57.5 ms each); 120 ms of it busy (30 ms each).
        let with = d.capacity_per_second().expect("capacity");
        let without = d.capacity_without_idle_per_second().expect("capacity");
        assert!((with - 8.0 / 0.0575).abs() < 0.5, "{with}");
        assert!((without - 8.0 / 0.030).abs() < 0.5, "{without}");
    }

    #[test]
    fn loads_older_than_two_windows_are_forgotten() {
        let health = Health::new(Duration::from_millis(20));
        health.record_request("GET /old", Duration::from_millis(5), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(70));
        health.record_request("GET /new", Duration::from_millis(5), Duration::ZERO);
        let d = health.diagnose("db", stats(2, 0));
        let names: Vec<&str> = d.scopes().iter().map(ScopeLoad::scope).collect();
        assert_eq!(names, ["GET /new"]);
    }

    #[test]
    fn scope_names_past_the_cap_share_one_row() {
        let health = Health::new(Duration::from_secs(60));
        for i in 0..MAX_ROUTES + 50 {
            health.record_request(
                &format!("GET /r/{i}"),
                Duration::from_millis(1),
                Duration::ZERO,
            );
        }
        let d = health.diagnose("db", stats(2, 0));
        assert_eq!(d.scopes().len(), MAX_ROUTES + 1);
        let other = d
            .scopes()
            .iter()
            .find(|s| s.scope() == OTHER)
            .expect("other");
        assert_eq!(other.requests(), 50);
    }

    #[test]
    fn starvation_is_measured_from_the_first_waiter() {
        let health = Health::new(Duration::from_millis(10));
        assert!(health.starving_for().is_none());
        health.waiting_started(Instant::now());
        std::thread::sleep(Duration::from_millis(15));
        health.waiting_started(Instant::now()); // a second waiter does not reset the clock
        assert!(health.starving_for().expect("starving") >= Duration::from_millis(15));
        health.check("db", || stats(2, 2));
        assert_eq!(health.warnings(), 1);
        health.check("db", || stats(2, 2));
        assert_eq!(health.warnings(), 1, "one warning per window");
        health.waiting_stopped();
        assert!(health.starving_for().is_none());
    }
}
