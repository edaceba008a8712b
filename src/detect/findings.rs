//! What the rules find: N+1 patterns and nested acquires, and the WARN events that report them.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::call_site::{CallSite, location};
use crate::fingerprint::Fingerprint;

/// The accessors the repetition findings ([`NPlusOne`], [`Duplicate`]) share.
macro_rules! repetition_accessors {
    () => {
        /// The repeated statement's fingerprint (its normalized text is the SQL to look at).
        pub fn fingerprint(&self) -> &Fingerprint {
            &self.fingerprint
        }

        /// The threshold that was crossed.
        pub fn threshold(&self) -> u32 {
            self.threshold
        }

        /// `file:line` of the first frame in your code (outside pgscope, sqlx, tokio and std) that
        /// ran the query that crossed the threshold, relative to the root of the package that
        /// holds the file (`src/feed.rs:42`, whatever the working directory). Line numbers need line tables in the binary
        /// (debug builds have them; for release add `debug = "line-tables-only"` to
        /// `[profile.release]`); without them, the first function of yours that was not inlined,
        /// e.g. `my_app::routes::feed (no line tables: …)`; with no symbols at all (`strip = true`),
        /// `<unknown: symbols stripped>`.
        ///
        /// The stack is captured when the rule fires (instruction pointers only) and resolved here,
        /// the first time it is read, once per distinct stack: symbol lookup never runs on the
        /// statement's path.
        pub fn call_site(&self) -> &str {
            self.call_site.get()
        }

        /// The scope (route) it happened in.
        pub fn scope(&self) -> &str {
            &self.scope
        }
    };
}

/// One N+1 finding: a statement repeated past the threshold inside one scope.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// let (_, report) = pgscope::capture_named("GET /api/feed", async {
///     for id in 1..=10_i64 {
///         let _ = sqlx::query("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&pool).await;
///     }
/// })
/// .await;
/// for n in report.n_plus_one() {
///     // `SELECT name FROM users WHERE id = $1` ran 10 times in GET /api/feed, from src/feed.rs:42
///     println!("`{}` ran {} times in {}, from {}", n.fingerprint().normalized(), n.count(), n.scope(), n.call_site());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NPlusOne {
    pub(crate) scope: String,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) count: u64,
    pub(crate) threshold: u32,
    pub(crate) call_site: CallSite,
    /// The statement that ran just before the repeated one first did (its parent, for a JOIN).
    pub(crate) parent: Option<Fingerprint>,
    /// Distinct parameter sets (0: not seen, in observer mode).
    pub(crate) distinct: usize,
    /// More distinct sets than pgscope follows: `distinct` is a lower bound.
    pub(crate) distinct_capped: bool,
}

impl NPlusOne {
    repetition_accessors!();

    /// How many times the statement ran in the scope. The WARN, the OpenTelemetry event and
    /// [`on_finding`](crate::PoolOptions::on_finding) are emitted when the scope ends, so they
    /// carry this same final count (a [`current_report`](crate::current_report) taken earlier
    /// shows the count so far).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How many distinct parameter sets (bound values and literals) the executions had: the
    /// length of the array the batched statement binds. At least 2 for an N+1 found by
    /// [`Pool`](crate::Pool); 0 in observer mode, which does not see bound values. pgscope
    /// follows up to 64 sets per statement and scope; past that, it says 64.
    pub fn distinct_values(&self) -> usize {
        self.distinct
    }

    /// The statement that ran just before the repeated one first did: usually the query whose
    /// rows the loop goes over (`SELECT … FROM posts`), the one to JOIN with.
    pub fn parent(&self) -> Option<&Fingerprint> {
        self.parent.as_ref()
    }

    /// The batched statement that replaces the repetition, when the statement's shape makes it
    /// certain: one `column = $n` comparison becomes `column = ANY($n)` (bind an array of the
    /// values), e.g. `SELECT name FROM users WHERE id = ANY($1)`. `None` when the statement has
    /// no such comparison, several, or a `LIMIT`/`OFFSET` that batching would change.
    ///
    /// # Examples
    /// ```no_run
    /// # fn f(report: pgscope::Report) {
    /// for n in report.n_plus_one() {
    ///     if let Some(batched) = n.suggestion() {
    ///         println!("replace {} with {batched}", n.fingerprint().normalized());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn suggestion(&self) -> Option<String> {
        batched(self.fingerprint.normalized())
    }
}

impl NPlusOne {
    /// `with 4 distinct values`, `with at least 64 distinct values`; empty when not seen.
    fn distinct_text(&self) -> String {
        match (self.distinct, self.distinct_capped) {
            (0, _) => String::new(),
            (n, false) => format!(" with {n} distinct values"),
            (n, true) => format!(" with at least {n} distinct values"),
        }
    }

