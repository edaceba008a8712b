//! Plans: `EXPLAIN` on the side for the statements that matter, plan shapes per size class,
//! and plan flips (the plan that changes when an N+1 fix binds 500 ids instead of one).
//!
//! See [`ExplainOptions`] for what is explained, when and how.

mod shape;
mod size;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Row as _};

use crate::detect::CallSite;
use crate::fingerprint::Fingerprint;
use crate::health::StatsSource;
use crate::scope::ScopeInner;
use crate::wrapped::Wrapped;

pub use self::shape::PlanShape;
pub use self::size::SizeClass;

/// Which executions [`PoolOptions::explain`](crate::PoolOptions::explain) explains, and how.
///
/// Off by default; [`PoolOptions::explain`](crate::PoolOptions::explain) turns it on. Which
/// executions are explained: one that ran slower than [`slower_than`](Self::slower_than) makes
/// its statement's *next* execution a candidate (its arguments are gone by the time its
/// duration is known), and [`sample`](Self::sample) makes one execution in N of each
/// statement a candidate. A candidate is explained at most once per (statement, size class)
/// per [`interval`](Self::interval); only then are its arguments cloned.
///
/// The `EXPLAIN (FORMAT JSON)` runs with the same bound arguments, after the statement ended,
/// in a task of its own, on a connection of its own (not one of the pool's, opened on first
/// use with the pool's connect options, `application_name` `pgscope explain` and a
/// `statement_timeout`), one at a time, and never while the pool has waiters: a candidate that
/// meets a busy explainer or a waiting pool is skipped (counted). An `EXPLAIN` that fails is
/// counted and logged once per statement; it never reaches the application.
///
/// **Which plan is shown.** PostgreSQL plans the statement inside an `EXPLAIN` when the
/// `EXPLAIN` runs, with the bound parameter values at hand: the plan is the *custom* plan for
/// those values, the one the server uses for a statement's first five executions on a
/// connection and whenever the custom plan is estimated cheaper than the generic one
/// (`plan_cache_mode = auto`). After five executions of one prepared statement on one
/// connection, the server may switch that connection to a *generic* plan (planned without the
/// values), which this `EXPLAIN` does not show; `plan_cache_mode = force_custom_plan` on the
/// application's connections makes the shown plan the one that runs.
///
/// # Examples
/// ```no_run
/// # async fn f() -> Result<(), sqlx::Error> {
/// use std::time::Duration;
/// let pool = pgscope::PoolOptions::new()
///     .explain(pgscope::ExplainOptions::new().slower_than(Duration::from_millis(50)).sample(1000))
///     .connect("postgres://postgres@127.0.0.1/test")
///     .await?;
/// for statement in pool.plans().statements() {
///     for plan in statement.plans() {
///         println!("{} [{}] {}", statement.statement(), plan.size_class(), plan.shape());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ExplainOptions {
    slower_than: Option<Duration>,
    sample: Option<u32>,
    interval: Duration,
    analyze: bool,
    statement_timeout: Duration,
    max_statements: usize,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ExplainOptions {
    /// Defaults: explain after executions slower than 100 ms, no sampling, at most one
    /// `EXPLAIN` per (statement, size class) per 60 s, no `ANALYZE`, a 2 s
    /// `statement_timeout`, plans kept for at most 1 000 statements.
    pub fn new() -> Self {
        ExplainOptions {
            slower_than: Some(Duration::from_millis(100)),
            sample: None,
            interval: Duration::from_secs(60),
            analyze: false,
            statement_timeout: Duration::from_secs(2),
            max_statements: 1_000,
        }
    }

    /// An execution at least this slow makes its statement's next execution a candidate;
    /// `None` turns the trigger off.
    pub fn slower_than(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.slower_than = threshold.into();
        self
    }

    /// One execution in `n` of each statement is a candidate (the first, then every `n`th);
    /// 0 turns sampling off.
    pub fn sample(mut self, n: u32) -> Self {
        self.sample = (n > 0).then_some(n);
        self
    }

    /// At most one `EXPLAIN` per (statement, size class) per `interval`.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// `EXPLAIN (ANALYZE)`: runs the statement a second time. Applied to `SELECT` statements
    /// only, whatever this says.
    pub fn analyze(mut self, analyze: bool) -> Self {
        self.analyze = analyze;
        self
    }

    /// `statement_timeout` of the explaining connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Statements whose plans are kept; past it, new statements are not explained.
    pub fn max_statements(mut self, max: usize) -> Self {
        self.max_statements = max;
        self
    }
}

