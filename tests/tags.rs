//! Statement tags on a real PostgreSQL: the server sees which route sent a statement
//! (`pg_stat_activity`, the server log), `pg_stat_statements` and pgscope's fingerprints are
//! unchanged, and the prepared-statement cache grows by routes, not by requests.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use pgscope::{Pool, Tags};
use sqlx::Connection as _;

async fn tagged(opts: sqlx::postgres::PgConnectOptions, tags: Tags, max: u32) -> Pool {
    pgscope::PoolOptions::new()
        .max_connections(max)
        .tag_statements(tags)
        .connect_with(opts)
        .await
        .expect("pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connection_sees_the_route_in_pg_stat_activity() {
    let opts = common::schema("tags_activity").await;
    let pool = tagged(opts.clone(), Tags::new().route().application("shop"), 2).await;
    let mut observer = sqlx::PgConnection::connect_with(&opts)
        .await
        .expect("observer");
    let watch = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let seen: Option<String> = sqlx::query_scalar(
                "SELECT query FROM pg_stat_activity
                 WHERE query LIKE 'SELECT pg_sleep(0.5)%' AND pid <> pg_backend_pid()",
            )
            .fetch_optional(&mut observer)
            .await
            .expect("pg_stat_activity");
            if seen.is_some() {
                return seen;
            }
        }
        None
    });
    let ((), report) = pgscope::capture_named("GET /ho/tags", async {
        sqlx::query("SELECT pg_sleep(0.5)")
            .execute(&pool)
            .await
            .expect("sleep");
    })
    .await;
    let seen = watch
        .await
        .expect("watch")
        .expect("the statement was seen running");
    assert_eq!(
        seen,
        "SELECT pg_sleep(0.5) /*application='shop',route='GET%20%2Fho%2Ftags'*/"
    );
    // pgscope's view is the untagged statement, one fingerprint.
    assert_eq!(report.queries(), 1);
    let row = &report.fingerprints()[0];
    assert_eq!(row.normalized(), "SELECT pg_sleep($1)");
    assert_eq!(
        pgscope::fingerprint(&seen).id(),
        pgscope::fingerprint("SELECT pg_sleep(0.5)").id(),
        "a tagged and an untagged statement share the fingerprint"
    );
    assert_eq!(pgscope::fingerprint(&seen).normalized(), row.normalized());

    // Outside a scope: no tag.
    let untagged: String = sqlx::query_scalar("SELECT current_query()")
        .fetch_one(&pool)
        .await
        .expect("current_query");
    assert_eq!(untagged, "SELECT current_query()");
    let inside: String = pgscope::capture_named("GET /q", async {
        sqlx::query_scalar("SELECT current_query()")
            .fetch_one(&pool)
            .await
    })
    .await
    .0
    .expect("current_query");
    assert_eq!(
        inside,
        "SELECT current_query() /*application='shop',route='GET%20%2Fq'*/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_quotes_and_comment_ends_cannot_break_out() {
    let opts = common::schema("tags_escape").await;
    let pool = tagged(opts, Tags::new().route(), 1).await;
    let route = "GET /x'*/ ; SELECT 'pwned' --";
    let (text, _) = pgscope::capture_named(route, async {
        sqlx::query_scalar::<_, String>("SELECT current_query()")
            .fetch_one(&pool)
            .await
            .expect("the statement still runs as one")
    })
    .await;
    assert_eq!(
        text,
        "SELECT current_query() /*route='GET%20%2Fx%27%2A%2F%20%3B%20SELECT%20%27pwned%27%20--'*/"
    );
}

async fn prepared(conn: &mut pgscope::PoolConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
        .fetch_one(&mut **conn)
        .await
        .expect("pg_prepared_statements")
}

