//! Span compression over real OTLP: consecutive statements of one scope with the same
//! fingerprint under the same parent become one span carrying the count and the summed
//! duration; a different statement or a failure breaks the run; nothing is lost at scope end.

mod common;
mod otlp_receiver;

use std::time::Duration;

use otlp_receiver::attr;
use pgscope::otel::{OtelBuilder, Protocol};
use tracing::Instrument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_n_plus_one_is_one_span_with_its_count_and_summed_duration() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    let guard = OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .protocol(Protocol::Grpc)
        .log_to_stderr(false)
        .init();
    let pool = pgscope::PoolOptions::new()
        .compress_query_spans(true)
        .n_plus_one_threshold(1_000)
        .connect_with(common::schema("otel_compress").await)
        .await
        .expect("connect");
    let request = tracing::info_span!("GET /api/feed", otel.kind = "server");
    let ((), report) = pgscope::Scope::new("GET /api/feed")
        .use_current_span()
        .capture(async {
            common::repeat(&pool, "SELECT $1::int AS run_marker", 10).await;
            sqlx::query("SELECT 'between' AS between_marker")
                .execute(&pool)
                .await
                .expect("q");
            common::repeat(&pool, "SELECT $1::int AS run_marker", 3).await;
            sqlx::query("SELECT broken_marker FROM nowhere")
                .execute(&pool)
                .await
                .expect_err("fails");
            common::repeat(&pool, "SELECT $1::int AS run_marker", 2).await;
        })
        .instrument(request)
        .await;
    report.assert_queries(17);
    // Outside any scope: never held back.
    sqlx::query("SELECT 1 AS unscoped_marker")
        .execute(&pool)
        .await
        .expect("q");

    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len() >= 7)
            .await,
        "spans: {}",
        store.spans().len()
    );
    let spans = store.spans();
    let request = otlp_receiver::named(&spans, "GET /api/feed");
    let runs = otlp_receiver::statements(&spans, "run_marker");
    let counts: Vec<Option<String>> = {
        let mut runs = runs.clone();
        runs.sort_by_key(|s| s.start_time_unix_nano);
        runs.iter()
            .map(|s| attr(&s.attributes, "pgscope.composite.count"))
            .collect()
    };
    assert_eq!(
        counts,
        [
            Some("10".to_owned()),
            Some("3".to_owned()),
            Some("2".to_owned())
        ],
        "three runs, each one span"
    );
    for run in &runs {
        assert_eq!(run.parent_span_id, request.span_id);
        let sum: f64 = attr(&run.attributes, "pgscope.composite.duration_sum_ms")
            .expect("summed duration")
            .parse()
            .expect("a number");
        let span_ms = (run.end_time_unix_nano - run.start_time_unix_nano) as f64 / 1e6;
        assert!(
            sum > 0.0 && sum <= span_ms + 0.01,
            "the statements' summed time ({sum} ms) fits in the span ({span_ms} ms)"
        );
        assert!(attr(&run.attributes, "db.response.returned_rows").is_some());
    }
    let first = runs
        .iter()
        .find(|s| attr(&s.attributes, "pgscope.composite.count").as_deref() == Some("10"))
        .expect("the 10-run");
    assert_eq!(
        attr(&first.attributes, "db.response.returned_rows").as_deref(),
        Some("10")
    );
    let between = otlp_receiver::statement(&spans, "between_marker");
    assert_eq!(attr(&between.attributes, "pgscope.composite.count"), None);
    let failed = otlp_receiver::statement(&spans, "broken_marker");
    assert!(attr(&failed.attributes, "error.type").is_some());
    assert_eq!(attr(&failed.attributes, "pgscope.composite.count"), None);
    otlp_receiver::statement(&spans, "unscoped_marker");
}
