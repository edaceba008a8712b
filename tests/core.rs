//! Core guarantees of the pool and scopes, against a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgscope::{Pool, PoolOptions};
use sqlx::postgres::PgExecutor;

async fn pool(name: &str, max: u32) -> (Pool, sqlx::postgres::PgConnectOptions) {
    let opts = common::schema(name).await;
    let pool = PoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await
        .expect("connect");
    (pool, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_exact_across_256_concurrent_scopes_on_a_pool_of_8() {
    let (pool, opts) = pool("exact_counts", 8).await;
    common::assert_exact_counts(&pool, &opts).await;
}

#[tokio::test]
async fn connection_hold_time_runs_from_acquire_to_release_across_awaits() {
    let (pool, _) = pool("hold_time", 2).await;
    let (_, report) = pgscope::capture(async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .expect("select");
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("SELECT 2")
            .execute(&mut *conn)
            .await
            .expect("select");
    })
    .await;
    assert_eq!(report.queries(), 2);
    assert!(
        report.connection_hold_time() >= Duration::from_millis(200),
        "{report}"
    );
    assert!(
        report.db_time() < Duration::from_millis(150),
        "db time counts only the queries: {report}"
    );
    assert_eq!(report.connections_acquired(), 1);
}

#[tokio::test]
async fn a_cancelled_scope_returns_its_connection_and_the_next_scope_starts_clean() {
    // A 5 s acquire timeout: the connection must come back well before the 10 s sleep ends.
    let pool = PoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(common::schema("cancel").await)
        .await
        .expect("connect");
    let work = pgscope::capture_named("slow", async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT pg_sleep(10)").execute(&mut *conn).await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), work)
            .await
            .is_err(),
        "should time out"
    );

    // The single connection must come back (or be replaced) and serve the next scope.
    let (value, report) = pgscope::capture_named("next", async {
        sqlx::query_scalar::<_, i32>("SELECT 41 + 1")
            .fetch_one(&pool)
            .await
    })
    .await;
    assert_eq!(value.expect("query after cancel"), 42);
    report.assert_queries(1);
    assert_eq!(report.failed_queries(), 0);
    assert_eq!(report.name(), "next");
    // The cancelled statement was sent, so it is not lost: it counts (as failed) in the
    // cancelled scope, which nobody reads any more, not in the next one.
    assert_eq!(pool.unscoped_report().queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_wait_time_and_acquire_timeouts_are_visible() {
    let opts = common::schema("waiters").await;
    let pool = PoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts.clone())
        .await
        .expect("connect");

    let max_waiters = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (pool, max_waiters) = (pool.clone(), max_waiters.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                max_waiters.fetch_max(pool.stats().waiters(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut scopes = Vec::new();
    for i in 0..10 {
        let pool = pool.clone();
        scopes.push(tokio::spawn(pgscope::capture_named(
            format!("holder-{i}"),
            async move {
                let mut conn = pool.acquire().await.expect("acquire");
                sqlx::query("SELECT pg_sleep(0.05)")
                    .execute(&mut *conn)
                    .await
                    .expect("sleep");
            },
        )));
    }
    let mut total_wait = Duration::ZERO;
    for s in scopes {
        let ((), report) = s.await.expect("scope");
        total_wait += report.pool_wait_time();
    }
    sampler.await.expect("sampler");
    assert!(
        max_waiters.load(Ordering::Relaxed) >= 1,
        "waiters never visible"
    );
    // 10 holders of 50 ms on 2 connections: at least 8 waited, most for 50 ms or more.
    assert!(
        total_wait >= Duration::from_millis(200),
        "total wait {total_wait:?}"
    );

    let short = PoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(300))
        .connect_with(opts)
        .await
        .expect("connect");
    let _a = short.acquire().await.expect("first");
    let _b = short.acquire().await.expect("second");
    let err = short.acquire().await.expect_err("pool is exhausted");
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
    assert_eq!(short.stats().acquire_timeouts(), 1);
    assert_eq!(short.stats().in_use(), 2);
    assert_eq!(short.stats().waiters(), 0);
}

#[tokio::test]
async fn postgres_errors_pass_through_unchanged_and_count_as_failed() {
    let (pool, opts) = pool("errors", 2).await;
    common::setup(&opts, "CREATE TABLE u (id int PRIMARY KEY)").await;
    let (_, report) = pgscope::capture(async {
        let err = sqlx::query("SELEC 1")
            .execute(&pool)
            .await
            .expect_err("syntax error");
        let db = err.as_database_error().expect("database error");
        assert_eq!(db.code().as_deref(), Some("42601"));

        sqlx::query("INSERT INTO u VALUES (1)")
            .execute(&pool)
            .await
            .expect("insert");
        let err = sqlx::query("INSERT INTO u VALUES (1)")
            .execute(&pool)
            .await
            .expect_err("duplicate");
        assert!(
            err.as_database_error()
                .expect("database error")
                .is_unique_violation()
        );

        let err = sqlx::query_scalar::<_, i32>("SELECT 1 WHERE false")
            .fetch_one(&pool)
            .await
            .expect_err("no row");
        assert!(matches!(err, sqlx::Error::RowNotFound));
    })
    .await;
    assert_eq!(report.queries(), 4, "{report}");
    assert_eq!(report.failed_queries(), 2, "{report}");
}

#[derive(sqlx::FromRow, Debug, PartialEq)]
struct User {
    id: i64,
    name: String,
}

async fn generic_count<'e>(e: impl PgExecutor<'e>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(e)
        .await
        .expect("count")
}

#[tokio::test]
async fn unchanged_sqlx_code_runs_against_the_pool() {
    let (pool, opts) = pool("drop_in", 3).await;
    common::setup(&opts, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL); INSERT INTO users VALUES (1, 'ada'), (2, 'grace')").await;
    let ((), report) = pgscope::capture(async {
        let rows = sqlx::query("SELECT id FROM users WHERE id > $1")
            .bind(0i64)
            .fetch_all(&pool)
            .await
            .expect("fetch_all");
        assert_eq!(rows.len(), 2);
        let user = sqlx::query_as::<_, User>("SELECT id, name FROM users WHERE id = $1")
            .bind(2i64)
            .fetch_optional(&pool)
            .await
            .expect("query_as");
        assert_eq!(
            user,
            Some(User {
                id: 2,
                name: "grace".into()
            })
        );
        assert_eq!(generic_count(&pool).await, 2);

        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("INSERT INTO users VALUES ($1, $2)")
            .bind(3i64)
            .bind("linus")
            .execute(&mut *conn)
            .await
            .expect("insert");
        assert_eq!(generic_count(&mut *conn).await, 3);
        drop(conn);

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("DELETE FROM users WHERE id = 3")
            .execute(&mut *tx)
            .await
            .expect("delete");
        assert_eq!(generic_count(&mut *tx).await, 2);
        tx.rollback().await.expect("rollback");

        let dynamic = format!("SELECT count(*) FROM users WHERE id <> {}", 99);
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(dynamic))
            .fetch_one(&pool)
            .await
            .expect("dynamic");
        assert_eq!(n, 3, "rollback kept the row");
    })
    .await;
    assert_eq!(report.queries(), 8, "{report}");
    assert_eq!(report.transaction_queries(), 2);
    let counts = report
        .fingerprints()
        .iter()
        .find(|f| f.normalized() == "SELECT count(*) FROM users")
        .expect("row");
    assert_eq!(counts.count(), 3);
    assert_eq!(report.rows(), 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1);
    let table = report.to_string();
    assert!(table.contains("SELECT count(*) FROM users"), "{table}");
}

#[tokio::test]
async fn queries_outside_scopes_are_unscoped_and_nested_scopes_roll_up() {
    let (pool, _) = pool("nesting", 2).await;
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .expect("unscoped");
    let ((), outer) = pgscope::capture_named("outer", async {
        sqlx::query("SELECT 1").execute(&pool).await.expect("outer");
        let ((), inner) = pgscope::capture_named("inner", async {
            sqlx::query("SELECT 2").execute(&pool).await.expect("inner");
            sqlx::query("SELECT 3").execute(&pool).await.expect("inner");
        })
        .await;
        inner.assert_queries(2);
    })
    .await;
    outer.assert_queries(3);
    assert_eq!(pool.unscoped_report().queries(), 1);
}

#[tokio::test]
async fn a_connection_acquired_in_a_scope_counts_there_wherever_it_is_used() {
    let (pool, _) = pool("conn_scope", 2).await;
    let (mut conn, report) =
        pgscope::capture_named("acquirer", async { pool.acquire().await.expect("acquire") }).await;
    assert_eq!(report.connections_acquired(), 1);
    // The acquiring scope is closed: later use is recorded as unscoped rather than lost.
    sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .expect("query");
    drop(conn);
    assert_eq!(pool.unscoped_report().queries(), 1);

    let ((), report) = pgscope::capture_named("holder", async {
        let mut conn = pool.acquire().await.expect("acquire");
        let handle = tokio::spawn(async move {
            // plain tokio::spawn, no scope: the connection still belongs to `holder`
            sqlx::query("SELECT 2")
                .execute(&mut *conn)
                .await
                .expect("query");
        });
        handle.await.expect("task");
    })
    .await;
    report.assert_queries(1);
}

#[tokio::test]
#[should_panic(expected = "expected 2 queries in scope `anonymous`, got 1")]
async fn assert_queries_panics_with_the_report() {
    let (pool, _) = pool("assert_panics", 1).await;
    let ((), report) = pgscope::capture(async {
        sqlx::query("SELECT 1").execute(&pool).await.expect("query");
    })
    .await;
    report.assert_queries(2);
}

#[tokio::test]
async fn savepoints_nest_inside_transactions_and_roll_back_independently() {
    let (pool, opts) = pool("savepoints", 2).await;
    common::setup(&opts, "CREATE TABLE t (n int)").await;
    let ((), report) = pgscope::capture(async {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        {
            let mut sp = tx.begin().await.expect("savepoint");
            sqlx::query("INSERT INTO t VALUES (2)")
                .execute(&mut *sp)
                .await
                .expect("insert in savepoint");
            sp.rollback().await.expect("rollback to savepoint");
        }
        {
            let mut sp = tx.begin().await.expect("savepoint");
            sqlx::query("INSERT INTO t VALUES (3)")
                .execute(&mut *sp)
                .await
                .expect("insert in savepoint");
            sp.commit().await.expect("release savepoint");
        }
        tx.commit().await.expect("commit");
    })
    .await;
    assert_eq!(report.queries(), 3);
    // BEGIN, SAVEPOINT, ROLLBACK TO, SAVEPOINT, RELEASE, COMMIT
    assert_eq!(report.transaction_queries(), 6);
    assert_eq!(
        common::scalar(&opts, "SELECT coalesce(sum(n), 0)::bigint FROM t").await,
        4
    );
}

#[tokio::test]
async fn a_connection_killed_by_the_server_fails_its_query_and_the_pool_recovers() {
    let (pool, opts) = pool("killed", 1).await;
    let ((), report) = pgscope::capture(async {
        let mut conn = pool.acquire().await.expect("acquire");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .expect("pid");
        // What a server restart or an admin does to a connection in use.
        let killed = common::scalar(
            &opts,
            &format!("SELECT pg_terminate_backend({pid})::int::bigint"),
        )
        .await;
        assert_eq!(killed, 1);
        let err = sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .expect_err("dead connection");
        assert!(
            pgscope::Error::from_sqlx(&err).is_none(),
            "the driver's own error, unchanged: {err}"
        );
        drop(conn);
        // The pool replaces the dead connection.
        let v: i32 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&pool)
            .await
            .expect("after recovery");
        assert_eq!(v, 7);
    })
    .await;
    assert_eq!(report.queries(), 3);
    assert_eq!(report.failed_queries(), 1);
}

#[tokio::test]
async fn a_flood_of_unique_statements_keeps_reports_and_caches_bounded() {
    let opts = common::schema("flood").await;
    let pool = PoolOptions::new()
        .max_connections(2)
        .fingerprint_cache_capacity(256)
        .connect_with(opts)
        .await
        .expect("connect");
    let ((), report) = pgscope::capture(async {
        for i in 0..700 {
            // distinct statement shapes: a different column alias each time
            let sql = format!("SELECT 1 AS c{i}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("query");
        }
    })
    .await;
    assert_eq!(report.queries(), 700, "counts stay exact past the row cap");
    let rows = report.fingerprints();
    assert_eq!(
        rows.len(),
        513,
        "512 statement rows and one row for the rest"
    );
    let other = rows
        .iter()
        .find(|r| r.fingerprint().is_none())
        .expect("overflow row");
    assert_eq!(other.count(), 700 - 512);
    assert_eq!(rows.iter().map(|r| r.count()).sum::<u64>(), 700);
    let (entries, misses) = pool.fingerprint_cache_stats();
    assert!(entries <= 256, "cache holds {entries}");
    assert!(misses >= 700);
}

#[tokio::test]
async fn without_a_console_a_report_keeps_no_timeline_but_knows_how_long_it_ran() {
    let (pool, _) = pool("core_no_timeline", 2).await;
    let ((), report) = pgscope::capture_named("job", async {
        sqlx::query("SELECT pg_sleep(0.03)")
            .execute(&pool)
            .await
            .expect("sleep");
    })
    .await;
    assert_eq!(report.queries(), 1);
    assert!(
        report.timeline().is_none(),
        "no console in this process: nothing recorded"
    );
    assert!(report.elapsed() >= report.db_time(), "{report:?}");
    assert!(report.elapsed() >= std::time::Duration::from_millis(30));
    assert_eq!(report.status(), None, "not a request");
}
