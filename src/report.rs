//! What one scope did to the database.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::detect::{Duplicate, HeldIdle, NPlusOne, NestedAcquire};
use crate::fingerprint::Fingerprint;

/// How one statement ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// It ran to the end.
    Ok,
    /// PostgreSQL or the connection returned an error (its class is exported with `otel`).
    Failed(#[cfg_attr(not(feature = "otel"), allow(dead_code))] &'a ErrorClass),
    /// Its future was dropped before it finished (a cancelled request).
    Cancelled,
}

impl Outcome<'_> {
    /// Whether it counts as a failed statement.
    pub(crate) fn failed(&self) -> bool {
        !matches!(self, Outcome::Ok)
    }
}

/// The class of a failure, as exported in `error.type`: the SQLSTATE for database errors
/// (also `db.response.status_code`), else a short name (`io`, `protocol`, …). Never the
/// server's message, which can quote values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorClass {
    pub(crate) kind: std::borrow::Cow<'static, str>,
    pub(crate) sqlstate: Option<String>,
}

/// One statement that ended: how long it took, the rows it returned (or affected), and how
/// it ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Execution<'a> {
    pub(crate) elapsed: Duration,
    pub(crate) rows: u64,
    pub(crate) outcome: Outcome<'a>,
}

/// The running totals of a scope.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Totals {
    pub(crate) queries: u64,
    pub(crate) failed: u64,
    pub(crate) rejected: u64,
    pub(crate) transaction_statements: u64,
    pub(crate) rows: u64,
    pub(crate) db_time: Duration,
    pub(crate) hold_time: Duration,
    /// The part of `hold_time` with no statement running on the held connection.
    pub(crate) idle_hold: Duration,
    pub(crate) pool_wait: Duration,
    pub(crate) acquires: u64,
    pub(crate) max_held: u64,
    /// Statements seen by the observer (after they ran, with no connection or pool wait
    /// measured).
    pub(crate) observed: u64,
    /// Idle gaps on held connections, and the longest.
    pub(crate) idle_gaps: u64,
    pub(crate) longest_idle: Duration,
}

impl Totals {
    /// Adds a nested scope's totals (the most connections held is a maximum, not a sum).
    pub(crate) fn merge(&mut self, c: &Totals) {
        self.queries += c.queries;
        self.failed += c.failed;
        self.rejected += c.rejected;
        self.transaction_statements += c.transaction_statements;
        self.observed += c.observed;
        self.rows += c.rows;
        self.db_time += c.db_time;
        self.hold_time += c.hold_time;
        self.idle_hold += c.idle_hold;
        self.idle_gaps += c.idle_gaps;
        self.longest_idle = self.longest_idle.max(c.longest_idle);
        self.pool_wait += c.pool_wait;
        self.acquires += c.acquires;
        self.max_held = self.max_held.max(c.max_held);
    }
}

/// The totals and per-statement rows of one scope, produced when the scope ends
/// ([`capture`](crate::capture)) or on demand ([`Pool::unscoped_report`](crate::Pool::unscoped_report)).
///
/// `Display` renders a table, the same one the `assert_*` methods print when they fail.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let (rows, report) = pgscope::capture_named("nightly export", async {
///     sqlx::query("SELECT * FROM orders WHERE created_at > now() - interval '1 day'")
///         .fetch_all(&pool)
///         .await
/// })
/// .await;
/// rows?;
/// println!("{report}"); // one line of totals, then one row per statement fingerprint
/// assert_eq!(report.queries(), 1);
/// assert!(report.n_plus_one().is_empty());
/// println!("{:?} in the database, {:?} holding connections", report.db_time(), report.connection_hold_time());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Report {
    name: String,
    totals: Totals,
    fingerprints: Vec<FingerprintStats>,
    n_plus_one: Vec<NPlusOne>,
    duplicates: Vec<Duplicate>,
    nested: Vec<NestedAcquire>,
    held_idle: Vec<HeldIdle>,
    elapsed: Duration,
    status: Option<u16>,
    timeline: Option<Arc<Timeline>>,
}

