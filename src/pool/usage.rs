//! How a held connection is used: the time inside statements, the idle gaps between them, and
//! the held-idle finding when a gap crosses the pool's threshold.
//!
//! Kept only for connections the caller holds explicitly (`acquire`, `begin`); a query on
//! `&Pool` holds its connection for one statement and is never idle. On the statement's path it
//! costs the timestamps the statement already takes and, with the finding on, one cached call
//! site lookup; the stack walk for the end of a gap happens only when the gap crosses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::detect::{self, CallSite, Finding, HeldIdle, Settings, Warning};
use crate::fingerprint::Fingerprint;
use crate::report::Idle;
use crate::scope::{ScopeInner, with_state};

/// Kind of the cached call site of a statement that may start an idle gap (N+1 and duplicate
/// sites use 1 and 2).
const FROM_SITE: u64 = 3;

/// What used the connection.
#[derive(Clone)]
pub(crate) enum Use {
    Acquire,
    Begin,
    Commit,
    Rollback,
    /// The implicit rollback of a transaction dropped without `commit` (sqlx queues it).
    RollbackOnDrop,
    Release,
    Statement(Fingerprint),
}

impl Use {
    pub(crate) fn text(&self) -> &str {
        match self {
            Use::Acquire => "acquire",
            Use::Begin => "BEGIN",
            Use::Commit => "COMMIT",
            Use::Rollback => "ROLLBACK",
            Use::RollbackOnDrop => "ROLLBACK (transaction dropped)",
            Use::Release => "release",
            Use::Statement(fp) => fp.normalized(),
        }
    }
}

