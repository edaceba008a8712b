//! Detection rules: N+1 (one fingerprint repeated inside one scope), query budgets, and one
//! scope holding several connections at once.
//!
//! The rules run on the query's start path under the scope's lock and cost a few comparisons;
//! everything expensive (a backtrace for the call site, formatting the warning) happens only
//! when a rule fires, once per (scope, fingerprint).

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::fingerprint::Fingerprint;

/// What to do when a rule fires.
///
/// By default, [`Mode::Warn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Do not check.
    Off,
    /// Record it in the scope's report and emit a `tracing` WARN event.
    #[default]
    Warn,
    /// Like `Warn`, and the query that crosses the threshold fails with
    /// [`Error::NPlusOne`](crate::Error::NPlusOne) instead of running.
    Error,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    pub(crate) fingerprints: Vec<u64>,
    pub(crate) call_sites: Vec<String>,
}

impl Allowlist {
    pub(crate) fn allows_fingerprint(&self, id: u64) -> bool {
        self.fingerprints.contains(&id)
    }

    pub(crate) fn allows_site(&self, site: &str) -> bool {
        self.call_sites.iter().any(|s| site.contains(s.as_str()))
    }
}

/// Detection settings of a pool (scopes may override them).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) n_plus_one_threshold: u32,
    pub(crate) n_plus_one_mode: Mode,
    pub(crate) n_plus_one_writes: bool,
    pub(crate) query_budget: Option<u32>,
    pub(crate) nested_acquire_mode: Mode,
    pub(crate) record_raw_sql: bool,
    pub(crate) statement_spans: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            // Five lookups of the same shape in one request is where batching starts to pay
            // and where real N+1s (one per list item) are already unmistakable.
            n_plus_one_threshold: 5,
            n_plus_one_mode: Mode::Warn,
            // Repeated INSERT/UPDATE in a loop is usually a deliberate write path; opt in.
            n_plus_one_writes: false,
            query_budget: None,
            nested_acquire_mode: Mode::Warn,
            record_raw_sql: false,
            statement_spans: true,
        }
    }
}

/// One N+1 finding: a statement repeated past the threshold inside one scope.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NPlusOne {
    pub(crate) scope: String,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) count: u64,
    pub(crate) threshold: u32,
    pub(crate) call_site: String,
}

impl NPlusOne {
    /// The repeated statement's fingerprint (its normalized text is the SQL to look at).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// How many times the statement ran in the scope (at detection time in a warning, at the
    /// end of the scope in a [`Report`](crate::Report)).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The threshold that was crossed.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// `file:line` of the first frame in your code (outside pgscope, sqlx, tokio and std) that
    /// ran the query that crossed the threshold. Needs line tables in the binary (debug builds
    /// have them; for release add `debug = "line-tables-only"` to `[profile.release]`);
    /// `<unknown>` without them.
    pub fn call_site(&self) -> &str {
        &self.call_site
    }

    /// The scope (route) it happened in.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for NPlusOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "N+1 in {}: {}x `{}` from {} (fix: load them in one query with `= ANY($1)` or a JOIN)",
            self.scope,
            self.count,
            self.fingerprint.normalized(),
            self.call_site
        )
    }
}

/// One scope holding a second connection while it already holds one: under pool pressure every
/// request can end up holding one connection and waiting for another, a deadlock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NestedAcquire {
    pub(crate) scope: String,
    pub(crate) held_at: String,
    pub(crate) acquired_at: String,
}

impl NestedAcquire {
    /// Where the connection that was already held had been acquired.
    pub fn held_at(&self) -> &str {
        &self.held_at
    }

    /// Where the second connection was acquired.
    pub fn acquired_at(&self) -> &str {
        &self.acquired_at
    }

    /// The scope (route) it happened in.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl fmt::Display for NestedAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scope {} acquired a second connection at {} while holding one acquired at {}",
            self.scope, self.acquired_at, self.held_at
        )
    }
}

pub(crate) fn location(loc: &Location<'_>) -> String {
    format!("{}:{}", loc.file(), loc.line())
}

/// Crate prefixes whose frames are machinery, not the user's code.
const SKIP_SYMBOLS: &[&str] = &[
    "pgscope::",
    "sqlx_core::",
    "sqlx_postgres::",
    "sqlx::",
    "tokio::",
    "std::",
    "core::",
    "alloc::",
    "futures_util::",
    "futures_core::",
    "async_stream::",
    "tracing::",
    "tracing_core::",
    "tracing_subscriber::",
    "tower::",
    "axum::",
    "hyper::",
    "__rust",
];

