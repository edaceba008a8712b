//! Query-count assertions for tests, the way Rails' `assert_queries_count` and Django's
//! `assertNumQueries` work: run a block in a fresh scope, fail with the report when the count
//! is off.

use crate::fingerprint::Fingerprint;
use crate::report::Report;

/// Runs the async block in a new scope and asserts it sent exactly `n` statements; evaluates to
/// the block's output. Use inside an `async` test.
///
/// # Panics
/// When the count differs, with the scope's report rendered as a table.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let rows = pgscope::assert_queries!(1, async {
///     sqlx::query("SELECT 1").fetch_all(&pool).await
/// })?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! assert_queries {
    ($n:expr, $fut:expr $(,)?) => {{
        let (value, report) = $crate::capture_named(concat!(file!(), ":", line!()), $fut).await;
        report.assert_queries($n);
        value
    }};
}

/// Runs the async block in a new scope and asserts no N+1 was detected in it; evaluates to the
/// block's output. Use inside an `async` test.
///
/// # Panics
/// When an N+1 was found, naming the statement, count and call site, with a fix hint.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let names: Vec<String> = pgscope::assert_no_n_plus_one!(async {
///     sqlx::query_scalar("SELECT name FROM users WHERE id = ANY($1)").bind(vec![1i64, 2, 3]).fetch_all(&pool).await
/// })?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! assert_no_n_plus_one {
    ($fut:expr $(,)?) => {{
        let (value, report) = $crate::capture_named(concat!(file!(), ":", line!()), $fut).await;
        report.assert_no_n_plus_one();
        value
    }};
}

/// Runs the async block in a new scope and asserts it held no connection idle past the pool's
/// [`held_idle_threshold`](crate::PoolOptions::held_idle_threshold); evaluates to the block's
/// output. Use inside an `async` test.
///
/// # Panics
/// When a connection was held idle, naming both ends of the gap.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// pgscope::assert_no_held_idle!(async {
///     let mut tx = pool.begin().await?;
///     sqlx::query("UPDATE orders SET paid = true WHERE id = $1").bind(7_i64).execute(&mut *tx).await?;
///     tx.commit().await
/// })?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! assert_no_held_idle {
    ($fut:expr $(,)?) => {{
        let (value, report) = $crate::capture_named(concat!(file!(), ":", line!()), $fut).await;
        report.assert_no_held_idle();
        value
    }};
}

/// Keeps the reports of the scopes it is given, for tests that talk to a real server over
/// HTTP or gRPC and want to read what a request did to the database.
///
/// Hand [`hook`](Recorder::hook) to [`ScopeLayer::on_report`](crate::http::ScopeLayer::on_report)
/// (or any `on_report`); the layer records each request's report before the response leaves,
/// so it is there when the client has the response. Keeps the most recent 1 000 reports.
///
/// # Examples
/// ```no_run
/// # async fn t(app: axum::Router, base: &str) {
/// let recorder = pgscope::Recorder::new();
/// let app = app.layer(pgscope::http::ScopeLayer::new().on_report(recorder.hook()));
/// // … serve `app`, then:
/// reqwest::Client::new().post(format!("{base}/subscriptions")).send().await.unwrap();
/// recorder.last("POST /subscriptions").assert_queries(2);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Recorder(std::sync::Arc<parking_lot::Mutex<std::collections::VecDeque<Report>>>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("reports", &self.0.lock().len())
            .finish()
    }
}

impl Recorder {
    /// Reports kept; older ones are dropped, so a long test cannot grow memory without bound.
    pub const CAPACITY: usize = 1_000;

    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one report.
    pub fn record(&self, report: &Report) {
        let mut reports = self.0.lock();
        if reports.len() == Self::CAPACITY {
            reports.pop_front();
        }
        reports.push_back(report.clone());
    }