    /// `an array of the 4 distinct values`.
    fn array_text(&self) -> String {
        match (self.distinct, self.distinct_capped) {
            (0, _) => "an array of the values".to_owned(),
            (n, false) => format!("an array of the {n} distinct values"),
            (n, true) => format!("an array of the (at least {n}) distinct values"),
        }
    }
}

impl fmt::Display for NPlusOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "N+1 in {}: {}x `{}`{}",
            self.scope,
            self.count,
            self.fingerprint.normalized(),
            self.distinct_text()
        )?;
        if let Some(parent) = &self.parent {
            write!(f, " after `{}`", parent.normalized())?;
        }
        write!(f, " from {}", self.call_site)?;
        match self.suggestion() {
            Some(batched) => write!(
                f,
                " (fix: one query, `{batched}` with {}, or a JOIN)",
                self.array_text()
            ),
            None => f.write_str(" (fix: load them in one query with `= ANY($1)` or a JOIN)"),
        }
    }
}

/// `col = $n` → `col = ANY($n)` when the normalized statement has exactly one equality with a
/// parameter on a column and no `LIMIT`/`OFFSET`; otherwise nothing (no guessing).
pub(crate) fn batched(normalized: &str) -> Option<String> {
    let words: Vec<&str> = normalized.split(' ').collect();
    if !normalized.starts_with("SELECT ") || words.iter().any(|w| matches!(*w, "LIMIT" | "OFFSET"))
    {
        return None;
    }
    let is_column = |w: &str| {
        !w.is_empty()
            && w.trim_start_matches('(').bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.' || b == b'"'
            })
            && w.trim_start_matches('(')
                .bytes()
                .next()
                .is_some_and(|b| !b.is_ascii_digit())
    };
    let is_param = |w: &str| {
        let w = w.trim_end_matches(')');
        w.strip_prefix('$')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut found = None;
    for i in 1..words.len().saturating_sub(1) {
        if words[i] == "=" && is_param(words[i + 1]) {
            if !is_column(words[i - 1]) || found.is_some() {
                return None;
            }
            found = Some(i + 1);
        }
    }
    let at = found?;
    let param = words[at];
    let closing = &param[param.trim_end_matches(')').len()..];
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    out[at] = format!("ANY({}){closing}", param.trim_end_matches(')'));
    Some(out.join(" "))
}

/// A connection held idle: a gap of at least
/// [`PoolOptions::held_idle_threshold`](crate::PoolOptions::held_idle_threshold) between two
/// uses of a connection a scope holds (after `acquire` or `begin`, between statements, before
/// `COMMIT` or the release), during which the connection did no database work and no other
/// request could use it. PostgreSQL shows it as `idle` or `idle in transaction`, with no hint of
/// which route; this names the route and both ends of the gap.
///
/// # Examples
/// ```no_run
/// # fn f(report: pgscope::Report) {
/// for h in report.held_idle() {
///     println!(
///         "held {:?} idle (of {:?}) between {} and {}{}",
///         h.idle(), h.held(), h.from(), h.to(),
///         if h.in_transaction() { ", in a transaction" } else { "" }
///     );
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HeldIdle {
    pub(crate) scope: String,
    pub(crate) idle: std::time::Duration,
    pub(crate) held: std::time::Duration,
    pub(crate) in_transaction: bool,
    pub(crate) from: CallSite,
    pub(crate) from_statement: String,
    pub(crate) to: CallSite,
    pub(crate) to_statement: String,
}

impl HeldIdle {
    /// The longest idle gap: from the end of one use of the connection to the start of the next.
    pub fn idle(&self) -> std::time::Duration {
        self.idle
    }

    /// How long the connection had been held when the gap ended.
    pub fn held(&self) -> std::time::Duration {
        self.held
    }

    /// Whether a transaction was open during the gap (`idle in transaction` on the server:
    /// its locks and snapshot held too).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Where the gap began: the call site of the statement that ran before it, or of the
    /// `acquire` / `begin` (`file:line`, or the function as for N+1 call sites).
    pub fn from(&self) -> &str {
        self.from.get()
    }

    /// Where the gap ended: the call site of the next statement, the `commit` / `rollback`, or
    /// where the connection was released (dropped).
    pub fn to(&self) -> &str {
        self.to.get()
    }

    /// What ran just before the gap: the normalized statement, `BEGIN` or `acquire`.
    pub fn from_statement(&self) -> &str {
        &self.from_statement
    }

