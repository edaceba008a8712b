//! Plans on real PostgreSQL: `EXPLAIN` on the side, shapes per size class, the flip an N+1
//! fix's `= ANY($1)` goes through as the list grows, and the guarantees around it (never on a
//! pool connection, never while the pool has waiters, a failing `EXPLAIN` never reaches the
//! application). Its own binary: it installs the global subscriber that catches the WARNs.

mod common;

use std::time::Duration;

use common::events::Events;
use sqlx::ConnectOptions as _;
use sqlx::Executor;
use sqlx::postgres::PgConnectOptions;

const BATCHED: &str = "SELECT id, title FROM tasks WHERE project_id = ANY($1)";
const SIZES: [usize; 3] = [5, 500, 50_000];

/// `tasks`: 100 000 rows over 2 000 projects, an index on `project_id`, fresh statistics.
async fn tasks(name: &str) -> PgConnectOptions {
    let opts = common::schema(name).await;
    common::tasks_table(&opts).await;
    opts
}

fn ids(n: usize) -> Vec<i64> {
    (1..=n as i64).collect()
}

/// The shape of the text-format `EXPLAIN`, read independently of pgscope: one node per line
/// (the first, and each `->`), nested by indentation; `X using idx on rel` → `X idx`,
/// `X on rel` → `X rel`.
async fn shape_from_text_explain(opts: &PgConnectOptions, n: usize) -> String {
    let mut conn = opts.connect().await.expect("connect");
    let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {BATCHED}")))
        .bind(ids(n))
        .fetch_all(&mut conn)
        .await
        .expect("explain");
    let mut nodes: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (indent, body) = match line.find("->  ") {
            Some(at) => (at + 1, &line[at + 4..]),
            None if i == 0 => (0, line.as_str()),
            None => continue,
        };
        let name = body.split("  (cost=").next().expect("node").trim();
        let name = match (name.split_once(" using "), name.split_once(" on ")) {
            (Some((node, rest)), _) => {
                format!("{node} {}", rest.split(" on ").next().expect("idx"))
            }
            (None, Some((node, rel))) => {
                format!("{node} {}", rel.split_whitespace().next().expect("rel"))
            }
            (None, None) => name.to_owned(),
        };
        nodes.push((indent, name));
    }
    fn render(nodes: &[(usize, String)], at: usize) -> (String, usize) {
        let (indent, name) = &nodes[at];
        let mut out = name.clone();
        let mut next = at + 1;
        let mut children = Vec::new();
        while next < nodes.len() && nodes[next].0 > *indent {
            let (child, after) = render(nodes, next);
            children.push(child);
            next = after;
        }
        if !children.is_empty() {
            out.push('(');
            out.push_str(&children.join(", "));
            out.push(')');
        }
        (out, next)
    }
    render(&nodes, 0).0
}

