//! What a scope accumulates, and the one accounting API every other module calls.
//!
//! Each scope's state sits behind one short-held lock: queries of one request contend only
//! with each other, never with other requests. Records for a scope that has already ended go
//! to the pool's catch-all (unscoped) state, so nothing is lost: [`with_state`] is the one place
//! that routing is decided.

use std::borrow::Cow;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::span;
use crate::detect::{
    self, CallSite, Duplicate, NPlusOne, NestedAcquire, OnFinding, Overrides, Rules, Seen,
    Settings, Verdict,
};
use crate::fingerprint::{Effects, Fingerprint, HashKeyed};
use crate::health::Health;
use crate::report::{
    Execution, FingerprintStats, Params, Report, TimelineKind, TimelineRecorder, Totals,
    timelines_recorded,
};
use crate::telemetry::{PendingRun, StatementSpan};

/// Per-scope fingerprint rows are capped so a scope that runs thousands of distinct statements
/// (a migration, a fuzzer) cannot grow without bound; the rest is folded into one row.
pub(crate) const MAX_ROWS_PER_SCOPE: usize = 512;

tokio::task_local! {
    /// The scope of the running task: found in one pointer copy on every query.
    pub(crate) static CURRENT: Arc<ScopeInner>;
}

/// The scope queries started here count for: the task-local one, else the nearest enclosing
/// `tracing` span that was created inside a scope.
pub(crate) fn current() -> Option<Arc<ScopeInner>> {
    CURRENT.try_with(Arc::clone).ok().or_else(span::find)
}

pub(crate) struct ScopeInner {
    pub(crate) name: Cow<'static, str>,
    pub(crate) overrides: Overrides,
    parent: Option<Arc<ScopeInner>>,
    /// The scope's span: the span current when the scope started (a request span), or a new
    /// `pgscope.scope` span when there was none or it already belonged to a scope. Attribution
    /// never looks at its fields; it carries the scope so spans created inside the scope have
    /// an ancestor that leads back to it, and receives the scope's summary.
    pub(crate) span: tracing::Span,
    /// Whether `span` was made for this scope (and must be entered around its future).
    pub(crate) owns_span: bool,
    /// When the scope started: its report's elapsed time.
    started: Instant,
    state: Mutex<State>,
    /// Statement spans waiting to be merged (span compression), and whether the scope closed
    /// (then nothing waits).
    spans: Mutex<(bool, PendingRun)>,
    /// Warnings still waiting for their call site: emitted when the scope ends at the latest, so
    /// nothing keeps the scope's span open after it.
    warnings: Mutex<Vec<Arc<detect::Pending>>>,
}

/// Everything a scope accumulates.
#[derive(Default)]
pub(crate) struct State {
    /// The pool's catch-all for statements outside any scope: counted, never checked.
    catch_all: bool,
    closed: bool,
    totals: Totals,
    rows: HashKeyed<u64, FingerprintStats>,
    overflow: Option<FingerprintStats>,
    /// Statements of this scope that crossed the repetition threshold: classified (N+1,
    /// duplicate, both or neither) from all their executions when a report is made.
    repeats: Vec<Repetition>,
    /// Statements that may have changed data so far: a read repeated across one may return
    /// something else, so it is not a duplicate.
    writes: u64,
    /// Findings of nested scopes that ended, as they reported them.
    n_plus_one: Vec<NPlusOne>,
    duplicates: Vec<Duplicate>,
    nested: Vec<NestedAcquire>,
    held_idle: Vec<detect::HeldIdle>,
    /// Connections this scope holds right now (explicit acquires), with where each was acquired.
    held: Vec<(u64, &'static Location<'static>)>,
    /// Connections held right now for one statement on `&Pool`: they count towards the most
    /// connections held at once too.
    transient: u64,
    /// Health of the pools this scope acquired from: told about its hold time when it ends.
    pools: Vec<Arc<Health>>,
    /// Id of the fingerprint of the last statement admitted (0: none yet).
    last: u64,
    /// When each statement ran, kept only while a console is installed.
    timeline: Option<TimelineRecorder>,
}