fn is_machinery(symbol: &str) -> bool {
    // `<core::pin::Pin<P> as Future>::poll`, `<&mut pgscope::Connection as Executor>::…`: judge
    // by the implementing type.
    let ty = symbol
        .trim_start_matches(['<', '&'])
        .trim_start_matches("mut ")
        .trim_start_matches("dyn ");
    SKIP_SYMBOLS.iter().any(|p| ty.starts_with(p))
}

/// Resolved call sites by stack shape. An N+1 endpoint fires once per request, so the same
/// stack comes back again and again: unwinding (microseconds) happens each time, symbol
/// resolution (milliseconds) once per distinct stack.
const SITE_CACHE_CAPACITY: usize = 4096;

fn site_cache() -> &'static dashmap::DashMap<u64, Arc<str>> {
    static CACHE: std::sync::OnceLock<dashmap::DashMap<u64, Arc<str>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(dashmap::DashMap::new)
}

/// Loads the binary's debug info for symbol resolution on a background thread, once, so the
/// first N+1 found does not pay for it (tens to hundreds of milliseconds) while it holds a
/// connection.
pub(crate) fn prewarm_symbols() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("pgscope-symbols".into())
            .spawn(|| {
                let ip = prewarm_symbols as *const () as *mut std::ffi::c_void;
                backtrace::resolve(ip, |_| {});
            });
    });
}

/// `file:line` of the first stack frame outside pgscope, sqlx, tokio and the standard library.
/// Walks the stack: call it only when a rule fires.
pub(crate) fn call_site() -> String {
    const MAX_FRAMES: usize = 128;
    let mut frames = Vec::with_capacity(64);
    backtrace::trace(|frame| {
        frames.push(frame.clone());
        frames.len() < MAX_FRAMES
    });
    let mut ips = Vec::with_capacity(frames.len() * 8);
    for f in &frames {
        ips.extend_from_slice(&(f.ip() as usize).to_le_bytes());
    }
    let key = xxhash_rust::xxh3::xxh3_64(&ips);
    if let Some(site) = site_cache().get(&key) {
        return site.to_string();
    }
    let site: Arc<str> = resolve_site(&frames).into();
    let cache = site_cache();
    if cache.len() >= SITE_CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(key, Arc::clone(&site));
    site.to_string()
}

/// Paths relative to the working directory when under it (`src/feed.rs`, as in compiler
/// messages), absolute otherwise.
fn relative(file: &str) -> &str {
    let file = file.trim_start_matches("./");
    let cwd = std::env::current_dir().ok();
    match cwd
        .as_ref()
        .and_then(|d| d.to_str())
        .and_then(|d| file.strip_prefix(d))
    {
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => file,
    }
}

fn resolve_site(frames: &[backtrace::Frame]) -> String {
    for frame in frames {
        let mut found = None;
        // Inlined functions give several symbols per frame, innermost first.
        backtrace::resolve_frame(frame, |symbol| {
            if found.is_some() {
                return;
            }
            let (Some(name), Some(file), Some(line)) =
                (symbol.name(), symbol.filename(), symbol.lineno())
            else {
                return;
            };
            let name = format!("{name:#}");
            let file = file.to_string_lossy();
            if !is_machinery(&name) && !file.contains("/.cargo/") && !file.starts_with("/rustc/") {
                found = Some(format!("{}:{line}", relative(&file)));
            }
        });
        if let Some(site) = found {
            return site;
        }
    }
    "<unknown>".to_owned()
}

pub(crate) fn emit_n_plus_one(item: &NPlusOne) {
    tracing::warn!(
        target: "pgscope::n_plus_one",
        scope = %item.scope,
        fingerprint = %item.fingerprint.hex(),
        statement = %item.fingerprint.normalized(),
        count = item.count,
        threshold = item.threshold,
        call_site = %item.call_site,
        "N+1 query: the same statement ran {} times in {}; batch it with `= ANY($1)` or a JOIN",
        item.count,
        item.scope,
    );
}

pub(crate) fn emit_nested(item: &NestedAcquire) {
    tracing::warn!(
        target: "pgscope::nested_acquire",
        scope = %item.scope,
        held_at = %item.held_at,
        acquired_at = %item.acquired_at,
        "scope holds two connections at once; under pool pressure this can deadlock",
    );
}
