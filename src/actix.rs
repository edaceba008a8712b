//! One scope per request for actix-web: [`Scopes`], a middleware.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! # async fn f(pool: pgscope::Pool) -> std::io::Result<()> {
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(web::Data::new(pool.clone()))
//!         .wrap(pgscope::actix::Scopes::new().server_timing(true))
//!         .route("/users/{id}", web::get().to(|| async { "user" }))
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await
//! # }
//! ```
//! Each request runs in a scope named `METHOD /route/{pattern}` (actix-web's match pattern,
//! so `/users/42` and `/users/7` share `GET /users/{id}`), or `METHOD <unmatched>`; the N+1
//! rules, query budgets and nested-acquire checks apply to it. When it ends, the `on_report`
//! hook sees the report and, with [`server_timing`](Scopes::server_timing), the response gets a
//! `Server-Timing: db;dur=…;desc="N queries"` header.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;

use crate::report::Report;
use crate::scope::{Capture, OnReport, Scope};

/// actix-web middleware that runs every request in its own pgscope scope.
///
/// # Examples
/// ```
/// let recorder = pgscope::Recorder::new();
/// let scopes = pgscope::actix::Scopes::new()
///     .query_budget(100)
///     .on_report(recorder.hook());
/// let app = actix_web::App::new().wrap(scopes);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Scopes {
    server_timing: bool,
    query_budget: Option<u32>,
    n_plus_one_threshold: Option<u32>,
    on_report: Option<OnReport>,
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scopes")
            .field("server_timing", &self.server_timing)
            .field("query_budget", &self.query_budget)
            .field("n_plus_one_threshold", &self.n_plus_one_threshold)
            .field("on_report", &self.on_report.is_some())
            .finish()
    }
}

impl Scopes {
    /// By default: no `Server-Timing` header, the pool's budget and N+1 threshold, no hook.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `Server-Timing: db;dur=<ms>;desc="<n> queries"` to responses. By default, false
    /// (it reveals timing to clients).
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

    /// Calls `f` with each request's [`Report`] when its scope ends, before the response
    /// leaves (a [`Recorder`](crate::Recorder)'s hook, logging, metrics).
    ///
    /// Called again, it adds a hook: every hook runs, in the order added (print the reports
    /// *and* feed a `console::Console`, say).
    pub fn on_report(mut self, f: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.on_report = Some(crate::scope::add_hook(self.on_report.take(), f));
        self
    }

    fn scope(&self, req: &ServiceRequest) -> Scope {
        let name = match req.match_pattern() {
            Some(pattern) => format!("{} {pattern}", req.method()),
            None => format!("{} <unmatched>", req.method()),
        };
        let mut scope = Scope::new(name).use_current_span();
        if let Some(b) = self.query_budget {
            scope = scope.query_budget(b);
        }
        if let Some(t) = self.n_plus_one_threshold {
            scope = scope.n_plus_one_threshold(t);
        }
        scope
    }
}

impl<S, B> Transform<S, ServiceRequest> for Scopes
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = ScopesMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<ScopesMiddleware<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ScopesMiddleware {
            service: Rc::new(service),
            config: self.clone(),
        }))
    }
}

/// The service [`Scopes`] wraps around the application.
pub struct ScopesMiddleware<S> {
    service: Rc<S>,
    config: Scopes,
}

impl<S> fmt::Debug for ScopesMiddleware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopesMiddleware")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for ScopesMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = ResponseFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let scope = self
            .config
            .scope(&req)
            .on_report_shared(self.config.on_report.clone());
        ResponseFuture {
            inner: scope.capture(self.service.call(req)).defer_hook(),
            server_timing: self.config.server_timing,
        }
    }
}

pin_project! {
    /// The response future of [`ScopesMiddleware`].
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

impl<F, B> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = Result<ServiceResponse<B>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (result, mut report) = std::task::ready!(this.inner.as_mut().poll(cx));
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
        if *this.server_timing
            && let Ok(value) = HeaderValue::from_str(&report.server_timing())
        {
            response
                .headers_mut()
                .append(HeaderName::from_static("server-timing"), value);
        }
        Poll::Ready(Ok(response))
    }
}
