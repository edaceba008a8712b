//! Where pgscope's spans hang in a trace, exported over real OTLP/gRPC: statements under the
//! current span (a `tracing` span, or a plain OpenTelemetry context), the scope's summary on the
//! request span when the scope may use it, and on a `pgscope.scope` span otherwise.
//! One test function because it installs the process's global subscriber; each scenario is a
//! pair of functions, one that runs it and one that checks the exported spans.

mod common;
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::{attr, named, statement, statements, summary_span};
use tracing::Instrument;

/// Scopes started at once under one request span, from tasks on both runtime threads.
const CONCURRENT: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_scope_summaries_hang_under_the_request_that_ran_them() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    let guard = pgscope::otel::OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .protocol(pgscope::otel::Protocol::Grpc)
        // Spans with target `hidden` are logged (so they exist) but not exported.
        .log_filter("off,hidden=info")
        .export_filter("info,sqlx=off,hidden=off,pgscope::scope=debug")
        .init();
    let opts = common::schema("otel_tree").await;
    let pool = pgscope::Pool::connect_with(opts.clone())
        .await
        .expect("connect");

    run_statement_under_a_plain_opentelemetry_context(&pool).await;
    run_statement_spans_off(opts).await;
    run_scopes_under_one_request_span(&pool).await;
    run_scope_under_a_request_span_that_is_not_exported(&pool).await;
    run_trace_layer_outside_scope_layer(&pool).await;
    run_concurrent_scopes_under_one_request_span(&pool).await;

    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len()
                >= 15 + CONCURRENT * 2)
            .await,
        "spans: {}",
        store.spans().len()
    );
    let spans = store.spans();
    spans.iter().for_each(otlp_receiver::assert_unique_keys);
    check_statement_under_a_plain_opentelemetry_context(&spans);
    check_statement_spans_off(&spans);
    check_scopes_under_one_request_span(&spans);
    check_scope_under_a_request_span_that_is_not_exported(&spans);
    check_trace_layer_outside_scope_layer(&spans);
    check_concurrent_scopes_under_one_request_span(&spans);
}

/// Outside any `tracing` span, a statement is the child of the current OpenTelemetry context
/// (here a span made with the plain OpenTelemetry API); outside both, a root.
async fn run_statement_under_a_plain_opentelemetry_context(pool: &pgscope::Pool) {
    use opentelemetry::trace::{FutureExt, TraceContextExt, Tracer};
    let tracer = opentelemetry::global::tracer("test");
    let outer = opentelemetry::Context::current_with_span(tracer.start("otel-only parent"));
    sqlx::query("SELECT 3 AS otel_parent_marker")
        .fetch_one(pool)
        .with_context(outer.clone())
        .await
        .expect("query");
    outer.span().end();
    sqlx::query("SELECT 3 AS root_marker")
        .fetch_one(pool)
        .await
        .expect("query");
}

fn check_statement_under_a_plain_opentelemetry_context(spans: &[Span]) {
    let parent = named(spans, "otel-only parent");
    let child = statement(spans, "otel_parent_marker");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);
    assert!(statement(spans, "root_marker").parent_span_id.is_empty());
}

/// `query_spans(false)`: no statement span, the scope's summary still exported.
async fn run_statement_spans_off(opts: sqlx::postgres::PgConnectOptions) {
    let quiet = pgscope::PoolOptions::new()
        .query_spans(false)
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
}

fn check_statement_spans_off(spans: &[Span]) {
    assert!(
        !spans
            .iter()
            .any(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains("quiet"))),
        "query_spans(false) exports no statement span"
    );
    own_scope_span(spans, "GET /quiet", 1);
}

/// A scope on the request span (what `ScopeLayer` does inside `TraceLayer`) puts its summary
/// there; a nested scope, and a later one under the same span, open their own spans.
async fn run_scopes_under_one_request_span(pool: &pgscope::Pool) {
    let request = tracing::info_span!("GET /api/reused", otel.kind = "server");
    let first = pgscope::Scope::new("GET /api/reused")
        .use_current_span()
        .capture(async {
            sqlx::query("SELECT 4 AS reused_marker")
                .fetch_one(pool)
                .await
                .expect("query");
            let ((), inner) = pgscope::Scope::new("inner")
                .use_current_span()
                .capture(async {
                    sqlx::query("SELECT 5 AS nested_marker")
                        .fetch_one(pool)
                        .await
                        .expect("query");
                })
                .await;
            inner.assert_queries(1);
        });
    let later = pgscope::Scope::new("later")
        .use_current_span()
        .capture(async {
            sqlx::query("SELECT 6 AS later_marker")
                .fetch_one(pool)
                .await
                .expect("query");
        });
    let (((), first), ((), later)) = async { (first.await, later.await) }
        .instrument(request)
        .await;
    first.assert_queries(2);
    later.assert_queries(1);
}

