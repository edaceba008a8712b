//! Observer mode: sqlx's own statement events counted in scopes, with and without the wrapper.
//! Its own test binary: it installs the global subscriber (the observer, and an INFO-filtered
//! layer standing in for the application's log output).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::events::Events;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgAdvisoryLock, PgListener, PgPool, PgPoolOptions};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// The application's log output: its own layer with its own (INFO) filter.
fn app_log() -> &'static Events {
    static LOG: OnceLock<Events> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Events::default();
        tracing_subscriber::registry()
            .with(pgscope::observe())
            .with(log.clone().with_filter(LevelFilter::INFO))
            .init();
        log
    })
}

async fn raw_pool(name: &str) -> PgPool {
    app_log();
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(common::schema(name).await)
        .await
        .expect("connect")
}

/// How many times the observer saw `sql` outside any scope.
fn observed_unscoped(sql: &str) -> u64 {
    let id = pgscope::fingerprint(sql).id();
    pgscope::Observer::unscoped_report()
        .fingerprints()
        .iter()
        .filter(|f| f.fingerprint().is_some_and(|fp| fp.id() == id))
        .map(|f| f.count())
        .sum()
}

fn normalized(report: &pgscope::Report) -> Vec<String> {
    report
        .fingerprints()
        .iter()
        .map(|f| f.normalized().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_pool_is_counted_in_the_scope_and_its_n_plus_one_found() {
    let pool = raw_pool("obs_raw").await;
    let ((), report) = pgscope::capture_named("GET /api/feed", async {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT g::bigint FROM generate_series(1, 8) g")
            .fetch_all(&pool)
            .await
            .expect("ids");
        for id in ids {
            sqlx::query("SELECT $1::bigint AS author_of_post")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("author");
        }
    })
    .await;
    assert_eq!(report.queries(), 9, "{report}");
    assert_eq!(report.rows(), 16, "8 ids, then one row each");
    assert!(report.db_time() > Duration::ZERO);
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    let n = &report.n_plus_one()[0];
    assert_eq!(n.count(), 8);
    assert_eq!(
        n.fingerprint().normalized(),
        "SELECT $1::bigint AS author_of_post"
    );
    assert!(
        n.call_site().starts_with("tests/observe.rs:"),
        "{}",
        n.call_site()
    );
    // What ran outside any scope went to the observer's own unscoped report, not here.
    assert!(
        app_log().of_target("sqlx::query").is_empty(),
        "statement events must not reach the application's INFO log: {:?}",
        app_log().of_target("sqlx::query")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_listener_and_advisory_locks_count_where_they_ran() {
    let pool = raw_pool("obs_tools").await;
    let ((), report) = pgscope::capture_named("startup", async {
        sqlx::migrate!("tests/migrations")
            .run(&pool)
            .await
            .expect("migrate");
        let mut listener = PgListener::connect_with(&pool).await.expect("listener");
        listener.listen("obs_channel").await.expect("listen");
        let lock = PgAdvisoryLock::new("obs-lock");
        let conn = pool.acquire().await.expect("acquire");
        let guard = lock.acquire(conn).await.expect("advisory lock");
        guard.release_now().await.expect("unlock");
    })
    .await;
    let statements = normalized(&report);
    for expected in [
        "CREATE TABLE items(id bigserial PRIMARY KEY, name text NOT NULL); INSERT INTO items(name)",
        "LISTEN obs_channel",
        "SELECT pg_advisory_lock($1)",
        "SELECT pg_advisory_unlock($1)",
    ] {
        assert!(
            statements.iter().any(|s| s.starts_with(expected)),
            "`{expected}` missing from\n{report}"
        );
    }
    assert!(
        statements
            .iter()
            .any(|s| s.starts_with("INSERT INTO _sqlx_migrations")),
        "{report}"
    );
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(items, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapper_statements_count_once_and_its_escape_hatches_are_counted() {
    app_log();
    let pool = pgscope::Pool::connect_with(common::schema("obs_both").await)
        .await
        .expect("connect");
    let ((), report) = pgscope::capture(async {
        common::repeat(&pool, "SELECT $1::bigint AS through_wrapper", 3).await;
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT 1 AS in_tx")
            .execute(&mut *tx)
            .await
            .expect("in tx");
        tx.commit().await.expect("commit");
        for _ in 0..2 {
            sqlx::query("SELECT 2 AS through_raw_pool")
                .execute(pool.as_sqlx())
                .await
                .expect("raw");
        }
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 3 AS on_raw_connection")
            .execute(conn.as_sqlx_mut())
            .await
            .expect("raw conn");
    })
    .await;
    // 3 + 1 through the wrapper, 2 + 1 only the observer saw; COMMIT counted once, as a
    // transaction statement.
    assert_eq!(report.queries(), 7, "{report}");
    assert_eq!(report.transaction_queries(), 2, "{report}");
    let statements = normalized(&report);
    assert!(!statements.iter().any(|s| s == "COMMIT"), "{report}");
    assert_eq!(
        report.fingerprints()[0].normalized(),
        "SELECT $1::bigint AS through_wrapper"
    );
    assert_eq!(report.fingerprints()[0].count(), 3, "not double counted");
    assert_eq!(pool.unscoped_report().queries(), 0);
    assert_eq!(observed_unscoped("SELECT $1::bigint AS through_wrapper"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_stay_exact_across_256_concurrent_scopes_with_both_installed() {
    app_log();
    let opts = common::schema("obs_exact").await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(8)
        .connect_with(opts.clone())
        .await
        .expect("connect");
    common::assert_exact_counts(&pool, &opts).await;
    assert_eq!(
        observed_unscoped("SELECT nextval('ctr')"),
        0,
        "the observer counted none of the wrapper's statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_log_statements_is_detected_with_the_fix() {
    app_log();
    let quiet = common::schema("obs_quiet")
        .await
        .log_statements(log::LevelFilter::Off);
    // Observer only: the probe finds nothing and says why.
    let raw = PgPoolOptions::new()
        .connect_with(quiet.clone())
        .await
        .expect("connect");
    let err = pgscope::verify_observed(sqlx::query("SELECT 1").execute(&raw))
        .await
        .expect_err("nothing is logged");
    assert_eq!(err, pgscope::NotObserved::NotLogged);
    // A logging pool passes the same check.
    let loud = raw_pool("obs_loud").await;
    pgscope::verify_observed(sqlx::query("SELECT 1").execute(&loud))
        .await
        .expect("observed")
        .expect("query");
    // Wrapper and observer: the wrapper notices the missing event and warns, once.
    let pool = pgscope::Pool::connect_with(quiet).await.expect("connect");
    common::repeat(&pool, "SELECT $1::int AS quiet", 3).await;
    let warnings: Vec<String> = app_log()
        .of_target("pgscope::observe")
        .into_iter()
        .filter(|r| r.level == tracing::Level::WARN)
        .map(|r| r.debug)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("logged no statement for the probe")),
        "{warnings:?} {:?}",
        app_log().all()
    );
    let from_wrapper = warnings
        .iter()
        .filter(|w| w.contains("saw no `sqlx::query` event"))
        .count();
    assert_eq!(
        from_wrapper, 1,
        "once, however many statements: {warnings:?}"
    );
}
