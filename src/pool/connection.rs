//! Acquiring a connection, and giving it back: wait and hold time, the nested-acquire rule.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use sqlx::Postgres;

use super::inner::PoolInner;
use super::usage::{self, Usage};
use crate::detect::{self, Mode};
use crate::scope::{self, ScopeInner};

/// Acquires for `scope`; `site` is where an explicit `acquire`/`begin` was called, `None` for
/// the transient connection of a query on `&Pool`.
pub(crate) async fn acquire_in(
    pool: Arc<PoolInner>,
    scope: Option<Arc<ScopeInner>>,
    site: Option<&'static Location<'static>>,
) -> Result<PoolConnection, sqlx::Error> {
    let start = Instant::now();
    let waiting = pool.wait(start);
    let result = pool.sqlx.acquire().await;
    drop(waiting);
    // One clock read: the wait's end is the hold's start.
    let acquired_at = Instant::now();
    let waited = acquired_at.saturating_duration_since(start);
    let raw = match result {
        Ok(raw) => raw,
        Err(err) => {
            let timed_out = matches!(err, sqlx::Error::PoolTimedOut);
            if timed_out {
                pool.timed_out();
            }
            pool.telemetry.waited(waited, timed_out);
            scope::with_state(scope.as_ref(), &pool.unscoped, |state| state.waited(waited));
            return Err(err);
        }
    };
    pool.acquired();
    pool.telemetry.waited(waited, false);
    // Ids are only needed to track explicitly held guards; skip the shared counter otherwise.
    let guard = site.map(|site| (pool.next_guard_id(), site));
    let check_nested = pool.settings.nested_acquire_mode != Mode::Off;
    let held_at = scope::with_state(scope.as_ref(), &pool.unscoped, |state| {
        state.waited(waited);
        state.acquired(&pool.health, guard, check_nested)
    });
    if let (Some(held_at), Some(scope)) = (held_at, &scope) {
        let item = detect::nested_acquire(&scope.name, held_at, site);
        let new = scope::with_state(Some(scope), &pool.unscoped, |state| state.add_nested(&item));
        if new {
            pool.settings
                .on_finding
                .call(&detect::Finding::NestedAcquire(&item));
            scope.warn(detect::Warning::Nested(item));
        }
    }
    Ok(PoolConnection {
        conn: Connection {
            raw,
            scope,
            pool,
            interrupted: AtomicBool::new(false),
            guard_id: guard.map(|(id, _)| id),
            acquired_at,
            usage: site.map(|site| Usage::new(acquired_at, detect::CallSite::at(site))),
        },
    })
}

/// A connection from a [`Pool`](crate::Pool): `&mut *conn` is a `sqlx::Executor`. Returned to
/// the pool on drop, which ends its hold time.
pub struct PoolConnection {
    conn: Connection,
}

/// A database connection whose `&mut` is an instrumented `sqlx::Executor`.
///
/// You get one by dereferencing a [`PoolConnection`] or [`Transaction`](crate::Transaction):
/// `sqlx::query("…").execute(&mut *conn)`.
pub struct Connection {
    pub(crate) raw: sqlx::pool::PoolConnection<Postgres>,
    /// The scope the connection was acquired in: its queries count there wherever they run.
    pub(crate) scope: Option<Arc<ScopeInner>>,
    pub(crate) pool: Arc<PoolInner>,
    /// A query on this connection was dropped before it finished.
    pub(crate) interrupted: AtomicBool,
    /// Set for guards the caller holds explicitly (`acquire`, `begin`).
    guard_id: Option<u64>,
    acquired_at: Instant,
    /// How an explicitly held connection is used (idle time, held-idle findings).
    pub(crate) usage: Option<Usage>,
}

impl Connection {
    /// The underlying sqlx connection, for APIs pgscope does not wrap (`COPY`, `LISTEN`).
    /// Statements sent through it directly are not observed.
    pub fn as_sqlx_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.raw
    }

    /// How long this connection has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired_at.elapsed()
    }

    /// The scope statements on this connection count for: the one it was acquired in, else
    /// the caller's.
    pub(crate) fn query_scope(&self) -> Option<Arc<ScopeInner>> {
        self.scope.clone().or_else(scope::current)
    }

    /// Runs `f` with the name of the scope statements on this connection count for (borrowed:
    /// a route's name is not copied per transaction statement).
    pub(crate) fn with_scope_name<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.scope {
            Some(scope) => f(&scope.name),
            None => {
                let current = scope::current();
                f(current.as_deref().map_or("unscoped", |s| &s.name))
            }
        }
    }

    /// Runs `f` on the state statements on this connection count in.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut scope::State) -> R) -> R {
        scope::with_state(self.query_scope().as_ref(), &self.pool.unscoped, f)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("scope", &self.scope.as_ref().map(|s| &s.name))
            .field("held_for", &self.held_for())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PoolConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.conn.fmt(f)
    }
}

impl Deref for PoolConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl AsMut<Connection> for PoolConnection {
    fn as_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for PoolConnection {
    fn drop(&mut self) {
        let conn = &mut self.conn;
        let held = conn.acquired_at.elapsed();
        let owner = conn.scope.as_deref().unwrap_or(&conn.pool.unscoped);
        let (idle, gap) = match &conn.usage {
            Some(usage) => usage.released(&conn.pool.settings, &owner.name),
            None => (crate::report::Idle::default(), None),
        };
        conn.pool
            .telemetry
            .released(held, conn.usage.as_ref().map(|_| idle.total));
        if let (Some(id), Some(scope)) = (conn.guard_id, &conn.scope) {
            scope.release_held(id);
        }
        let guard = conn.guard_id;
        scope::with_state(conn.scope.as_ref(), &conn.pool.unscoped, |state| {
            state.released(held, &idle, guard)
        });
        if let Some(item) = gap {
            usage::report(
                conn.scope.as_ref(),
                &conn.pool.unscoped,
                &conn.pool.settings,
                item,
            );
        }
        if conn.interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            // The server is still busy with (or sending) the abandoned statement; returning the
            // connection would make the next user wait for it. Close it: the pool replaces it.
            conn.raw.close_on_drop();
        }
        // `raw` drops after this, returning the connection to sqlx's pool.
    }
}
