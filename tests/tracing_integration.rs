//! Scope propagation through `tracing` spans, and the WARN events detection emits.
//! Runs in its own test binary because it installs a global subscriber.

mod common;

use common::events::Events;
use tracing::Instrument;

fn captured() -> &'static Events {
    Events::global()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_instrumented_with_a_span_from_the_scope_count_for_it_in_other_tasks() {
    captured();
    let opts = common::schema("span_fallback").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let ((), report) = pgscope::capture_named("GET /api/report", async {
        let span = tracing::info_span!("background work");
        let pool2 = pool.clone();
        // plain tokio::spawn: no task-local, only the span links it to the scope
        let handle = tokio::spawn(
            async move {
                sqlx::query("SELECT 1").execute(&pool2).await.expect("q1");
                let child = tracing::info_span!("child");
                sqlx::query("SELECT 2")
                    .execute(&pool2)
                    .instrument(child)
                    .await
                    .expect("q2");
            }
            .instrument(span),
        );
        handle.await.expect("task");
        // and a task spawned without any span does not count
        let pool3 = pool.clone();
        tokio::spawn(async move { sqlx::query("SELECT 3").execute(&pool3).await.expect("q3") })
            .await
            .expect("task");
    })
    .await;
    report.assert_queries(2);
    assert_eq!(pool.unscoped_report().queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_emits_one_warn_event_with_route_statement_count_and_call_site() {
    let captured = captured();
    let opts = common::schema("np1_events").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let ((), _report) = pgscope::capture_named("GET /api/feed", async {
        for i in 0..12 {
            sqlx::query("SELECT $1::int + 0 AS unique_np1_marker")
                .bind(i)
                .fetch_one(&pool)
                .await
                .expect("q");
        }
    })
    .await;
    // The WARN comes from pgscope's reporter thread once the call site is resolved.
    let ours = common::eventually(|| {
        let ours: Vec<_> = captured
            .of_target("pgscope::n_plus_one")
            .into_iter()
            .filter(|r| {
                r.fields
                    .iter()
                    .any(|(_, v)| v.contains("unique_np1_marker"))
            })
            .collect();
        (!ours.is_empty()).then_some(ours)
    })
    .await;
    assert_eq!(
        ours.len(),
        1,
        "exactly one warning per (scope, fingerprint): {ours:?}"
    );
    assert_eq!(ours[0].level, tracing::Level::WARN);
    let get = |name: &str| ours[0].field(name).unwrap_or_default().to_owned();
    assert_eq!(get("scope"), "GET /api/feed");
    assert_eq!(get("statement"), "SELECT $1::int + $2 AS unique_np1_marker");
    // Emitted when the scope ends, with its final count (as in the report).
    assert_eq!(get("count"), "12");
    assert_eq!(get("distinct_values"), "12");
    assert!(
        get("call_site").starts_with("tests/tracing_integration.rs:"),
        "{}",
        get("call_site")
    );
    assert_eq!(get("fingerprint").len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_one_after_another_under_one_request_span_each_count_their_own_statements() {
    captured();
    let opts = common::schema("span_reuse").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let request = tracing::info_span!("request");
    let run = |name: &'static str, statements: usize| {
        let pool = pool.clone();
        pgscope::Scope::new(name)
            .use_current_span()
            .capture(async move {
                // only a span created below the request span links this task to the scope
                let span = tracing::info_span!("background");
                let handle = tokio::spawn(
                    async move {
                        for _ in 0..statements {
                            sqlx::query("SELECT 1").execute(&pool).await.expect("q");
                        }
                    }
                    .instrument(span),
                );
                handle.await.expect("task");
            })
    };
    // Two scopes one after the other under the same request span: the first uses it, the
    // second (the span has had its scope) opens its own; each is found from the spans created
    // inside it and counts only its own statements.
    let (((), first), ((), second)) = async { (run("first", 2).await, run("second", 3).await) }
        .instrument(request)
        .await;
    first.assert_queries(2);
    second.assert_queries(3);
    assert_eq!(pool.unscoped_report().queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_outside_any_scope_get_one_hint_per_pool_naming_what_to_add() {
    let captured = captured();
    let pool = pgscope::PoolOptions::new()
        .name("hinted-pool")
        .connect_with(common::schema("unscoped_hint").await)
        .await
        .expect("connect");
    common::repeat(&pool, "SELECT $1::int AS unscoped_hint", 4).await;
    let ((), report) = pgscope::capture(common::repeat(&pool, "SELECT $1::int", 1)).await;
    report.assert_queries(1);
    let hints: Vec<_> = captured
        .of_target("pgscope::unscoped")
        .into_iter()
        .filter(|r| r.field("source") == Some("hinted-pool"))
        .collect();
    assert_eq!(hints.len(), 1, "once per pool: {hints:?}");
    assert_eq!(hints[0].level, tracing::Level::INFO);
    assert!(hints[0].debug.contains("ScopeLayer") && hints[0].debug.contains("capture"));
    assert_eq!(pool.unscoped_report().queries(), 4);
}
