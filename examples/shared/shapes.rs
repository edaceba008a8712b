//! The scopes the benchmarks measure (`overhead --repeated-only`, `scope_profile`): ten
//! statements in one of the places applications run them, the same code on raw sqlx and on
//! pgscope.

use sqlx::PgPool;

/// The statement of the N+1-shaped scopes, ten distinct values each.
pub const LOOKUP: &str = "SELECT $1::bigint";

/// What one scope of 10 statements runs, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `SELECT 1` ten times on the pool (a duplicate finding in every scope).
    Same,
    /// `SELECT $1::bigint` with ten values on the pool (an N+1 in every scope).
    Distinct,
    /// `BEGIN`, the ten distinct statements on `&mut *tx`, `COMMIT`.
    Transaction,
    /// `acquire()`, the ten distinct statements on `&mut *conn`, release.
    Held,
}

impl Shape {
    /// `same`, `distinct`, `tx` or `held`.
    #[allow(dead_code)]
    pub fn parse(name: &str) -> Option<Shape> {
        match name {
            "same" => Some(Shape::Same),
            "distinct" => Some(Shape::Distinct),
            "tx" => Some(Shape::Transaction),
            "held" => Some(Shape::Held),
            _ => None,
        }
    }

    #[allow(dead_code)]
    pub fn label(self) -> &'static str {
        match self {
            Shape::Same => "10 × SELECT 1",
            Shape::Distinct => "10 × SELECT $1, distinct",
            Shape::Transaction => "transaction: BEGIN, 10 × SELECT $1, COMMIT",
            Shape::Held => "held connection: acquire, 10 × SELECT $1, release",
        }
    }
}

/// One scope's statements on `$pool` (a `PgPool` or a `pgscope::Pool`: the same calls).
macro_rules! scope_on {
    ($pool:expr, $shape:expr) => {
        match $shape {
            Shape::Same | Shape::Distinct => {
                for i in 0..10_i64 {
                    match $shape {
                        Shape::Same => sqlx::query("SELECT 1").execute($pool).await,
                        _ => sqlx::query(LOOKUP).bind(i).execute($pool).await,
                    }
                    .expect("statement");
                }
            }
            Shape::Transaction => {
                let mut tx = $pool.begin().await.expect("begin");
                for i in 0..10_i64 {
                    sqlx::query(LOOKUP)
                        .bind(i)
                        .execute(&mut *tx)
                        .await
                        .expect("statement");
                }
                tx.commit().await.expect("commit");
            }
            Shape::Held => {
                let mut conn = $pool.acquire().await.expect("acquire");
                for i in 0..10_i64 {
                    sqlx::query(LOOKUP)
                        .bind(i)
                        .execute(&mut *conn)
                        .await
                        .expect("statement");
                }
            }
        }
    };
}

/// One scope's statements on raw sqlx.
pub async fn raw_scope(raw: &PgPool, shape: Shape) {
    scope_on!(raw, shape)
}

/// The same statements on pgscope.
pub async fn pgscope_scope(pool: &pgscope::Pool, shape: Shape) {
    scope_on!(pool, shape)
}
