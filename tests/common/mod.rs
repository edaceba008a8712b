//! Test harness: a real PostgreSQL for every test.
//!
//! Uses `DATABASE_URL` when set, else `postgres://postgres@127.0.0.1:5432/test`. When nothing
//! answers there, starts a throwaway cluster (initdb + pg_ctl) under `/tmp/pgscope-pg` on port
//! 54329, shared by all test binaries of the run. Each test gets its own schema (dropped and
//! recreated), selected through `search_path`, so tests run in parallel without interfering.
#![allow(dead_code)]

pub mod events;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

const THROWAWAY_PORT: u16 = 54329;

async fn answers(url: &str) -> bool {
    let Ok(opts) = PgConnectOptions::from_str(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), opts.connect()).await,
        Ok(Ok(_))
    )
}

pub fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a command as the `postgres` OS user when we are root (initdb refuses to run as root).
pub fn run_pg(cmd: &PathBuf, args: &[&str]) -> std::process::Output {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let mut c = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    };
    c.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.display()))
}

/// The examples' numeric `--name value` flags (`default` when absent or not a number).
pub fn flag(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `initdb` of a trust-auth cluster owned by `postgres` into `data`.
pub fn initdb(data: &Path) -> std::process::Output {
    run_pg(
        &pg_bin("initdb"),
        &[
            "-D",
            data.to_str().unwrap_or_default(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
    )
}

/// `pg_ctl -D data -l log -o opts -w action…`: waits for the action to complete.
pub fn pg_ctl(data: &Path, log: &Path, opts: &str, action: &[&str]) -> std::process::Output {
    let mut args = vec![
        "-D",
        data.to_str().unwrap_or_default(),
        "-l",
        log.to_str().unwrap_or_default(),
        "-o",
        opts,
        "-w",
    ];
    args.extend_from_slice(action);
    run_pg(&pg_bin("pg_ctl"), &args)
}

fn start_throwaway() -> String {
    // Under the system temp dir, not the checkout: the `postgres` user must be able to reach
    // it, and a checkout under /root is not reachable for it.
    let dir = std::env::temp_dir().join("pgscope-pg");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("create /tmp/pgscope-pg");
    let _ = Command::new("chown")
        .args(["-R", "postgres", dir.to_str().unwrap_or_default()])
        .output();
    if !data.join("PG_VERSION").exists() {
        let out = initdb(&data);
        assert!(
            out.status.success() || data.join("PG_VERSION").exists(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let opts = format!(
        "-p {THROWAWAY_PORT} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_preload_libraries=pg_stat_statements"
    );
    let _ = pg_ctl(&data, &dir.join("log"), &opts, &["start"]);
    let _ = run_pg(
        &pg_bin("createdb"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &THROWAWAY_PORT.to_string(),
            "-U",
            "postgres",
            "test",
        ],
    );
    format!("postgres://postgres@127.0.0.1:{THROWAWAY_PORT}/test")
}

static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// The URL of a PostgreSQL that answers; starts one if needed. Panics (fails the test) when no
/// server can be found or started: a test that silently skips would be a test that does not exist.
pub async fn database_url() -> String {
    URL.get_or_init(|| async {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        if answers(&url).await {
            return url;
        }
        let throwaway = format!("postgres://postgres@127.0.0.1:{THROWAWAY_PORT}/test");
        if answers(&throwaway).await {
            return throwaway;
        }
        let url = tokio::task::spawn_blocking(start_throwaway).await.expect("start PostgreSQL");
        for _ in 0..50 {
            if answers(&url).await {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no PostgreSQL at DATABASE_URL and could not start a throwaway one (see /tmp/pgscope-pg/log)");
    })
    .await
    .clone()
}

/// A server with `pg_stat_statements` loaded: the shared one when it has it, else the throwaway
/// cluster (started with `shared_preload_libraries=pg_stat_statements`).
pub async fn pg_stat_statements_url() -> String {
    let url = database_url().await;
    if let Ok(mut c) = PgConnection::connect(&url).await {
        let libs: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
            .fetch_one(&mut c)
            .await
            .unwrap_or_default();
        if libs.contains("pg_stat_statements") {
            return url;
        }
    }
    let throwaway = format!("postgres://postgres@127.0.0.1:{THROWAWAY_PORT}/test");
    if answers(&throwaway).await {
        return throwaway;
    }
    let url = tokio::task::spawn_blocking(start_throwaway)
        .await
        .expect("start PostgreSQL");
    for _ in 0..50 {
        if answers(&url).await {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not start a PostgreSQL with pg_stat_statements (see /tmp/pgscope-pg/log)");
}

/// A fresh schema for one test, and connect options that use it.
pub async fn schema(name: &str) -> PgConnectOptions {
    let url = database_url().await;
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let schema = format!("t_{name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    )))
    .execute(&mut admin)
    .await
    .expect("create schema");
    PgConnectOptions::from_str(&url)
        .expect("url")
        .options([("search_path", schema.as_str())])
}

/// Runs setup SQL (DDL, seed data) on its own connection, outside any pool under test.
pub async fn setup(opts: &PgConnectOptions, sql: &str) {
    let mut conn = opts.connect().await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("setup sql");
}

/// The plan tests' table: `tasks` with 100 000 rows over 2 000 projects, an index on
/// `project_id` and fresh statistics (so `= ANY($1)` plans differ with the list's size).
pub async fn tasks_table(opts: &PgConnectOptions) {
    setup(
        opts,
        "CREATE TABLE tasks (id bigserial PRIMARY KEY, project_id bigint NOT NULL, title text NOT NULL);
         INSERT INTO tasks (project_id, title)
           SELECT g % 2000, 'task ' || g FROM generate_series(1, 100000) g;
         CREATE INDEX tasks_project_id_idx ON tasks (project_id);
         ANALYZE tasks;",
    )
    .await;
}

/// Explain options for tests: every execution a candidate, no interval, no slowness trigger.
#[cfg(feature = "pool")]
pub fn explain_every_execution() -> pgscope::ExplainOptions {
    pgscope::ExplainOptions::new()
        .slower_than(None)
        .sample(1)
        .interval(Duration::ZERO)
}

/// Reads one i64 on its own connection (to check what PostgreSQL really saw).
pub async fn scalar(opts: &PgConnectOptions, sql: &str) -> i64 {
    let mut conn = opts.connect().await.expect("connect");
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("scalar")
}

/// Serves `app` on a free local port; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

/// Runs `sql` `n` times on `pool`, binding 0, 1, … as `$1`: the shape of an N+1.
pub async fn repeat(pool: &pgscope::Pool, sql: &'static str, n: i64) {
    for i in 0..n {
        sqlx::query(sql)
            .bind(i)
            .execute(pool)
            .await
            .expect("repeated statement");
    }
}

async fn bump<'e>(e: impl sqlx::postgres::PgExecutor<'e>) {
    sqlx::query_scalar::<_, i64>("SELECT nextval('ctr')")
        .fetch_one(e)
        .await
        .expect("nextval");
}

/// 256 concurrent scopes on `pool` (direct statements, spawned tasks, transactions) beside
/// unscoped traffic: every report is exact, and the reports add up to what PostgreSQL ran.
pub async fn assert_exact_counts(pool: &pgscope::Pool, opts: &PgConnectOptions) {
    setup(opts, "CREATE SEQUENCE ctr").await;

    let mut handles = Vec::new();
    for i in 0..256u64 {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let direct = i % 5;
            let spawned = i % 3;
            let in_tx = i % 4;
            let (_, report) = pgscope::capture_named(format!("scope-{i}"), async {
                for _ in 0..direct {
                    bump(&pool).await;
                }
                let mut tasks = Vec::new();
                for _ in 0..spawned {
                    let pool = pool.clone();
                    tasks.push(pgscope::spawn(async move { bump(&pool).await }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
                if in_tx > 0 {
                    let mut tx = pool.begin().await.expect("begin");
                    for _ in 0..in_tx {
                        bump(&mut *tx).await;
                    }
                    tx.commit().await.expect("commit");
                }
            })
            .await;
            let expected = direct + spawned + in_tx;
            assert_eq!(report.queries(), expected, "scope-{i}\n{report}");
            assert_eq!(
                report.transaction_queries(),
                if in_tx > 0 { 2 } else { 0 },
                "scope-{i}"
            );
            expected
        }));
    }
    // Unscoped traffic at the same time must not leak into any scope.
    let unscoped_pool = pool.clone();
    let unscoped = tokio::spawn(async move {
        for _ in 0..40 {
            bump(&unscoped_pool).await;
        }
    });
    let mut total = 0;
    for h in handles {
        total += h.await.expect("scope task");
    }
    unscoped.await.expect("unscoped");

    let unscoped = pool.unscoped_report();
    assert_eq!(unscoped.queries(), 40, "{unscoped}");
    let received = scalar(opts, "SELECT last_value FROM ctr").await as u64;
    assert_eq!(
        total + unscoped.queries(),
        received,
        "reports must add up to what PostgreSQL executed"
    );
}

/// Polls `check` until it returns something (at most 10 s): for what pgscope reports from a
/// thread of its own (WARN events).
pub async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            // Anything more would arrive right behind it: give it the chance to.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return check().unwrap_or(found);
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes the observer layer the process's subscriber, once (for binaries that own it).
#[cfg(feature = "observe")]
pub fn install_observer() {
    use tracing_subscriber::prelude::*;
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        tracing_subscriber::registry()
            .with(pgscope::observe())
            .init();
    });
}