/// Statements, pool waits and connection holds kept per scope for its [`Timeline`]; the rest
/// are counted in [`Timeline::dropped`].
pub(crate) const TIMELINE_CAP: usize = 256;

/// Consoles alive in the process: while there is one, new scopes keep a [`Timeline`]. Without
/// one none does, and recording costs one branch per statement.
static CONSOLES: AtomicUsize = AtomicUsize::new(0);

/// A console was created.
#[cfg_attr(not(feature = "console"), allow(dead_code))]
pub(crate) fn console_created() {
    CONSOLES.fetch_add(1, Ordering::Relaxed);
}

/// A console (its last clone) was dropped.
#[cfg_attr(not(feature = "console"), allow(dead_code))]
pub(crate) fn console_dropped() {
    CONSOLES.fetch_sub(1, Ordering::Relaxed);
}

/// Whether new scopes keep a timeline.
pub(crate) fn timelines_recorded() -> bool {
    CONSOLES.load(Ordering::Relaxed) > 0
}

/// When each statement of a scope ran, on the scope's own time axis: the data behind a
/// waterfall. Kept for the first statements, pool waits and connection holds of a scope (256 in
/// all; the rest are counted, not kept), and only while a
/// `console::Console` (feature `console`) exists in the process: without one,
/// [`Report::timeline`] is `None` and nothing is recorded.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Vec<TimelineEntry>,
    dropped: u64,
}

/// One bar of a [`Timeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// What happened.
    pub kind: TimelineKind,
    /// When it started, from the start of the scope.
    pub start: Duration,
    /// How long it took.
    pub duration: Duration,
}

/// The idle time of one held connection, handed to its scope at release.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    /// The sum of the gaps.
    pub(crate) total: Duration,
    pub(crate) gaps: u64,
    pub(crate) longest: Duration,
    /// Each gap's end and length, while a console records timelines.
    pub(crate) timeline: Vec<(Instant, Duration)>,
}

/// What a [`TimelineEntry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimelineKind {
    /// A statement, from sending it to its last row.
    Statement {
        /// Its fingerprint's [`id`](crate::Fingerprint::id): the report's row with the same id
        /// has its normalized text.
        fingerprint: u64,
        /// Whether it failed (PostgreSQL error, I/O error, or cancelled).
        failed: bool,
    },
    /// Waiting for the pool to hand out a connection.
    PoolWait,
    /// A connection held, from acquire to release.
    Held {
        /// Which connection: the same number as its [`Idle`](Self::Idle) gaps; 0 for the
        /// connection of one statement on `&Pool`.
        connection: u64,
    },
    /// A gap on an explicitly held connection (`acquire`, `begin`) during which no statement
    /// ran on it: part of [`Report::idle_hold_time`].
    Idle {
        /// The connection, as in [`Held`](Self::Held).
        connection: u64,
    },
}

impl Timeline {
    /// The kept entries, in the order they ended.
    pub fn entries(&self) -> &[TimelineEntry] {
        &self.entries
    }

    /// Entries past the per-scope cap: counted here, not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A scope's timeline while it runs: entries relative to `origin`.
#[derive(Debug, Clone)]
pub(crate) struct TimelineRecorder {
    origin: Instant,
    timeline: Timeline,
}

impl TimelineRecorder {
    pub(crate) fn new(origin: Instant) -> Self {
        TimelineRecorder {
            origin,
            // A typical request's statements, waits and holds, without regrowing.
            timeline: Timeline {
                entries: Vec::with_capacity(32),
                dropped: 0,
            },
        }
    }

    /// Something of `kind` that took `duration` and ended now.
    pub(crate) fn ended(&mut self, kind: TimelineKind, duration: Duration) {
        if self.timeline.entries.len() >= TIMELINE_CAP {
            self.timeline.dropped += 1;
            return;
        }
        let start = self.origin.elapsed().saturating_sub(duration);
        self.timeline.entries.push(TimelineEntry {
            kind,
            start,
            duration,
        });
    }

    /// An entry that ended at `end` (an idle gap handed over when its connection is released).
    pub(crate) fn ended_at(&mut self, kind: TimelineKind, end: Instant, duration: Duration) {
        if self.timeline.entries.len() >= TIMELINE_CAP {
            self.timeline.dropped += 1;
            return;
        }
        let start = end
            .saturating_duration_since(self.origin)
            .saturating_sub(duration);
        self.timeline.entries.push(TimelineEntry {
            kind,
            start,
            duration,
        });
    }