impl ScopeInner {
    /// A scope; with `use_current_span`, it takes the current span as its own when it may.
    pub(crate) fn new(
        name: Cow<'static, str>,
        overrides: Overrides,
        parent: Option<Arc<ScopeInner>>,
        use_current_span: bool,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let claimed = if use_current_span {
                span::claim_current(weak)
            } else {
                None
            };
            let (span, owns_span) = match claimed {
                Some(span) => (span, false),
                None => {
                    // DEBUG on its own target: kept out of the application's logs at the usual
                    // levels, exported when the OpenTelemetry layer's filter asks for it
                    // (`otel::init` does), and recorded (so it carries the scope) whenever any
                    // layer enables it.
                    let span = tracing::debug_span!(
                        target: "pgscope::scope", "pgscope.scope", pgscope.scope = %name
                    );
                    // A new span: always free to carry the scope.
                    span::claim(&span, weak);
                    (span, true)
                }
            };
            let started = Instant::now();
            ScopeInner {
                name,
                overrides,
                parent,
                span,
                owns_span,
                started,
                state: Mutex::new(State {
                    timeline: timelines_recorded().then(|| TimelineRecorder::new(started)),
                    ..State::default()
                }),
                spans: Mutex::default(),
                warnings: Mutex::default(),
            }
        })
    }

    /// A pool's catch-all scope for statements outside any scope; it never closes.
    pub(crate) fn unscoped() -> Arc<Self> {
        Arc::new(ScopeInner {
            name: Cow::Borrowed("unscoped"),
            overrides: Overrides::default(),
            parent: None,
            span: tracing::Span::none(),
            owns_span: false,
            started: Instant::now(),
            state: Mutex::new(State {
                catch_all: true,
                ..State::default()
            }),
            spans: Mutex::default(),
            warnings: Mutex::default(),
        })
    }

    /// The rules for statements of this scope under a pool's `settings`.
    pub(crate) fn rules<'a>(&'a self, settings: &'a Settings) -> Rules<'a> {
        Rules::new(settings, &self.overrides)
    }

    /// An ended statement's deferred span: merged into the scope's run of equal statements,
    /// or exported at once when the scope has closed.
    pub(crate) fn add_span(&self, span: &mut StatementSpan) {
        let (flushed, rest) = {
            let mut spans = self.spans.lock();
            let flushed = spans.1.add(span);
            let rest = spans.0.then(|| spans.1.take());
            (flushed, rest)
        };
        flushed.export();
        if let Some(rest) = rest {
            rest.export();
        }
    }

    /// Reports `warning` inside the scope's span (see [`detect::warn_later`]); one still waiting
    /// for its call site when the scope ends is emitted then.
    pub(crate) fn warn(&self, warning: detect::Warning) {
        if let Some(pending) = detect::warn_later(warning, self.span.clone())
            && !self.span.is_none()
        {
            let mut warnings = self.warnings.lock();
            // Emitted ones are dropped as new ones come (a long-lived scope stays bounded).
            warnings.retain(|p| Arc::strong_count(p) > 1);
            warnings.push(pending);
        }
    }

    /// Emits the warnings still waiting for their call site (the scope is ending).
    pub(crate) fn emit_warnings(&self) {
        let warnings = std::mem::take(&mut *self.warnings.lock());
        for pending in warnings {
            pending.emit();
        }
    }

    /// The report so far.
    pub(crate) fn snapshot(&self) -> Report {
        self.state.lock().report(&self.name, self.started)
    }

    /// Closes the scope and returns its final report; later records go to the unscoped state.
    /// A nested scope's totals are added to its parent's; a top-level scope (a request) feeds
    /// the starvation diagnosis of the pools it used.
    pub(crate) fn close(&self) -> Report {
        let flushed = {
            let mut spans = self.spans.lock();
            spans.0 = true;
            spans.1.take()
        };
        flushed.export();
        let mut state = self.state.lock();
        state.closed = true;
        let own = state.repetitions(&self.name);
        let mut report = state.report_with(&self.name, self.started, &own);
        let (n_plus_one, duplicates) = own;
        if let Some(timeline) = &mut state.timeline {
            // A nested scope's entries still go to its parent, which merges the state below.
            report.set_timeline(match self.parent {
                None => timeline.take(),
                Some(_) => timeline.snapshot(),
            });
        }
        match &self.parent {
            Some(parent) => {
                let mut p = parent.state.lock();
                if !p.closed {
                    p.merge(&state, &report);
                }
                drop(p);
                drop(state);
            }
            None => {
                let pools = std::mem::take(&mut state.pools);
                drop(state);
                for health in pools {
                    health.record_request(
                        &self.name,
                        report.connection_hold_time(),
                        report.idle_hold_time(),
                    );
                }
            }
        }
        // Told now, with the counts of the report: the class of a repetition is known only
        // once all its executions are.
        for (item, on_finding) in n_plus_one {
            crate::telemetry::n_plus_one(&item);
            on_finding.call(&detect::Finding::NPlusOne(&item));
            self.warn(detect::Warning::NPlusOne(item));
        }
        for (item, on_finding) in duplicates {
            crate::telemetry::duplicate(&item);
            on_finding.call(&detect::Finding::Duplicate(&item));
            self.warn(detect::Warning::Duplicate(item));
        }
        report
    }

    /// Drops an explicitly acquired connection from the scope's held list (even after the
    /// scope closed: the list belongs to the acquiring scope).
    pub(crate) fn release_held(&self, id: u64) {
        self.state.lock().held.retain(|(h, _)| *h != id);
    }
}

