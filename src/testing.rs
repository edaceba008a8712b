//! Query-count assertions for tests, the way Rails' `assert_queries_count` and Django's
//! `assertNumQueries` work: run a block in a fresh scope, fail with the report when the count
//! is off.

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
