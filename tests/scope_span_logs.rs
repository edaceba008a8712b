//! The `pgscope.scope` span a scope opens (when it runs in no request span) stays out of the
//! application's log at the usual levels, while spans created inside the scope still lead back
//! to it. Each test installs its subscriber for its own thread (`current_thread` runtime), so
//! the two setups do not meet.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::Instrument;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// A log sink the fmt layer writes into.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8 log")
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A background task instrumented with a span created inside the scope, a log line in the
/// scope's own future, and one statement there: 3 statements in all for the scope.
async fn job(pool: &pgscope::Pool) -> pgscope::Report {
    let ((), report) = pgscope::capture_named("job: nightly export", async {
        tracing::info!("handler says hello");
        sqlx::query("SELECT 1").execute(pool).await.expect("q");
        let span = tracing::info_span!("background work");
        let pool2 = pool.clone();
        tokio::spawn(
            async move {
                tracing::info!("background says hello");
                for _ in 0..2 {
                    sqlx::query("SELECT 2").execute(&pool2).await.expect("q");
                }
            }
            .instrument(span),
        )
        .await
        .expect("task");
    })
    .await;
    report
}

fn assert_log_is_the_applications_own(log: &str) {
    assert!(log.contains("handler says hello"), "{log}");
    assert!(log.contains("background says hello"), "{log}");
    assert!(
        !log.contains("pgscope.scope") && !log.contains("nightly export"),
        "the scope's span shows in the log:\n{log}"
    );
}

#[tokio::test]
async fn with_per_layer_filters_the_scope_span_is_not_logged_and_still_attributes() {
    let log = Log::default();
    let sink = log.clone();
    // The usual pair: the log at INFO, and a layer (here a stand-in for the OpenTelemetry
    // layer) that asks for the scope spans.
    let exported = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = exported.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                .with_filter(EnvFilter::new("info")),
        )
        .with(SpanNames(seen).with_filter(EnvFilter::new("info,pgscope::scope=debug")));
    let _default = tracing::subscriber::set_default(subscriber);
    let pool = pgscope::Pool::connect_with(common::schema("scope_span_logs_a").await)
        .await
        .expect("connect");
    let report = job(&pool).await;
    report.assert_queries(3);
    assert_eq!(pool.unscoped_report().queries(), 0);
    assert_log_is_the_applications_own(&log.text());
    assert!(
        exported
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n == "pgscope.scope"),
        "the exporting layer still gets the scope span"
    );
}

#[tokio::test]
async fn with_one_global_info_filter_the_scope_span_is_not_logged() {
    let log = Log::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_env_filter(EnvFilter::new("info"))
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let pool = pgscope::Pool::connect_with(common::schema("scope_span_logs_b").await)
        .await
        .expect("connect");
    let report = job(&pool).await;
    // The span is off everywhere, so only the task-local route remains: the scope's own
    // statement counts, the plain `tokio::spawn`-ed ones go to the pool's unscoped report (use
    // `pgscope::spawn` there, or enable `pgscope::scope=debug` in some layer).
    report.assert_queries(1);
    assert_eq!(pool.unscoped_report().queries(), 2);
    assert_log_is_the_applications_own(&log.text());
}

/// Records the names of the spans it is given.
struct SpanNames(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0
            .lock()
            .expect("lock")
            .push(attrs.metadata().name().to_owned());
    }
}
