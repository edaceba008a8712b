//! `ScopeLayer` on a real axum router, driven by real HTTP requests.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use pgscope::Pool;
use pgscope::http::ScopeLayer;

/// The `pgscope::http` summary lines logged so far, as "field=value" strings.
fn http_log() -> Vec<String> {
    common::events::Events::global()
        .of_target("pgscope::http")
        .into_iter()
        .filter(|r| r.level == tracing::Level::DEBUG)
        .map(|r| r.debug)
        .collect()
}

async fn user(State(pool): State<Pool>, Path(id): Path<i64>) -> String {
    for _ in 0..3 {
        sqlx::query("SELECT $1::bigint")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("query");
    }
    pgscope::current_report()
        .map(|r| r.name().to_owned())
        .unwrap_or_default()
}

/// Serves `user` at `users` (each test its own route: the summary lines of tests running at
/// the same time share one log, and are told apart by their route).
async fn start(pool: Pool, layer: ScopeLayer, users: &str) -> String {
    let app = Router::new()
        .route(users, get(user))
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                pgscope::current_report()
                    .map(|r| r.name().to_owned())
                    .unwrap_or_default(),
            )
        })
        .layer(layer)
        .with_state(pool);
    common::serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_a_scope_named_by_its_matched_route_and_a_server_timing_header() {
    common::events::Events::global();
    let pool = Pool::connect_with(common::schema("http_layer").await)
        .await
        .expect("connect");
    let base = start(
        pool.clone(),
        ScopeLayer::new().server_timing(true),
        "/users/{id}",
    )
    .await;
    let client = reqwest::Client::new();

    let mut requests = Vec::new();
    for id in 0..20 {
        let (client, base) = (client.clone(), base.clone());
        requests.push(tokio::spawn(async move {
            client
                .get(format!("{base}/users/{id}"))
                .send()
                .await
                .expect("request")
        }));
    }
    for r in requests {
        let resp = r.await.expect("task");
        assert_eq!(resp.status(), 200);
        let timing = resp.headers()["server-timing"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(timing.starts_with("db;dur="), "{timing}");
        assert!(
            timing.ends_with(";desc=\"3 queries\""),
            "no cross-talk between concurrent requests: {timing}"
        );
        assert_eq!(resp.text().await.expect("body"), "GET /users/{id}");
    }

    let resp = client
        .get(format!("{base}/no/such/path/123"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["server-timing"]
            .to_str()
            .expect("ascii")
            .ends_with("\"0 queries\"")
    );
    assert_eq!(resp.text().await.expect("body"), "GET <unmatched>");
    // Everything ran inside request scopes.
    assert_eq!(pool.unscoped_report().queries(), 0);
    // One DEBUG summary line per request.
    let lines = http_log();
    let users: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("route=\"GET /users/{id}\""))
        .collect();
    assert_eq!(users.len(), 20, "{lines:?}");
    assert!(users.iter().all(|l| l.contains("status=200")
        && l.contains("queries=3")
        && l.contains("n_plus_one=0")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("route=\"GET <unmatched>\"") && l.contains("status=404"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_budget_refuses_queries_past_it_and_headers_are_off_by_default() {
    let pool = Pool::connect_with(common::schema("http_budget").await)
        .await
        .expect("connect");
    let app = Router::new()
        .route(
            "/amplify",
            get(|State(pool): State<Pool>| async move {
                let mut refused = 0;
                for _ in 0..10 {
                    if let Err(e) = sqlx::query("SELECT 1").execute(&pool).await {
                        assert!(pgscope::Error::from_sqlx(&e).is_some());
                        refused += 1;
                    }
                }
                refused.to_string()
            }),
        )
        .layer(ScopeLayer::new().query_budget(4))
        .with_state(pool);
    let base = common::serve(app).await;
    let resp = reqwest::get(format!("{base}/amplify"))
        .await
        .expect("request");
    assert!(resp.headers().get("server-timing").is_none());
    assert_eq!(resp.text().await.expect("body"), "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_hook_sees_the_response_status() {
    let pool = Pool::connect_with(common::schema("http_layer_status").await)
        .await
        .expect("connect");
    let recorder = pgscope::Recorder::new();
    let base = start(
        pool,
        ScopeLayer::new().on_report(recorder.hook()),
        "/status/users/{id}",
    )
    .await;
    for path in ["/status/users/7", "/no/such/path"] {
        let resp = reqwest::get(format!("{base}{path}"))
            .await
            .expect("request");
        assert!(resp.status() == 200 || resp.status() == 404);
    }
    let user = recorder.last("GET /status/users/{id}");
    assert_eq!(user.status(), Some(200));
    assert!(user.elapsed() >= user.db_time());
    assert_eq!(recorder.last("GET <unmatched>").status(), Some(404));
}