    /// Adds a nested scope's entries, moved onto this scope's time axis.
    pub(crate) fn merge(&mut self, child: &TimelineRecorder) {
        let shift = child.origin.saturating_duration_since(self.origin);
        for entry in &child.timeline.entries {
            if self.timeline.entries.len() >= TIMELINE_CAP {
                self.timeline.dropped += 1;
                continue;
            }
            self.timeline.entries.push(TimelineEntry {
                start: entry.start + shift,
                ..*entry
            });
        }
        self.timeline.dropped += child.timeline.dropped;
    }

    pub(crate) fn snapshot(&self) -> Arc<Timeline> {
        Arc::new(self.timeline.clone())
    }

    /// The timeline, moved out (the scope has ended: nothing records into it any more).
    pub(crate) fn take(&mut self) -> Arc<Timeline> {
        Arc::new(std::mem::take(&mut self.timeline))
    }
}

/// One row of a [`Report`]: all executions of one statement fingerprint in the scope.
///
/// The same type accumulates while the scope runs, so a report is a copy of the rows, not a
/// translation of them.
#[derive(Debug, Clone)]
pub struct FingerprintStats {
    pub(crate) fingerprint: Option<Fingerprint>,
    pub(crate) count: u64,
    pub(crate) failed: u64,
    pub(crate) rows: u64,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
    /// The scope's statement count when this one first ran: the order of first appearance.
    pub(crate) first: u64,
    /// Id of the fingerprint that ran just before this one first did (0: none): the parent
    /// of an N+1.
    pub(crate) after: u64,
    /// The parameter sets of its repetitions.
    pub(crate) params: ParamSets,
}

/// The most distinct parameter sets followed per statement and scope; past it, new sets are
/// counted as distinct but not followed (a loop over thousands of ids is an N+1 long before).
pub(crate) const MAX_PARAM_SETS: usize = 64;

/// Executions of one statement per scope whose parameters are hashed; past it, counts of
/// shared sets stop growing (the class is long settled by then).
const MAX_HASHED: u64 = 4096;

/// A statement's parameter set as its executor hands it over.
pub(crate) enum Params {
    /// Its hash (of the text's literals and the bound values).
    Hash(u64),
    /// Not seen (the observer does not see bound values).
    Unknown,
    /// Computed only if it is ever needed: the first execution of a statement in a scope
    /// keeps its bound values (a clone, far cheaper than hashing them) and they are hashed
    /// when a second execution comes. A statement that runs once is never hashed.
    Later(LaterHash),
}

/// A parameter set's hash, computed when called. `Sync` and unwind-safe, so the rows that keep
/// one leave [`Report`]'s auto traits as they were.
pub(crate) type LaterHash =
    Box<dyn FnOnce() -> u64 + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A first parameter set kept unhashed (see [`Params::Later`]); a copy of the row drops it
/// (a report does not classify), keeping only that there was one.
#[derive(Default)]
struct Later(Option<(LaterHash, u64)>);

impl Clone for Later {
    fn clone(&self) -> Self {
        Later(None)
    }
}

impl std::fmt::Debug for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Later(..)"
        } else {
            "None"
        })
    }
}

/// What the executions of one statement in a scope were called with: each distinct parameter
/// set (a hash of the text's literals and the bound values) with how many executions shared it,
/// and the longest run of them with no write in the scope between.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParamSets {
    /// The first set seen (`hash` 0: none yet): kept inline, so a statement that runs with one
    /// set allocates nothing.
    first: ParamSet,
    /// The other distinct sets, up to [`MAX_PARAM_SETS`] in all.
    more: Vec<ParamSet>,
    /// A set past the cap was seen: the distinct count is a lower bound.
    capped: bool,
    /// Executions whose parameters could not be seen (the observer does not see bound values).
    unknown: u64,
    /// Executions hashed.
    hashed: u64,
    /// The first set, kept unhashed until a second execution needs it, and its epoch.
    later: Later,
    /// A first set was kept unhashed (it counts as one set while it is alone).
    unhashed: bool,
    /// Executions not read at all (see [`ParamSets::skip`]).
    skipped: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct ParamSet {
    hash: u64,
    count: u64,
    /// Executions since the last write in the scope (the scope's write count at the last one).
    run: u64,
    epoch: u64,
    /// The longest such run: repeats that certainly read the same rows.
    best_run: u64,
}