/// Runs one lookup in each of `routes` scopes, three times each, on one held connection; the
/// connection's prepared statements before and after.
async fn workload(pool: &Pool, routes: usize) -> (i64, i64) {
    let mut conn = pool.acquire().await.expect("acquire");
    let before = prepared(&mut conn).await;
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
    for round in 0..3 {
        for r in 0..routes {
            let conn = conn.clone();
            let ((), _) = pgscope::capture_named(format!("GET /route/{r}"), async move {
                let mut conn = conn.lock().await;
                sqlx::query("SELECT $1::int + 1")
                    .bind(round)
                    .execute(&mut **conn)
                    .await
                    .expect("lookup");
            })
            .await;
        }
    }
    let mut conn = conn.lock().await;
    let after = prepared(&mut conn).await;
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_grow_by_routes_and_traceparent_tags_run_unprepared() {
    let opts = common::schema("tags_prepared").await;
    let plain = pgscope::PoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone())
        .await
        .expect("pool");
    let (before, after) = workload(&plain, 8).await;
    let untagged = after - before;
    let routes = tagged(opts.clone(), Tags::new().route(), 1).await;
    let (before, after) = workload(&routes, 8).await;
    let by_route = after - before;
    // The lookup (and the count query) prepared once untagged; the lookup once per route tagged.
    assert_eq!(untagged, 1, "the lookup, prepared once");
    assert_eq!(
        by_route, 8,
        "one text per (statement, route), 24 executions"
    );
    let per_request = tagged(opts, Tags::new().route().traceparent(), 1).await;
    let (before, after) = workload(&per_request, 8).await;
    assert_eq!(after - before, 0, "traceparent tags: nothing prepared");
}

/// Calls per queryid of the statements whose text matches `like`.
async fn calls(admin: &mut sqlx::PgConnection, like: &str) -> std::collections::HashMap<i64, i64> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT queryid, calls FROM pg_stat_statements WHERE query LIKE $1")
            .bind(like)
            .fetch_all(admin)
            .await
            .expect("pg_stat_statements");
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_stat_statements_keeps_one_row_whatever_the_route() {
    let url = common::pg_stat_statements_url().await;
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut admin)
        .await
        .expect("extension");
    let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let pool = tagged(opts, Tags::new().route(), 2).await;
    // pg_stat_statements keeps the text first seen for a queryid (a column alias does not
    // change it): compare the calls of every matching row before and after.
    let sql = "SELECT count(*) AS tags_pss FROM pg_class WHERE relpages > $1";
    let like = "%FROM pg_class WHERE relpages > $1%";
    let before = calls(&mut admin, like).await;
    for route in ["GET /a", "GET /b", "POST /c"] {
        let ((), _) = pgscope::capture_named(route, async {
            sqlx::query(sql)
                .bind(0_i32)
                .execute(&pool)
                .await
                .expect("statement");
        })
        .await;
    }
    let after = calls(&mut admin, like).await;
    let grown: Vec<(i64, i64)> = after
        .iter()
        .map(|(q, c)| (*q, c - before.get(q).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    assert_eq!(grown.len(), 1, "one row for three routes: {grown:?}");
    assert_eq!(grown[0].1, 3, "its calls grew by three");
}

/// A cluster of the test's own with `log_min_duration_statement = 0`: every statement logged.
struct LoggingCluster {
    dir: PathBuf,
    port: u16,
}

impl LoggingCluster {
    fn start(port: u16) -> LoggingCluster {
        let dir = std::env::temp_dir().join(format!("pgscope-tags-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres", dir.to_str().unwrap_or_default()])
            .output();
        let out = common::initdb(&dir.join("data"));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c log_min_duration_statement=0"
        );
        let out = common::pg_ctl(&dir.join("data"), &dir.join("log"), &opts, &["start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoggingCluster { dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for LoggingCluster {
    fn drop(&mut self) {
        let _ = common::pg_ctl(
            &self.dir.join("data"),
            &self.dir.join("log"),
            "",
            &["-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_log_shows_the_route() {
    let cluster = tokio::task::spawn_blocking(|| LoggingCluster::start(54351))
        .await
        .expect("cluster");
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let pool = tagged(url.parse().expect("url"), Tags::new().route(), 1).await;
    let ((), _) = pgscope::capture_named("GET /logged", async {
        sqlx::query("SELECT 42 AS tags_logged")
            .execute(&pool)
            .await
            .expect("statement");
    })
    .await;
    pool.close().await;
    let log = common::eventually(|| {
        let log = cluster.log();
        log.contains("tags_logged").then_some(log)
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("SELECT 42 AS tags_logged"))
        .expect("the statement is logged");
    assert!(
        line.contains("SELECT 42 AS tags_logged /*route='GET%20%2Flogged'*/"),
        "{line}"
    );
}
