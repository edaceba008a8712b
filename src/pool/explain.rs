//! Explaining one statement in a test: [`explain`] and [`assert_plan_stable`].

use sqlx::{Execute, Postgres};

use super::Pool;
use crate::plan::{ExplainError, PlanShape, explain_on};

/// The plan shape of one statement, with its bound arguments, as `EXPLAIN (FORMAT JSON)`
/// reports it for those values (a custom plan: see [`ExplainOptions`](crate::ExplainOptions) for what that means). Runs on one of
/// the pool's connections, outside any scope's count.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let one = pgscope::explain(&pool, sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(1_i64)).await?;
/// assert!(one.to_string().starts_with("Index Scan"));
/// # Ok(()) }
/// ```
pub async fn explain<'q, A>(
    pool: &Pool,
    mut query: sqlx::query::Query<'q, Postgres, A>,
) -> Result<PlanShape, sqlx::Error>
where
    A: 'q + sqlx::IntoArguments<Postgres>,
{
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    let sql = query.sql();
    let mut connection = pool.as_sqlx().acquire().await?;
    explain_on(&mut connection, sql.as_str(), arguments, false)
        .await
        .map_err(|e| match e {
            ExplainError::Statement(e) => e,
            ExplainError::Connection(e) => sqlx::Error::Protocol(e),
        })
}

/// Fails when the plan of `sql` changes with the size of the array bound as `$1`: binds a
/// `Vec<i64>` of each size (`1..=size`) and compares the shapes. The seed of an N+1 fix's
/// test: "the batched statement's plan does not degrade at the sizes we expect".
///
/// # Panics
/// When the shapes differ (naming every size and its shape), or an `EXPLAIN` fails.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) {
/// pgscope::assert_plan_stable(&pool, "SELECT * FROM tasks WHERE project_id = ANY($1)", [5, 500]).await;
/// # }
/// ```
#[track_caller]
pub fn assert_plan_stable<'a>(
    pool: &'a Pool,
    sql: &'a str,
    sizes: impl IntoIterator<Item = usize>,
) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    let sizes: Vec<usize> = sizes.into_iter().collect();
    async move {
        let mut shapes = Vec::with_capacity(sizes.len());
        for &size in &sizes {
            let ids: Vec<i64> = (1..=size as i64).collect();
            let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(ids);
            match explain(pool, query).await {
                Ok(shape) => shapes.push((size, shape)),
                Err(e) => panic!("{caller}: EXPLAIN of `{sql}` with {size} ids failed: {e}"),
            }
        }
        if shapes.windows(2).any(|w| w[0].1 != w[1].1) {
            let lines: Vec<String> = shapes
                .iter()
                .map(|(size, shape)| format!("  {size:>7} ids: {shape}"))
                .collect();
            panic!(
                "{caller}: the plan of `{sql}` changes with the size of $1:\n{}",
                lines.join("\n")
            );
        }
    }
}
