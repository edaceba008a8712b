//! `ScopeLayer` on a tonic server, over real gRPC: each call runs in a scope named by its gRPC
//! method, and the report reaches the test through a `Recorder`.

mod common;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// A gRPC service (the OTLP trace service, for its generated code) that stores each export with
/// one statement per resource, the N+1 way.
struct Store(pgscope::Pool);

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for (i, _) in request.get_ref().resource_spans.iter().enumerate() {
            sqlx::query("SELECT $1::bigint AS stored_resource")
                .bind(i as i64)
                .execute(&self.0)
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_grpc_call_is_a_scope_named_by_its_method() {
    let pool = pgscope::Pool::connect_with(common::schema("tonic_layer").await)
        .await
        .expect("connect");
    let recorder = pgscope::Recorder::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server = tonic::transport::Server::builder()
        .layer(pgscope::http::ScopeLayer::new().on_report(recorder.hook()))
        .add_service(TraceServiceServer::new(Store(pool.clone())))
        .serve_with_incoming(incoming);
    tokio::spawn(async move { server.await.expect("grpc server") });

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("client");
    for resources in [2usize, 7] {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![Default::default(); resources],
        };
        client.export(request).await.expect("export");
        let method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        let report = recorder.last(method);
        report.assert_queries(resources as u64);
        assert_eq!(
            report.n_plus_one().len(),
            usize::from(resources > 5),
            "{report}"
        );
    }
    assert_eq!(
        recorder
            .all("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            .len(),
        2
    );
    assert_eq!(pool.unscoped_report().queries(), 0);
}
