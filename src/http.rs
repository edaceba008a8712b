//! One scope per HTTP request, for axum, tonic and any tower service.
//!
//! ```no_run
//! # async fn f(pool: pgscope::Pool) {
//! use axum::{Router, routing::get};
//! let app: Router = Router::new()
//!     .route("/api/feed", get(|| async { "feed" }))
//!     .layer(pgscope::http::ScopeLayer::new().server_timing(true));
//! # }
//! ```
//! Each request runs in a scope named by a [`MakeScope`] hook. The default,
//! [`DefaultMakeScope`], names it `METHOD /matched/route` (axum's `MatchedPath`, with the
//! `axum` feature, so `/users/42` and `/users/7` share `GET /users/{id}`), the gRPC method
//! (`/package.Service/Method`) for gRPC requests (tonic), and `METHOD <unmatched>` otherwise,
//! so arbitrary paths cannot create unbounded scope names. When the request ends, a one-line
//! summary is logged at DEBUG (target `pgscope::http`), the [`on_report`](ScopeLayer::on_report)
//! hook sees the report, and with [`server_timing`](ScopeLayer::server_timing) a
//! `Server-Timing: db;dur=…;desc="N queries"` header shows the database time in the browser's
//! network panel.
//!
//! Placed inside tower-http's `TraceLayer` (`router.layer(ScopeLayer::new())
//! .layer(TraceLayer::new_for_http())`: a later `.layer` wraps the earlier ones), the scope
//! uses the request span ([`Scope::use_current_span`]): its summary (`pgscope.queries`,
//! `pgscope.db_time_ms`, …) and N+1 events land on the request span and statement spans are
//! its children. Without a request span, each request gets a `pgscope.scope` span.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;

use crate::report::Report;
use crate::scope::{Capture, OnReport, Scope};

/// Chooses the scope of a request: its name (bounded: a route, not a path) and settings.
///
/// Implemented for [`DefaultMakeScope`] and for closures `Fn(&Request<B>) -> Scope`.
///
/// # Examples
/// ```
/// use pgscope::http::ScopeLayer;
/// // Name scopes by a header your gateway sets, with a tight budget for every request.
/// let layer = ScopeLayer::new().make_scope(|req: &http::Request<()>| {
///     let name = req
///         .headers()
///         .get("x-route")
///         .and_then(|v| v.to_str().ok())
///         .unwrap_or("unknown")
///         .to_owned();
///     pgscope::Scope::new(name).query_budget(50)
/// });
/// ```
pub trait MakeScope<B> {
    /// The scope for `request`.
    fn make_scope(&self, request: &Request<B>) -> Scope;
}

impl<B, F> MakeScope<B> for F
where
    F: Fn(&Request<B>) -> Scope,
{
    fn make_scope(&self, request: &Request<B>) -> Scope {
        self(request)
    }
}

/// The default [`MakeScope`]: `METHOD /matched/route` for axum routes, the method path for gRPC
/// requests, `METHOD <unmatched>` otherwise; optional per-request budget and N+1 threshold.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct DefaultMakeScope {
    query_budget: Option<u32>,
    n_plus_one_threshold: Option<u32>,
}

impl DefaultMakeScope {
    /// By default: names as described above, the pool's budget and N+1 threshold.
    pub fn new() -> Self {
        Self::default()
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

impl<B> MakeScope<B> for DefaultMakeScope {
    fn make_scope(&self, request: &Request<B>) -> Scope {
        let mut scope = Scope::new(Cow::Owned(scope_name(request)));
        if let Some(b) = self.query_budget {
            scope = scope.query_budget(b);
        }
        if let Some(t) = self.n_plus_one_threshold {
            scope = scope.n_plus_one_threshold(t);
        }
        scope
    }
}

/// `METHOD /matched/route` (axum), `/package.Service/Method` (gRPC), or `METHOD <unmatched>`.
fn scope_name<B>(req: &Request<B>) -> String {
    #[cfg(feature = "axum")]
    if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
        return format!("{} {}", req.method(), path.as_str());
    }
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // A gRPC path names a method of a service the server implements: a bounded set, as long
    // as the server rejects unknown methods (tonic does, with `Unimplemented`).
    if grpc {
        return req.uri().path().to_owned();
    }
    format!("{} <unmatched>", req.method())
}

/// Tower layer that runs every request in its own pgscope scope.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// use axum::{Router, routing::get};
/// let app: Router = Router::new()
///     .route("/api/feed", get(|| async { "feed" }))
///     .layer(
///         pgscope::http::ScopeLayer::new()
///             .query_budget(100) // refuse statement 101 of any request
///             .on_report(|r| tracing::info!(route = r.name(), queries = r.queries())),
///     );
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ScopeLayer<M = DefaultMakeScope> {
    make_scope: M,
    server_timing: bool,
    on_report: Option<OnReport>,
}

impl Default for ScopeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: fmt::Debug> fmt::Debug for ScopeLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeLayer")
            .field("make_scope", &self.make_scope)
            .field("server_timing", &self.server_timing)
            .field("on_report", &self.on_report.is_some())
            .finish()
    }
}

