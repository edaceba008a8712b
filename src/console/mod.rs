//! The request console: a page in the running app that shows what the last requests did to the
//! database, the way rack-mini-profiler, the Django Debug Toolbar and Telescope do.
//!
//! A [`Console`] keeps the last reports it is handed through [`hook`](Console::hook) (the same
//! shape as [`Recorder::hook`](crate::Recorder::hook), so it plugs into
//! [`ScopeLayer::on_report`](crate::http::ScopeLayer::on_report),
//! [`actix::Scopes::on_report`](crate::actix::Scopes::on_report) and
//! [`Scope::on_report`](crate::Scope::on_report)), and [`router`](Console::router) serves them:
//!
//! - `/`: the requests, newest first, with a badge per finding; filter by route and by "has
//!   findings"; auto-refresh that can be paused;
//! - `/requests/{id}`: one request's waterfall (pool waits, connection holds, each statement a
//!   bar on the request's time axis, repeated statements grouped as one row), its findings with
//!   their call sites and the batched statement to use, and the plans explained for its
//!   statements;
//! - `/routes`: per route, requests, p50/p99 statements and hold time, findings, and what the
//!   pool can serve at the hold times measured;
//! - `/pool`: each [watched](Console::watch) pool's size, use, waiters and timeouts over the last
//!   minutes;
//! - `/api/requests`, `/api/requests/{id}`, `/api/routes`, `/api/pool`: the same data as JSON.
//!
//! Pages are server-rendered HTML with one embedded stylesheet and script: no CDN, no build
//! step, nothing fetched from the network. Statements appear normalized, as everywhere in
//! pgscope: literal values never do.
//!
//! **Deny by default.** Every route answers `403` unless [`authorize`](Console::authorize)
//! allows the request, or [`local_only`](Console::local_only) is set and the peer is a loopback
//! address. The console shows your routes, statements and timings: do not open it to the
//! internet.
//!
//! # Examples
//! ```no_run
//! # async fn f(pool: pgscope::Pool) -> std::io::Result<()> {
//! use axum::{Router, routing::get};
//!
//! let console = pgscope::console::Console::new().local_only();
//! console.watch(&pool);
//! let app = Router::new()
//!     .route("/api/feed", get(|| async { "…" }))
//!     .layer(pgscope::http::ScopeLayer::new().on_report(console.hook()))
//!     // http://127.0.0.1:3000/_pgscope (and /_pgscope/, as browsers and people type it)
//!     .merge(console.routes_at("/_pgscope"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // `local_only` needs the peer address: serve with connect info.
//! axum::serve(
//!     listener,
//!     app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await
//! # }
//! ```

mod html;
mod pages;
mod view;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::{Pool, PoolStats, Report};

/// Reports kept by default.
const DEFAULT_CAPACITY: usize = 200;
/// Bytes of reports kept by default (an estimate: names, statements, findings, timelines).
const DEFAULT_MAX_BYTES: usize = 8 << 20;
/// Pools a console watches at most.
const MAX_POOLS: usize = 16;
/// Pool samples kept per pool: five minutes at one per second.
const MAX_SAMPLES: usize = 300;

/// The request console: keeps the last reports and serves them as pages and JSON.
///
/// Cheap to clone: clones share the reports and watched pools. Access rules
/// ([`authorize`](Self::authorize), [`local_only`](Self::local_only)) belong to the value they
/// are set on and to the routers made from it afterwards.
///
/// See the [module docs](self) for the pages and an example.
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
    access: Access,
}

#[derive(Clone)]
enum Access {
    Deny,
    LocalOnly,
    Authorize(Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>),
}

struct Shared {
    store: Mutex<Store>,
    pools: Mutex<Vec<Watched>>,
    /// The second (since the epoch) pools were last sampled in.
    sampled_at: AtomicU64,
}

/// The kept reports, oldest first.
struct Store {
    kept: VecDeque<Kept>,
    bytes: usize,
    next_id: u64,
    capacity: usize,
    max_bytes: usize,
    /// Reports dropped to stay within the bounds.
    evicted: u64,
}