    /// What ended the gap: the normalized statement, `COMMIT`, `ROLLBACK` or `release`.
    pub fn to_statement(&self) -> &str {
        &self.to_statement
    }

    /// The scope (route) it happened in.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for HeldIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} held a connection{} for {:.0} ms idle between `{}` at {} and `{}` at {}: {}",
            self.scope,
            if self.in_transaction {
                " in a transaction"
            } else {
                ""
            },
            self.idle.as_secs_f64() * 1000.0,
            cut(&self.from_statement),
            self.from,
            cut(&self.to_statement),
            self.to,
            if self.in_transaction {
                "move the work between them outside the transaction"
            } else {
                "release the connection before the work between them, or acquire it after"
            }
        )
    }
}

/// A statement shortened for a one-line message.
fn cut(sql: &str) -> String {
    match sql.char_indices().nth(40) {
        Some((at, _)) => format!("{} …", sql[..at].trim_end()),
        None => sql.to_owned(),
    }
}

fn emit_held_idle(item: &HeldIdle) {
    tracing::warn!(
        target: "pgscope::held_idle",
        scope = %item.scope,
        idle_ms = item.idle.as_secs_f64() * 1000.0,
        held_ms = item.held.as_secs_f64() * 1000.0,
        in_transaction = item.in_transaction,
        from = %item.from.get(),
        from_statement = %item.from_statement,
        to = %item.to.get(),
        to_statement = %item.to_statement,
        "{item}",
    );
}

/// A finding, as handed to [`PoolOptions::on_finding`](crate::PoolOptions::on_finding): route
/// it to Sentry, a metric, or a panic in CI.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Finding<'a> {
    /// An N+1, when its scope ends (with the scope's final counts, as in its report).
    NPlusOne(&'a NPlusOne),
    /// A statement repeated with the same parameters, when its scope ends.
    Duplicate(&'a Duplicate),
    /// A scope acquired a second connection while holding one.
    NestedAcquire(&'a NestedAcquire),
    /// A scope held a connection idle past the threshold.
    HeldIdle(&'a HeldIdle),
    /// A statement refused by a query budget.
    QueryBudgetExceeded {
        /// The scope whose budget ran out.
        scope: &'a str,
        /// The budget in force.
        budget: u32,
    },
}

/// One statement repeated with the *same* parameters past the threshold inside one scope: the
/// same rows fetched again and again. Not an N+1 (batching would not help): reuse the result
/// (load it once and pass it down, or cache it).
///
/// # Examples
/// ```no_run
/// # fn f(report: pgscope::Report) {
/// for d in report.duplicates() {
///     println!("`{}` ran {} times with the same parameters, from {}", d.fingerprint().normalized(), d.count(), d.call_site());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Duplicate {
    pub(crate) scope: String,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) count: u64,
    pub(crate) threshold: u32,
    pub(crate) call_site: CallSite,
    /// All executions of the statement in the scope (more than `count` when other parameter
    /// sets ran too).
    pub(crate) executions: u64,
    /// Distinct parameter sets among them (more than 1: the statement is an N+1 as well).
    pub(crate) distinct: usize,
}

impl Duplicate {
    repetition_accessors!();

    /// How many executions shared the one parameter set, with no write in the scope between
    /// them (the most repeated set, when the statement also ran with others).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// All executions of the statement in the scope, whatever their parameters: more than
    /// [`count`](Self::count) when the statement is also an N+1 (a loop over rows that repeat
    /// a value).
    pub fn executions(&self) -> u64 {
        self.executions
    }

    /// Whether the statement also ran with other parameter sets: it is an N+1 too (see
    /// [`Report::n_plus_one`](crate::Report::n_plus_one)), and batching the distinct values
    /// removes these repeats as well.
    pub fn part_of_n_plus_one(&self) -> bool {
        self.distinct > 1
    }
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.part_of_n_plus_one() {
            return write!(
                f,
                "duplicate in {}: {}x `{}` with the same parameters, of its {} executions with \
                 {} distinct values, from {} (fix: batch the N+1 with the distinct values only, \
                 so each is fetched once)",
                self.scope,
                self.count,
                self.fingerprint.normalized(),
                self.executions,
                self.distinct,
                self.call_site
            );
        }
        write!(
            f,
            "duplicate in {}: {}x `{}` with the same parameters and no write between them, from \
             {} (fix: reuse the result: load it once and pass it down, or cache it)",
            self.scope,
            self.count,
            self.fingerprint.normalized(),
            self.call_site
        )
    }
}