impl ParamSet {
    fn new(hash: u64, epoch: u64) -> Self {
        ParamSet {
            hash,
            count: 1,
            run: 1,
            epoch,
            best_run: 1,
        }
    }

    fn again(&mut self, epoch: u64) {
        self.count += 1;
        self.run = if self.epoch == epoch { self.run + 1 } else { 1 };
        self.epoch = epoch;
        self.best_run = self.best_run.max(self.run);
    }
}

impl ParamSets {
    /// Records one execution's parameter set at the scope's write count `epoch`.
    pub(crate) fn record(&mut self, params: Params, epoch: u64) {
        if let Some((first, at)) = self.later.0.take() {
            self.unhashed = false;
            self.record_hash(Some(first()), at);
        }
        match params {
            Params::Hash(hash) => self.record_hash(Some(hash), epoch),
            Params::Unknown => self.record_hash(None, epoch),
            Params::Later(f) if self.hashed == 0 && self.unknown == 0 && !self.unhashed => {
                self.later.0 = Some((f, epoch));
                self.unhashed = true;
            }
            Params::Later(f) => self.record_hash(Some(f()), epoch),
        }
    }

    /// Whether the next execution's parameters may be kept unhashed (none seen yet).
    pub(crate) fn first(&self) -> bool {
        self.hashed == 0 && self.unknown == 0 && !self.unhashed
    }

    fn record_hash(&mut self, params: Option<u64>, epoch: u64) {
        let Some(hash) = params else {
            self.unknown += 1;
            return;
        };
        self.hashed += 1;
        let hash = hash.max(1);
        if self.first.hash == 0 {
            self.first = ParamSet::new(hash, epoch);
        } else if self.first.hash == hash {
            self.first.again(epoch);
        } else if let Some(set) = self.more.iter_mut().find(|s| s.hash == hash) {
            set.again(epoch);
        } else if self.more.len() + 1 < MAX_PARAM_SETS {
            self.more.push(ParamSet::new(hash, epoch));
        } else {
            self.capped = true;
        }
    }

    /// Whether the next execution's parameters are still worth hashing.
    pub(crate) fn open(&self) -> bool {
        self.hashed < MAX_HASHED
    }

    fn sets(&self) -> impl Iterator<Item = &ParamSet> {
        std::iter::once(&self.first)
            .filter(|s| s.hash != 0)
            .chain(self.more.iter())
    }

    /// Distinct parameter sets seen (a lower bound when [`capped`](Self::capped)).
    pub(crate) fn distinct(&self) -> usize {
        self.sets().count() + usize::from(self.capped) + usize::from(self.unhashed)
    }

    /// Whether more distinct sets were seen than are followed.
    pub(crate) fn capped(&self) -> bool {
        self.capped
    }

    /// Whether some executions were not read (hashing stopped: the counts are lower bounds).
    pub(crate) fn partial(&self) -> bool {
        self.skipped > 0
    }

    /// An execution whose parameters were not read (exact counting is off and the class is
    /// already known).
    pub(crate) fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Whether some executions' parameters were not seen.
    pub(crate) fn unknown(&self) -> bool {
        self.unknown > 0
    }

    /// The longest run of executions that shared one set with no write in the scope between.
    pub(crate) fn longest_run(&self) -> u64 {
        self.sets()
            .map(|s| s.best_run)
            .fold(u64::from(self.unhashed), u64::max)
    }

    /// Whether the executions so far are certainly an N+1: two or more distinct sets, or sets
    /// not seen (the observer's) on a statement that is not a locking read or volatile call.
    pub(crate) fn varied(&self, effects: crate::fingerprint::Effects) -> bool {
        self.distinct() > 1 || (self.unknown() && effects != crate::fingerprint::Effects::Volatile)
    }
}

