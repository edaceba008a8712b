//! OTLP over HTTP/protobuf, configured only through the standard environment variables.

mod common;
mod otlp_receiver;

use std::time::Duration;

use otlp_receiver::attr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_is_configured_from_otel_environment_variables() {
    let (addr, store) = otlp_receiver::start_http().await;
    // SAFETY: set before any other thread of this test process reads the environment
    // (this binary has a single test and the runtime threads do not touch these variables).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SERVICE_NAME", "feed-api-from-env");
        std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci");
        // what a hosted backend's API key looks like
        std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=test-key-123");
    }
    let guard = pgscope::otel::OtelBuilder::new()
        .log_to_stderr(false)
        .init();
    let opts = common::schema("otel_http").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let ((), report) = pgscope::capture_named("GET /api/items", async {
        sqlx::query("SELECT 'secret-http-literal'::text AS x")
            .fetch_one(&pool)
            .await
            .expect("query");
    })
    .await;
    report.assert_queries(1);
    // Opt-in: this pool exports raw SQL, literals included.
    let opts = common::schema("otel_http_raw").await;
    let raw = pgscope::PoolOptions::new()
        .record_raw_sql(true)
        .connect_with(opts)
        .await
        .expect("connect");
    sqlx::query("SELECT 'opted-in-literal'::text AS y")
        .fetch_one(&raw)
        .await
        .expect("query");
    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len() >= 3)
            .await,
        "spans over HTTP"
    );
    let spans = store.spans();
    spans.iter().for_each(otlp_receiver::assert_unique_keys);
    let q = spans
        .iter()
        .find(|s| s.name == "SELECT")
        .expect("statement span");
    assert_eq!(
        attr(&q.attributes, "db.query.text").as_deref(),
        Some("SELECT $1::text AS x")
    );
    assert!(
        store
            .service_names()
            .iter()
            .any(|n| n == "feed-api-from-env")
    );
    let traces = store.traces.lock().expect("lock");
    let resource = traces[0].resource_spans[0]
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(
        attr(&resource.attributes, "deployment.environment.name").as_deref(),
        Some("ci")
    );
    drop(traces);
    assert!(!store.raw_contains("secret-http-literal"));
    {
        let headers = store.headers.lock().expect("lock");
        for path in ["/v1/traces", "/v1/metrics"] {
            assert!(
                headers
                    .iter()
                    .any(|(p, k, v)| p == path && k == "x-api-key" && v == "test-key-123"),
                "OTEL_EXPORTER_OTLP_HEADERS sent on {path}"
            );
        }
    }
    let opted = spans
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("opted-in")))
        .expect("raw span");
    assert_eq!(
        attr(&opted.attributes, "db.query.text").as_deref(),
        Some("SELECT 'opted-in-literal'::text AS y")
    );
    assert!(opted.parent_span_id.is_empty(), "no scope, no span: a root");
}
