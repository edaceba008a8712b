//! Where in the user's code a finding happened: the first stack frame outside pgscope, sqlx,
//! tokio and the standard library, resolved to `file:line`.

use std::panic::Location;
use std::sync::Arc;

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
    "sea_orm::",
    "sea_query::",
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
    fn paths_under_the_working_directory_are_shown_relative() {
        let cwd = std::env::current_dir().expect("cwd");
        let inside = cwd.join("src/feed.rs");
        assert_eq!(relative(inside.to_str().expect("utf-8")), "src/feed.rs");
        assert_eq!(relative("./src/feed.rs"), "src/feed.rs");
        assert_eq!(relative("/elsewhere/lib.rs"), "/elsewhere/lib.rs");
    }
}
