//! An application that logs with `log` (env_logger, as the Conduit backend and most actix apps
//! do) and installs no `tracing` subscriber gets pgscope's findings as `log` records. Its own
//! binary: no test here may install a `tracing` subscriber, or `tracing` stops forwarding to
//! `log` for the whole process.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pgscope::PoolOptions;

/// A `log` logger that keeps what it is given, as `env_logger` with `RUST_LOG=info` would print.
struct Captured(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Captured {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().expect("lock").push((
                record.level(),
                record.target().to_owned(),
                record.args().to_string(),
            ));
        }
    }

    fn flush(&self) {}
}

fn logger() -> &'static Captured {
    static LOGGER: OnceLock<&'static Captured> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static Captured = Box::leak(Box::new(Captured(Mutex::default())));
        log::set_logger(logger).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
        logger
    })
}

fn warnings(target: &str, scope: &str) -> Vec<String> {
    logger()
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|(level, t, text)| {
            *level == log::Level::Warn && t == target && text.contains(scope)
        })
        .map(|(_, _, text)| text.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_reach_a_log_logger_without_a_tracing_subscriber() {
    let logger = logger();
    assert!(
        !tracing::dispatcher::has_been_set(),
        "this binary must not set a tracing subscriber"
    );
    let opts = common::schema("log_only").await;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 30) g;",
    )
    .await;
    let pool = PoolOptions::new()
        .held_idle_threshold(Some(Duration::from_millis(50)))
        .connect_with(opts)
        .await
        .expect("connect");

    let ((), report) = pgscope::capture_named("GET /api/articles", async {
        for id in 1..=12_i64 {
            sqlx::query("SELECT name FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("lookup");
        }
        for _ in 0..7 {
            sqlx::query("SELECT count(*) FROM users")
                .fetch_one(&pool)
                .await
                .expect("count");
        }
        let mut held = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&mut *held)
            .await
            .expect("one");
        tokio::time::sleep(Duration::from_millis(120)).await;
        let mut second = pool.acquire().await.expect("nested");
        sqlx::query("SELECT 2")
            .execute(&mut *second)
            .await
            .expect("two");
        drop(second);
        sqlx::query("SELECT 3")
            .execute(&mut *held)
            .await
            .expect("three");
    })
    .await;
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    assert_eq!(report.duplicates().len(), 1, "{report}");
    assert_eq!(report.nested_acquires().len(), 1, "{report}");
    assert_eq!(report.held_idle().len(), 1, "{report}");

    // The reporter thread may still be resolving a call site: the scope's end emits what is
    // left, so everything is there once the scope has ended.
    let scope = "GET /api/articles";
    let n_plus_one = warnings("pgscope::n_plus_one", scope);
    assert_eq!(n_plus_one.len(), 1, "{:?}", logger.0.lock().expect("lock"));
    let expected = report.n_plus_one()[0].to_string();
    assert!(
        n_plus_one[0].starts_with(&expected),
        "{}\n{expected}",
        n_plus_one[0]
    );
    assert!(n_plus_one[0].contains("12x") && n_plus_one[0].contains("12 distinct values"));
    assert!(
        n_plus_one[0].contains("tests/log_only.rs:"),
        "{}",
        n_plus_one[0]
    );
    let duplicate = warnings("pgscope::duplicate", scope);
    assert_eq!(duplicate.len(), 1);
    assert!(
        duplicate[0].contains("7x `SELECT count(*) FROM users`"),
        "{}",
        duplicate[0]
    );
    assert_eq!(warnings("pgscope::nested_acquire", scope).len(), 1);
    let held = warnings("pgscope::held_idle", scope);
    assert_eq!(held.len(), 1);
    assert!(held[0].contains("idle between `SELECT $1`"), "{}", held[0]);
    assert!(
        !tracing::dispatcher::has_been_set(),
        "pgscope must not mark the process as having a subscriber"
    );
}