/// One scope holding a second connection while it already holds one: under pool pressure every
/// request can end up holding one connection and waiting for another, a deadlock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NestedAcquire {
    pub(crate) scope: String,
    pub(crate) held_at: String,
    pub(crate) acquired_at: CallSite,
}

impl NestedAcquire {
    /// Where the connection that was already held had been acquired.
    pub fn held_at(&self) -> &str {
        &self.held_at
    }

    /// Where the second connection was acquired.
    pub fn acquired_at(&self) -> &str {
        self.acquired_at.get()
    }

    /// The scope (route) it happened in.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for NestedAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scope {} acquired a second connection at {} while holding one acquired at {}",
            self.scope, self.acquired_at, self.held_at
        )
    }
}

/// A finding to report as a WARN once its call site is resolved.
pub(crate) enum Warning {
    NPlusOne(NPlusOne),
    Duplicate(Duplicate),
    Nested(NestedAcquire),
    HeldIdle(HeldIdle),
}

impl Warning {
    fn call_site(&self) -> &CallSite {
        match self {
            Warning::NPlusOne(item) => &item.call_site,
            Warning::Duplicate(item) => &item.call_site,
            Warning::Nested(item) => &item.acquired_at,
            Warning::HeldIdle(item) => &item.to,
        }
    }

    fn emit(&self) {
        match self {
            Warning::NPlusOne(item) => emit_n_plus_one(item),
            Warning::Duplicate(item) => emit_duplicate(item),
            Warning::Nested(item) => emit_nested(item),
            Warning::HeldIdle(item) => emit_held_idle(item),
        }
    }
}

