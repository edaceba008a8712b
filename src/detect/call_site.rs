//! Where in the user's code a finding happened: the first stack frame outside pgscope, sqlx,
//! tokio and the standard library, resolved to `file:line`.

use std::panic::Location;
use std::sync::Arc;

pub(crate) fn location(loc: &Location<'_>) -> String {
    format!("{}:{}", package_relative(loc.file()), loc.line())
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
    "h2::",
    "tonic::",
    "tower_http::",
    "actix_web::",
    "actix_http::",
    "actix_rt::",
    "actix_server::",
    "sea_orm::",
    "sea_query::",
    "tracing_futures::",
    "futures::",
    "backtrace::",
    "dashmap::",
    "xxhash_rust::",
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

/// Resolved call sites by stack shape: resolution (milliseconds the first time, for the
/// binary's debug info) happens once per distinct stack.
const SITE_CACHE_CAPACITY: usize = 4096;

fn site_cache() -> &'static dashmap::DashMap<u64, Arc<str>> {
    static CACHE: std::sync::OnceLock<dashmap::DashMap<u64, Arc<str>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(dashmap::DashMap::new)
}

const MAX_FRAMES: usize = 128;

/// Where in the user's code a finding happened.
///
/// Captured on the statement's path as the stack's instruction pointers (a stack walk, a few
/// microseconds, no symbol lookup), and resolved to `file:line` (or a function path, without
/// line tables) the first time it is read, once per distinct stack: off the statement's path.
#[derive(Clone)]
pub(crate) struct CallSite(Arc<Site>);

struct Site {
    key: u64,
    ips: Box<[usize]>,
    resolved: std::sync::OnceLock<Arc<str>>,
}

impl CallSite {
    /// The caller's stack, unresolved (already resolved when the same stack was seen before).
    pub(crate) fn capture() -> Self {
        let mut ips = Vec::with_capacity(64);
        backtrace::trace(|frame| {
            ips.push(frame.ip() as usize);
            ips.len() < MAX_FRAMES
        });
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for ip in &ips {
            hasher.update(&ip.to_le_bytes());
        }
        let key = hasher.digest();
        let resolved = std::sync::OnceLock::new();
        if let Some(site) = site_cache().get(&key) {
            let _ = resolved.set(Arc::clone(&site));
        }
        CallSite(Arc::new(Site {
            key,
            ips: ips.into(),
            resolved,
        }))
    }

    /// A site known by its source location (`#[track_caller]`).
    pub(crate) fn at(loc: &Location<'_>) -> Self {
        Self::known(&location(loc))
    }

    /// A site already known by its text.
    pub(crate) fn known(site: &str) -> Self {
        let resolved = std::sync::OnceLock::new();
        let _ = resolved.set(Arc::from(site));
        CallSite(Arc::new(Site {
            key: 0,
            ips: Box::new([]),
            resolved,
        }))
    }

    /// Whether two sites are the same place: the same stack, else the same text.
    pub(crate) fn same(&self, other: &CallSite) -> bool {
        if self.0.key != 0 && self.0.key == other.0.key {
            return true;
        }
        self.get() == other.get()
    }

    /// Whether reading it costs nothing more.
    pub(crate) fn is_resolved(&self) -> bool {
        self.0.resolved.get().is_some()
    }

    /// `file:line` of the first frame in the user's code; resolved now if it was not.
    pub(crate) fn get(&self) -> &str {
        self.0.resolved.get_or_init(|| {
            let site = &self.0;
            if let Some(found) = site_cache().get(&site.key) {
                return Arc::clone(&found);
            }
            let resolved: Arc<str> = resolve(&site.ips).into();
            let cache = site_cache();
            if cache.len() >= SITE_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(site.key, Arc::clone(&resolved));
            resolved
        })
    }
}

impl std::fmt::Debug for CallSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl std::fmt::Display for CallSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

/// The call site of a finding of kind `kind` (N+1 or duplicate) in scope `route` on statement
/// `fingerprint`: the one found the first time this triple crossed the threshold. An N+1
/// endpoint finds its N+1 on every request; after the first, it costs a map lookup instead of
/// a stack walk. (A finding is reported once per scope and statement, so a route that repeats
/// the statement from two places reports the first, as within one scope.)
pub(crate) fn call_site_for(route: &str, fingerprint: u64, kind: u64) -> CallSite {
    let seen = seen();
    let key = xxhash_rust::xxh3::xxh3_64_with_seed(route.as_bytes(), fingerprint ^ kind);
    if let Some(site) = seen.get(&key) {
        return site.clone();
    }
    let site = CallSite::capture();
    if seen.len() >= SITE_CACHE_CAPACITY {
        seen.clear();
    }
    seen.insert(key, site.clone());
    site
}

