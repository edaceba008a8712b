//! sqlx's own tooling after the type swap: `#[sqlx::test]`-style tests, migrations, code
//! generic over `Acquire`, advisory locks. Its own binary: it installs the observer layer, which
//! counts what runs on sqlx's raw connections.

mod common;

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::PgAdvisoryLock;

fn observe() {
    common::install_observer();
}

#[pgscope::test(migrations = "tests/migrations")]
async fn pgscope_test_hands_a_pool_in_a_scope_named_after_the_test(pool: pgscope::Pool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM items ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("migrated table");
    assert_eq!(names, ["first", "second"]);
    let report = pgscope::current_report().expect("inside the test's scope");
    assert_eq!(
        report.name(),
        "drop_in::pgscope_test_hands_a_pool_in_a_scope_named_after_the_test"
    );
    report.assert_queries(1);
}

#[pgscope::test(migrations = "tests/migrations", fixtures("more_items"))]
async fn pgscope_test_applies_fixtures_and_returns_results(
    pool: pgscope::Pool,
) -> Result<(), sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 5, "2 from the migration, 3 from the fixture");
    Ok(())
}

#[sqlx::test(migrations = "tests/migrations")]
async fn a_raw_sqlx_test_pool_is_counted_by_the_observer(pool: sqlx::PgPool) {
    observe();
    let (_, report) = pgscope::capture(async {
        for _ in 0..3 {
            sqlx::query("SELECT count(*) FROM items")
                .fetch_one(&pool)
                .await
                .expect("count");
        }
    })
    .await;
    report.assert_queries(3);
}

/// sqlx-style code generic over `Acquire`: takes a pool or a connection.
async fn add_item<'a>(
    conn: impl sqlx::Acquire<'a, Database = Postgres>,
    name: &str,
) -> Result<(), sqlx::Error> {
    let mut conn = conn.acquire().await?;
    sqlx::query("INSERT INTO items (name) VALUES ($1)")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_run_and_acquire_generic_code_work_on_a_pgscope_pool() {
    observe();
    let pool = pgscope::Pool::connect_with(common::schema("drop_in_migrate").await)
        .await
        .expect("connect");
    let ((), report) = pgscope::capture_named("startup", async {
        sqlx::migrate!("tests/migrations")
            .run(&pool)
            .await
            .expect("migrate!().run(&pool)");
        add_item(&pool, "via pool").await.expect("generic, pool");
        let mut conn = pool.acquire().await.expect("acquire");
        add_item(&mut *conn, "via connection")
            .await
            .expect("generic, connection");
    })
    .await;
    // The migration's statements ran on sqlx's raw connection: the observer counted them.
    let statements: Vec<&str> = report
        .fingerprints()
        .iter()
        .map(|f| f.normalized())
        .collect();
    assert!(
        statements
            .iter()
            .any(|s| s.starts_with("INSERT INTO _sqlx_migrations")),
        "{report}"
    );
    let inserts = report
        .fingerprints()
        .iter()
        .find(|f| f.normalized() == "INSERT INTO items(name) VALUES (...)")
        .map(|f| f.count());
    assert_eq!(inserts, Some(2), "{report}");
    // Both acquires went through pgscope's pool: their hold time counts.
    assert!(report.connections_acquired() >= 2, "{report}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advisory_lock_in_a_spawned_task_and_then_close_does_not_hang() {
    observe();
    let pool = pgscope::PoolOptions::new()
        .max_connections(2)
        .connect_with(common::schema("drop_in_lock").await)
        .await
        .expect("connect");
    let lock = PgAdvisoryLock::new("pgscope-drop-in");
    let conn = pool.acquire().await.expect("acquire");
    let guard = lock.acquire(conn).await.expect("advisory lock");
    let worker = tokio::spawn(async move {
        let mut guard = guard;
        sqlx::query("SELECT 1")
            .execute(guard.as_mut())
            .await
            .expect("under the lock");
        guard.release_now().await.expect("unlock")
    });
    let conn = worker.await.expect("task");
    drop(conn);
    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .expect("close returns once the lock's connection is back");
    assert!(pool.is_closed());
}