/// The pairs of consecutive different shapes: what should be reported, once each.
fn expected_changes(shapes: &[String]) -> usize {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for w in shapes.windows(2) {
        if w[0] != w[1] {
            let pair = if w[0] < w[1] {
                (w[0].clone(), w[1].clone())
            } else {
                (w[1].clone(), w[0].clone())
            };
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    pairs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batched_statement_flips_plan_with_its_size_and_pgscope_reports_it_once() {
    let events = Events::global();
    let opts = tasks("plans_flip").await;
    let pool = pgscope::PoolOptions::new()
        .explain(common::explain_every_execution())
        .connect_with(opts.clone())
        .await
        .expect("connect");

    // What EXPLAIN itself says, read from its text output; and pgscope::explain's shapes.
    let mut expected = Vec::new();
    for n in SIZES {
        let text = shape_from_text_explain(&opts, n).await;
        let shape = pgscope::explain(&pool, sqlx::query(BATCHED).bind(ids(n)))
            .await
            .expect("explain");
        assert_eq!(shape.to_string(), text, "{n} ids");
        println!("{n:>6} ids: {text}");
        expected.push(text);
    }
    assert_ne!(
        expected[0], expected[2],
        "100 000 rows: 5 and 50 000 ids should not share a plan"
    );

    // The application runs the batched statement at each size, three rounds; pgscope explains
    // on the side (a busy explainer skips a candidate, so keep running until each is in).
    for _round in 0..3 {
        for (i, n) in SIZES.into_iter().enumerate() {
            let class = pgscope::SizeClass::of_len(n);
            let explained_in_class = |plans: &pgscope::Plans| {
                plans
                    .statement(BATCHED)
                    .and_then(|s| s.plan(class))
                    .map_or(0, |p| p.explained())
            };
            let before = explained_in_class(&pool.plans());
            loop {
                let rows = sqlx::query(BATCHED)
                    .bind(ids(n))
                    .fetch_all(&pool)
                    .await
                    .expect("the application's statement");
                assert!(!rows.is_empty());
                let plans = pool.plans();
                if explained_in_class(&plans) > before {
                    let statement = plans.statement(BATCHED).expect("explained");
                    let plan = statement.plan(class).expect("this size class");
                    assert_eq!(plan.shape().to_string(), expected[i], "{n} ids");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let plans = pool.plans();
    let statement = plans.statement(BATCHED).expect("explained");
    assert_eq!(statement.plans().len(), 3, "one plan per size class");
    assert_eq!(plans.failed(), 0);
    let changes = expected_changes(&expected);
    assert_eq!(statement.changes(), changes as u64);
    let warnings = events.of_target("pgscope::plan_change");
    let ours: Vec<_> = warnings
        .iter()
        .filter(|w| w.field("statement") == Some(BATCHED))
        .collect();
    assert_eq!(
        ours.len(),
        changes,
        "once per change, not per round: {ours:?}"
    );
    let first = ours[0];
    assert_eq!(first.level, tracing::Level::WARN);
    assert!(
        expected
            .iter()
            .any(|s| Some(s.as_str()) == first.field("from"))
    );
    assert!(
        expected
            .iter()
            .any(|s| Some(s.as_str()) == first.field("to"))
    );
    assert_ne!(first.field("from_size"), first.field("to_size"));
    assert!(
        first
            .field("call_site")
            .is_some_and(|c| c.starts_with("tests/plans.rs:")),
        "{first:?}"
    );

    // The one-line test a team writes after the N+1 fix fails here, naming both shapes.
    let failure = tokio::spawn({
        let pool = pool.clone();
        async move { pgscope::assert_plan_stable(&pool, BATCHED, SIZES).await }
    })
    .await
    .expect_err("the plan is not stable across these sizes");
    let message = failure.into_panic();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains(&expected[0]) && message.contains(&expected[2]),
        "{message}"
    );
    // And passes where it holds.
    pgscope::assert_plan_stable(&pool, BATCHED, [5, 6, 7]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_runs_on_its_own_connection_and_never_while_the_pool_has_waiters() {
    let opts = tasks("plans_waiters").await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(1)
        .explain(common::explain_every_execution())
        .connect_with(opts.clone())
        .await
        .expect("connect");
    let mut held = pool.acquire().await.expect("acquire");
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT count(*) FROM tasks WHERE project_id = $1")
                .bind(7_i64)
                .fetch_one(&pool)
                .await
                .expect("the waiting request")
        }
    });
    common::eventually(|| (pool.stats().waiters() == 1).then_some(())).await;
    let pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid() FROM tasks WHERE project_id = $1 LIMIT 1")
            .bind(3_i64)
            .fetch_one(&mut *held)
            .await
            .expect("statement while another request waits");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let plans = pool.plans();
    assert_eq!(
        plans.explained(),
        0,
        "nothing explained while a request waits"
    );
    assert!(plans.skipped() >= 1);

    drop(held);
    waiter.await.expect("waiter");
    common::eventually(|| (pool.plans().explained() >= 1).then_some(())).await;

    // The explaining connection is not the pool's (its only connection is `pid`).
    let mut admin = opts.connect().await.expect("connect");
    let explainers: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgscope explain'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("activity");
    assert!(!explainers.is_empty(), "an explaining connection exists");
    assert!(
        !explainers.contains(&pid),
        "EXPLAIN never runs on a pool connection"
    );
    assert_eq!(pool.stats().size(), 1, "it takes no pool slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_explain_is_counted_and_logged_once_and_never_reaches_the_application() {
    let events = Events::global();
    let opts = common::schema("plans_failing").await;
    let pool = pgscope::PoolOptions::new()
        .explain(common::explain_every_execution())
        .connect_with(opts)
        .await
        .expect("connect");
    // A temporary table exists on the application's connection only: the side connection's
    // EXPLAIN fails with "relation does not exist".
    let mut conn = pool.acquire().await.expect("acquire");
    conn.execute("CREATE TEMP TABLE scratch_plans (id int)")
        .await
        .expect("temp table");
    for i in 0..3 {
        let before = pool.plans().failed();
        let rows = sqlx::query("SELECT id FROM scratch_plans WHERE id = $1")
            .bind(i)
            .fetch_all(&mut *conn)
            .await
            .expect("the application's statement succeeds");
        assert!(rows.is_empty());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let p = pool.plans();
            if p.failed() > before || p.skipped() > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "round {i}: {p:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let plans = pool.plans();
    assert!(plans.failed() >= 2, "failed: {}", plans.failed());
    assert_eq!(plans.explained(), 0);
    let logged: Vec<_> = events
        .of_target("pgscope::plan")
        .into_iter()
        .filter(|e| e.field("statement") == Some("SELECT id FROM scratch_plans WHERE id = $1"))
        .collect();
    assert_eq!(logged.len(), 1, "once per statement: {logged:?}");
    assert!(
        logged[0]
            .field("error")
            .is_some_and(|e| e.contains("does not exist")),
        "{logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_execution_gets_the_next_one_explained() {
    let opts = common::schema("plans_slow").await;
    let pool = pgscope::PoolOptions::new()
        .explain(pgscope::ExplainOptions::new().slower_than(Duration::from_millis(30)))
        .connect_with(opts)
        .await
        .expect("connect");
    let sql = "SELECT pg_sleep($1::float8 / 1000), $1::int AS slow_marker";
    for ms in [1, 1] {
        sqlx::query(sql)
            .bind(ms)
            .execute(&pool)
            .await
            .expect("fast");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        pool.plans().explained(),
        0,
        "nothing slow, nothing explained"
    );
    sqlx::query(sql)
        .bind(50)
        .execute(&pool)
        .await
        .expect("slow");
    sqlx::query(sql).bind(1).execute(&pool).await.expect("next");
    common::eventually(|| (pool.plans().explained() == 1).then_some(())).await;
    let plans = pool.plans();
    let statement = plans
        .statements()
        .iter()
        .find(|s| s.statement().contains("slow_marker"))
        .unwrap_or_else(|| panic!("the slow statement: {plans:?}"));
    assert_eq!(statement.plans()[0].shape().to_string(), "Result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_runs_only_when_asked_and_only_for_select() {
    let opts = common::schema("plans_analyze").await;
    common::setup(
        &opts,
        "CREATE SEQUENCE analyzed_seq; CREATE TABLE analyzed_writes (n int);",
    )
    .await;
    let pool = |analyze: bool| {
        pgscope::PoolOptions::new()
            .explain(common::explain_every_execution().analyze(analyze))
            .connect_with(opts.clone())
    };
    let last_value = || common::scalar(&opts, "SELECT last_value FROM analyzed_seq");
    let rows = || common::scalar(&opts, "SELECT count(*) FROM analyzed_writes");

    // Without `analyze`, EXPLAIN plans and never runs: the sequence moves once.
    let plain = pool(false).await.expect("connect");
    sqlx::query("SELECT nextval('analyzed_seq') AS plain_marker")
        .execute(&plain)
        .await
        .expect("select");
    common::eventually(|| (plain.plans().explained() == 1).then_some(())).await;
    assert_eq!(last_value().await, 1);

    // With it, a SELECT is explained with ANALYZE (run again: the sequence moves twice) ...
    let analyzing = pool(true).await.expect("connect");
    sqlx::query("SELECT nextval('analyzed_seq') AS analyze_marker")
        .execute(&analyzing)
        .await
        .expect("select");
    common::eventually(|| (analyzing.plans().explained() == 1).then_some(())).await;
    assert_eq!(last_value().await, 3, "EXPLAIN ANALYZE ran the SELECT");

    // ... and a write never is: the row is inserted once.
    sqlx::query("INSERT INTO analyzed_writes (n) VALUES ($1)")
        .bind(1)
        .execute(&analyzing)
        .await
        .expect("insert");
    common::eventually(|| (analyzing.plans().explained() == 2).then_some(())).await;
    assert_eq!(rows().await, 1, "EXPLAIN of a write never runs it");
}