thread_local! {
    /// Set while the observer handles a `tracing` event.
    static IN_DISPATCH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (the observer's handling of one `tracing` event) with warnings kept off this
/// thread: an event emitted while another is being dispatched corrupts the per-layer filter
/// state of the layers after it (tokio-rs/tracing#2704).
pub(crate) fn dispatching<R>(f: impl FnOnce() -> R) -> R {
    let outer = IN_DISPATCH.replace(true);
    let result = f();
    IN_DISPATCH.set(outer);
    result
}

/// A warning waiting for its call site to be resolved, emitted once by whichever comes first:
/// pgscope's reporter thread once it has resolved the site, or the scope when it ends
/// ([`Pending::emit`]). Holding the scope's span only until then means the span closes when the
/// scope does, so an exporter flushed right after the scope (a job that exits, a server shutting
/// down) gets it with everything on it.
pub(crate) struct Pending(parking_lot::Mutex<Option<(Warning, tracing::Span, tracing::Dispatch)>>);

impl Pending {
    /// Emits the warning inside its span now (resolving the call site if the reporter has not
    /// yet), unless it was emitted already.
    pub(crate) fn emit(&self) {
        // The lock is held until the span's clone is dropped: a scope that ends while the
        // reporter emits waits for it, so the span closes before the scope's end returns.
        let mut job = self.0.lock();
        if let Some((warning, span, dispatch)) = job.take() {
            if dispatch.is::<tracing::subscriber::NoSubscriber>() {
                // No subscriber where the warning was made: emitted as it is, so `tracing`'s
                // `log` feature turns it into a `log` record. Setting a default, even the
                // no-op one, would mark the process as having a subscriber, and `tracing`
                // stops forwarding to `log` for good.
                warning.emit();
            } else {
                tracing::dispatcher::with_default(&dispatch, || span.in_scope(|| warning.emit()));
            }
        }
    }
}

/// Reports `warning` as a WARN event inside `span` (the scope's span): right away when its call
/// site is already resolved (the same stack seen before), else from pgscope's reporter thread
/// once it is, so symbol resolution (milliseconds the first time a stack is seen) never runs on
/// the statement's path. Never from inside the observer's event dispatch (see
/// [`dispatching`]). Returns the warning while it waits: its scope must [`Pending::emit`] it
/// when it ends, so the span is not held past the scope.
pub(crate) fn warn_later(warning: Warning, span: tracing::Span) -> Option<Arc<Pending>> {
    if warning.call_site().is_resolved() && !IN_DISPATCH.get() {
        span.in_scope(|| warning.emit());
        return None;
    }
    let site = warning.call_site().clone();
    let pending = Arc::new(Pending(parking_lot::Mutex::new(Some((
        warning,
        span,
        tracing::dispatcher::get_default(Clone::clone),
    )))));
    if !queue(site, Some(Arc::clone(&pending))) {
        DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // Unsent, the scope still emits it when it ends.
    Some(pending)
}

/// Starts resolving `site` on pgscope's reporter thread, so the warning that names it, made
/// when its scope ends, finds it resolved.
pub(crate) fn resolve_soon(site: &CallSite) {
    if !site.is_resolved() {
        queue(site.clone(), None);
    }
}

/// Hands `site` (and the warning waiting for it) to the reporter thread; false when its queue
/// is full or the thread could not start.
fn queue(site: CallSite, pending: Option<Arc<Pending>>) -> bool {
    type Job = (CallSite, Option<Arc<Pending>>);
    static QUEUE: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<Job>>> =
        std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        // Bounded: a flood of findings cannot grow memory; past it, warnings are dropped.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1024);
        std::thread::Builder::new()
            .name("pgscope-reporter".into())
            .spawn(move || {
                for (site, pending) in rx {
                    // Resolved here whether or not a subscriber reads the event, so the next
                    // finding from the same stack is reported in place.
                    site.get();
                    if let Some(pending) = pending {
                        pending.emit();
                    }
                }
            })
            .ok()
            .map(|_| tx)
    });
    queue
        .as_ref()
        .is_some_and(|tx| tx.try_send((site, pending)).is_ok())
}

/// Warnings dropped because the reporter's queue was full (or its thread could not start).
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn emit_n_plus_one(item: &NPlusOne) {
    tracing::warn!(
        target: "pgscope::n_plus_one",
        scope = %item.scope,
        fingerprint = %item.fingerprint.hex(),
        statement = %item.fingerprint.normalized(),
        count = item.count,
        distinct_values = item.distinct,
        threshold = item.threshold,
        call_site = %item.call_site.get(),
        after = item.parent.as_ref().map(|p| p.normalized()),
        suggestion = item.suggestion(),
        "{item}",
    );
}

fn emit_duplicate(item: &Duplicate) {
    tracing::warn!(
        target: "pgscope::duplicate",
        scope = %item.scope,
        fingerprint = %item.fingerprint.hex(),
        statement = %item.fingerprint.normalized(),
        count = item.count,
        executions = item.executions,
        threshold = item.threshold,
        call_site = %item.call_site.get(),
        "{item}",
    );
}

/// Said once per pool (or once for the observer) when statements run outside any scope.
pub(crate) fn hint_unscoped(source: &str) {
    tracing::info!(
        target: "pgscope::unscoped",
        source,
        "pgscope: statements of {source} run outside any scope; they are counted (unscoped \
         report) but not checked for N+1, query budgets or nested acquires. Run each request or \
         job in a scope: pgscope::http::ScopeLayer (axum, tonic, any tower service), \
         pgscope::actix::Scopes (actix-web), or pgscope::capture / Scope::capture around the work",
    );
}

fn emit_nested(item: &NestedAcquire) {
    tracing::warn!(
        target: "pgscope::nested_acquire",
        scope = %item.scope,
        held_at = %item.held_at,
        acquired_at = %item.acquired_at.get(),
        "scope holds two connections at once; under pool pressure this can deadlock",
    );
}

/// The finding for a scope that acquires a connection (at `acquired_at`, or at the caller's
/// call site for a query on `&Pool`) while holding one acquired at `held_at`.
pub(crate) fn nested_acquire(
    scope: &str,
    held_at: &Location<'_>,
    acquired_at: Option<&Location<'_>>,
) -> NestedAcquire {
    NestedAcquire {
        scope: scope.to_owned(),
        held_at: location(held_at),
        acquired_at: acquired_at.map_or_else(CallSite::capture, CallSite::at),
    }
}

#[cfg(test)]
mod tests {
    use super::batched;

    #[test]
    fn one_column_equality_becomes_any() {
        for (normalized, expected) in [
            (
                "SELECT name FROM users WHERE id = $1",
                Some("SELECT name FROM users WHERE id = ANY($1)"),
            ),
            (
                "SELECT u.name FROM users u WHERE u.id = $1 AND u.active",
                Some("SELECT u.name FROM users u WHERE u.id = ANY($1) AND u.active"),
            ),
            (
                "SELECT * FROM t WHERE (t.a = $1)",
                Some("SELECT * FROM t WHERE (t.a = ANY($1))"),
            ),
            // No guessing: two comparisons, a limit, no parameter, a write, an expression.
            ("SELECT * FROM t WHERE a = $1 AND b = $2", None),
            ("SELECT * FROM t WHERE a = $1 LIMIT $2", None),
            ("SELECT * FROM t WHERE a = 'x'", None),
            ("UPDATE t SET a = $1 WHERE id = $2", None),
            ("SELECT * FROM t WHERE lower(a) = $1", None),
            ("SELECT * FROM t WHERE id = ANY($1)", None),
        ] {
            assert_eq!(batched(normalized).as_deref(), expected, "{normalized}");
        }
    }
}
