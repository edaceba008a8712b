//! An in-process OTLP receiver for tests: gRPC (tonic) and HTTP/protobuf (axum), decoding with
//! the official `opentelemetry-proto` types and keeping the raw bytes of every request.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Default, Clone)]
pub struct Store {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub raw: Arc<Mutex<Vec<u8>>>,
    /// (path, header name, value) of every HTTP request.
    pub headers: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Store {
    pub fn spans(&self) -> Vec<Span> {
        let traces = self.traces.lock().expect("lock");
        traces
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    /// (instrumentation scope name, version, schema URL) of the scope that exported the span
    /// with this id.
    pub fn span_scope(&self, span_id: &[u8]) -> Option<(String, String, String)> {
        let traces = self.traces.lock().expect("lock");
        traces
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .find(|ss| ss.spans.iter().any(|s| s.span_id == span_id))
            .map(|ss| {
                let scope = ss.scope.clone().unwrap_or_default();
                (scope.name, scope.version, ss.schema_url.clone())
            })
    }

    pub fn metrics(&self) -> Vec<Metric> {
        let metrics = self.metrics.lock().expect("lock");
        metrics
            .iter()
            .flat_map(|r| r.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter().cloned())
            .collect()
    }

    pub fn raw_contains(&self, needle: &str) -> bool {
        let raw = self.raw.lock().expect("lock");
        raw.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    pub fn service_names(&self) -> Vec<String> {
        let traces = self.traces.lock().expect("lock");
        traces
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .filter_map(|rs| rs.resource.as_ref())
            .filter_map(|r| attr(&r.attributes, "service.name"))
            .collect()
    }

    /// Waits until `pred` holds, up to `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Store) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if pred(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pred(self)
    }

    fn keep(&self, bytes: &[u8]) {
        self.raw.lock().expect("lock").extend_from_slice(bytes);
    }
}

/// Panics when a span carries an attribute key twice (OpenTelemetry keys are unique).
pub fn assert_unique_keys(span: &Span) {
    let mut keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    let all = keys.len();
    keys.dedup();
    assert_eq!(
        all,
        keys.len(),
        "span `{}` repeats a key: {keys:?}",
        span.name
    );
}

/// The statement spans whose `db.query.text` contains `marker`.
pub fn statements<'a>(spans: &'a [Span], marker: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| attr(&s.attributes, "db.query.text").is_some_and(|t| t.contains(marker)))
        .collect()
}

/// The one statement span whose `db.query.text` contains `marker`.
pub fn statement<'a>(spans: &'a [Span], marker: &str) -> &'a Span {
    match statements(spans, marker).as_slice() {
        [one] => one,
        found => panic!("{} statement spans contain `{marker}`, not 1", found.len()),
    }
}

/// The span that carries the summary of the scope called `scope`.
pub fn summary_span<'a>(spans: &'a [Span], scope: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| attr(&s.attributes, "pgscope.scope").as_deref() == Some(scope))
        .unwrap_or_else(|| panic!("no span carries the summary of `{scope}`"))
}

/// The span called `name`.
pub fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span named `{name}`"))
}

pub fn value_string(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_string)
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        self.0.keep(&req.encode_to_vec());
        self.0.traces.lock().expect("lock").push(req);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        self.0.keep(&req.encode_to_vec());
        self.0.metrics.lock().expect("lock").push(req);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts a gRPC OTLP receiver on an ephemeral loopback port.
pub async fn start_grpc() -> (SocketAddr, Store) {
    let store = Store::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = tokio_stream_from(listener);
    let (t, m) = (Grpc(store.clone()), Grpc(store.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(t))
            .add_service(MetricsServiceServer::new(m))
            .serve_with_incoming(incoming)
            .await
            .expect("grpc server");
    });
    (addr, store)
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    })
}

/// Starts an HTTP/protobuf OTLP receiver on an ephemeral loopback port.
pub async fn start_http() -> (SocketAddr, Store) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::post;
    let store = Store::default();
    fn keep_headers(store: &Store, path: &str, headers: &axum::http::HeaderMap) {
        let mut kept = store.headers.lock().expect("lock");
        for (name, value) in headers {
            kept.push((
                path.to_owned(),
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    async fn traces(
        State(store): State<Store>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> Vec<u8> {
        keep_headers(&store, "/v1/traces", &headers);
        store.keep(&body);
        match ExportTraceServiceRequest::decode(body.as_ref()) {
            Ok(req) => store.traces.lock().expect("lock").push(req),
            Err(e) => panic!("undecodable trace export: {e}"),
        }
        ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec()
    }
    async fn metrics(
        State(store): State<Store>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> Vec<u8> {
        keep_headers(&store, "/v1/metrics", &headers);
        store.keep(&body);
        match ExportMetricsServiceRequest::decode(body.as_ref()) {
            Ok(req) => store.metrics.lock().expect("lock").push(req),
            Err(e) => panic!("undecodable metrics export: {e}"),
        }
        ExportMetricsServiceResponse {
            partial_success: None,
        }
        .encode_to_vec()
    }
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("http server") });
    (addr, store)
}