/// A statement that crossed the repetition threshold in a scope.
#[derive(Clone)]
pub(crate) struct Repetition {
    fingerprint: u64,
    call_site: CallSite,
    threshold: u32,
    /// Its call site is allowed ([`Scope::allow_call_site`](crate::Scope::allow_call_site)):
    /// nothing to report.
    allowed: bool,
    /// The `on_finding` hook of the pool it ran on, told when the scope ends.
    on_finding: OnFinding,
}

impl Repetition {
    pub(crate) fn new(
        fingerprint: &Fingerprint,
        call_site: CallSite,
        threshold: u32,
        allowed: bool,
        settings: &Settings,
    ) -> Self {
        Repetition {
            fingerprint: fingerprint.id(),
            call_site,
            threshold,
            allowed,
            on_finding: settings.on_finding.clone(),
        }
    }

    pub(crate) fn allowed(&self) -> bool {
        self.allowed
    }
}

/// Runs `f` on the state of `scope` if it is still open, else on `unscoped`'s, so a record that
/// arrives after its scope ended is kept rather than lost.
pub(crate) fn with_state<R>(
    scope: Option<&Arc<ScopeInner>>,
    unscoped: &ScopeInner,
    f: impl FnOnce(&mut State) -> R,
) -> R {
    if let Some(scope) = scope {
        let mut state = scope.state.lock();
        if !state.closed {
            return f(&mut state);
        }
    }
    f(&mut unscoped.state.lock())
}

impl State {
    /// The row for `fp`, created on first use; past the cap, the shared overflow row.
    fn row(&mut self, fp: &Fingerprint) -> &mut FingerprintStats {
        if self.rows.len() >= MAX_ROWS_PER_SCOPE && !self.rows.contains_key(&fp.id()) {
            return self
                .overflow
                .get_or_insert_with(|| FingerprintStats::new(None));
        }
        self.rows
            .entry(fp.id())
            .or_insert_with(|| FingerprintStats::new(Some(fp.clone())))
    }

    /// Asks the rules about a statement and counts it unless it is refused by the budget
    /// (counted as rejected instead). The catch-all state counts without checking.
    ///
    /// `params` gives the statement's parameter set, asked for every execution of a checked
    /// statement; its argument says whether it may be handed over unhashed ([`Params::Later`]:
    /// the statement's first execution in the scope), so a statement that runs once is never
    /// hashed.
    pub(crate) fn admit(
        &mut self,
        fp: &Fingerprint,
        rules: Rules<'_>,
        allowed_repetition: bool,
        params: impl FnOnce(bool) -> Params,
    ) -> Verdict {
        if self.catch_all {
            self.totals.queries += 1;
            self.row(fp).count += 1;
            return Verdict::Run;
        }
        if let Some(budget) = rules.budget(self.totals.queries) {
            self.totals.rejected += 1;
            return Verdict::OverBudget { budget };
        }
        let (seq, after) = (self.totals.queries, self.last);
        self.totals.queries += 1;
        self.last = fp.id();
        let epoch = self.writes;
        let checked = rules.checks(fp, allowed_repetition);
        let row = self.row(fp);
        if row.count == 0 && row.fingerprint.is_some() {
            row.first = seq;
            row.after = after;
        }
        // Every execution's parameters, the first included: the class of a repetition comes
        // from all of them, never from the first few.
        if checked && row.fingerprint.is_some() && row.params.open() {
            if rules.exact_counts() || row.params.distinct() < 2 || row.params.unknown() {
                let first = row.params.first();
                row.params.record(params(first), epoch);
            } else {
                row.params.skip();
            }
        }
        row.count += 1;
        let count = row.count;
        let total = row.total;
        let effects = fp.effects();
        let varied = row.params.varied(effects);
        if effects == Effects::Write {
            self.writes += 1;
        }
        let reported = self.repeats.iter().any(|r| r.fingerprint == fp.id());
        rules.admit(
            fp,
            Seen {
                queries: self.totals.queries - 1,
                count,
                total,
                varied,
                reported,
                allowed_repetition,
            },
        )
    }

