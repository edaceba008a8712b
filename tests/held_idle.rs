//! Held idle: a connection a scope holds while it does no database work, found with both ends
//! of the gap, on a real PostgreSQL (which agrees: the backend is `idle in transaction`).

mod common;

use std::time::Duration;

use pgscope::{Finding, Pool};

async fn pool(name: &str) -> (Pool, sqlx::postgres::PgConnectOptions) {
    let opts = common::schema(name).await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(4)
        .connect_with(opts.clone())
        .await
        .expect("pool");
    (pool, opts)
}

/// The line of this file that contains `marker` (1-based).
fn line_of(marker: &str) -> u32 {
    let source = include_str!("held_idle.rs");
    source
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .map(|i| i as u32 + 1)
        .expect("marker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_across_a_sleep_is_one_finding_and_the_server_sees_it_idle() {
    let (pool, opts) = pool("held_idle_tx").await;
    let observer = sqlx::PgPool::connect_with(opts).await.expect("observer");
    let ((), report) = pgscope::capture_named("POST /checkout", async {
        let mut tx = pool.begin().await.expect("begin");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await // gap starts here: the statement's `.await`
            .expect("pid");
        // While the handler "calls the payment API", the server shows the backend idle in a
        // transaction.
        let watch = tokio::spawn({
            let observer = observer.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                sqlx::query_scalar::<_, String>("SELECT state FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&observer)
                    .await
                    .expect("pg_stat_activity")
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let state = watch.await.expect("watch");
        assert_eq!(state, "idle in transaction");
        tx.commit().await.expect("commit"); // gap ends here
    })
    .await;
    assert_eq!(report.held_idle().len(), 1, "{report}");
    let h = &report.held_idle()[0];
    assert!(h.in_transaction());
    assert!(
        h.idle() >= Duration::from_millis(150) && h.idle() < Duration::from_millis(400),
        "{h}"
    );
    assert!(h.held() >= h.idle());
    assert_eq!(h.from_statement(), "SELECT pg_backend_pid()");
    assert_eq!(h.to_statement(), "COMMIT");
    assert_eq!(
        h.from(),
        format!("tests/held_idle.rs:{}", line_of("// gap starts here")),
        "{h}"
    );
    assert_eq!(
        h.to(),
        format!("tests/held_idle.rs:{}", line_of("// gap ends here")),
        "{h}"
    );
    assert!(report.idle_hold_time() >= h.idle(), "{report}");
    assert!(report.idle_hold_time() < report.connection_hold_time());
    let text = report.to_string();
    assert!(
        text.contains("POST /checkout held a connection in a transaction for"),
        "{text}"
    );
    assert!(text.contains("move the work between them outside the transaction"));
    assert!(
        report
            .snapshot()
            .contains("held idle in a transaction: after SELECT pg_backend_pid() → before COMMIT"),
        "{}",
        report.snapshot()
    );
    let panicked = std::panic::catch_unwind(|| report.assert_no_held_idle());
    assert!(panicked.is_err(), "the assertion fails on the finding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_after_its_last_statement_ends_at_its_release() {
    let (pool, _) = pool("held_idle_release").await;
    let ((), report) = pgscope::capture_named("GET /render", async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await // last use
            .expect("select");
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(conn); // released here
    })
    .await;
    assert_eq!(report.held_idle().len(), 1, "{report}");
    let h = &report.held_idle()[0];
    assert!(!h.in_transaction());
    assert_eq!(h.to_statement(), "release");
    assert_eq!(h.from_statement(), "SELECT $1");
    assert_eq!(
        h.from(),
        format!("tests/held_idle.rs:{}", line_of("// last use"))
    );
    assert_eq!(
        h.to(),
        format!("tests/held_idle.rs:{}", line_of("// released here"))
    );
    assert!(h.idle() >= Duration::from_millis(150));
    assert!(
        h.to_string()
            .contains("release the connection before the work")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_gaps_and_pool_queries_are_not_findings_and_cancellation_leaves_nothing_behind() {
    let (pool, _) = pool("held_idle_quiet").await;
    let findings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let quiet = {
        let opts = common::schema("held_idle_quiet").await;
        let findings = findings.clone();
        pgscope::PoolOptions::new()
            .max_connections(2)
            .on_finding(move |f| {
                if matches!(f, Finding::HeldIdle(_)) {
                    findings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .connect_with(opts)
            .await
            .expect("pool")
    };
    let ((), report) = pgscope::capture_named("GET /quick", async {
        // Queries on the pool: each holds its connection for one statement.
        for _ in 0..3 {
            sqlx::query("SELECT 1")
                .execute(&quiet)
                .await
                .expect("select");
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        // A held connection with gaps under the threshold.
        let mut tx = quiet.begin().await.expect("begin");
        for _ in 0..3 {
            sqlx::query("SELECT 1")
                .execute(&mut *tx)
                .await
                .expect("select");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.commit().await.expect("commit");
    })
    .await;
    assert!(report.held_idle().is_empty(), "{report}");
    report.assert_no_held_idle();
    assert!(
        report.idle_hold_time() >= Duration::from_millis(40),
        "{report}"
    );
    assert_eq!(findings.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Off: nothing reported, idle time still measured.
    let off = pgscope::PoolOptions::new()
        .max_connections(1)
        .held_idle_threshold(None)
        .connect_with(common::schema("held_idle_quiet").await)
        .await
        .expect("pool");
    let ((), report) = pgscope::capture_named("GET /off", async {
        let mut conn = off.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .expect("select");
        tokio::time::sleep(Duration::from_millis(120)).await;
    })
    .await;
    assert!(report.held_idle().is_empty());
    assert!(report.idle_hold_time() >= Duration::from_millis(120));

    // Cancelled mid-gap: the request is dropped while it holds the connection idle.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        pgscope::capture_named("GET /cancelled", async {
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("SELECT 1")
                .execute(&mut *tx)
                .await
                .expect("select");
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.commit().await.expect("commit");
        }),
    )
    .await;
    assert!(cancelled.is_err(), "timed out");
    // The connection went back (rolled back): the pool can hand all of its connections out.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::time::timeout(Duration::from_secs(5), pool.acquire())
                .await
                .expect("no connection leaked")
                .expect("acquire"),
        );
    }
    drop(held);
    let unscoped = pool.unscoped_report();
    assert!(
        unscoped.held_idle().is_empty(),
        "a 50 ms gap cut short is no finding: {unscoped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_macro_fails_a_test_that_holds_a_connection_idle() {
    let (pool, _) = pool("held_idle_macro").await;
    let clean = pgscope::assert_no_held_idle!(async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .expect("select")
    });
    assert_eq!(clean, 1);
    let failed = tokio::spawn({
        let pool = pool.clone();
        async move {
            pgscope::assert_no_held_idle!(async {
                let conn = pool.acquire().await.expect("acquire");
                tokio::time::sleep(Duration::from_millis(130)).await;
                drop(conn);
            });
        }
    })
    .await;
    let err = failed.expect_err("the macro panicked");
    let msg = err
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(msg.contains("connections held idle"), "{msg}");
    assert!(msg.contains("between `acquire`"), "{msg}");
}

/// Issue "Held connections told right", point 1: a transaction dropped without `commit()` (as
/// a handler that returns early with `?` does) was idle *in a transaction* until the implicit
/// rollback, and the finding names that rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_idle_in_a_transaction_until_its_rollback() {
    let events = common::events::Events::global();
    let (pool, _) = pool("held_idle_dropped").await;
    let ((), report) = pgscope::capture_named("POST /admin/newsletters", async {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT 1")
            .execute(&mut *tx)
            .await
            .expect("one");
        // A second connection while the transaction stays open (the newsletter handler's
        // idempotency check), then the work, then the early return.
        let mut other = pool.acquire().await.expect("second");
        sqlx::query("SELECT 2")
            .execute(&mut *other)
            .await
            .expect("two");
        drop(other);
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(tx); // mark: dropped transaction
    })
    .await;
    let gaps: Vec<_> = report
        .held_idle()
        .iter()
        .filter(|h| h.to_statement().starts_with("ROLLBACK"))
        .collect();
    assert_eq!(gaps.len(), 1, "{report}");
    let h = gaps[0];
    assert!(h.in_transaction(), "{h}");
    assert_eq!(h.to_statement(), "ROLLBACK (transaction dropped)");
    assert_eq!(h.from_statement(), "SELECT $1");
    assert_eq!(
        h.to(),
        format!(
            "tests/held_idle.rs:{}",
            line_of("mark: dropped transaction")
        )
    );
    assert!(h.idle() >= Duration::from_millis(140), "{h}");
    let shown = h.to_string();
    assert!(shown.contains("in a transaction"), "{shown}");
    assert!(
        shown.contains("`ROLLBACK (transaction dropped)`"),
        "{shown}"
    );
    assert!(report.to_string().contains(&shown), "{report}");
    // The WARN says the same.
    let warns: Vec<_> = events
        .of_target("pgscope::held_idle")
        .into_iter()
        .filter(|r| r.field("scope") == Some("POST /admin/newsletters"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert_eq!(warns[0].field("in_transaction"), Some("true"));
    assert_eq!(
        warns[0].field("to_statement"),
        Some("ROLLBACK (transaction dropped)")
    );
    // The connection went back with its transaction rolled back.
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .expect("activity");
    assert_eq!(open, 0);
}

/// Point 2: a scope that held two connections at once says 2, on every path that acquires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_that_held_two_connections_at_once_says_two() {
    let (pool, _) = pool("held_idle_max").await;
    // A held connection, and a statement on `&Pool` meanwhile.
    let ((), held_and_pool) = pgscope::capture(async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("on the pool");
        sqlx::query("SELECT 2")
            .execute(&mut *conn)
            .await
            .expect("held");
    })
    .await;
    assert_eq!(held_and_pool.nested_acquires().len(), 1, "{held_and_pool}");
    assert_eq!(held_and_pool.max_connections_held(), 2, "{held_and_pool}");
    // Two explicit acquires.
    let ((), two) = pgscope::capture(async {
        let a = pool.acquire().await.expect("a");
        let b = pool.acquire().await.expect("b");
        drop((a, b));
    })
    .await;
    assert_eq!(two.max_connections_held(), 2, "{two}");
    // A transaction, and a statement on `&Pool` inside it.
    let ((), tx_and_pool) = pgscope::capture(async {
        let tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("on the pool");
        tx.commit().await.expect("commit");
    })
    .await;
    assert_eq!(tx_and_pool.max_connections_held(), 2, "{tx_and_pool}");
    // Control: one after the other is one at a time.
    let ((), sequential) = pgscope::capture(async {
        let a = pool.acquire().await.expect("a");
        drop(a);
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("on the pool");
        let b = pool.begin().await.expect("b");
        b.commit().await.expect("commit");
    })
    .await;
    assert_eq!(sequential.max_connections_held(), 1, "{sequential}");
}

/// Point 3: `idle_hold_time()` is the sum of the gaps the scope made, those below the
/// threshold included, and the report says how it is made up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_hold_time_is_the_sum_of_the_measured_gaps() {
    let (pool, _) = pool("held_idle_sum").await;
    let gap = Duration::from_millis(40);
    let (slept, report) = pgscope::capture_named("worker: deliver", async {
        let mut slept = Duration::ZERO;
        let mut conn = pool.acquire().await.expect("acquire");
        for i in 0..5_i64 {
            sqlx::query("SELECT $1::bigint")
                .bind(i)
                .execute(&mut *conn)
                .await
                .expect("statement");
            let t = std::time::Instant::now();
            tokio::time::sleep(gap).await; // below the 100 ms threshold: no finding
            slept += t.elapsed();
        }
        slept
    })
    .await;
    assert!(report.held_idle().is_empty(), "{report}");
    let idle = report.idle_hold_time();
    assert!(idle >= slept, "{idle:?} < {slept:?}\n{report}");
    // The rest: the acquire-to-first-statement gap and the bookkeeping around each statement.
    assert!(
        idle - slept < Duration::from_millis(10),
        "{idle:?} vs {slept:?}\n{report}"
    );
    // Five sleeps, the gap before the first statement and none other of note.
    assert_eq!(report.idle_gaps(), 6, "{report}");
    assert!(report.longest_idle_gap() >= gap, "{report}");
    assert!(report.longest_idle_gap() < gap * 2, "{report}");
    let shown = report.to_string();
    assert!(
        shown.contains("held connections idle") && shown.contains("in 6 gaps"),
        "{shown}"
    );
    assert!(report.idle_hold_time() < report.connection_hold_time());
}
