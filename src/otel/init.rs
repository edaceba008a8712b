//! `pgscope::otel::init()`: OTLP export of traces and metrics configured from the standard
//! environment variables, and a guard that flushes on drop.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

/// Errors from [`try_init`] / [`OtelBuilder::try_init`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` has a value pgscope does not support.
    #[error("unsupported OTEL_EXPORTER_OTLP_PROTOCOL `{0}` (use `grpc` or `http/protobuf`)")]
    UnsupportedProtocol(String),
    /// The exporter could not be built (bad endpoint, no Tokio runtime for gRPC).
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global `tracing` subscriber is already installed; add a `tracing_opentelemetry`
    /// layer to it instead.
    #[error("a global tracing subscriber is already set")]
    SubscriberAlreadySet(#[source] tracing_subscriber::util::TryInitError),
}

/// Configures OTLP export. Every setting defaults to the standard environment variable.
///
/// # Examples
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let _guard = pgscope::otel::OtelBuilder::new()
///     .service_name("feed-api")
///     .export_timeout(std::time::Duration::from_secs(2))
///     .init();
/// // create pools after this, so their metrics use the installed meter provider
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OtelBuilder {
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    service_name: Option<String>,
    export_timeout: Option<Duration>,
    metric_interval: Duration,
    max_queue_size: usize,
    log_filter: Option<String>,
    log_to_stderr: bool,
    export_filter: String,
    context_activation: bool,
    sample_ratio: Option<f64>,
}

impl Default for OtelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OtelBuilder {
    /// Defaults: endpoint, protocol, headers, timeout, service name and resource attributes from
    /// the `OTEL_*` environment variables (`OTEL_SDK_DISABLED=true` turns export off); else a
    /// 5 s export timeout (a collector that hangs cannot hold up shutdown longer); metrics
    /// every 10 s; at most 2048 spans queued (then new spans are dropped rather than growing
    /// memory); human-readable logs on stderr filtered by `RUST_LOG` (default `info`).
    pub fn new() -> Self {
        OtelBuilder {
            endpoint: None,
            protocol: None,
            service_name: None,
            export_timeout: None,
            metric_interval: Duration::from_secs(10),
            max_queue_size: 2048,
            log_filter: None,
            log_to_stderr: true,
            // sqlx logs raw statements (with literals) in its own events: keep them out.
            // Scope spans pgscope opens are DEBUG so they stay out of logs: export them.
            export_filter: "info,sqlx=off,pgscope::scope=debug".to_owned(),
            context_activation: true,
            sample_ratio: None,
        }
    }

