//! pgscope in observer-only mode (`default-features = false, features = ["observe"]`) on a
//! sqlx 0.8 application: no pgscope pool, no sqlx 0.9, the same scopes and findings.

use std::sync::Once;

use pgscope_compat_sqlx08::{feed_join, feed_naive, seed};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tracing_subscriber::prelude::*;

fn observe() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_filter(tracing_subscriber::EnvFilter::new("warn")),
            )
            .with(pgscope::observe())
            .init();
    });
}

/// A pool on a schema of its own. `DATABASE_URL`, else the local server; `.ci/run` makes
/// sure one answers.
async fn pool(schema: &str) -> sqlx::PgPool {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {url}: {e}"));
    let ddl = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};");
    sqlx::raw_sql(&ddl).execute(&admin).await.expect("schema");
    let options: PgConnectOptions = url.parse().expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.options([("search_path", schema)]))
        .await
        .expect("connect");
    seed(&pool).await.expect("seed");
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_naive_feed_is_an_n_plus_one_with_its_call_site() {
    observe();
    let pool = pool("compat08_naive").await;
    let (feed, report) = pgscope::capture_named("GET /feed", feed_naive(&pool, 20)).await;
    assert_eq!(feed.expect("feed").len(), 20);
    report.assert_queries(21);
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    let n = &report.n_plus_one()[0];
    assert_eq!(n.count(), 20);
    assert_eq!(
        n.fingerprint().normalized(),
        "SELECT name FROM users WHERE id = $1"
    );
    if cfg!(debug_assertions) {
        assert!(
            n.call_site().starts_with("src/lib.rs:"),
            "{}",
            n.call_site()
        );
    } else {
        // `cargo test --release`: cargo's default release profile has no line tables; the
        // finding still names the application's function (the innermost one not inlined:
        // here `feed_naive`'s body is inlined into the test's future), never libc's or
        // pgscope's, and says how to get the line.
        let site = n.call_site();
        assert!(
            (site.starts_with("pgscope_compat_sqlx08::feed_naive")
                || site.starts_with("observed::the_naive_feed_is_an_n_plus_one"))
                && site.contains("(no line tables"),
            "{site}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_runs_one_statement_and_returns_the_same_feed() {
    observe();
    let pool = pool("compat08_join").await;
    let (naive, _) = pgscope::capture(feed_naive(&pool, 20)).await;
    let (joined, report) = pgscope::capture_named("GET /feed", feed_join(&pool, 20)).await;
    assert_eq!(joined.expect("join"), naive.expect("naive"));
    report.assert_queries(1);
    report.assert_no_n_plus_one();
}
