//! An application that configures OpenTelemetry itself (no `pgscope::otel::init`): its own
//! tracer and meter providers and its own `tracing_opentelemetry` layer. pgscope's statement
//! spans, scope summary and metrics still arrive, over real OTLP/gRPC.

mod common;
mod otlp_receiver;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use otlp_receiver::attr;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_its_own_opentelemetry_setup_gets_pgscope_spans_and_metrics() {
    let (addr, store) = otlp_receiver::start_grpc().await;
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .build()
        .expect("span exporter");
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .build()
        .expect("metric exporter");
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .build();
    let meter_provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .build();
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("my-app")))
        .try_init()
        .expect("subscriber");

    let opts = common::schema("otel_own").await;
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    let request = tracing::info_span!("POST /api/orders");
    let ((), report) = pgscope::Scope::new("POST /api/orders")
        .use_current_span()
        .capture(common::repeat(
            &pool,
            "SELECT $1::int AS own_setup_marker",
            2,
        ))
        .instrument(request)
        .await;
    report.assert_queries(2);

    tracer_provider.force_flush().expect("flush spans");
    meter_provider.force_flush().expect("flush metrics");
    assert!(
        store
            .wait_for(Duration::from_secs(10), |s| s.spans().len() >= 3
                && !s.metrics().is_empty())
            .await,
        "spans {} metrics {}",
        store.spans().len(),
        store.metrics().len()
    );
    let spans = store.spans();
    let request = otlp_receiver::named(&spans, "POST /api/orders");
    assert_eq!(
        attr(&request.attributes, "pgscope.queries").as_deref(),
        Some("2")
    );
    let statements = otlp_receiver::statements(&spans, "own_setup");
    assert_eq!(statements.len(), 2);
    assert!(
        statements
            .iter()
            .all(|s| s.parent_span_id == request.span_id && s.trace_id == request.trace_id)
    );
    assert!(
        store
            .metrics()
            .iter()
            .any(|m| m.name == "db.client.operation.duration")
    );
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}