    /// OTLP endpoint (base URL, e.g. `http://localhost:4317`). By default,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else `localhost` on the protocol's port.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Transport. By default, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` | `http/protobuf`), else gRPC.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// `service.name`. By default, `OTEL_SERVICE_NAME` (or the SDK's default).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Upper bound on one export and on shutdown. By default, `OTEL_EXPORTER_OTLP_TIMEOUT`
    /// (milliseconds), else 5 s.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    fn effective_timeout(&self) -> Duration {
        self.export_timeout
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
                    .ok()
                    .and_then(|ms| ms.trim().parse().ok())
                    .map(Duration::from_millis)
            })
            .unwrap_or(Duration::from_secs(5))
    }

    fn stderr_filter(&self) -> EnvFilter {
        match &self.log_filter {
            Some(d) => EnvFilter::new(d),
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        }
    }

    /// How often metrics are exported. By default, 10 s.
    pub fn metric_interval(mut self, interval: Duration) -> Self {
        self.metric_interval = interval;
        self
    }

    /// Spans buffered for export before new ones are dropped. By default, 2048.
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.max_queue_size = size;
        self
    }

    /// `EnvFilter` directives for the stderr log (not for export). By default, `RUST_LOG`,
    /// else `info`.
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// `EnvFilter` directives for which `tracing` spans and events are exported. By default,
    /// `info,sqlx=off,pgscope::scope=debug` (sqlx's own events carry raw SQL; the
    /// `pgscope.scope` spans pgscope opens for scopes without a request span are DEBUG, so they
    /// are exported without showing in the log). Keep `pgscope::scope=debug` when you replace it. Statement spans do not go through
    /// `tracing`: see [`PoolOptions::query_spans`](crate::PoolOptions::query_spans) and
    /// [`trace_sample_ratio`](Self::trace_sample_ratio).
    pub fn export_filter(mut self, directives: impl Into<String>) -> Self {
        self.export_filter = directives.into();
        self
    }

    /// Whether entering a `tracing` span also makes its OpenTelemetry context current, for
    /// other OpenTelemetry instrumentation that reads `Context::current()`. By default, true
    /// (as in `tracing-opentelemetry`); turning it off saves work on every poll of an
    /// instrumented future.
    pub fn context_activation(mut self, enabled: bool) -> Self {
        self.context_activation = enabled;
        self
    }

    /// Samples this fraction of traces (`0.0..=1.0`; NaN counts as 0), deciding at the root and
    /// following the parent's decision below it (`parentbased_traceidratio`). Statement spans
    /// of an unsampled trace are not recorded or exported, and cost well under a microsecond.
    /// By default, what `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` say, else every trace.
    ///
    /// # Examples
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// // One request in ten is traced, with all its statements.
    /// let _guard = pgscope::otel::OtelBuilder::new().trace_sample_ratio(0.1).init();
    /// # }
    /// ```
    pub fn trace_sample_ratio(mut self, ratio: f64) -> Self {
        let ratio = if ratio.is_nan() { 0.0 } else { ratio };
        self.sample_ratio = Some(ratio.clamp(0.0, 1.0));
        self
    }

    /// Whether to also print logs to stderr. By default, true.
    pub fn log_to_stderr(mut self, enabled: bool) -> Self {
        self.log_to_stderr = enabled;
        self
    }

    fn protocol_from_env(&self) -> Result<Protocol, OtelError> {
        if let Some(p) = self.protocol {
            return Ok(p);
        }
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok().as_deref() {
            None | Some("") | Some("grpc") => Ok(Protocol::Grpc),
            Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
            Some(other) => Err(OtelError::UnsupportedProtocol(other.to_owned())),
        }
    }

    /// Installs the tracer and meter providers globally and a `tracing` subscriber that exports
    /// spans, and returns the guard that flushes and shuts them down when dropped.
    ///
    /// Needs a Tokio runtime for the gRPC transport.
    ///
    /// # Panics
    /// When [`try_init`](Self::try_init) fails.
    pub fn init(self) -> OtelGuard {
        match self.try_init() {
            Ok(guard) => guard,
            Err(e) => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                panic!("pgscope::otel::init failed: {message}")
            }
        }
    }

    /// Like [`init`](Self::init), returning errors instead of panicking.
    pub fn try_init(self) -> Result<OtelGuard, OtelError> {
        let timeout = self.effective_timeout();
        // `OTEL_SDK_DISABLED=true`: logs as configured, nothing exported, nothing installed.
        let providers = if sdk_disabled(std::env::var("OTEL_SDK_DISABLED").ok().as_deref()) {
            None
        } else {
            Some(self.providers(timeout)?)
        };
        let otel_layer = providers.as_ref().map(|(traces, _)| {
            tracing_opentelemetry::layer()
                .with_tracer(traces.tracer("pgscope"))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                // Busy/idle accounting reads the clock on every poll of every instrumented
                // future.
                .with_tracked_inactivity(false)
                .with_context_activation(self.context_activation)
                .with_filter(EnvFilter::new(&self.export_filter))
        });
        let fmt_layer = self.log_to_stderr.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(self.stderr_filter())
        });
        tracing_subscriber::registry()
            .with(otel_layer)
            .with(fmt_layer)
            .try_init()
            .map_err(OtelError::SubscriberAlreadySet)?;
        Ok(OtelGuard { providers, timeout })
    }

    /// Builds the exporters and providers and installs the providers globally.
    fn providers(
        &self,
        timeout: Duration,
    ) -> Result<(SdkTracerProvider, SdkMeterProvider), OtelError> {
        let protocol = self.protocol_from_env()?;
        // Without an explicit endpoint, the exporters resolve it from the environment the
        // standard way: `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`, else
        // `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces` / `/v1/metrics` over HTTP), else
        // localhost on the protocol's port. Headers (`OTEL_EXPORTER_OTLP_HEADERS`, e.g. an API
        // key) are read by the exporters too.
        let base = self
            .endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_owned());
        let exporter_err = OtelError::Exporter;
        let (spans, metrics) = match protocol {
            Protocol::Grpc => {
                let mut spans = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                if let Some(base) = &base {
                    spans = spans.with_endpoint(base.clone());
                    metrics = metrics.with_endpoint(base.clone());
                }
                (
                    spans.build().map_err(exporter_err)?,
                    metrics.build().map_err(exporter_err)?,
                )
            }
            Protocol::HttpProtobuf => {
                let mut spans = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout);
                let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout);
                if let Some(base) = &base {
                    spans = spans.with_endpoint(format!("{base}/v1/traces"));
                    metrics = metrics.with_endpoint(format!("{base}/v1/metrics"));
                }
                (
                    spans.build().map_err(exporter_err)?,
                    metrics.build().map_err(exporter_err)?,
                )
            }
        };
        let mut resource = Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.build();
        let batch = BatchSpanProcessor::builder(spans)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(self.max_queue_size)
                    .build(),
            )
            .build();
        let mut tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(resource.clone());
        if let Some(ratio) = self.sample_ratio {
            tracer_provider = tracer_provider.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let tracer_provider = tracer_provider.build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(self.metric_interval)
                    .build(),
            )
            .with_resource(resource)
            .build();
        opentelemetry::global::set_tracer_provider(tracer_provider.clone());
        opentelemetry::global::set_meter_provider(meter_provider.clone());
        Ok((tracer_provider, meter_provider))
    }
}