impl ScopeLayer {
    /// By default: [`DefaultMakeScope`], no `Server-Timing` header, no report hook.
    pub fn new() -> Self {
        ScopeLayer {
            make_scope: DefaultMakeScope::new(),
            server_timing: false,
            on_report: None,
        }
    }

    /// A query budget for every request, overriding the pool's.
    pub fn query_budget(mut self, budget: u32) -> Self {
        self.make_scope = self.make_scope.query_budget(budget);
        self
    }

    /// An N+1 threshold for every request, overriding the pool's.
    pub fn n_plus_one_threshold(mut self, threshold: u32) -> Self {
        self.make_scope = self.make_scope.n_plus_one_threshold(threshold);
        self
    }
}

impl<M> ScopeLayer<M> {
    /// Chooses each request's scope with `make_scope` instead of [`DefaultMakeScope`].
    pub fn make_scope<N>(self, make_scope: N) -> ScopeLayer<N> {
        ScopeLayer {
            make_scope,
            server_timing: self.server_timing,
            on_report: self.on_report,
        }
    }

    /// Adds `Server-Timing: db;dur=<ms>;desc="<n> queries"` to responses. By default, false
    /// (it reveals timing to clients; enable it in development or for trusted clients).
    pub fn server_timing(mut self, enabled: bool) -> Self {
        self.server_timing = enabled;
        self
    }

    /// Calls `f` with each request's [`Report`] when its scope ends (after the handler
    /// returned its response): to log it, count it, or keep it for a test.
    ///
    /// # Examples
    /// ```
    /// let layer = pgscope::http::ScopeLayer::new().on_report(|report: &pgscope::Report| {
    ///     if report.queries() > 20 {
    ///         eprintln!("{} ran {} queries", report.name(), report.queries());
    ///     }
    /// });
    /// ```
    ///
    /// Called again, it adds a hook: every hook runs, in the order added (print the reports
    /// *and* feed a `console::Console`, say).
    pub fn on_report(mut self, f: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.on_report = Some(crate::scope::add_hook(self.on_report.take(), f));
        self
    }
}

impl<S, M: Clone> tower::Layer<S> for ScopeLayer<M> {
    type Service = ScopeService<S, M>;

    fn layer(&self, inner: S) -> ScopeService<S, M> {
        ScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`ScopeLayer`].
#[derive(Clone)]
pub struct ScopeService<S, M = DefaultMakeScope> {
    inner: S,
    layer: ScopeLayer<M>,
}

impl<S, M: fmt::Debug> fmt::Debug for ScopeService<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, M, ReqBody, ResBody> tower::Service<Request<ReqBody>> for ScopeService<S, M>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: MakeScope<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let scope = self
            .layer
            .make_scope
            .make_scope(&req)
            .use_current_span()
            .on_report_shared(self.layer.on_report.clone());
        ResponseFuture {
            inner: scope.capture(self.inner.call(req)).defer_hook(),
            server_timing: self.layer.server_timing,
        }
    }
}

pin_project! {
    /// The response future of [`ScopeService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Capture<F>,
        server_timing: bool,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (result, mut report) = ready!(this.inner.as_mut().poll(cx));
        let hook = this.inner.take_hook();
        let mut response = match result {
            Ok(response) => response,
            Err(err) => {
                if let Some(hook) = hook {
                    hook(&report);
                }
                return Poll::Ready(Err(err));
            }
        };
        report.set_status(response.status().as_u16());
        if let Some(hook) = hook {
            hook(&report);
        }
        log_summary(&report, response.status().as_u16());
        if *this.server_timing
            && let Ok(value) = HeaderValue::from_str(&report.server_timing())
        {
            response.headers_mut().append("server-timing", value);
        }
        Poll::Ready(Ok(response))
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
        "{} {} — {}, db {:.1} ms, held {:.1} ms, {} N+1",
        report.name(),
        status,
        crate::report::plural(report.queries(), "query", "queries"),
        report.db_time().as_secs_f64() * 1000.0,
        report.connection_hold_time().as_secs_f64() * 1000.0,
        report.n_plus_one().len(),
    );
}