impl FingerprintStats {
    /// An empty row for `fingerprint` (`None`: the overflow row).
    pub(crate) fn new(fingerprint: Option<Fingerprint>) -> Self {
        FingerprintStats {
            fingerprint,
            count: 0,
            failed: 0,
            rows: 0,
            total: Duration::ZERO,
            max: Duration::ZERO,
            first: 0,
            after: 0,
            params: ParamSets::default(),
        }
    }

    /// Adds one finished execution.
    pub(crate) fn record(&mut self, elapsed: Duration, rows: u64, failed: bool) {
        self.total += elapsed;
        self.max = self.max.max(elapsed);
        self.rows += rows;
        self.failed += u64::from(failed);
    }

    /// Adds another row of the same fingerprint (a nested scope's).
    pub(crate) fn merge(&mut self, other: &FingerprintStats) {
        self.count += other.count;
        self.failed += other.failed;
        self.rows += other.rows;
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The fingerprint, or `None` for the row that collects statements past the per-scope
    /// limit of distinct fingerprints.
    pub fn fingerprint(&self) -> Option<&Fingerprint> {
        self.fingerprint.as_ref()
    }

    /// The normalized SQL (`(other statements)` for the overflow row).
    pub fn normalized(&self) -> &str {
        self.fingerprint
            .as_ref()
            .map_or("(other statements)", Fingerprint::normalized)
    }

    /// How many times it was sent to PostgreSQL.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How many of those failed (PostgreSQL error, I/O error or cancelled).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Rows returned (or affected, for statements that return none).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Total time in the database, from sending to the last row.
    pub fn total_time(&self) -> Duration {
        self.total
    }

    /// Slowest single execution.
    pub fn max_time(&self) -> Duration {
        self.max
    }
}

impl Report {
    pub(crate) fn new(
        name: String,
        totals: Totals,
        fingerprints: Vec<FingerprintStats>,
        n_plus_one: Vec<NPlusOne>,
        nested: Vec<NestedAcquire>,
    ) -> Self {
        Report {
            name,
            totals,
            fingerprints,
            n_plus_one,
            duplicates: Vec::new(),
            nested,
            held_idle: Vec::new(),
            elapsed: Duration::ZERO,
            status: None,
            timeline: None,
        }
    }

    pub(crate) fn with_duplicates(mut self, duplicates: Vec<Duplicate>) -> Self {
        self.duplicates = duplicates;
        self
    }

    pub(crate) fn with_held_idle(mut self, held_idle: Vec<HeldIdle>) -> Self {
        self.held_idle = held_idle;
        self
    }

    pub(crate) fn with_time(mut self, elapsed: Duration, timeline: Option<Arc<Timeline>>) -> Self {
        self.elapsed = elapsed;
        self.timeline = timeline;
        self
    }

    pub(crate) fn set_timeline(&mut self, timeline: Arc<Timeline>) {
        self.timeline = Some(timeline);
    }

    /// Sets the response status of the request the scope served.
    #[cfg_attr(not(any(feature = "tower", feature = "actix")), allow(dead_code))]
    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = Some(status);
    }

