//! `OTEL_SDK_DISABLED=true` turns export off: `init` succeeds, queries run and are counted, and
//! nothing reaches a collector that is listening at the configured endpoint.

mod common;
mod otlp_receiver;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_exports_nothing_and_changes_nothing_else() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    // SAFETY: set before any other thread of this test process reads the environment
    // (this binary has a single test and the runtime threads do not touch these variables).
    unsafe {
        std::env::set_var("OTEL_SDK_DISABLED", "true");
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    }
    let guard = pgscope::otel::OtelBuilder::new()
        .log_to_stderr(false)
        .metric_interval(Duration::from_millis(100))
        .init();
    assert!(!guard.is_enabled());
    let opts = common::schema("otel_disabled").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let ((), report) = pgscope::capture_named("GET /quiet", async {
        for _ in 0..3 {
            sqlx::query("SELECT 1").execute(&pool).await.expect("query");
        }
    })
    .await;
    report.assert_queries(3);
    guard.flush();
    drop(guard);
    // Give anything that might have been sent time to arrive.
    let arrived = store
        .wait_for(Duration::from_millis(700), |s| {
            !s.spans().is_empty() || !s.metrics().is_empty()
        })
        .await;
    assert!(!arrived, "nothing is exported when the SDK is disabled");
}