/// One report the console received.
pub(crate) struct Kept {
    pub(crate) id: u64,
    pub(crate) at: SystemTime,
    pub(crate) report: Report,
    bytes: usize,
}

/// A watched pool and its recent samples.
pub(crate) struct Watched {
    pub(crate) pool: Pool,
    pub(crate) samples: VecDeque<Sample>,
    /// The last diagnosis that saw traffic, and the second it was taken in: shown once the
    /// window has emptied (traffic stopped), with its age, instead of an empty table.
    pub(crate) last_busy: Option<(u64, crate::Diagnosis)>,
}

/// One reading of a pool's stats.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: u64,
    pub(crate) stats: PoolStats,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.shared.store.lock();
        f.debug_struct("Console")
            .field("kept", &store.kept.len())
            .field("capacity", &store.capacity)
            .field("max_bytes", &store.max_bytes)
            .field(
                "access",
                &match self.access {
                    Access::Deny => "deny",
                    Access::LocalOnly => "local only",
                    Access::Authorize(_) => "authorize",
                },
            )
            .finish_non_exhaustive()
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A console that keeps the last 200 reports (and at most about 8 MiB of them, oldest
    /// dropped first) and denies every request until [`authorize`](Self::authorize) or
    /// [`local_only`](Self::local_only) says otherwise.
    ///
    /// While it (or a clone) exists, scopes started keep the per-statement timeline
    /// ([`Report::timeline`]) its waterfall needs; without a console nothing is recorded.
    pub fn new() -> Self {
        crate::report::console_created();
        Console {
            shared: Arc::new(Shared {
                store: Mutex::new(Store {
                    kept: VecDeque::new(),
                    bytes: 0,
                    next_id: 1,
                    capacity: DEFAULT_CAPACITY,
                    max_bytes: DEFAULT_MAX_BYTES,
                    evicted: 0,
                }),
                pools: Mutex::new(Vec::new()),
                sampled_at: AtomicU64::new(0),
            }),
            access: Access::Deny,
        }
    }

    /// Keeps the last `reports` reports (by default, 200; at least 1).
    #[must_use]
    pub fn capacity(self, reports: usize) -> Self {
        let mut store = self.shared.store.lock();
        store.capacity = reports.max(1);
        store.trim();
        drop(store);
        self
    }

    /// Keeps at most about `bytes` of reports (by default, 8 MiB), oldest dropped first.
    #[must_use]
    pub fn max_bytes(self, bytes: usize) -> Self {
        let mut store = self.shared.store.lock();
        store.max_bytes = bytes;
        store.trim();
        drop(store);
        self
    }

    /// Serves a request only when `allow` returns true for its head (method, URI, headers,
    /// extensions); every other request gets `403`. Replaces [`local_only`](Self::local_only).
    ///
    /// # Examples
    /// ```
    /// let token = std::env::var("CONSOLE_TOKEN").unwrap_or_default();
    /// let console = pgscope::console::Console::new().authorize(move |parts| {
    ///     !token.is_empty()
    ///         && parts.headers.get("x-console-token").is_some_and(|v| v == token.as_str())
    /// });
    /// ```
    #[must_use]
    pub fn authorize(
        mut self,
        allow: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.access = Access::Authorize(Arc::new(allow));
        self
    }

    /// Serves only requests from a loopback address (`127.0.0.1`, `::1`), read from axum's
    /// `ConnectInfo<SocketAddr>`: serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`. Without connect info every
    /// request is denied. Replaces [`authorize`](Self::authorize).
    #[must_use]
    pub fn local_only(mut self) -> Self {
        self.access = Access::LocalOnly;
        self
    }

    /// A hook that keeps every report it is called with: hand it to
    /// [`ScopeLayer::on_report`](crate::http::ScopeLayer::on_report) (or any `on_report`).
    ///
    /// # Examples
    /// ```
    /// let console = pgscope::console::Console::new();
    /// let layer = pgscope::http::ScopeLayer::new().on_report(console.hook());
    /// ```
    pub fn hook(&self) -> impl Fn(&Report) + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move |report: &Report| shared.keep(report)
    }

    /// Keeps one report (what [`hook`](Self::hook) does).
    pub fn record(&self, report: &Report) {
        self.shared.keep(report);
    }

    /// Adds `pool`'s health (size, use, waiters, timeouts over the last minutes; its
    /// starvation diagnosis) and its explained plans to the pages. Watching a pool twice
    /// changes nothing; at most 16 pools are watched.
    pub fn watch(&self, pool: &Pool) {
        let mut pools = self.shared.pools.lock();
        if pools.len() >= MAX_POOLS || pools.iter().any(|w| Arc::ptr_eq(&w.pool.0, &pool.0)) {
            return;
        }
        pools.push(Watched {
            pool: pool.clone(),
            samples: VecDeque::new(),
            last_busy: None,
        });
        drop(pools);
        self.shared.sample(now_secs(), true);
    }

    /// The pages and JSON served at `prefix`, as an `axum::Router` to merge into the app:
    /// `app.merge(console.routes_at("/_pgscope"))`. Both `/_pgscope` and `/_pgscope/` open the
    /// console (the second redirects to the first; axum's `nest` alone answers it with 404).
    ///
    /// # Examples
    /// ```
    /// let console = pgscope::console::Console::new().local_only();
    /// let app: axum::Router = axum::Router::new().merge(console.routes_at("/_pgscope"));
    /// ```
    pub fn routes_at<S: Clone + Send + Sync + 'static>(&self, prefix: &str) -> axum::Router<S> {
        let prefix = format!("/{}", prefix.trim_matches('/'));
        if prefix == "/" {
            return self.router();
        }
        let target = prefix.clone();
        axum::Router::new().nest(&prefix, self.router()).route(
            &format!("{prefix}/"),
            axum::routing::get(move |uri: axum::http::Uri| {
                let to = match uri.query() {
                    Some(q) => format!("{target}?{q}"),
                    None => target.clone(),
                };
                async move { axum::response::Redirect::to(&to) }
            }),
        )
    }

    /// The pages and JSON as an `axum::Router` for any state, to nest where the app likes:
    /// `app.nest("/_pgscope", console.router())`. Links between pages follow the prefix.
    /// [`routes_at`](Self::routes_at) does this and also answers the prefix with a trailing
    /// slash.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        use axum::routing::get;
        axum::Router::new()
            .route("/", get(serve))
            .route("/requests/{id}", get(serve))
            .route("/routes", get(serve))
            .route("/pool", get(serve))
            .route("/api/requests", get(serve))
            .route("/api/requests/{id}", get(serve))
            .route("/api/routes", get(serve))
            .route("/api/pool", get(serve))
            .fallback(serve)
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// Renders the page or JSON for `path` (as seen under the prefix: `/`, `/requests/3`,
    /// `/api/routes`, …) with `query` (`route=…&findings=1`), links made under `base` (the
    /// prefix the console is mounted at): for frameworks other than axum. Applies no access
    /// rule: check [`allows`](Self::allows) first.
    ///
    /// # Examples
    /// ```
    /// let console = pgscope::console::Console::new();
    /// let page = console.render("/api/requests", "", "/_pgscope");
    /// assert_eq!(page.status(), 200);
    /// assert_eq!(page.content_type(), "application/json");
    /// ```
    pub fn render(&self, path: &str, query: &str, base: &str) -> Page {
        self.shared.sample(now_secs(), false);
        pages::render(self, path, query, base)
    }

    /// Whether the access rules allow a request with this head; `peer` is the client's address
    /// when the framework knows it (for [`local_only`](Self::local_only)).
    pub fn allows(&self, parts: &http::request::Parts, peer: Option<SocketAddr>) -> bool {
        match &self.access {
            Access::Deny => false,
            Access::Authorize(allow) => allow(parts),
            Access::LocalOnly => peer
                .or_else(|| {
                    parts
                        .extensions
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|c| c.0)
                })
                .is_some_and(|addr| addr.ip().is_loopback()),
        }
    }

    /// Runs `f` on the kept reports, oldest first.
    pub(crate) fn with_kept<R>(&self, f: impl FnOnce(&VecDeque<Kept>, u64) -> R) -> R {
        let store = self.shared.store.lock();
        f(&store.kept, store.evicted)
    }

    /// Runs `f` on the watched pools.
    pub(crate) fn with_pools<R>(&self, f: impl FnOnce(&[Watched]) -> R) -> R {
        f(&self.shared.pools.lock())
    }
}

