//! sqlx's compile-time-checked macros (`query!`, `query_as!`, `query_scalar!`) run unchanged
//! through pgscope's pool, pooled connection and transaction, and are counted like any other
//! statement.
//!
//! The macros check their SQL at build time: against the database at `DATABASE_URL` when it is
//! set, else against the query descriptions committed in `.sqlx/` (regenerate them with
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test SQLX_OFFLINE_DIR=$PWD/.sqlx
//! cargo test --all-features --test macros --no-run` after changing a query). The statements
//! use no tables, so they check against any PostgreSQL.

mod common;

#[derive(Debug, PartialEq)]
struct Label {
    n: i32,
    label: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_time_checked_macros_run_through_pgscope_and_are_counted() {
    let opts = common::schema("macros").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let ((), report) = pgscope::capture_named("macros", async {
        let row = sqlx::query!(
            r#"SELECT $1::int4 AS "n!", 'label ' || $1::int4 AS "label!""#,
            7
        )
        .fetch_one(&pool)
        .await
        .expect("query!");
        assert_eq!((row.n, row.label.as_str()), (7, "label 7"));

        let typed = sqlx::query_as!(
            Label,
            r#"SELECT $1::int4 AS "n!", $2::text AS "label!""#,
            8,
            "eight"
        )
        .fetch_one(&pool)
        .await
        .expect("query_as!");
        assert_eq!(
            typed,
            Label {
                n: 8,
                label: "eight".to_owned()
            }
        );

        let mut conn = pool.acquire().await.expect("acquire");
        let count = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM generate_series(1, $1::int4)"#,
            5
        )
        .fetch_one(&mut *conn)
        .await
        .expect("query_scalar! on a connection");
        assert_eq!(count, 5);
        drop(conn);

        let mut tx = pool.begin().await.expect("begin");
        for i in 0..3 {
            let echoed = sqlx::query_scalar!(r#"SELECT $1::int4 AS "v!""#, i)
                .fetch_one(&mut *tx)
                .await
                .expect("query_scalar! in a transaction");
            assert_eq!(echoed, i);
        }
        tx.commit().await.expect("commit");
    })
    .await;
    report.assert_queries(6);
    assert_eq!(report.transaction_queries(), 2, "BEGIN and COMMIT");
    let echo = report
        .fingerprints()
        .iter()
        .find(|f| f.normalized() == r#"SELECT $1::int4 AS "v!""#)
        .expect("the transaction's statement, grouped");
    assert_eq!(echo.count(), 3);
}
