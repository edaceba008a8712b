//! A plan change reaches OpenTelemetry: the `pgscope.plan.changes` counter and a
//! `pgscope.plan_change` event (both shapes, both size classes, the call site) on the request's
//! span, over real OTLP/gRPC, decoded with the official protobuf types.

mod common;
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use otlp_receiver::attr;
use pgscope::otel::{OtelBuilder, Protocol};
use tracing::Instrument;

const BATCHED: &str = "SELECT id FROM tasks WHERE project_id = ANY($1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_is_a_counter_and_an_event_on_the_request_span() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    let guard = OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .protocol(Protocol::Grpc)
        .metric_interval(Duration::from_millis(300))
        .log_to_stderr(false)
        .init();
    let opts = common::schema("otel_plans").await;
    common::tasks_table(&opts).await;
    let pool = pgscope::PoolOptions::new()
        .explain(common::explain_every_execution())
        .connect_with(opts)
        .await
        .expect("connect");
    let small = pgscope::explain(&pool, sqlx::query(BATCHED).bind(vec![1_i64; 5]))
        .await
        .expect("explain");
    let ids: Vec<i64> = (0..50_000).collect();
    let large = pgscope::explain(&pool, sqlx::query(BATCHED).bind(&ids))
        .await
        .expect("explain");
    assert_ne!(small, large, "the plan flips between 5 and 50 000 ids");

    let request = tracing::info_span!("GET /api/projects/tasks", otel.kind = "server");
    let ((), _report) = pgscope::Scope::new("GET /api/projects/tasks")
        .use_current_span()
        .capture(async {
            for list in [vec![1_i64; 5], ids.clone()] {
                let class = pgscope::SizeClass::of_len(list.len());
                // Until this size class is explained (a busy explainer skips a candidate).
                loop {
                    sqlx::query(BATCHED)
                        .bind(&list)
                        .fetch_all(&pool)
                        .await
                        .expect("query");
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let plans = pool.plans();
                    if plans
                        .statement(BATCHED)
                        .and_then(|s| s.plan(class))
                        .is_some()
                    {
                        break;
                    }
                }
            }
            // The event follows the plan into `plans()` by a moment; the request is still open.
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .instrument(request)
        .await;
    assert_eq!(pool.plans().statement(BATCHED).expect("plans").changes(), 1);
    drop(guard);
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| {
                s.metrics().iter().any(|m| m.name == "pgscope.plan.changes")
                    && s.spans()
                        .iter()
                        .any(|s| s.name == "GET /api/projects/tasks")
            })
            .await,
        "the counter and the request span arrive: metrics {:?}, spans {:?}",
        store
            .metrics()
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>(),
        store
            .spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    let spans = store.spans();
    let request = otlp_receiver::named(&spans, "GET /api/projects/tasks");
    let event = request
        .events
        .iter()
        .find(|e| e.name == "pgscope.plan_change")
        .unwrap_or_else(|| {
            panic!(
                "a pgscope.plan_change event on the request span: {:?}",
                request.events.iter().map(|e| &e.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        attr(&event.attributes, "db.query.text").as_deref(),
        Some(BATCHED)
    );
    assert_eq!(
        attr(&event.attributes, "pgscope.plan.from").as_deref(),
        Some(small.to_string().as_str())
    );
    assert_eq!(
        attr(&event.attributes, "pgscope.plan.to").as_deref(),
        Some(large.to_string().as_str())
    );
    assert_eq!(
        attr(&event.attributes, "pgscope.plan.from_size").as_deref(),
        Some("4–7")
    );
    assert_eq!(
        attr(&event.attributes, "pgscope.plan.to_size").as_deref(),
        Some("32768–65535")
    );
    assert!(
        attr(&event.attributes, "code.location")
            .is_some_and(|c| c.starts_with("tests/otel_plans.rs:")),
        "{:?}",
        event.attributes
    );
    let metrics = store.metrics();
    let counter = metrics
        .iter()
        .find(|m| m.name == "pgscope.plan.changes")
        .expect("counter");
    let Some(Data::Sum(sum)) = &counter.data else {
        panic!("a sum: {counter:?}");
    };
    let total: u64 = sum
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => {
                v as u64
            }
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    assert_eq!(total, 1, "{counter:?}");
    assert!(sum.is_monotonic);
}