/// The plans pgscope has seen, from [`Pool::plans`](crate::Pool::plans).
#[derive(Debug, Clone, Default)]
pub struct Plans {
    statements: Vec<StatementPlans>,
    explained: u64,
    failed: u64,
    skipped: u64,
}

impl Plans {
    /// Per statement, its plans by size class; statements with a plan change first.
    pub fn statements(&self) -> &[StatementPlans] {
        &self.statements
    }

    /// The plans of `sql` (as the application sends it, or normalized: compared by
    /// fingerprint), if it was explained.
    pub fn statement(&self, sql: &str) -> Option<&StatementPlans> {
        let id = crate::fingerprint::fingerprint(sql).id();
        self.statements.iter().find(|s| s.fingerprint == id)
    }

    /// `EXPLAIN`s that returned a plan.
    pub fn explained(&self) -> u64 {
        self.explained
    }

    /// `EXPLAIN`s that failed (permissions, a dropped table, the timeout, a lost connection).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Candidates not explained because the pool had waiters or an `EXPLAIN` was running.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// One statement's plans.
#[derive(Debug, Clone)]
pub struct StatementPlans {
    fingerprint: u64,
    statement: String,
    plans: Vec<SizedPlan>,
    changes: u64,
}

impl StatementPlans {
    /// The statement's fingerprint id.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The normalized statement.
    pub fn statement(&self) -> &str {
        &self.statement
    }

    /// Its plan per size class, smallest class first.
    pub fn plans(&self) -> &[SizedPlan] {
        &self.plans
    }

    /// The plan of one size class.
    pub fn plan(&self, class: SizeClass) -> Option<&SizedPlan> {
        self.plans.iter().find(|p| p.size_class == class)
    }

    /// Plan changes reported for it.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

/// The latest plan of one statement in one size class.
#[derive(Debug, Clone)]
pub struct SizedPlan {
    size_class: SizeClass,
    shape: PlanShape,
    first_seen: SystemTime,
    last_seen: SystemTime,
    explained: u64,
    last_duration: Duration,
    max_duration: Duration,
}

impl SizedPlan {
    /// The size class.
    pub fn size_class(&self) -> SizeClass {
        self.size_class
    }

    /// The latest shape.
    pub fn shape(&self) -> &PlanShape {
        &self.shape
    }

    /// When this shape was first seen in this class.
    pub fn first_seen(&self) -> SystemTime {
        self.first_seen
    }

    /// When it was last seen.
    pub fn last_seen(&self) -> SystemTime {
        self.last_seen
    }

    /// `EXPLAIN`s run for this class.
    pub fn explained(&self) -> u64 {
        self.explained
    }

    /// Duration of the latest explained execution (the application's, not the `EXPLAIN`'s).
    pub fn last_duration(&self) -> Duration {
        self.last_duration
    }