fn seen() -> &'static dashmap::DashMap<u64, CallSite> {
    static SEEN: std::sync::OnceLock<dashmap::DashMap<u64, CallSite>> = std::sync::OnceLock::new();
    SEEN.get_or_init(dashmap::DashMap::new)
}

/// The call site already found and resolved for statement `fingerprint` in scope `route` (by
/// an N+1, duplicate or held-idle finding), if any: never a stack walk.
#[cfg_attr(not(feature = "pool"), allow(dead_code))]
pub(crate) fn resolved_call_site(route: &str, fingerprint: u64) -> Option<Arc<str>> {
    let seen = seen();
    [1, 2, 3].into_iter().find_map(|kind| {
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(route.as_bytes(), fingerprint ^ kind);
        let site = seen.get(&key)?;
        site.0.resolved.get().cloned()
    })
}

/// A source path as pgscope shows it, whatever the working directory: relative to the root of
/// the package that holds the file (`src/feed.rs`, a workspace member's `src/…`), else the path
/// as compiled.
///
/// Paths come two ways: `#[track_caller]` locations carry the path rustc was given (relative to
/// the workspace root, `member/src/x.rs`; absolute for dependencies), stack frames the path from
/// the debug info (absolute). The package root is the nearest directory above the file with a
/// `Cargo.toml` when the sources are on this machine; without them (a deployed binary), the
/// part from the last `src/` (or `tests/`, `examples/`, `benches/`) directory on.
pub(crate) fn package_relative(file: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let file = file.trim_start_matches("./");
    if file.starts_with('/')
        && let Some(root) = package_root(file)
        && let Some(rest) = file.strip_prefix(root.as_str())
        && let Some(rest) = rest.strip_prefix('/')
    {
        return Cow::Owned(rest.to_owned());
    }
    const TOP: [&str; 4] = ["src/", "tests/", "examples/", "benches/"];
    if TOP.iter().any(|t| file.starts_with(t)) {
        return Cow::Borrowed(file);
    }
    let cut = ["/src/", "/tests/", "/examples/", "/benches/"]
        .iter()
        .find_map(|m| file.rfind(m));
    match cut {
        Some(at) => Cow::Borrowed(&file[at + 1..]),
        None => Cow::Borrowed(file),
    }
}

/// The nearest directory above the absolute path `file` that holds a `Cargo.toml`, cached per
/// directory (the cache is capped: cleared when full).
fn package_root(file: &str) -> Option<String> {
    static ROOTS: std::sync::OnceLock<
        parking_lot::Mutex<std::collections::HashMap<String, Option<String>>>,
    > = std::sync::OnceLock::new();
    let dir = std::path::Path::new(file).parent()?;
    let key = dir.to_str()?.to_owned();
    let roots = ROOTS.get_or_init(Default::default);
    if let Some(found) = roots.lock().get(&key) {
        return found.clone();
    }
    let found = dir
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file())
        .and_then(|d| d.to_str())
        .map(str::to_owned);
    let mut roots = roots.lock();
    if roots.len() >= 1024 {
        roots.clear();
    }
    roots.insert(key, found.clone());
    found
}

/// Source files that are not the user's: dependencies (the cargo registry, git checkouts),
/// the standard library, and pgscope's own sources (by path: inlined frames carry only a short
/// function name, `start` or `fetch_optional<…>`, which says nothing about the crate).
fn is_machinery_file(file: &str) -> bool {
    const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    file.contains("/.cargo/") || file.starts_with("/rustc/") || file.starts_with(OWN_SOURCES)
}

/// Without line tables, what is shown: the function, and how to get the line.
const NO_LINE_TABLES: &str =
    "(no line tables: set `debug = \"line-tables-only\"` in [profile.release] for file:line)";

/// A function path without closure and generic noise: `my_app::routes::feed`.
fn function_path(demangled: &str) -> &str {
    let mut name = demangled;
    while let Some(rest) = name.strip_suffix("::{{closure}}") {
        name = rest;
    }
    name
}