    /// Whether the statement's repetition was found at an allowed call site.
    pub(crate) fn allowed(&self, fp: &Fingerprint) -> bool {
        self.repeats
            .iter()
            .any(|r| r.fingerprint == fp.id() && r.allowed)
    }

    /// Records the statement's crossing of the repetition threshold (once per fingerprint).
    pub(crate) fn add_repetition(&mut self, item: Repetition) {
        if !self
            .repeats
            .iter()
            .any(|r| r.fingerprint == item.fingerprint)
        {
            self.repeats.push(item);
        }
    }

    /// An admitted statement was refused after all (N+1 in error mode): not sent, so it
    /// counts as rejected, not as a query.
    pub(crate) fn refuse(&mut self, fp: &Fingerprint) {
        self.totals.queries -= 1;
        self.totals.rejected += 1;
        self.row(fp).count -= 1;
    }

    /// The statement that ran just before `fp` first did, if it is a different one.
    pub(crate) fn parent_of(&self, fp: &Fingerprint) -> Option<Fingerprint> {
        let after = self.rows.get(&fp.id())?.after;
        (after != 0 && after != fp.id())
            .then(|| self.rows.get(&after)?.fingerprint.clone())
            .flatten()
    }

    /// A statement ended.
    pub(crate) fn finished(&mut self, fp: &Fingerprint, run: &Execution<'_>) {
        let failed = run.outcome.failed();
        self.totals.db_time += run.elapsed;
        self.totals.rows += run.rows;
        self.totals.failed += u64::from(failed);
        self.row(fp).record(run.elapsed, run.rows, failed);
        if let Some(timeline) = &mut self.timeline {
            let kind = TimelineKind::Statement {
                fingerprint: fp.id(),
                failed,
            };
            timeline.ended(kind, run.elapsed);
        }
    }

    /// The statement just finished was seen by the observer.
    pub(crate) fn observed_statement(&mut self) {
        self.totals.observed += 1;
    }

    /// `BEGIN`, `COMMIT`, `ROLLBACK` or a savepoint statement was sent.
    pub(crate) fn transaction_statement(&mut self) {
        self.totals.transaction_statements += 1;
    }

    /// Time spent waiting for a pool, whether or not a connection came of it.
    pub(crate) fn waited(&mut self, waited: Duration) {
        self.totals.pool_wait += waited;
        if let Some(timeline) = &mut self.timeline {
            timeline.ended(TimelineKind::PoolWait, waited);
        }
    }

    /// A connection was acquired from the pool whose health is `health`; `explicit` is the
    /// guard's id and call site when the caller holds it (`acquire`, `begin`). Returns where a
    /// connection the scope already holds was acquired, when `check_nested` and there is one.
    pub(crate) fn acquired(
        &mut self,
        health: &Arc<Health>,
        explicit: Option<(u64, &'static Location<'static>)>,
        check_nested: bool,
    ) -> Option<&'static Location<'static>> {
        self.totals.acquires += 1;
        if self.catch_all {
            return None;
        }
        let held_at = self
            .held
            .first()
            .map(|(_, at)| *at)
            .filter(|_| check_nested);
        if !self.pools.iter().any(|p| Arc::ptr_eq(p, health)) {
            self.pools.push(Arc::clone(health));
        }
        // Only guards the caller holds explicitly can be held while waiting for another
        // connection; the transient connection of a query on `&Pool` is not tracked.
        match explicit {
            Some(guard) => self.held.push(guard),
            None => self.transient += 1,
        }
        self.totals.max_held = self
            .totals
            .max_held
            .max(self.held.len() as u64 + self.transient);
        held_at
    }

    /// Records a nested acquire, once per pair of call sites; false when already recorded.
    pub(crate) fn add_nested(&mut self, item: &NestedAcquire) -> bool {
        if self
            .nested
            .iter()
            .any(|n| n.held_at() == item.held_at() && n.acquired_at() == item.acquired_at())
        {
            return false;
        }
        self.nested.push(item.clone());
        true
    }