    /// The longest explained execution in this class.
    pub fn max_duration(&self) -> Duration {
        self.max_duration
    }
}

/// A plan flip: one statement whose shape differs between two size classes, or changed over
/// time within one. Logged as a WARN on target `pgscope::plan_change`.
#[derive(Debug, Clone)]
pub struct PlanChange {
    fingerprint: u64,
    statement: Arc<str>,
    from: PlanShape,
    from_size: SizeClass,
    to: PlanShape,
    to_size: SizeClass,
    call_site: CallSite,
}

impl PlanChange {
    /// The statement's fingerprint id.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    /// The normalized statement.
    pub fn statement(&self) -> &str {
        &self.statement
    }
    /// The shape seen before (or in the other size class).
    pub fn from(&self) -> &PlanShape {
        &self.from
    }
    /// Its size class.
    pub fn from_size(&self) -> SizeClass {
        self.from_size
    }
    /// The new shape.
    pub fn to(&self) -> &PlanShape {
        &self.to
    }
    /// Its size class.
    pub fn to_size(&self) -> SizeClass {
        self.to_size
    }
    /// `file:line` of the explained execution in the application.
    pub fn call_site(&self) -> &str {
        self.call_site.get()
    }
}

/// An execution chosen for `EXPLAIN`, carried by the statement until it ends.
pub(crate) struct Candidate {
    fingerprint: Fingerprint,
    sql: String,
    arguments: Option<PgArguments>,
    class: SizeClass,
    call_site: CallSite,
    /// The scope whose span gets the plan-change event, if it is still open then. Not the span
    /// itself: holding it would keep the request's span open until the EXPLAIN ends.
    scope: Option<Weak<ScopeInner>>,
}

/// A pool's explainer.
pub(crate) struct Planner {
    options: ExplainOptions,
    connect: PgConnectOptions,
    stats: Weak<dyn StatsSource>,
    /// Statements whose next execution is a candidate (a slow execution asked for it), by
    /// fingerprint id, and how many: read without the state lock, so one slow statement that
    /// never runs again does not make every other statement take it.
    wanted: dashmap::DashSet<u64>,
    wanted_count: AtomicUsize,
    state: Mutex<HashMap<u64, Statement>>,
    /// An `EXPLAIN` is running.
    busy: Arc<AtomicBool>,
    connection: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    explained: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

struct Statement {
    statement: Arc<str>,
    executions: u64,
    failure_logged: bool,
    classes: BTreeMap<SizeClass, Class>,
    /// Pairs of shapes already reported as a change (by signature hash, smaller first).
    reported: Vec<(u64, u64)>,
    changes: u64,
}

struct Class {
    plan: Option<SizedPlan>,
    last_attempt: Option<Instant>,
}

impl Planner {
    pub(crate) fn new(
        options: ExplainOptions,
        connect: &PgConnectOptions,
        stats: Weak<dyn StatsSource>,
    ) -> Planner {
        let timeout_ms = options.statement_timeout.as_millis().max(1);
        let connect = connect
            .clone()
            .application_name("pgscope explain")
            .options([("statement_timeout", format!("{timeout_ms}"))]);
        Planner {
            options,
            connect,
            stats,
            wanted: dashmap::DashSet::new(),
            wanted_count: AtomicUsize::new(0),
            state: Mutex::new(HashMap::new()),
            busy: Arc::new(AtomicBool::new(false)),
            connection: Arc::new(tokio::sync::Mutex::new(None)),
            explained: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Before the statement is sent: whether this execution is a candidate. With sampling off
    /// and no slow statement waiting, one atomic load; with one waiting, a sharded set lookup.
    pub(crate) fn consider(
        &self,
        fingerprint: &Fingerprint,
        sql: &str,
        arguments: Option<&PgArguments>,
        scope: Option<&Arc<ScopeInner>>,
    ) -> Option<Box<Candidate>> {
        let id = fingerprint.id();
        let wanted =
            self.wanted_count.load(Ordering::Relaxed) > 0 && self.wanted.remove(&id).is_some();
        if wanted {
            self.wanted_count.fetch_sub(1, Ordering::Relaxed);
        }
        if self.options.sample.is_none() && !wanted {
            return None;
        }
        let mut state = self.state.lock();
        let full = state.len() >= self.options.max_statements;
        let entry = match state.get_mut(&id) {
            Some(entry) => entry,
            None if full => return None,
            None => state
                .entry(id)
                .or_insert_with(|| Statement::new(fingerprint)),
        };
        entry.executions += 1;
        let sampled = self
            .options
            .sample
            .is_some_and(|n| (entry.executions - 1) % u64::from(n) == 0);
        if !(sampled || wanted) || !is_explainable(fingerprint.normalized()) {
            return None;
        }
        let debug = arguments.map(|a| format!("{a:?}"));
        let class = SizeClass::of_execution(sql, debug.as_deref());
        let slot = entry.classes.entry(class).or_insert(Class {
            plan: None,
            last_attempt: None,
        });
        if slot
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.options.interval)
        {
            return None;
        }
        slot.last_attempt = Some(Instant::now());
        drop(state);
        Some(Box::new(Candidate {
            fingerprint: fingerprint.clone(),
            sql: sql.to_owned(),
            arguments: arguments.cloned(),
            class,
            call_site: CallSite::capture(),
            scope: scope.map(Arc::downgrade),
        }))
    }

    /// After a statement ended: a slow one makes its statement's next execution a candidate.
    pub(crate) fn finished(&self, fingerprint: &Fingerprint, elapsed: Duration) {
        let Some(threshold) = self.options.slower_than else {
            return;
        };
        if elapsed < threshold || !is_explainable(fingerprint.normalized()) {
            return;
        }
        // Bounded like the plans: past the cap, no new statement is asked for.
        if self.wanted_count.load(Ordering::Relaxed) < self.options.max_statements
            && self.wanted.insert(fingerprint.id())
        {
            self.wanted_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A candidate whose statement succeeded: explained in the background, unless the pool
    /// has waiters or another `EXPLAIN` runs.
    pub(crate) fn submit(self: &Arc<Self>, candidate: Box<Candidate>, elapsed: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.skip(&candidate);
        };
        if self.pool_has_waiters() || self.busy.swap(true, Ordering::AcqRel) {
            return self.skip(&candidate);
        }
        let planner = Arc::clone(self);
        runtime.spawn(async move {
            // Released however the task ends.
            let _busy = Release(Arc::clone(&planner.busy));
            if planner.pool_has_waiters() {
                return planner.skip(&candidate);
            }
            let analyze =
                planner.options.analyze && candidate.fingerprint.normalized().starts_with("SELECT");
            let result = planner.run(&candidate, analyze).await;
            planner.record(*candidate, result, elapsed);
        });
    }

    fn pool_has_waiters(&self) -> bool {
        self.stats
            .upgrade()
            .is_some_and(|s| s.stats().waiters() > 0)
    }

    fn skip(&self, candidate: &Candidate) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        // Let the next candidate of this class try again.
        if let Some(entry) = self.state.lock().get_mut(&candidate.fingerprint.id())
            && let Some(slot) = entry.classes.get_mut(&candidate.class)
        {
            slot.last_attempt = None;
        }
    }

    async fn run(&self, candidate: &Candidate, analyze: bool) -> Result<PlanShape, String> {
        let mut guard = self.connection.lock().await;
        if guard.is_none() {
            let connection = Wrapped::new(Box::pin(PgConnection::connect_with(&self.connect)))
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            *guard = Some(connection);
        }
        let Some(connection) = guard.as_mut() else {
            return Err("no connection".to_owned());
        };
        let result = explain_on(
            connection,
            &candidate.sql,
            candidate.arguments.clone(),
            analyze,
        )
        .await;
        if let Err(ExplainError::Connection(_)) = &result {
            // Lost or broken: open a new one next time.
            *guard = None;
        }
        result.map_err(|e| e.to_string())
    }

    fn record(&self, candidate: Candidate, result: Result<PlanShape, String>, elapsed: Duration) {
        let shape = match result {
            Ok(shape) => shape,
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let first = self
                    .state
                    .lock()
                    .get_mut(&candidate.fingerprint.id())
                    .is_some_and(|e| !std::mem::replace(&mut e.failure_logged, true));
                if first {
                    tracing::warn!(
                        target: "pgscope::plan",
                        statement = candidate.fingerprint.normalized(),
                        error = %error,
                        "EXPLAIN failed (logged once per statement; the application's statement is unaffected)"
                    );
                }
                return;
            }
        };
        self.explained.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let change = {
            let mut state = self.state.lock();
            let Some(entry) = state.get_mut(&candidate.fingerprint.id()) else {
                return;
            };
            let change = entry.observe(&candidate, shape, now, elapsed);
            // Counted before the change is visible in `plans()`: whoever sees it there and
            // then shuts the exporter down exports the counter too.
            if let Some(change) = &change {
                crate::telemetry::plan_change_counted(change.fingerprint);
            }
            change
        };
        if let Some(change) = change {
            tracing::warn!(
                target: "pgscope::plan_change",
                statement = change.statement(),
                from = %change.from(),
                from_size = %change.from_size(),
                to = %change.to(),
                to_size = %change.to_size(),
                call_site = change.call_site(),
                fingerprint = %format_args!("{:016x}", change.fingerprint()),
                "plan change: the statement's plan differs {}",
                if change.from_size() == change.to_size() {
                    "from the one seen before in the same size class"
                } else {
                    "between size classes"
                }
            );
            let scope = candidate.scope.as_ref().and_then(Weak::upgrade);
            let span = scope
                .as_ref()
                .map_or_else(tracing::Span::none, |s| s.span.clone());
            crate::telemetry::plan_changed(
                &span,
                change.fingerprint,
                &change.statement,
                [change.from.signature(), change.to.signature()],
                [change.from_size.to_string(), change.to_size.to_string()],
                change.call_site(),
            );
        }
    }

