//! A process that ends right after its work loses nothing: a job run in `capture_named` with an
//! N+1 inside, its report printed, then the `OtelGuard` dropped at once (OTLP/HTTP, no request
//! span, default filters). The `pgscope.scope` span arrives with its summary and the N+1 event
//! carrying the call site, and every statement span's parent is that span — no sleep anywhere.

mod common;
mod otlp_receiver;

use std::time::Duration;

use otlp_receiver::attr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_span_and_its_n_plus_one_survive_a_guard_dropped_right_after_the_scope() {
    let (addr, store) = otlp_receiver::start_http().await;
    // SAFETY: set before any other thread of this process reads the environment (one test in
    // this binary; the runtime's threads do not read these variables).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SERVICE_NAME", "nightly-job");
    }
    let guard = pgscope::otel::init();
    let opts = common::schema("otel_exit").await;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 18) g;",
    )
    .await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");

    let (names, report) = pgscope::capture_named("GET /x", async {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("ids");
        let mut names = Vec::new();
        for id in ids {
            let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("name");
            names.push(name);
        }
        names
    })
    .await;
    println!("{report}");
    assert_eq!(names.len(), 18);
    report.assert_queries(19);
    drop(guard);

    // Everything was exported by the guard's drop; reading it back may take the receiver a
    // moment, but nothing more is sent after the drop.
    let arrived = store
        .wait_for(Duration::from_secs(10), |s| {
            s.spans().iter().any(|s| s.name == "pgscope.scope")
        })
        .await;
    let spans = store.spans();
    assert!(
        arrived,
        "the scope span arrives: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let scope = otlp_receiver::named(&spans, "pgscope.scope");
    assert_eq!(
        attr(&scope.attributes, "pgscope.scope").as_deref(),
        Some("GET /x")
    );
    assert_eq!(
        attr(&scope.attributes, "pgscope.queries").as_deref(),
        Some("19")
    );
    assert_eq!(
        attr(&scope.attributes, "pgscope.n_plus_one").as_deref(),
        Some("1")
    );
    let event = scope
        .events
        .iter()
        .find(|e| e.name == "pgscope.n_plus_one")
        .expect("the N+1 event on the scope span");
    assert_eq!(
        attr(&event.attributes, "db.query.text").as_deref(),
        Some("SELECT name FROM users WHERE id = $1")
    );
    let site = attr(&event.attributes, "code.location").unwrap_or_default();
    assert!(site.starts_with("tests/otel_exit.rs:"), "call site: {site}");
    let statements: Vec<_> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(statements.len(), 19, "19 CLIENT statement spans");
    for s in statements {
        assert_eq!(
            s.parent_span_id, scope.span_id,
            "`{}` hangs under the scope span",
            s.name
        );
        assert_eq!(s.trace_id, scope.trace_id);
    }
}