fn check_scopes_under_one_request_span(spans: &[Span]) {
    let request = named(spans, "GET /api/reused");
    assert_eq!(
        summary_span(spans, "GET /api/reused").span_id,
        request.span_id,
        "the request span carries the scope's summary"
    );
    assert_eq!(
        attr(&request.attributes, "pgscope.queries").as_deref(),
        Some("2")
    );
    assert_eq!(
        statement(spans, "reused_marker").parent_span_id,
        request.span_id
    );
    let inner = own_scope_span(spans, "inner", 1);
    assert_eq!(inner.parent_span_id, request.span_id);
    assert_eq!(
        statement(spans, "nested_marker").parent_span_id,
        inner.span_id
    );
    let later = own_scope_span(spans, "later", 1);
    assert_eq!(later.parent_span_id, request.span_id);
}

/// The `pgscope.scope` span a scope opened for itself, with its statement count.
fn own_scope_span<'a>(spans: &'a [Span], scope: &str, queries: u64) -> &'a Span {
    let span = summary_span(spans, scope);
    assert_eq!(
        span.name, "pgscope.scope",
        "`{scope}` has a span of its own"
    );
    assert_eq!(
        attr(&span.attributes, "pgscope.queries"),
        Some(queries.to_string())
    );
    span
}

/// A request span that is logged but not exported cannot carry the summary: the scope opens its
/// own span, and its statements hang under that instead of becoming roots.
async fn run_scope_under_a_request_span_that_is_not_exported(pool: &pgscope::Pool) {
    let hidden = tracing::info_span!(target: "hidden", "hidden request");
    let ((), report) = pgscope::Scope::new("GET /hidden")
        .use_current_span()
        .capture(async {
            sqlx::query("SELECT 7 AS hidden_marker")
                .fetch_one(pool)
                .await
                .expect("query");
        })
        .instrument(hidden)
        .await;
    report.assert_queries(1);
}

fn check_scope_under_a_request_span_that_is_not_exported(spans: &[Span]) {
    assert!(!spans.iter().any(|s| s.name == "hidden request"));
    let scope = own_scope_span(spans, "GET /hidden", 1);
    assert_eq!(
        statement(spans, "hidden_marker").parent_span_id,
        scope.span_id
    );
}

/// The real web stack: tower-http's `TraceLayer` outside pgscope's `ScopeLayer`.
async fn run_trace_layer_outside_scope_layer(pool: &pgscope::Pool) {
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
    let app = axum::Router::new()
        .route("/items/{id}", get(item))
        .layer(pgscope::http::ScopeLayer::new())
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
            ),
        )
        .with_state(pool.clone());
    let web = common::serve(app).await;
    let body = reqwest::get(format!("{web}/items/7"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");
}

fn check_trace_layer_outside_scope_layer(spans: &[Span]) {
    let request = summary_span(spans, "GET /items/{id}");
    assert_eq!(request.name, "request", "tower-http's request span");
    assert_eq!(
        attr(&request.attributes, "pgscope.queries").as_deref(),
        Some("3")
    );
    let statements = statements(spans, "web_marker");
    assert_eq!(statements.len(), 3);
    assert!(
        statements
            .iter()
            .all(|s| s.parent_span_id == request.span_id)
    );
}

/// Many scopes starting at once under one request span: exactly one takes the span (the check
/// and the claim are one step), the others open their own.
async fn run_concurrent_scopes_under_one_request_span(pool: &pgscope::Pool) {
    let request = tracing::info_span!("GET /api/batch");
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(
                async move {
                    let ((), report) = pgscope::Scope::new(format!("part {i}"))
                        .use_current_span()
                        .capture(async {
                            sqlx::query("SELECT 8 AS concurrent_marker")
                                .fetch_one(&pool)
                                .await
                                .expect("query");
                        })
                        .await;
                    report.queries()
                }
                .instrument(request.clone()),
            )
        })
        .collect();
    for task in tasks {
        // A scope that uses the request span adopts what starts under it, so a scope that
        // starts after the claim is nested in that one and also counts there: at least 1 each.
        assert!(task.await.expect("task") >= 1);
    }
}

fn check_concurrent_scopes_under_one_request_span(spans: &[Span]) {
    let request = named(spans, "GET /api/batch");
    let on_request = attr(&request.attributes, "pgscope.scope").expect("one scope's summary");
    let own: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.name == "pgscope.scope"
                && attr(&s.attributes, "pgscope.scope").is_some_and(|n| n.starts_with("part "))
        })
        .collect();
    assert_eq!(
        own.len(),
        CONCURRENT - 1,
        "the others opened their own spans"
    );
    assert!(own.iter().all(|s| s.parent_span_id == request.span_id
        && attr(&s.attributes, "pgscope.scope") != Some(on_request.clone())));
    let statements = statements(spans, "concurrent_marker");
    assert_eq!(statements.len(), CONCURRENT);
    // One statement under each scope's span, and one under the request span.
    for home in own.iter().map(|s| &s.span_id).chain([&request.span_id]) {
        assert_eq!(
            statements
                .iter()
                .filter(|s| &s.parent_span_id == home)
                .count(),
            1
        );
    }
}