/// The use of one explicitly held connection.
pub(crate) struct Usage {
    acquired_at: Instant,
    /// When the last use ended, in nanoseconds after `acquired_at` (0: the acquire).
    last_end: AtomicU64,
    /// The idle gaps measured so far: their sum in nanoseconds, how many, the longest.
    idle: AtomicU64,
    gaps: AtomicU64,
    longest: AtomicU64,
    /// The gaps' ends and lengths, kept only while a console records timelines (for the
    /// waterfall), handed to the scope at release; capped like a scope's timeline.
    timeline: Option<Mutex<Vec<(Instant, Duration)>>>,
    /// Open transactions and savepoints.
    depth: AtomicU32,
    /// What ran before the current gap, and where.
    from: Mutex<(Use, CallSite)>,
    /// The fingerprint id of `from` when it is a statement (0 otherwise): a statement that
    /// runs again right after itself (a loop) needs no site lookup and no change of `from`.
    from_fp: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Usage {
    /// A connection acquired at `acquired_at`, from `site` (the `acquire` / `begin` call).
    pub(crate) fn new(acquired_at: Instant, site: CallSite) -> Self {
        Usage {
            acquired_at,
            last_end: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            longest: AtomicU64::new(0),
            timeline: crate::report::timelines_recorded().then(Mutex::default),
            depth: AtomicU32::new(0),
            from: Mutex::new((Use::Acquire, site)),
            from_fp: AtomicU64::new(0),
        }
    }

    /// A use (`what`) starts now: the gap before it, when it reached the threshold. The end of
    /// the gap is the caller's stack (captured only then).
    /// Every gap counts towards the connection's idle time, whatever its length.
    pub(crate) fn starts(&self, settings: &Settings, scope: &str, what: &str) -> Option<HeldIdle> {
        let now = Instant::now();
        let held = now.saturating_duration_since(self.acquired_at);
        let idle = held.saturating_sub(Duration::from_nanos(self.last_end.load(Ordering::Relaxed)));
        if !idle.is_zero() {
            // One task uses a held connection at a time (its `&mut`): plain loads and stores,
            // no read-modify-write.
            let n = nanos(idle);
            let add =
                |a: &AtomicU64, v: u64| a.store(a.load(Ordering::Relaxed) + v, Ordering::Relaxed);
            add(&self.idle, n);
            add(&self.gaps, 1);
            if n > self.longest.load(Ordering::Relaxed) {
                self.longest.store(n, Ordering::Relaxed);
            }
            if let Some(timeline) = &self.timeline {
                let mut timeline = timeline.lock();
                if timeline.len() < crate::report::TIMELINE_CAP {
                    timeline.push((now, idle));
                }
            }
        }
        let threshold = settings.held_idle_threshold?;
        if idle < threshold {
            return None;
        }
        let from = self.from.lock();
        Some(HeldIdle {
            scope: scope.to_owned(),
            idle,
            held,
            in_transaction: self.depth.load(Ordering::Relaxed) > 0,
            from: from.1.clone(),
            from_statement: from.0.text().to_owned(),
            to: CallSite::capture(),
            to_statement: what.to_owned(),
        })
    }

    /// Where a statement runs from, for the gap it may start: the route's cached site for it
    /// (a stack walk the first time). `None` with the finding off, and when the statement is
    /// the one that ran last on this connection (`from` already names it, with its site).
    pub(crate) fn statement_site(
        &self,
        settings: &Settings,
        scope: &str,
        fingerprint: &Fingerprint,
    ) -> Option<CallSite> {
        settings.held_idle_threshold?;
        if self.from_fp.load(Ordering::Relaxed) == fingerprint.id() {
            return None;
        }
        Some(detect::call_site_for(scope, fingerprint.id(), FROM_SITE))
    }

    /// A statement ended now; `site` is where it ran from when [`statement_site`] gave one
    /// (else `from` already names this statement).
    ///
    /// [`statement_site`]: Self::statement_site
    pub(crate) fn statement_ended(&self, fingerprint: &Fingerprint, site: Option<CallSite>) {
        let end = self.acquired_at.elapsed();
        self.last_end.store(nanos(end), Ordering::Relaxed);
        if let Some(site) = site {
            *self.from.lock() = (Use::Statement(fingerprint.clone()), site);
            self.from_fp.store(fingerprint.id(), Ordering::Relaxed);
        }
    }

    /// A use ended now; `site` is where it ran from (kept as the start of the next gap when
    /// known).
    pub(crate) fn ended(&self, what: Use, site: Option<CallSite>) {
        let end = self.acquired_at.elapsed();
        self.last_end.store(nanos(end), Ordering::Relaxed);
        self.from_fp.store(0, Ordering::Relaxed);
        if let Some(site) = site {
            *self.from.lock() = (what, site);
        }
    }

    /// `what` (`BEGIN`, `COMMIT`, `ROLLBACK`) ended now, run from the route's cached site for
    /// it (`BEGIN` keeps the acquire's site: `pool.begin()` is both).
    pub(crate) fn control_ended(&self, settings: &Settings, scope: &str, what: Use) {
        let site = match what {
            Use::Begin => None,
            _ => settings.held_idle_threshold.map(|_| {
                let id = xxhash_rust::xxh3::xxh3_64(what.text().as_bytes());
                detect::call_site_for(scope, id, FROM_SITE)
            }),
        };
        match site {
            Some(site) => self.ended(what, Some(site)),
            None => {
                self.ended(what.clone(), None);
                self.from.lock().0 = what;
            }
        }
    }

    /// A transaction (or savepoint) began or ended.
    pub(crate) fn transaction(&self, began: bool) {
        if began {
            self.depth.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        }
    }

    /// The connection is released now: its idle time (the sum of its measured gaps, the one
    /// before the release included), and the gap before the release when it crossed.
    pub(crate) fn released(&self, settings: &Settings, scope: &str) -> (Idle, Option<HeldIdle>) {
        let gap = self.starts(settings, scope, Use::Release.text());
        let idle = Idle {
            total: Duration::from_nanos(self.idle.load(Ordering::Relaxed)),
            gaps: self.gaps.load(Ordering::Relaxed),
            longest: Duration::from_nanos(self.longest.load(Ordering::Relaxed)),
            timeline: self
                .timeline
                .as_ref()
                .map(|t| std::mem::take(&mut *t.lock()))
                .unwrap_or_default(),
        };
        (idle, gap)
    }
}

/// Records a held-idle finding in `scope` (the unscoped state when it has ended) and reports
/// it once per pair of call sites: `on_finding`, the counter, the WARN in the scope's span.
#[cold]
pub(crate) fn report(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    settings: &Settings,
    item: HeldIdle,
) {
    if !with_state(scope, unscoped, |state| state.add_held_idle(&item)) {
        return;
    }
    crate::telemetry::held_idle(&item);
    settings.on_finding.call(&Finding::HeldIdle(&item));
    scope
        .map_or(unscoped, |s| &**s)
        .warn(Warning::HeldIdle(item));
}
