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
        // Spans with target `hidden` are logged (so they exist) but not exported.
        .log_filter("off,hidden=info")
        .export_filter("info,sqlx=off,hidden=off")
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
    // Outside any `tracing` span, a statement span is the child of the current OpenTelemetry
    // context (here a span made with the plain OpenTelemetry API).
    let outer = {
        use opentelemetry::trace::{TraceContextExt, Tracer};
        let tracer = opentelemetry::global::tracer("test");
        opentelemetry::Context::current_with_span(tracer.start("otel-only parent"))
    };
    {
        use opentelemetry::trace::FutureExt;
        sqlx::query("SELECT 3 AS otel_parent_marker")
            .fetch_one(&raw)
            .with_context(outer.clone())
            .await
            .expect("query");
    }
    {
        use opentelemetry::trace::TraceContextExt;
        outer.span().end();
    }
    // Statement spans off: the scope span and its summary are still exported.
    let opts = common::schema("otel_http_quiet").await;
    let quiet = pgscope::PoolOptions::new()
        .statement_spans(false)
        .connect_with(opts)
        .await
        .expect("connect");
    let ((), report) = pgscope::capture_named("GET /quiet", async {
        sqlx::query("SELECT 2 AS quiet_marker")
            .fetch_one(&quiet)
            .await
            .expect("query");
    })
    .await;
    report.assert_queries(1);
    // A scope on the request span (what `ScopeLayer` does inside `TraceLayer`): the summary
    // lands on the request span and statements are its children; no extra scope span.
    let request = tracing::info_span!("GET /api/reused", otel.kind = "server");
    let (((), report), ((), later)) = {
        use tracing::Instrument;
        let first = pgscope::Scope::new("GET /api/reused")
            .use_current_span()
            .capture(async {
                sqlx::query("SELECT 4 AS reused_marker")
                    .fetch_one(&pool)
                    .await
                    .expect("query");
                // a nested scope cannot take the same span: it opens its own
                let ((), inner) = pgscope::Scope::new("inner")
                    .use_current_span()
                    .capture(async {
                        sqlx::query("SELECT 5 AS nested_marker")
                            .fetch_one(&pool)
                            .await
                            .expect("query");
                    })
                    .await;
                inner.assert_queries(1);
            });
        // a later scope under the same span: the span already has its summary, so this one
        // opens its own span
        let later = pgscope::Scope::new("later")
            .use_current_span()
            .capture(async {
                sqlx::query("SELECT 6 AS later_marker")
                    .fetch_one(&pool)
                    .await
                    .expect("query");
            });
        async { (first.await, later.await) }
            .instrument(request)
            .await
    };
    report.assert_queries(2);
    later.assert_queries(1);
    // A request span that is logged but not exported cannot carry the summary: the scope opens
    // its own span, and its statements hang under that.
    let hidden = tracing::info_span!(target: "hidden", "hidden request");
    let ((), report) = {
        use tracing::Instrument;
        pgscope::Scope::new("GET /hidden")
            .use_current_span()
            .capture(async {
                sqlx::query("SELECT 7 AS hidden_marker")
                    .fetch_one(&pool)
                    .await
                    .expect("query");
            })
            .instrument(hidden)
            .await
    };
    report.assert_queries(1);
    // The real web stack: tower-http's TraceLayer outside pgscope's ScopeLayer.
    let app = {
        use axum::extract::{Path, State};
        use axum::routing::get;
        async fn item(State(pool): State<pgscope::Pool>, Path(id): Path<i64>) -> String {
            for i in 0..3 {
                sqlx::query("SELECT $1::bigint + $2 AS web_marker")
                    .bind(id)
                    .bind(i)
                    .fetch_one(&pool)
                    .await
                    .expect("query");
            }
            "ok".to_owned()
        }
        axum::Router::new()
            .route("/items/{id}", get(item))
            .layer(pgscope::http::ScopeLayer::new())
            .layer(
                tower_http::trace::TraceLayer::new_for_http().make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                ),
            )
            .with_state(pool.clone())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let web = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let body = reqwest::get(format!("http://{web}/items/7"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");
    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len() >= 6)
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

    let parent = spans
        .iter()
        .find(|s| s.name == "otel-only parent")
        .expect("parent");
    let child = spans
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("otel_parent")))
        .expect("statement under an OpenTelemetry context");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);

    assert!(
        !spans
            .iter()
            .any(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("quiet"))),
        "statement_spans(false) exports no statement span"
    );
    let scope = spans
        .iter()
        .find(|s| attr(&s.attributes, "pgscope.scope").as_deref() == Some("GET /quiet"))
        .expect("scope span still exported");
    assert_eq!(
        attr(&scope.attributes, "pgscope.queries").as_deref(),
        Some("1")
    );

    let request = spans
        .iter()
        .find(|s| s.name == "GET /api/reused")
        .expect("request span");
    assert_eq!(
        attr(&request.attributes, "pgscope.queries").as_deref(),
        Some("2"),
        "the request span carries the scope summary"
    );
    assert_eq!(
        attr(&request.attributes, "pgscope.scope").as_deref(),
        Some("GET /api/reused")
    );
    let statement = spans
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("reused_marker")))
        .expect("statement span");
    assert_eq!(statement.parent_span_id, request.span_id);
    let inner = spans
        .iter()
        .find(|s| {
            s.name == "pgscope.scope"
                && attr(&s.attributes, "pgscope.scope").as_deref() == Some("inner")
        })
        .expect("the nested scope's own span");
    assert_eq!(inner.parent_span_id, request.span_id);
    let nested = spans
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("nested_marker")))
        .expect("nested statement span");
    assert_eq!(nested.parent_span_id, inner.span_id);
    let later = spans
        .iter()
        .find(|s| {
            s.name == "pgscope.scope"
                && attr(&s.attributes, "pgscope.scope").as_deref() == Some("later")
        })
        .expect("the later scope's own span");
    assert_eq!(later.parent_span_id, request.span_id);
    assert_eq!(
        attr(&later.attributes, "pgscope.queries").as_deref(),
        Some("1")
    );
    assert!(
        !spans.iter().any(|s| s.name == "pgscope.scope"
            && attr(&s.attributes, "pgscope.scope").as_deref() == Some("GET /api/reused")),
        "no separate scope span for a scope on the request span"
    );

    assert!(!spans.iter().any(|s| s.name == "hidden request"));
    let hidden_scope = spans
        .iter()
        .find(|s| attr(&s.attributes, "pgscope.scope").as_deref() == Some("GET /hidden"))
        .expect("the scope's own span");
    assert_eq!(hidden_scope.name, "pgscope.scope");
    let hidden_statement = spans
        .iter()
        .find(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("hidden_marker")))
        .expect("statement span");
    assert_eq!(hidden_statement.parent_span_id, hidden_scope.span_id);

    // TraceLayer's request span carries the route's summary; the statements are its children.
    let web_request = spans
        .iter()
        .find(|s| attr(&s.attributes, "pgscope.scope").as_deref() == Some("GET /items/{id}"))
        .expect("a span with the route's summary");
    assert_eq!(web_request.name, "request", "tower-http's request span");
    assert_eq!(
        attr(&web_request.attributes, "pgscope.queries").as_deref(),
        Some("3")
    );
    let web_statements: Vec<_> = spans
        .iter()
        .filter(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("web_marker")))
        .collect();
    assert_eq!(web_statements.len(), 3);
    assert!(
        web_statements
            .iter()
            .all(|s| s.parent_span_id == web_request.span_id)
    );
}