    /// A hook that records every report it is called with.
    pub fn hook(&self) -> impl Fn(&Report) + Send + Sync + 'static {
        let recorder = self.clone();
        move |report| recorder.record(report)
    }

    /// The most recent report of the scope called `name` (e.g. `POST /subscriptions`).
    ///
    /// # Panics
    /// When none was recorded, listing the names that were.
    #[track_caller]
    pub fn last(&self, name: &str) -> Report {
        self.try_last(name).unwrap_or_else(|| {
            let names: Vec<String> = self.0.lock().iter().map(|r| r.name().to_owned()).collect();
            panic!("no report of a scope named `{name}`; recorded: {names:?}")
        })
    }

    /// The most recent report of the scope called `name`, if any.
    pub fn try_last(&self, name: &str) -> Option<Report> {
        self.0
            .lock()
            .iter()
            .rev()
            .find(|r| r.name() == name)
            .cloned()
    }

    /// Every report kept of the scope called `name`, oldest first.
    pub fn all(&self, name: &str) -> Vec<Report> {
        self.0
            .lock()
            .iter()
            .filter(|r| r.name() == name)
            .cloned()
            .collect()
    }

    /// Forgets every report.
    pub fn clear(&self) {
        self.0.lock().clear();
    }
}

/// Asserts that the number of statements `f` runs does not grow with the size of the data: runs
/// `f(n)` for each size in its own scope and fails when any statement ran more often at a
/// larger size than at the smallest (the `n_plus_one_control` idea). A test needs no exact
/// count to catch a new N+1: seed `n` rows, load them, and compare.
///
/// # Panics
/// When a statement's count grows with `n`, with the counts per size and the statement.
///
/// # Examples
/// ```no_run
/// # async fn feed(pool: &pgscope::Pool, n: usize) {}
/// # async fn t(pool: pgscope::Pool) {
/// pgscope::assert_constant_queries([2, 10], |n| feed(&pool, n)).await;
/// # }
/// ```
#[track_caller]
pub fn assert_constant_queries<F, Fut>(
    sizes: impl IntoIterator<Item = usize>,
    mut f: F,
) -> impl std::future::Future<Output = ()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future,
{
    let caller = std::panic::Location::caller();
    let mut sizes: Vec<usize> = sizes.into_iter().collect();
    sizes.sort_unstable();
    sizes.dedup();
    let runs: Vec<(usize, Fut)> = sizes.iter().map(|&n| (n, f(n))).collect();
    async move {
        let mut reports = Vec::with_capacity(runs.len());
        for (n, fut) in runs {
            let name = format!("assert_constant_queries n={n}");
            let ((), report) = crate::scope::capture_named(name, async {
                fut.await;
            })
            .await;
            reports.push((n, report));
        }
        if let Some(message) = growth(&reports) {
            panic!("{message}\n  at {caller}");
        }
    }
}

/// What grew with `n` across `reports` (ordered by `n`), rendered for a failure message.
fn growth(reports: &[(usize, Report)]) -> Option<String> {
    let (first_n, first) = reports.first()?;
    let count = |report: &Report, id: u64| {
        report
            .fingerprints()
            .iter()
            .filter(|f| f.fingerprint().is_some_and(|fp| fp.id() == id))
            .map(|f| f.count())
            .sum::<u64>()
    };
    let mut grew = Vec::new();
    for (_, report) in &reports[1..] {
        for row in report.fingerprints() {
            let Some(fp) = row.fingerprint() else {
                continue;
            };
            if row.count() > count(first, fp.id()) && !grew.iter().any(|g: &Fingerprint| g == fp) {
                grew.push(fp.clone());
            }
        }
    }
    if grew.is_empty() {
        return None;
    }
    let mut message = format!(
        "the number of statements grows with the data (N+1?):\n  {:>8}  {:>10}",
        "n", "statements"
    );
    for (n, report) in reports {
        message.push_str(&format!("\n  {n:>8}  {:>10}", report.queries()));
    }
    for fp in &grew {
        let counts: Vec<String> = reports
            .iter()
            .map(|(n, r)| format!("{}@n={n}", count(r, fp.id())))
            .collect();
        message.push_str(&format!(
            "\n  grew: `{}` ({}; {} at n={first_n})",
            fp.normalized(),
            counts.join(", "),
            count(first, fp.id())
        ));
        if let Some(batched) = crate::detect::batched(fp.normalized()) {
            message.push_str(&format!("\n  batch it: `{batched}`"));
        }
    }
    Some(message)
}
