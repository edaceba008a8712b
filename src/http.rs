//! One scope per HTTP request, for axum and any tower service.
//!
//! ```no_run
//! # async fn f(pool: pgscope::Pool) {
//! use axum::{Router, routing::get};
//! let app: Router = Router::new()
//!     .route("/api/feed", get(|| async { "feed" }))
//!     .layer(pgscope::http::ScopeLayer::new().server_timing(true));
//! # }
//! ```
//! Each request runs in a scope named `METHOD /matched/route` (axum's `MatchedPath`, so
//! `/users/42` and `/users/7` share `GET /users/{id}`); requests no route matched share
//! `METHOD <unmatched>`, so arbitrary paths cannot create unbounded scope names. When the
//! request ends, a one-line summary is logged at DEBUG (target `pgscope::http`), and with
//! [`server_timing`](ScopeLayer::server_timing) a `Server-Timing: db;dur=…;desc="N queries"`
//! header shows the database time in the browser's network panel.
//!
//! Placed inside tower-http's `TraceLayer` (`router.layer(ScopeLayer::new())
//! .layer(TraceLayer::new_for_http())`: a later `.layer` wraps the earlier ones), the scope
//! uses the request span ([`Scope::use_current_span`](crate::Scope::use_current_span)): its
//! summary (`pgscope.queries`, `pgscope.db_time_ms`, …) and N+1 events land on the request span
//! and statement spans are its children. Without a request span, each request gets a
//! `pgscope.scope` span.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{HeaderValue, Request, Response};

use crate::scope::Scope;
use crate::report::Report;

/// Tower layer that runs every request in its own pgscope scope.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ScopeLayer {
    server_timing: bool,
    query_budget: Option<u32>,
    n_plus_one_threshold: Option<u32>,
}

impl ScopeLayer {
    /// By default: no `Server-Timing` header, the pool's budget and N+1 threshold.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `Server-Timing: db;dur=<ms>;desc="<n> queries"` to responses. By default, false
    /// (it reveals timing to clients; enable it in development or for trusted clients).
    pub fn server_timing(mut self, enabled: bool) -> Self {
        self.server_timing = enabled;
        self
    }

    /// A query budget for every request, overriding the pool's.
    pub fn query_budget(mut self, budget: u32) -> Self {
        self.query_budget = Some(budget);
        self
    }

    /// An N+1 threshold for every request, overriding the pool's.
    pub fn n_plus_one_threshold(mut self, threshold: u32) -> Self {
        self.n_plus_one_threshold = Some(threshold);
        self
    }
}

impl<S> tower::Layer<S> for ScopeLayer {
    type Service = ScopeService<S>;

    fn layer(&self, inner: S) -> ScopeService<S> {
        ScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`ScopeLayer`].
#[derive(Clone)]
pub struct ScopeService<S> {
    inner: S,
    layer: ScopeLayer,
}

impl<S> fmt::Debug for ScopeService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

/// The scope name of a request: `METHOD /matched/route`, or `METHOD <unmatched>`.
pub fn scope_name<B>(req: &Request<B>) -> String {
    match req.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", req.method(), path.as_str()),
        None => format!("{} <unmatched>", req.method()),
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for ScopeService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let name = scope_name(&req);
        let mut scope = Scope::new(Cow::Owned(name)).use_current_span();
        if let Some(b) = self.layer.query_budget {
            scope = scope.query_budget(b);
        }
        if let Some(t) = self.layer.n_plus_one_threshold {
            scope = scope.n_plus_one_threshold(t);
        }
        let server_timing = self.layer.server_timing;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (result, report) = scope.capture(fut).await;
            let mut response = result?;
            log_summary(&report, response.status().as_u16());
            if server_timing && let Ok(value) = HeaderValue::from_str(&server_timing_value(&report))
            {
                response.headers_mut().append("server-timing", value);
            }
            Ok(response)
        })
    }
}

fn log_summary(report: &Report, status: u16) {
    tracing::debug!(
        target: "pgscope::http",
        route = report.name(),
        status,
        queries = report.queries(),
        db_ms = report.db_time().as_secs_f64() * 1000.0,
        hold_ms = report.connection_hold_time().as_secs_f64() * 1000.0,
        pool_wait_ms = report.pool_wait_time().as_secs_f64() * 1000.0,
        n_plus_one = report.n_plus_one().len(),
        "{} {} — {} queries, db {:.1} ms, held {:.1} ms, {} N+1",
        report.name(),
        status,
        report.queries(),
        report.db_time().as_secs_f64() * 1000.0,
        report.connection_hold_time().as_secs_f64() * 1000.0,
        report.n_plus_one().len(),
    );
}

/// `db;dur=12.3;desc="21 queries"`
pub fn server_timing_value(report: &Report) -> String {
    let n = report.queries();
    format!(
        "db;dur={:.1};desc=\"{} quer{}\"",
        report.db_time().as_secs_f64() * 1000.0,
        n,
        if n == 1 { "y" } else { "ies" }
    )
}