    /// How long the scope ran, from its first poll to its end (to now for a report taken while
    /// it runs).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The HTTP status of the response, for a request scope opened by
    /// [`ScopeLayer`](crate::http::ScopeLayer) or [`actix::Scopes`](crate::actix::Scopes)
    /// that produced one; `None` for other scopes, handler errors and cancelled requests.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// When each statement ran on the scope's time axis, with pool waits and connection holds:
    /// `Some` only for scopes started while a `console::Console` (feature `console`) exists.
    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_deref()
    }

    /// The scope's name (`anonymous` for [`capture`](crate::capture)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Statements sent to PostgreSQL inside the scope, failed ones included. Transaction
    /// control sent by [`Pool::begin`](crate::Pool::begin) and
    /// [`Transaction::commit`](crate::Transaction::commit) is counted separately in
    /// [`transaction_queries`](Self::transaction_queries).
    pub fn queries(&self) -> u64 {
        self.totals.queries
    }

    /// Statements that failed: errors from PostgreSQL (syntax, constraint), I/O errors, and
    /// queries whose future was dropped before they finished.
    pub fn failed_queries(&self) -> u64 {
        self.totals.failed
    }

    /// Queries refused by pgscope before reaching PostgreSQL (query budget, N+1 in error mode).
    pub fn rejected_queries(&self) -> u64 {
        self.totals.rejected
    }

    /// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoint statements issued by pgscope transactions.
    pub fn transaction_queries(&self) -> u64 {
        self.totals.transaction_statements
    }

    /// Rows returned (or affected) by all statements.
    pub fn rows(&self) -> u64 {
        self.totals.rows
    }

    /// Per-fingerprint rows, most executed first (ties: most time first).
    pub fn fingerprints(&self) -> &[FingerprintStats] {
        &self.fingerprints
    }

    /// Time spent in queries (summed; concurrent queries each count).
    pub fn db_time(&self) -> Duration {
        self.totals.db_time
    }

    /// Time connections were held by this scope, from acquire to release, summed over
    /// connections (including the short holds of queries run directly on `&Pool`).
    pub fn connection_hold_time(&self) -> Duration {
        self.totals.hold_time
    }

    /// Time spent waiting for the pool to hand out a connection.
    pub fn pool_wait_time(&self) -> Duration {
        self.totals.pool_wait
    }

    /// Whether connection hold time and pool wait were measured: false for a scope whose
    /// statements were all seen by the [observer](mod@crate::observe) (it sees statements after
    /// they ran, not the pool), where [`connection_hold_time`](Self::connection_hold_time)
    /// and [`pool_wait_time`](Self::pool_wait_time) read zero without meaning it.
    pub fn connections_measured(&self) -> bool {
        self.totals.acquires > 0 || self.totals.observed == 0
    }

    /// Connections acquired by the scope.
    pub fn connections_acquired(&self) -> u64 {
        self.totals.acquires
    }

    /// The most connections this scope held at the same time.
    pub fn max_connections_held(&self) -> u64 {
        self.totals.max_held
    }

    /// N+1 findings, one per repeated fingerprint, with the final count.
    pub fn n_plus_one(&self) -> &[NPlusOne] {
        &self.n_plus_one
    }

    /// Statements repeated with the same parameters, one per fingerprint, with the final
    /// count: reuse the result rather than batch (see [`Duplicate`]). A statement repeated
    /// with different parameters is an [N+1](Self::n_plus_one) instead.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// Connections the scope held idle past the pool's
    /// [`held_idle_threshold`](crate::PoolOptions::held_idle_threshold), once per pair of call
    /// sites (see [`HeldIdle`]).
    pub fn held_idle(&self) -> &[HeldIdle] {
        &self.held_idle
    }

    /// The part of [`connection_hold_time`](Self::connection_hold_time) during which no
    /// statement ran on a held connection (explicitly held connections: `acquire`, `begin`):
    /// the sum of every idle gap measured (after the acquire or `BEGIN`, between statements,
    /// before `COMMIT` and the release), below the held-idle threshold or not, over all
    /// connections. Time the pool lost to this scope for nothing. The gaps that crossed the
    /// threshold are [`held_idle`](Self::held_idle) findings; [`idle_gaps`](Self::idle_gaps)
    /// and [`longest_idle_gap`](Self::longest_idle_gap) say how the rest is made up, and the
    /// console draws each gap on its connection's row.
    pub fn idle_hold_time(&self) -> Duration {
        self.totals.idle_hold
    }

    /// How many idle gaps [`idle_hold_time`](Self::idle_hold_time) adds up.
    pub fn idle_gaps(&self) -> u64 {
        self.totals.idle_gaps
    }

    /// The longest idle gap on a held connection.
    pub fn longest_idle_gap(&self) -> Duration {
        self.totals.longest_idle
    }

    /// Times the scope acquired a connection while already holding one.
    pub fn nested_acquires(&self) -> &[NestedAcquire] {
        &self.nested
    }

    /// The value of a `Server-Timing` response header for this report,
    /// `db;dur=12.3;desc="21 queries"`: the browser's network panel shows it beside the
    /// request. Use it from any framework.
    ///
    /// # Examples
    /// ```
    /// # fn f(report: pgscope::Report) {
    /// let header = ("server-timing", report.server_timing());
    /// # }
    /// ```
    pub fn server_timing(&self) -> String {
        format!(
            "db;dur={:.1};desc=\"{}\"",
            ms(self.totals.db_time),
            plural(self.queries(), "query", "queries")
        )
    }

    /// The scope's statements as stable text: one line per fingerprint, `count × normalized
    /// SQL`, in order of first appearance, no timings. Snapshot it in a test and a reviewer sees
    /// in the diff when an endpoint starts running new statements, or more of them.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn t(pool: pgscope::Pool) {
    /// let (_, report) = pgscope::capture(async {
    ///     sqlx::query("SELECT id FROM posts LIMIT 20").fetch_all(&pool).await
    /// })
    /// .await;
    /// // With `insta` as a dev-dependency:
    /// insta::assert_snapshot!(report.snapshot(), @"1 × SELECT id FROM posts LIMIT $1");
    /// # }
    /// ```
    pub fn snapshot(&self) -> String {
        let mut rows: Vec<&FingerprintStats> = self.fingerprints.iter().collect();
        rows.sort_by_key(|r| (r.fingerprint.is_none(), r.first));
        let mut out = String::new();
        for row in rows {
            out.push_str(&format!("{} × {}\n", row.count, row.normalized()));
        }
        for item in &self.held_idle {
            out.push_str(&format!(
                "held idle{}: after {} → before {}\n",
                if item.in_transaction() {
                    " in a transaction"
                } else {
                    ""
                },
                item.from_statement(),
                item.to_statement()
            ));
        }
        out.pop();
        out
    }

    /// Asserts the scope sent exactly `expected` statements.
    ///
    /// # Panics
    /// When the count differs, with the report rendered as a table.
    #[track_caller]
    pub fn assert_queries(&self, expected: u64) {
        if self.queries() != expected {
            panic!(
                "expected {expected} queries in scope `{}`, got {}\n{self}",
                self.name,
                self.queries()
            );
        }
    }

    /// Asserts the scope sent at most `max` statements.
    ///
    /// # Panics
    /// When more ran, with the report rendered as a table.
    #[track_caller]
    pub fn assert_max_queries(&self, max: u64) {
        if self.queries() > max {
            panic!(
                "expected at most {max} queries in scope `{}`, got {}\n{self}",
                self.name,
                self.queries()
            );
        }
    }

    /// Asserts no connection was held idle past the threshold.
    ///
    /// # Panics
    /// When one was, naming both ends of each gap, with the report rendered as a table.
    #[track_caller]
    pub fn assert_no_held_idle(&self) {
        if !self.held_idle.is_empty() {
            let mut msg = format!("connections held idle in scope `{}`:\n", self.name);
            for item in &self.held_idle {
                msg.push_str(&format!("  {item}\n"));
            }
            panic!("{msg}\n{self}");
        }
    }

    /// Asserts no N+1 was detected.
    ///
    /// # Panics
    /// When one was, naming the SQL, count and call site, with a fix hint.
    #[track_caller]
    pub fn assert_no_n_plus_one(&self) {
        if !self.n_plus_one.is_empty() {
            let mut msg = format!("N+1 queries detected in scope `{}`:\n", self.name);
            for item in &self.n_plus_one {
                msg.push_str(&format!(
                    "  {}x  {}\n      at {}\n",
                    item.count(),
                    item.fingerprint().normalized(),
                    item.call_site()
                ));
            }
            msg.push_str(
                "hint: load the rows in one query, e.g. `WHERE id = ANY($1)` with a Vec of ids, or a JOIN\n",
            );
            panic!("{msg}\n{self}");
        }
    }
}

