//! End to end on a real Jaeger v2 (built from its Go module by `collector-config/local.sh`, which
//! this test starts when nothing answers on 127.0.0.1:16686): what pgscope exports over OTLP is
//! read back through Jaeger's HTTP query API (`/api/services`, `/api/traces`).
//!
//! - the feed example's app (tower-http `TraceLayer` + `ScopeLayer`) over real HTTP: one trace
//!   per request; the request span carries `pgscope.queries` and the `pgscope.n_plus_one` event
//!   with the handler's `file:line`; the statement spans are its CLIENT children, named by
//!   `db.query.summary`; with `compress_query_spans(true)` the N+1 is one span;
//! - a job in `capture_named` with no request span, in a process that exits right after its
//!   scopes (`examples/quickstart`): the `pgscope.scope` span is the root and nothing is lost;
//! - the shipped collector configurations are accepted by the real binary.

#[path = "../examples/feed/app.rs"]
mod app;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const QUERY: &str = "http://127.0.0.1:16686";

fn collector_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-config")
}

/// `local.sh` with `action`; panics with its output when it fails.
fn local_sh(action: &str) -> String {
    let out = Command::new("bash")
        .arg(collector_config().join("local.sh"))
        .arg(action)
        .output()
        .expect("run collector-config/local.sh");
    assert!(
        out.status.success(),
        "local.sh {action} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Jaeger answering on 127.0.0.1:16686: the one running, else started (and built) now.
async fn jaeger() -> reqwest::Client {
    static STARTED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let client = reqwest::Client::new();
    STARTED
        .get_or_init(|| async {
            let up = client
                .get(format!("{QUERY}/api/services"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !up {
                tokio::task::spawn_blocking(|| local_sh("start"))
                    .await
                    .expect("local.sh start");
            }
        })
        .await;
    client
}

/// The traces of `service` that Jaeger has, once it has at least `n` whose spans have stopped
/// arriving (two reads a moment apart agree).
async fn traces(client: &reqwest::Client, service: &str, n: usize) -> Vec<Value> {
    let url = format!("{QUERY}/api/traces?service={service}&limit=50&lookback=1h");
    // Spans come back in any order: compare the traces' span counts.
    let shape = |body: &Value| {
        let mut counts: Vec<(String, usize)> = body["data"]
            .as_array()
            .map(|traces| {
                traces
                    .iter()
                    .map(|t| (t["traceID"].to_string(), spans(t).len()))
                    .collect()
            })
            .unwrap_or_default();
        counts.sort();
        counts
    };
    let mut last = Value::Null;
    for _ in 0..100 {
        let body: Value = client
            .get(&url)
            .send()
            .await
            .expect("query API")
            .json()
            .await
            .expect("json");
        let count = body["data"].as_array().map_or(0, Vec::len);
        if count >= n && shape(&body) == shape(&last) {
            return body["data"].as_array().cloned().unwrap_or_default();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "Jaeger has no {n} settled traces of {service}: {:?}",
        shape(&last)
    );
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn tag_str(span: &Value, key: &str) -> Option<String> {
    tag(span, key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn spans(trace: &Value) -> &[Value] {
    trace["spans"].as_array().map_or(&[], Vec::as_slice)
}

/// The span with no parent in its trace.
fn root(trace: &Value) -> &Value {
    let roots: Vec<&Value> = spans(trace)
        .iter()
        .filter(|s| s["references"].as_array().is_none_or(Vec::is_empty))
        .collect();
    assert_eq!(roots.len(), 1, "one root span: {trace}");
    roots[0]
}

fn children<'a>(trace: &'a Value, parent: &Value) -> Vec<&'a Value> {
    spans(trace)
        .iter()
        .filter(|s| {
            s["references"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["refType"] == "CHILD_OF" && r["spanID"] == parent["spanID"])
            })
        })
        .collect()
}

/// The fields of the span's event (Jaeger: log) called `name`.
fn event<'a>(span: &'a Value, name: &str) -> Vec<&'a Value> {
    span["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .filter(|l| {
                    l["fields"].as_array().is_some_and(|f| {
                        f.iter().any(|f| f["key"] == "event" && f["value"] == name)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn field(log: &Value, key: &str) -> Option<String> {
    log["fields"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == key)
        .map(|f| match &f["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

/// Checks the statement spans under `parent`: CLIENT, PostgreSQL, named by `db.query.summary`.
fn assert_statement_spans(statements: &[&Value]) {
    for s in statements {
        assert_eq!(tag_str(s, "span.kind").as_deref(), Some("client"), "{s}");
        assert_eq!(
            tag_str(s, "db.system.name").as_deref(),
            Some("postgresql"),
            "{s}"
        );
        let summary = tag_str(s, "db.query.summary").expect("db.query.summary");
        assert_eq!(
            s["operationName"],
            summary.as_str(),
            "the span is named by its summary"
        );
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

struct Served {
    base: String,
}

async fn serve(pool: &pgscope::Pool, mode: app::Mode, ns: &str) -> Served {
    let redis_url = app::redis_url().await.unwrap_or_else(|e| panic!("{e}"));
    let redis = app::connect_redis(&redis_url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {redis_url}: {e}"));
    let state = app::AppState {
        pool: pool.clone(),
        redis,
        mode,
        tiers: app::Tiers::default(),
        stats: Arc::new(app::Stats::default()),
        ns: format!("pgscope-jaeger-{ns}-{}", std::process::id()),
    };
    Served {
        base: common::serve(app::router(state)).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_the_feed_app_are_traces_in_jaeger_with_their_statements_and_n_plus_one() {
    let client = jaeger().await;
    let service = unique("pgscope-e2e-feed");
    let guard = pgscope::otel::OtelBuilder::new()
        .endpoint("http://127.0.0.1:4317")
        .protocol(pgscope::otel::Protocol::Grpc)
        .service_name(service.clone())
        .log_to_stderr(false)
        .init();
    let opts = common::schema("jaeger_feed").await;
    app::setup_schema(&opts).await.expect("seed");
    let pool = pgscope::PoolOptions::new()
        .max_connections(5)
        .connect_with(opts.clone())
        .await
        .expect("pool");
    let compressed = pgscope::PoolOptions::new()
        .max_connections(5)
        .compress_query_spans(true)
        .connect_with(opts)
        .await
        .expect("pool");
    let naive = serve(&pool, app::Mode::Naive, "naive").await;
    let join = serve(&pool, app::Mode::Join, "join").await;
    let naive_compressed = serve(&compressed, app::Mode::Naive, "compressed").await;
    let http = reqwest::Client::new();
    // One request each, in order, each its own trace; the page tells them apart in Jaeger.
    for (served, page) in [(&naive, 1), (&join, 2), (&naive_compressed, 3)] {
        let resp = http
            .get(format!("{}/api/feed?page={page}", served.base))
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    drop(guard);

    let services: Value = client
        .get(format!("{QUERY}/api/services"))
        .send()
        .await
        .expect("services")
        .json()
        .await
        .expect("json");
    let traces = traces(&client, &service, 3).await;
    assert!(
        services["data"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == service.as_str()))
            || !traces.is_empty(),
        "{services}"
    );
    assert_eq!(traces.len(), 3, "one trace per request");
    let by_page = |page: &str| {
        traces
            .iter()
            .find(|t| {
                tag_str(root(t), "http.uri")
                    .or_else(|| tag_str(root(t), "uri"))
                    .is_some_and(|u| u.ends_with(&format!("page={page}")))
            })
            .unwrap_or_else(|| panic!("the trace of page {page}: {traces:?}"))
    };

    // naive: the request span carries the scope's summary and one N+1 event; 21 statements.
    let trace = by_page("1");
    let request = root(trace);
    assert_eq!(
        request["operationName"], "request",
        "tower-http's request span"
    );
    assert_eq!(
        tag_str(request, "pgscope.scope").as_deref(),
        Some("GET /api/feed")
    );
    assert_eq!(tag_str(request, "pgscope.queries").as_deref(), Some("21"));
    assert_eq!(tag_str(request, "pgscope.n_plus_one").as_deref(), Some("1"));
    let found = event(request, "pgscope.n_plus_one");
    assert_eq!(found.len(), 1, "one N+1 event: {request}");
    let site = field(found[0], "code.location").unwrap_or_default();
    // `tests/../examples/feed/app.rs:N`: the module is included from the test.
    assert!(
        site.contains("examples/feed/app.rs:"),
        "the handler's line: {site}"
    );
    assert_eq!(field(found[0], "pgscope.count").as_deref(), Some("20"));
    assert_eq!(
        field(found[0], "db.query.text").as_deref(),
        Some("SELECT name FROM users WHERE id = $1")
    );
    let statements = children(trace, request);
    assert_eq!(
        statements.len(),
        21,
        "21 statement spans under the request span"
    );
    assert_statement_spans(&statements);
    assert_eq!(spans(trace).len(), 22, "nothing else in the trace");
    println!(
        "naive: {} spans, request tags {}",
        spans(trace).len(),
        request["tags"]
    );

    // join: one statement.
    let trace = by_page("2");
    let request = root(trace);
    assert_eq!(tag_str(request, "pgscope.queries").as_deref(), Some("1"));
    assert!(event(request, "pgscope.n_plus_one").is_empty());
    let statements = children(trace, request);
    assert_eq!(statements.len(), 1);
    assert_statement_spans(&statements);
    assert_eq!(statements[0]["operationName"], "SELECT posts users");

    // compressed: the 20 author lookups are one span.
    let trace = by_page("3");
    let request = root(trace);
    assert_eq!(tag_str(request, "pgscope.queries").as_deref(), Some("21"));
    assert_eq!(event(request, "pgscope.n_plus_one").len(), 1);
    let statements = children(trace, request);
    assert_eq!(
        statements.len(),
        2,
        "the page query and one span for the 20 lookups"
    );
    assert_statement_spans(&statements);
    let merged = statements
        .iter()
        .find(|s| tag_str(s, "pgscope.composite.count").is_some())
        .expect("the compressed span");
    assert_eq!(
        tag_str(merged, "pgscope.composite.count").as_deref(),
        Some("20")
    );
    assert_eq!(merged["operationName"], "SELECT users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_process_that_exits_right_after_its_scopes_loses_nothing_in_jaeger() {
    let client = jaeger().await;
    let service = unique("pgscope-e2e-job");
    // `cargo test` builds the examples beside the test binaries.
    let exe = std::env::current_exe().expect("test binary");
    let quickstart = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("examples").join("quickstart"))
        .expect("target dir");
    assert!(
        quickstart.exists(),
        "{} is built by cargo test",
        quickstart.display()
    );
    let url = common::database_url().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(quickstart)
            .env("DATABASE_URL", url)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_SERVICE_NAME", &service)
            .output()
            .map(|o| (o, service))
    })
    .await
    .expect("join")
    .expect("run the quickstart example");
    let (out, service) = out;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let traces = traces(&client, &service, 2).await;
    assert_eq!(traces.len(), 2, "one trace per scope: {traces:?}");
    let by_scope = |name: &str| {
        traces
            .iter()
            .find(|t| tag_str(root(t), "pgscope.scope").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("a trace rooted at the scope {name}: {traces:?}"))
    };
    let trace = by_scope("GET /api/feed (naive)");
    let scope = root(trace);
    assert_eq!(scope["operationName"], "pgscope.scope");
    assert_eq!(tag_str(scope, "pgscope.queries").as_deref(), Some("21"));
    let found = event(scope, "pgscope.n_plus_one");
    assert_eq!(found.len(), 1, "{scope}");
    let site = field(found[0], "code.location").unwrap_or_default();
    assert!(site.starts_with("examples/quickstart.rs:"), "{site}");
    assert_eq!(
        field(found[0], "pgscope.suggestion").as_deref(),
        Some("SELECT name FROM users WHERE id = ANY($1)")
    );
    let statements = children(trace, scope);
    assert_eq!(statements.len(), 21);
    assert_statement_spans(&statements);
    assert_eq!(spans(trace).len(), 22, "no orphan, nothing missing");

    // The last scope before the process exits.
    let trace = by_scope("GET /api/feed (join)");
    let scope = root(trace);
    assert_eq!(tag_str(scope, "pgscope.queries").as_deref(), Some("1"));
    assert_eq!(children(trace, scope).len(), 1);
    assert_eq!(spans(trace).len(), 2);
}

#[test]
fn the_shipped_collector_configurations_are_accepted_by_the_real_binary() {
    let jaeger = local_sh("build");
    let jaeger = jaeger
        .lines()
        .last()
        .expect("the binary's path")
        .trim()
        .to_owned();
    for config in ["jaeger.yaml", "otel-collector.yaml"] {
        let out = Command::new(&jaeger)
            .arg("validate")
            .arg(format!(
                "--config=file:{}",
                collector_config().join(config).display()
            ))
            .output()
            .expect("run jaeger validate");
        assert!(
            out.status.success(),
            "{config} is rejected:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A broken one is rejected: the check can fail.
    let broken = std::env::temp_dir().join(format!("pgscope-broken-{}.yaml", std::process::id()));
    std::fs::write(&broken, "receivers:\n  nope:\nservice:\n  pipelines: {}\n").expect("write");
    let out = Command::new(&jaeger)
        .arg("validate")
        .arg(format!("--config=file:{}", broken.display()))
        .output()
        .expect("run jaeger validate");
    let _ = std::fs::remove_file(&broken);
    assert!(!out.status.success(), "an unknown receiver is rejected");
}