/// `OTEL_SDK_DISABLED`: only `true` (any case) disables, as the specification says.
fn sdk_disabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Flushes and shuts down the providers when dropped, waiting at most the export timeout.
#[must_use = "dropping the guard shuts export down"]
pub struct OtelGuard {
    /// `None` when `OTEL_SDK_DISABLED=true`.
    providers: Option<(SdkTracerProvider, SdkMeterProvider)>,
    timeout: Duration,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelGuard")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// Exports everything recorded so far (spans and metrics) now.
    pub fn flush(&self) {
        if let Some((traces, metrics)) = &self.providers {
            let _ = traces.force_flush();
            let _ = metrics.force_flush();
        }
    }

    /// Whether export is on (false when `OTEL_SDK_DISABLED=true`).
    pub fn is_enabled(&self) -> bool {
        self.providers.is_some()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // Export what is buffered, but never wait on a dead collector past the timeout.
        if let Some((traces, metrics)) = &self.providers {
            let _ = traces.shutdown_with_timeout(self.timeout);
            let _ = metrics.shutdown_with_timeout(self.timeout);
        }
    }
}

/// [`OtelBuilder::new().init()`](OtelBuilder::init): configure from the environment.
///
/// # Panics
/// When the configuration is invalid; see [`try_init`].
///
/// # Examples
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), sqlx::Error> {
/// // OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME, …
/// let _otel = pgscope::otel::init(); // keep the guard: dropping it flushes and shuts down
/// let pool = pgscope::Pool::connect("postgres://localhost/app").await?; // after init
/// # Ok(()) }
/// ```
pub fn init() -> OtelGuard {
    OtelBuilder::new().init()
}

/// [`OtelBuilder::new().try_init()`](OtelBuilder::try_init).
pub fn try_init() -> Result<OtelGuard, OtelError> {
    OtelBuilder::new().try_init()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_disables_the_sdk() {
        assert!(sdk_disabled(Some("true")));
        assert!(sdk_disabled(Some(" TRUE ")));
        for v in [None, Some(""), Some("false"), Some("1"), Some("yes")] {
            assert!(!sdk_disabled(v), "{v:?}");
        }
    }

    #[test]
    fn export_timeout_comes_from_the_builder_else_the_environment_else_five_seconds() {
        let explicit = OtelBuilder::new().export_timeout(Duration::from_millis(1500));
        assert_eq!(explicit.effective_timeout(), Duration::from_millis(1500));
        // The environment is read only when the builder says nothing; this test does not set
        // OTEL_EXPORTER_OTLP_TIMEOUT (other tests in this binary do not either).
        if std::env::var_os("OTEL_EXPORTER_OTLP_TIMEOUT").is_none() {
            assert_eq!(
                OtelBuilder::new().effective_timeout(),
                Duration::from_secs(5)
            );
        }
    }
}
