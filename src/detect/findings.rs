//! What the rules find: N+1 patterns and nested acquires, and the WARN events that report them.

use std::fmt;
use std::panic::Location;

use super::call_site::{call_site, location};
use crate::fingerprint::Fingerprint;

/// One N+1 finding: a statement repeated past the threshold inside one scope.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) {
/// let (_, report) = pgscope::capture_named("GET /api/feed", async {
///     for id in 1..=10_i64 {
///         let _ = sqlx::query("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&pool).await;
///     }
/// })
/// .await;
/// for n in report.n_plus_one() {
///     // `SELECT name FROM users WHERE id = $1` ran 10 times in GET /api/feed, from src/feed.rs:42
///     println!("`{}` ran {} times in {}, from {}", n.fingerprint().normalized(), n.count(), n.scope(), n.call_site());
/// }
/// # }
/// ```
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

/// Said once per pool (or once for the observer) when statements run outside any scope.
pub(crate) fn hint_unscoped(source: &str) {
    tracing::info!(
        target: "pgscope::unscoped",
        source,
        "pgscope: statements of {source} run outside any scope; they are counted (unscoped \
         report) but not checked for N+1, query budgets or nested acquires. Run each request or \
         job in a scope: pgscope::http::ScopeLayer (axum, tonic, any tower service), \
         pgscope::actix::Scopes (actix-web), or pgscope::capture / Scope::capture around the work",
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

/// The finding for a scope that acquires a connection (at `acquired_at`, or at the caller's
/// call site for a query on `&Pool`) while holding one acquired at `held_at`.
pub(crate) fn nested_acquire(
    scope: &str,
    held_at: &Location<'_>,
    acquired_at: Option<&Location<'_>>,
) -> NestedAcquire {
    NestedAcquire {
        scope: scope.to_owned(),
        held_at: location(held_at),
        acquired_at: acquired_at.map_or_else(call_site, location),
    }
}
