//! End-to-end OpenTelemetry export over OTLP/gRPC: a scope with an N+1 runs against a real
//! PostgreSQL, spans and metrics go through the real exporter pipeline to an in-process
//! receiver, and the decoded protobufs are checked against the semantic conventions.

mod common;
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use otlp_receiver::attr;
use pgscope::PoolOptions;
use pgscope::otel::{OtelBuilder, Protocol};
use tracing::Instrument;

const SECRET_TEXT: &str = "zebra-unique-7391";
const SECRET_NUMBER: &str = "918273645";
const ROUTE_LIMIT: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_n_plus_one_reach_an_otlp_receiver_without_literals() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    let guard = OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .protocol(Protocol::Grpc)
        .service_name("pgscope-otel-test")
        .metric_interval(Duration::from_millis(300))
        .log_to_stderr(false)
        .init();

    let opts = common::schema("otel_e2e").await;
    let namespace = format!("{}|t_otel_e2e", opts.get_database().expect("database name"));
    let port = opts.get_port();
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 8) g;",
    )
    .await;
    let pool = PoolOptions::new()
        .max_connections(3)
        .name("test-pool")
        .connect_with(opts)
        .await
        .expect("connect");

    let request = tracing::info_span!("GET /api/feed", otel.kind = "server");
    let ((), report) = pgscope::capture_named("GET /api/feed", async {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("ids");
        for id in &ids {
            sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("name");
        }
        let literal = format!(
            "SELECT count(*) FROM users WHERE name <> '{SECRET_TEXT}' AND id <> {SECRET_NUMBER}"
        );
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(literal))
            .fetch_one(&pool)
            .await
            .expect("literal query");
        sqlx::query("SELEC broken")
            .execute(&pool)
            .await
            .expect_err("syntax error");
    })
    .instrument(request)
    .await;
    assert_eq!(report.queries(), 11);
    assert_eq!(report.n_plus_one().len(), 1);

    // A query budget refusing a statement is counted, by route.
    let ((), budget) = pgscope::Scope::new("POST /api/import")
        .query_budget(2)
        .capture(async {
            for _ in 0..3 {
                let _ = sqlx::query("SELECT 1").execute(&pool).await;
            }
        })
        .await;
    assert_eq!(budget.rejected_queries(), 1);
    // A flood of distinct route names cannot grow metric cardinality past the limit.
    pgscope::otel::set_attribute_limit(ROUTE_LIMIT);
    for i in 0..40 {
        let ((), _) = pgscope::capture_named(format!("GET /flood/{i}"), async {
            sqlx::query("SELECT 1").execute(&pool).await.expect("q");
        })
        .await;
    }

    // Let at least one metric export happen with the pool alive (its gauges read the pool).
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s
                .metrics()
                .iter()
                .any(|m| m.name == "db.client.connection.count"))
            .await,
        "no connection metrics exported"
    );
    guard.flush();
    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len() >= 13)
            .await,
        "spans: {}",
        store.spans().len()
    );

    let spans = store.spans();
    assert!(
        store
            .service_names()
            .iter()
            .any(|n| n == "pgscope-otel-test")
    );
    let request_span = otlp_receiver::named(&spans, "GET /api/feed");
    let scope_span = otlp_receiver::named(&spans, "pgscope.scope");
    assert_eq!(
        scope_span.parent_span_id, request_span.span_id,
        "scope span is a child of the request span"
    );
    assert_eq!(
        attr(&scope_span.attributes, "pgscope.queries").as_deref(),
        Some("11")
    );
    spans.iter().for_each(otlp_receiver::assert_unique_keys);
    assert_eq!(
        attr(&scope_span.attributes, "pgscope.n_plus_one").as_deref(),
        Some("1")
    );
    for key in [
        "pgscope.db_time_ms",
        "pgscope.connection_hold_ms",
        "pgscope.pool_wait_ms",
    ] {
        let v: f64 = attr(&scope_span.attributes, key)
            .expect(key)
            .parse()
            .expect("number");
        assert!(v >= 0.0);
    }
    let events: Vec<_> = scope_span
        .events
        .iter()
        .filter(|e| e.name == "pgscope.n_plus_one")
        .collect();
    assert_eq!(events.len(), 1, "one N+1 span event");
    let ev = &events[0].attributes;
    assert_eq!(
        attr(ev, "db.query.text").as_deref(),
        Some("SELECT name FROM users WHERE id = $1")
    );
    assert_eq!(attr(ev, "pgscope.count").as_deref(), Some("8"));
    assert_eq!(attr(ev, "pgscope.fingerprint").map(|f| f.len()), Some(16));
    assert!(
        attr(ev, "code.location").is_some_and(|l| l.starts_with("tests/otel.rs:")),
        "{ev:?}"
    );
    assert_eq!(attr(ev, "code.file.path").as_deref(), Some("tests/otel.rs"));
    let line: u32 = attr(ev, "code.line.number")
        .expect("code.line.number")
        .parse()
        .expect("a line number");
    assert_eq!(
        attr(ev, "code.location"),
        Some(format!("tests/otel.rs:{line}"))
    );

    let lookups: Vec<_> = spans
        .iter()
        .filter(|s| {
            attr(&s.attributes, "db.query.text").as_deref()
                == Some("SELECT name FROM users WHERE id = $1")
        })
        .collect();
    assert_eq!(lookups.len(), 8);
    for s in &lookups {
        assert_eq!(s.name, "SELECT users");
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            s.parent_span_id, scope_span.span_id,
            "statement spans are children of the scope span"
        );
        let a = &s.attributes;
        assert_eq!(attr(a, "db.system.name").as_deref(), Some("postgresql"));
        // `{database}|{schema}`: the test connects with `search_path` set to its schema.
        assert_eq!(attr(a, "db.namespace"), Some(namespace.clone()));
        assert_eq!(attr(a, "db.query.summary").as_deref(), Some("SELECT users"));
        // Not parsed out of the query text (PostgreSQL conventions): the summary carries them.
        assert!(attr(a, "db.operation.name").is_none());
        assert!(attr(a, "db.collection.name").is_none());
        assert_eq!(attr(a, "server.address").as_deref(), Some("127.0.0.1"));
        // Conditionally required: only when the port is not PostgreSQL's default.
        assert_eq!(
            attr(a, "server.port"),
            (port != 5432).then(|| port.to_string())
        );
        assert_eq!(attr(a, "db.response.returned_rows").as_deref(), Some("1"));
        assert_eq!(attr(a, "pgscope.fingerprint").map(|f| f.len()), Some(16));
        assert!(attr(a, "error.type").is_none());
        assert_eq!(
            store.span_scope(&s.span_id),
            Some((
                "pgscope".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
                pgscope::otel::SCHEMA_URL.to_owned()
            )),
            "statement spans come from pgscope's instrumentation scope"
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    let failed = spans
        .iter()
        .find(|s| attr(&s.attributes, "error.type").is_some())
        .expect("failed statement span");
    assert_eq!(
        attr(&failed.attributes, "error.type").as_deref(),
        Some("42601")
    );
    assert_eq!(
        attr(&failed.attributes, "db.response.status_code").as_deref(),
        Some("42601")
    );
    assert_eq!(
        failed.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((StatusCode::Error as i32, "42601")),
        "status Error, described by the error class, not the server's message"
    );
    assert_eq!(
        Some(failed.name.clone()),
        attr(&failed.attributes, "db.query.summary"),
        "span named by its summary"
    );

    assert!(
        !store.raw_contains(SECRET_TEXT),
        "a literal string leaked into the export"
    );
    assert!(
        !store.raw_contains(SECRET_NUMBER),
        "a literal number leaked into the export"
    );

    let metrics = store.metrics();
    let find = |name: &str| {
        metrics
            .iter()
            .filter(|m| m.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let duration = find("db.client.operation.duration");
    assert!(
        !duration.is_empty(),
        "names: {:?}",
        metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    assert_eq!(duration[0].unit, "s");
    let Some(Data::Histogram(h)) = &duration.last().expect("duration").data else {
        panic!("histogram expected")
    };
    let total: u64 = h.data_points.iter().map(|p| p.count).sum();
    assert!(total >= 11, "operation count {total}");
    assert_eq!(
        h.data_points[0].explicit_bounds,
        vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]
    );
    assert!(
        h.data_points
            .iter()
            .any(|p| attr(&p.attributes, "error.type").as_deref() == Some("42601"))
    );
    assert!(
        h.data_points
            .iter()
            .all(|p| attr(&p.attributes, "db.system.name").as_deref() == Some("postgresql"))
    );

    let count = find("db.client.connection.count");
    assert_eq!(count[0].unit, "{connection}");
    let Some(Data::Sum(sum)) = &count[0].data else {
        panic!("sum expected")
    };
    let states: Vec<String> = sum
        .data_points
        .iter()
        .filter_map(|p| attr(&p.attributes, "db.client.connection.state"))
        .collect();
    assert!(
        states.contains(&"idle".to_owned()) && states.contains(&"used".to_owned()),
        "{states:?}"
    );
    assert!(sum.data_points.iter().all(|p| {
        attr(&p.attributes, "db.client.connection.pool.name").as_deref() == Some("test-pool")
    }));
    let max = find("db.client.connection.max");
    let Some(Data::Sum(max)) = &max[0].data else {
        panic!("sum expected")
    };
    assert_eq!(
        max.data_points[0].value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(3))
    );
    for name in [
        "db.client.connection.pending_requests",
        "db.client.connection.wait_time",
        "db.client.connection.use_time",
    ] {
        assert!(!find(name).is_empty(), "{name} missing");
    }
    // Connection creation time, read from the server when each connection opened.
    let created = find("db.client.connection.create_time");
    assert_eq!(created.last().expect("create_time").unit, "s");
    let Some(Data::Histogram(h)) = &created.last().expect("create_time").data else {
        panic!("histogram")
    };
    let point = h
        .data_points
        .iter()
        .find(|p| {
            attr(&p.attributes, "db.client.connection.pool.name").as_deref() == Some("test-pool")
        })
        .expect("create_time of test-pool");
    assert!(
        (1..=3).contains(&point.count),
        "one measurement per connection opened (pool of 3): {}",
        point.count
    );
    let mean = point.sum.expect("sum") / point.count as f64;
    assert!(
        mean > 0.0 && mean < 5.0,
        "connecting to a local server takes a positive, small time: {mean}"
    );
    let per_scope = find("pgscope.scope.queries");
    let Some(Data::Histogram(h)) = &per_scope.last().expect("scope queries").data else {
        panic!("histogram")
    };
    let point = h
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "pgscope.route").as_deref() == Some("GET /api/feed"))
        .expect("route");
    assert_eq!(point.sum, Some(11.0));
    let routes: std::collections::BTreeSet<String> = h
        .data_points
        .iter()
        .filter_map(|p| attr(&p.attributes, "pgscope.route"))
        .collect();
    assert!(
        routes.len() <= ROUTE_LIMIT + 1 && routes.contains("other"),
        "routes past the limit are reported as `other`: {routes:?}"
    );
    let other = h
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "pgscope.route").as_deref() == Some("other"))
        .expect("other");
    assert!(other.count >= 30, "flooded scopes counted under `other`");
    let exceeded = find("pgscope.query_budget.exceeded");
    let Some(Data::Sum(e)) = &exceeded.last().expect("budget exceeded").data else {
        panic!("sum")
    };
    let point = e
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "pgscope.route").as_deref() == Some("POST /api/import"))
        .expect("route");
    assert_eq!(
        point.value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(1))
    );
    let detected = find("pgscope.n_plus_one.detected");
    let Some(Data::Sum(d)) = &detected.last().expect("detected").data else {
        panic!("sum")
    };
    assert!(
        d.data_points
            .iter()
            .any(
                |p| attr(&p.attributes, "pgscope.route").as_deref() == Some("GET /api/feed")
                    && attr(&p.attributes, "pgscope.fingerprint").is_some()
            )
    );
}