    /// Records a held-idle finding, once per pair of call sites; false when already recorded.
    pub(crate) fn add_held_idle(&mut self, item: &detect::HeldIdle) -> bool {
        if self
            .held_idle
            .iter()
            .any(|h| h.from.same(&item.from) && h.to.same(&item.to))
        {
            return false;
        }
        self.held_idle.push(item.clone());
        true
    }

    /// A connection went back to the pool after being held for `held`, with the idle gaps
    /// `idle`; `guard`: the id of a connection the caller held (`acquire`, `begin`), `None` for
    /// one held for a statement on `&Pool`.
    pub(crate) fn released(
        &mut self,
        held: Duration,
        idle: &crate::report::Idle,
        guard: Option<u64>,
    ) {
        if guard.is_none() {
            self.transient = self.transient.saturating_sub(1);
        }
        self.totals.hold_time += held;
        self.totals.idle_hold += idle.total;
        self.totals.idle_gaps += idle.gaps;
        self.totals.longest_idle = self.totals.longest_idle.max(idle.longest);
        if let Some(timeline) = &mut self.timeline {
            let connection = guard.unwrap_or(0);
            timeline.ended(TimelineKind::Held { connection }, held);
            for &(end, gap) in &idle.timeline {
                timeline.ended_at(TimelineKind::Idle { connection }, end, gap);
            }
        }
    }

    /// Adds a nested scope's state; `report` is its final report (its findings as it made them).
    fn merge(&mut self, child: &State, report: &Report) {
        self.totals.merge(&child.totals);
        for row in child.rows.values().chain(child.overflow.iter()) {
            match &row.fingerprint {
                Some(fp) => self.row(fp).merge(row),
                None => self
                    .overflow
                    .get_or_insert_with(|| FingerprintStats::new(None))
                    .merge(row),
            }
        }
        self.writes += child.writes;
        self.n_plus_one.extend(report.n_plus_one().iter().cloned());
        self.duplicates.extend(report.duplicates().iter().cloned());
        self.nested.extend(child.nested.iter().cloned());
        self.held_idle.extend(child.held_idle.iter().cloned());
        if let (Some(timeline), Some(child)) = (&mut self.timeline, &child.timeline) {
            timeline.merge(child);
        }
        for health in &child.pools {
            if !self.pools.iter().any(|p| Arc::ptr_eq(p, health)) {
                self.pools.push(Arc::clone(health));
            }
        }
    }

    /// This scope's own repetition findings, each with the hook of the pool it ran on: from
    /// all executions of each statement that crossed the threshold.
    ///
    /// - Two or more distinct parameter sets (or sets not seen, on a statement that is not a
    ///   locking read): an N+1, with the number of distinct sets.
    /// - One set shared by more executions than the threshold, with no write in the scope
    ///   between them, on a plain read: a duplicate, counting those executions. Both can hold
    ///   for one statement (a loop over rows that repeat a value).
    #[allow(clippy::type_complexity)]
    pub(crate) fn repetitions(
        &self,
        name: &str,
    ) -> (Vec<(NPlusOne, OnFinding)>, Vec<(Duplicate, OnFinding)>) {
        let mut n_plus_one = Vec::new();
        let mut duplicates = Vec::new();
        for rep in self.repeats.iter().filter(|r| !r.allowed) {
            let Some(row) = self.rows.get(&rep.fingerprint) else {
                continue;
            };
            let Some(fp) = row.fingerprint.clone() else {
                continue;
            };
            let params = &row.params;
            let effects = fp.effects();
            let distinct = params.distinct();
            let run = params.longest_run();
            if params.varied(effects) {
                n_plus_one.push((
                    NPlusOne {
                        scope: name.to_owned(),
                        fingerprint: fp.clone(),
                        count: row.count,
                        threshold: rep.threshold,
                        call_site: rep.call_site.clone(),
                        parent: self.parent_of(&fp),
                        distinct: if params.unknown() { 0 } else { distinct },
                        distinct_capped: params.capped() || params.partial(),
                    },
                    rep.on_finding.clone(),
                ));
            }
            if effects == Effects::Read && run > u64::from(rep.threshold) {
                duplicates.push((
                    Duplicate {
                        scope: name.to_owned(),
                        fingerprint: fp,
                        count: run,
                        threshold: rep.threshold,
                        call_site: rep.call_site.clone(),
                        executions: row.count,
                        distinct,
                    },
                    rep.on_finding.clone(),
                ));
            }
        }
        (n_plus_one, duplicates)
    }