/// A rendered console page or JSON document ([`Console::render`]).
#[derive(Debug, Clone)]
pub struct Page {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Page {
    /// The HTTP status: 200, or 404 for an unknown page or request.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// `text/html; charset=utf-8` or `application/json`.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// The document.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The document, owned.
    pub fn into_body(self) -> String {
        self.body
    }

    pub(crate) fn html(status: u16, body: String) -> Self {
        Page {
            status,
            content_type: "text/html; charset=utf-8",
            body,
        }
    }

    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Self {
        Page {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The pages embed their own style and script, and nothing else.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; base-uri 'none'; form-action 'self'",
            ),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// The access rule, before any route (unknown paths included).
async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if !console.allows(&parts, None) {
        let why = match console.access {
            Access::Deny => {
                "pgscope console: access denied (allow it with Console::authorize or Console::local_only)"
            }
            Access::LocalOnly => {
                "pgscope console: access denied (local_only: loopback peers only; serve the app \
                 with into_make_service_with_connect_info::<SocketAddr>())"
            }
            Access::Authorize(_) => "pgscope console: access denied",
        };
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Every console route: the path under the prefix picks the page.
async fn serve(State(console): State<Console>, request: Request<Body>) -> Response {
    let uri = request.uri();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let base = request
        .extensions()
        .get::<OriginalUri>()
        .map(|original| base_of(original.0.path(), path))
        .unwrap_or_default();
    console.render(path, query, &base).into_response()
}

/// The prefix the console is nested at: the original path minus the path the console sees.
fn base_of(original: &str, nested: &str) -> String {
    let base = if nested == "/" {
        original
    } else {
        original.strip_suffix(nested).unwrap_or("")
    };
    base.trim_end_matches('/').to_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Shared {
    fn keep(&self, report: &Report) {
        let bytes = view::estimated_bytes(report);
        let kept = Kept {
            id: 0,
            at: SystemTime::now(),
            report: report.clone(),
            bytes,
        };
        self.store.lock().push(kept);
        let now = now_secs();
        self.sample(now, false);
        // The pools' diagnosis with this request in it: what the routes page shows once
        // traffic stops and the window empties.
        for watched in self.pools.lock().iter_mut() {
            let diagnosis = watched.pool.diagnose();
            if !diagnosis.scopes().is_empty() {
                watched.last_busy = Some((now, diagnosis));
            }
        }
    }

    /// Samples the watched pools, at most once a second unless `force`.
    fn sample(&self, now: u64, force: bool) {
        if self.sampled_at.swap(now, Ordering::Relaxed) == now && !force {
            return;
        }
        let mut pools = self.pools.lock();
        for watched in pools.iter_mut() {
            if watched.samples.back().is_some_and(|s| s.at == now) {
                watched.samples.pop_back();
            }
            if watched.samples.len() >= MAX_SAMPLES {
                watched.samples.pop_front();
            }
            watched.samples.push_back(Sample {
                at: now,
                stats: watched.pool.stats(),
            });
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::report::console_dropped();
    }
}

impl Store {
    fn push(&mut self, mut kept: Kept) {
        kept.id = self.next_id;
        self.next_id += 1;
        self.bytes += kept.bytes;
        self.kept.push_back(kept);
        self.trim();
    }

    /// Drops the oldest reports until both bounds hold (the newest report always stays).
    fn trim(&mut self) {
        while self.kept.len() > 1
            && (self.kept.len() > self.capacity || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.kept.pop_front() {
                self.bytes -= old.bytes;
                self.evicted += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_the_original_path_minus_the_nested_one() {
        assert_eq!(base_of("/_pgscope/requests/3", "/requests/3"), "/_pgscope");
        assert_eq!(base_of("/_pgscope", "/"), "/_pgscope");
        assert_eq!(base_of("/_pgscope/", "/"), "/_pgscope");
        assert_eq!(base_of("/a/b/api/pool", "/api/pool"), "/a/b");
        assert_eq!(base_of("/", "/"), "");
    }
}