/// The first frame in the user's code: `file:line` where line tables say where it is;
/// without them, the first Rust function outside the machinery (with a note); frames of C code
/// (the C runtime, libc) are never the answer. `<unknown: symbols stripped>` when no frame
/// has a symbol at all.
fn resolve(ips: &[usize]) -> String {
    let mut function = None;
    let mut any_symbol = false;
    for &ip in ips {
        let mut found = None;
        // Inlined functions give several symbols per frame, innermost first.
        backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
            if found.is_some() {
                return;
            }
            let Some(name) = symbol.name() else {
                return;
            };
            any_symbol = true;
            let name = format!("{name:#}");
            if is_machinery(&name) {
                return;
            }
            match (symbol.filename(), symbol.lineno()) {
                // Rust source only: the C runtime's frames (`libc_start_call_main.h`) have
                // line tables too, and are never the answer.
                (Some(file), Some(line)) => {
                    let file = file.to_string_lossy();
                    if file.ends_with(".rs") && !is_machinery_file(&file) {
                        found = Some(format!("{}:{line}", package_relative(&file)));
                    }
                }
                // No line tables: the first Rust function (a path, `::`; `main`, `_start`
                // and `__libc_start_call_main` are C's) outside the machinery.
                _ => {
                    if function.is_none() && name.contains("::") {
                        function = Some(function_path(&name).to_owned());
                    }
                }
            }
        });
        if let Some(site) = found {
            return site;
        }
    }
    match function {
        Some(function) => format!("{function} {NO_LINE_TABLES}"),
        None if !any_symbol => "<unknown: symbols stripped>".to_owned(),
        None => "<unknown>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machinery_is_judged_by_the_implementing_type() {
        for symbol in [
            "pgscope::executor::Query::start",
            "<&mut pgscope::Connection as sqlx_core::executor::Executor>::fetch_many",
            "<core::pin::Pin<P> as core::future::future::Future>::poll",
            "tokio::runtime::task::harness::Harness<T,S>::poll",
            "<dyn tracing::Subscriber>::enter",
            "__rust_begin_short_backtrace",
        ] {
            assert!(is_machinery(symbol), "{symbol}");
        }
        for symbol in [
            "my_app::routes::feed::{{closure}}",
            "<my_app::Repo as my_app::Store>::load",
            "detection::naive_feed::{{closure}}",
            // A user crate whose name starts like a skipped one is still the user's.
            "tokio_app::handler",
        ] {
            assert!(!is_machinery(symbol), "{symbol}");
        }
    }

    #[test]
    fn closures_are_trimmed_from_function_paths() {
        assert_eq!(
            function_path("my_app::routes::feed::{{closure}}::{{closure}}"),
            "my_app::routes::feed"
        );
        assert_eq!(function_path("my_app::load"), "my_app::load");
    }

    #[test]
    fn a_stack_without_any_symbol_says_symbols_are_stripped() {
        // Addresses no module maps: nothing resolves, as in a binary built with `strip = true`.
        assert_eq!(resolve(&[1, 2, 3]), "<unknown: symbols stripped>");
    }

    #[test]
    fn a_captured_site_resolves_once_and_names_this_file() {
        let site = CallSite::capture();
        assert!(!site.get().is_empty());
        assert!(site.is_resolved());
        // The same stack again: resolved from the cache at capture time.
        for _ in 0..2 {
            let again = CallSite::capture();
            let _ = again.get();
        }
        assert_eq!(
            CallSite::at(std::panic::Location::caller())
                .get()
                .split(':')
                .next(),
            Some("src/detect/call_site.rs")
        );
    }

    #[test]
    fn paths_are_relative_to_their_package_root_whatever_the_working_directory() {
        let root = env!("CARGO_MANIFEST_DIR");
        let inside = format!("{root}/src/feed.rs");
        assert_eq!(package_relative(&inside), "src/feed.rs");
        assert_eq!(
            package_relative(&format!("{root}/tests/it.rs")),
            "tests/it.rs"
        );
        assert_eq!(package_relative("./src/feed.rs"), "src/feed.rs");
        // As compiled in a workspace (relative to its root): the member's own path.
        assert_eq!(
            package_relative("mut/src/http/articles/mod.rs"),
            "src/http/articles/mod.rs"
        );
        assert_eq!(
            package_relative("crates/api/tests/smoke.rs"),
            "tests/smoke.rs"
        );
        // Sources not on this machine (a deployed binary): from the last `src/` on.
        assert_eq!(
            package_relative("/nonexistent/home/src/app/mut/src/http/mod.rs"),
            "src/http/mod.rs"
        );
        // Nothing to go by: as compiled.
        assert_eq!(package_relative("/elsewhere/lib.rs"), "/elsewhere/lib.rs");
        assert_eq!(package_relative("build.rs"), "build.rs");
        let before = std::env::current_dir().expect("cwd");
        assert_eq!(package_relative(&inside), "src/feed.rs", "cached or not");
        assert_eq!(std::env::current_dir().expect("cwd"), before);
    }
}