    /// The report of this state: rows most executed first (ties: most time first), N+1
    /// findings with their final counts.
    fn report(&self, name: &str, started: Instant) -> Report {
        let own = self.repetitions(name);
        self.report_with(name, started, &own)
    }

    /// [`report`](Self::report) from this scope's own findings already made (`close` emits the
    /// same ones, so it makes them once).
    #[allow(clippy::type_complexity)]
    fn report_with(
        &self,
        name: &str,
        started: Instant,
        own: &(Vec<(NPlusOne, OnFinding)>, Vec<(Duplicate, OnFinding)>),
    ) -> Report {
        let mut fingerprints: Vec<FingerprintStats> = self
            .rows
            .values()
            .chain(self.overflow.iter())
            .cloned()
            .collect();
        fingerprints.sort_by(|a, b| {
            b.count()
                .cmp(&a.count())
                .then(b.total_time().cmp(&a.total_time()))
        });
        let mut n_plus_one: Vec<NPlusOne> = own.0.iter().map(|(n, _)| n.clone()).collect();
        n_plus_one.extend(self.n_plus_one.iter().cloned());
        let mut duplicates: Vec<Duplicate> = own.1.iter().map(|(d, _)| d.clone()).collect();
        duplicates.extend(self.duplicates.iter().cloned());
        Report::new(
            name.to_owned(),
            self.totals,
            fingerprints,
            n_plus_one,
            self.nested.clone(),
        )
        .with_duplicates(duplicates)
        .with_held_idle(self.held_idle.clone())
        .with_time(
            started.elapsed(),
            // The final report of a top-level scope moves it instead (`close`).
            self.timeline
                .as_ref()
                .filter(|_| !self.closed)
                .map(TimelineRecorder::snapshot),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    fn run(state: &mut State, sql: &str, times: usize) {
        let settings = settings();
        let overrides = Overrides::default();
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint(sql);
        for _ in 0..times {
            if state.admit(&fp, rules, false, |_| Params::Unknown) == Verdict::Run {
                let run = Execution {
                    elapsed: Duration::from_millis(1),
                    rows: 1,
                    outcome: crate::report::Outcome::Ok,
                };
                state.finished(&fp, &run);
            }
        }
    }

    #[test]
    fn rows_past_the_cap_fold_into_one_overflow_row() {
        let mut state = State::default();
        for i in 0..MAX_ROWS_PER_SCOPE + 10 {
            run(&mut state, &format!("SELECT c{i} FROM t"), 1);
        }
        let report = state.report("flood", Instant::now());
        assert_eq!(report.queries(), (MAX_ROWS_PER_SCOPE + 10) as u64);
        assert_eq!(report.fingerprints().len(), MAX_ROWS_PER_SCOPE + 1);
        let overflow = report
            .fingerprints()
            .iter()
            .find(|r| r.fingerprint().is_none())
            .expect("overflow row");
        assert_eq!(overflow.count(), 10);
        assert_eq!(overflow.normalized(), "(other statements)");
    }

    #[test]
    fn merge_adds_totals_and_rows_and_keeps_the_max_held() {
        let mut parent = State::default();
        let mut child = State::default();
        run(&mut parent, "SELECT 1", 2);
        run(&mut child, "SELECT 1", 3);
        run(&mut child, "SELECT 2 FROM t", 1);
        child.totals.max_held = 2;
        parent.totals.max_held = 1;
        let child_report = child.report("c", Instant::now());
        parent.merge(&child, &child_report);
        let report = parent.report("p", Instant::now());
        assert_eq!(report.queries(), 6);
        assert_eq!(report.fingerprints()[0].count(), 5);
        assert_eq!(report.fingerprints()[0].rows(), 5);
        assert_eq!(report.max_connections_held(), 2);
        assert_eq!(report.db_time(), Duration::from_millis(6));
    }

    #[test]
    fn catch_all_counts_but_never_checks() {
        let mut state = State {
            catch_all: true,
            ..State::default()
        };
        let settings = Settings {
            query_budget: Some(1),
            ..settings()
        };
        let overrides = Overrides::default();
        let rules = Rules::new(&settings, &overrides);
        let fp = crate::fingerprint("SELECT * FROM users WHERE id = $1");
        for _ in 0..10 {
            assert_eq!(
                state.admit(&fp, rules, false, |_| Params::Unknown),
                Verdict::Run
            );
        }
        assert_eq!(state.report("unscoped", Instant::now()).queries(), 10);
    }
}