    pub(crate) fn snapshot(&self) -> Plans {
        let state = self.state.lock();
        let mut statements: Vec<StatementPlans> = state
            .iter()
            .filter_map(|(&fingerprint, s)| {
                let plans: Vec<SizedPlan> =
                    s.classes.values().filter_map(|c| c.plan.clone()).collect();
                (!plans.is_empty()).then(|| StatementPlans {
                    fingerprint,
                    statement: s.statement.to_string(),
                    plans,
                    changes: s.changes,
                })
            })
            .collect();
        statements.sort_by(|a, b| {
            b.changes
                .cmp(&a.changes)
                .then_with(|| a.statement.cmp(&b.statement))
        });
        Plans {
            statements,
            explained: self.explained.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Statement {
    fn new(fingerprint: &Fingerprint) -> Statement {
        Statement {
            statement: Arc::from(fingerprint.normalized()),
            executions: 0,
            failure_logged: false,
            classes: BTreeMap::new(),
            reported: Vec::new(),
            changes: 0,
        }
    }

    /// Records a new plan for the candidate's class; a change when the shape differs from the
    /// class's previous shape or, for a class seen for the first time, from the nearest class's.
    fn observe(
        &mut self,
        candidate: &Candidate,
        shape: PlanShape,
        now: SystemTime,
        elapsed: Duration,
    ) -> Option<PlanChange> {
        let class = candidate.class;
        let previous = match self.classes.get(&class).and_then(|c| c.plan.as_ref()) {
            Some(plan) => Some((class, plan.shape.clone())),
            None => self
                .classes
                .iter()
                .filter(|(c, slot)| **c != class && slot.plan.is_some())
                .min_by_key(|(c, _)| c.max_len().abs_diff(class.max_len()))
                .and_then(|(c, slot)| slot.plan.as_ref().map(|p| (*c, p.shape.clone()))),
        };
        let slot = self.classes.entry(class).or_insert(Class {
            plan: None,
            last_attempt: Some(Instant::now()),
        });
        match &mut slot.plan {
            Some(plan) if plan.shape == shape => {
                plan.last_seen = now;
                plan.explained += 1;
                plan.last_duration = elapsed;
                plan.max_duration = plan.max_duration.max(elapsed);
            }
            Some(plan) => {
                *plan = SizedPlan {
                    first_seen: now,
                    last_seen: now,
                    shape: shape.clone(),
                    explained: plan.explained + 1,
                    last_duration: elapsed,
                    max_duration: plan.max_duration.max(elapsed),
                    size_class: class,
                };
            }
            None => {
                slot.plan = Some(SizedPlan {
                    size_class: class,
                    shape: shape.clone(),
                    first_seen: now,
                    last_seen: now,
                    explained: 1,
                    last_duration: elapsed,
                    max_duration: elapsed,
                });
            }
        }
        let (from_size, from) = previous?;
        if from == shape {
            return None;
        }
        let pair = {
            let (a, b) = (hash(from.signature()), hash(shape.signature()));
            (a.min(b), a.max(b))
        };
        if self.reported.contains(&pair) || self.reported.len() >= 64 {
            return None;
        }
        self.reported.push(pair);
        self.changes += 1;
        Some(PlanChange {
            fingerprint: candidate.fingerprint.id(),
            statement: Arc::clone(&self.statement),
            from,
            from_size,
            to: shape,
            to_size: class,
            call_site: candidate.call_site.clone(),
        })
    }
}

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// Statements `EXPLAIN` accepts.
fn is_explainable(normalized: &str) -> bool {
    let first = normalized.split([' ', '(']).next().unwrap_or("");
    matches!(
        first,
        "SELECT" | "WITH" | "INSERT" | "UPDATE" | "DELETE" | "VALUES" | "TABLE" | "MERGE"
    )
}

/// Why an `EXPLAIN` failed.
#[derive(Debug)]
pub(crate) enum ExplainError {
    /// The server refused it; the connection is fine.
    Statement(sqlx::Error),
    /// The connection is lost or the output could not be read.
    Connection(String),
}

impl std::fmt::Display for ExplainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExplainError::Statement(e) => write!(f, "{e}"),
            ExplainError::Connection(e) => f.write_str(e),
        }
    }
}

/// `EXPLAIN (FORMAT JSON)` of `sql` with `arguments` on `connection`; sqlx's own statement
/// events are not counted by an observer layer.
pub(crate) async fn explain_on(
    connection: &mut PgConnection,
    sql: &str,
    arguments: Option<PgArguments>,
    analyze: bool,
) -> Result<PlanShape, ExplainError> {
    let options = if analyze {
        "ANALYZE, FORMAT JSON"
    } else {
        "FORMAT JSON"
    };
    let text = format!("EXPLAIN ({options}) {sql}");
    let query = sqlx::query_with(sqlx::AssertSqlSafe(text), arguments.unwrap_or_default())
        .persistent(false);
    let row = Wrapped::new(Box::pin(query.fetch_one(connection)))
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(_) => ExplainError::Statement(e),
            other => ExplainError::Connection(other.to_string()),
        })?;
    let json: String = row
        .try_get_unchecked(0)
        .map_err(|e| ExplainError::Connection(e.to_string()))?;
    PlanShape::from_explain_json(&json).map_err(ExplainError::Connection)
}