/// `1 query`, `2 queries`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        write!(
            f,
            "pgscope report `{}`: {} ({} failed, {} rejected), db {:.2} ms, ",
            self.name,
            plural(t.queries, "query", "queries"),
            t.failed,
            t.rejected,
            ms(t.db_time),
        )?;
        if self.connections_measured() {
            writeln!(
                f,
                "connections held {:.2} ms, pool wait {:.2} ms",
                ms(t.hold_time),
                ms(t.pool_wait)
            )?;
        } else {
            writeln!(
                f,
                "connections held not measured, pool wait not measured (observer)"
            )?;
        }
        if t.idle_gaps > 0 {
            writeln!(
                f,
                "  held connections idle {:.2} ms in {} (longest {:.2} ms)",
                ms(t.idle_hold),
                plural(t.idle_gaps, "gap", "gaps"),
                ms(t.longest_idle)
            )?;
        }
        writeln!(
            f,
            "  {:>6}  {:>10}  {:>10}  {:>8}  {:<16}  statement",
            "count", "total ms", "max ms", "rows", "fingerprint"
        )?;
        for row in &self.fingerprints {
            let id = row
                .fingerprint
                .as_ref()
                .map_or_else(|| "-".repeat(16), Fingerprint::hex);
            let sql = row.normalized();
            let sql = match sql.char_indices().nth(120) {
                Some((cut, _)) => format!("{}…", &sql[..cut]),
                None => sql.to_owned(),
            };
            writeln!(
                f,
                "  {:>6}  {:>10.2}  {:>10.2}  {:>8}  {:<16}  {}",
                row.count,
                ms(row.total),
                ms(row.max),
                row.rows,
                id,
                sql
            )?;
        }
        for item in &self.n_plus_one {
            writeln!(f, "  WARNING {item}")?;
        }
        for item in &self.duplicates {
            writeln!(f, "  WARNING {item}")?;
        }
        for item in &self.nested {
            writeln!(f, "  WARNING {item}")?;
        }
        for item in &self.held_idle {
            writeln!(f, "  WARNING {item}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(queries: u64) -> Report {
        let fp = crate::fingerprint("SELECT name FROM users WHERE id = 7");
        let mut row = FingerprintStats::new(Some(fp.clone()));
        row.count = queries;
        row.record(Duration::from_micros(1500), 1, false);
        let totals = Totals {
            queries,
            db_time: Duration::from_micros(1500),
            hold_time: Duration::from_millis(3),
            ..Totals::default()
        };
        let n_plus_one = NPlusOne {
            scope: "GET /api/feed".into(),
            fingerprint: fp,
            count: queries,
            threshold: 5,
            call_site: crate::detect::CallSite::known("src/feed.rs:42"),
            parent: None,
            distinct: 20,
            distinct_capped: false,
        };
        Report::new(
            "GET /api/feed".into(),
            totals,
            vec![row],
            vec![n_plus_one],
            vec![],
        )
    }

    #[test]
    fn display_renders_totals_rows_and_findings() {
        let text = report(20).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "pgscope report `GET /api/feed`: 20 queries (0 failed, 0 rejected), db 1.50 ms, \
             connections held 3.00 ms, pool wait 0.00 ms"
        );
        assert!(lines[1].contains("count") && lines[1].ends_with("statement"));
        assert!(lines[2].trim_start().starts_with("20"));
        assert!(lines[2].ends_with("SELECT name FROM users WHERE id = $1"));
        assert!(lines[3].contains("N+1 in GET /api/feed: 20x"));
        assert!(lines[3].contains("from src/feed.rs:42"));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn one_query_is_singular() {
        assert!(
            report(1)
                .to_string()
                .starts_with("pgscope report `GET /api/feed`: 1 query (")
        );
        assert_eq!(report(1).server_timing(), "db;dur=1.5;desc=\"1 query\"");
        assert_eq!(report(3).server_timing(), "db;dur=1.5;desc=\"3 queries\"");
    }

    #[test]
    fn long_statements_are_cut_in_the_table_on_a_char_boundary() {
        let sql = format!("SELECT '{}' AS é{}", "x", "é".repeat(200));
        let fp = crate::fingerprint(&sql);
        let mut row = FingerprintStats::new(Some(fp));
        row.count = 1;
        let r = Report::new("s".into(), Totals::default(), vec![row], vec![], vec![]);
        let text = r.to_string();
        let line = text.lines().nth(2).expect("row");
        assert!(line.ends_with('…'), "{line}");
    }
}
