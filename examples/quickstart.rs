//! pgscope in one screen: a feed endpoint with an N+1, the report that exposes it, and the fix.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when no server
//! answers it starts a throwaway PostgreSQL under `/tmp/pgscope-pg`.

#[path = "../tests/common/mod.rs"]
mod common;

use pgscope::{Pool, PoolOptions};

async fn naive_feed(pool: &Pool) -> Result<usize, sqlx::Error> {
    let posts: Vec<(i64, String)> =
        sqlx::query_as("SELECT author_id, title FROM posts ORDER BY id DESC LIMIT 20")
            .fetch_all(pool)
            .await?;
    for (author_id, _title) in &posts {
        // lazy-loading the author: one query per post
        let _name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(author_id)
            .fetch_one(pool)
            .await?;
    }
    Ok(posts.len())
}

async fn joined_feed(pool: &Pool) -> Result<usize, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.author_id ORDER BY p.id DESC LIMIT 20",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // With the `otel` feature and OTEL_EXPORTER_OTLP_ENDPOINT set, export spans and metrics
    // (see collector-config/); the guard flushes everything when main returns.
    #[cfg(feature = "otel")]
    let _otel = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => Some({
            let otel = pgscope::otel::OtelBuilder::new().log_filter("warn");
            // OTEL_SERVICE_NAME, when set, names the service (as everywhere in OpenTelemetry).
            match std::env::var_os("OTEL_SERVICE_NAME") {
                Some(_) => otel,
                None => otel.service_name("pgscope-quickstart"),
            }
            .init()
        }),
        None => {
            tracing_subscriber::fmt().with_env_filter("warn").init();
            None
        }
    };
    #[cfg(not(feature = "otel"))]
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set: run with `--features otel` to export");
        }
        tracing_subscriber::fmt().with_env_filter("warn").init();
    }
    let opts = common::schema("quickstart").await;
    // Pools are created at start-up, before the first request (this also lets pgscope load the
    // debug info it needs for call sites in the background).
    let pool = PoolOptions::new()
        .max_connections(5)
        .connect_with(opts.clone())
        .await?;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users, title text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 100) g;
         INSERT INTO posts SELECT g, 1 + g % 100, 'post ' || g FROM generate_series(1, 1000) g;",
    )
    .await;

    let (posts, report) = pgscope::capture_named("GET /api/feed (naive)", naive_feed(&pool)).await;
    println!("naive feed: {} posts\n{report}", posts?);
    for n in report.n_plus_one() {
        println!(
            "-> N+1: `{}` ran {} times, from {}\n",
            n.fingerprint().normalized(),
            n.count(),
            n.call_site()
        );
    }

    let (posts, report) = pgscope::capture_named("GET /api/feed (join)", joined_feed(&pool)).await;
    println!("joined feed: {} posts\n{report}", posts?);
    report.assert_no_n_plus_one();

    println!("pool: {:?}", pool.stats());
    Ok(())
}
