//! What sqlx's own tooling needs from a pool: `sqlx::Acquire` (migrations, code generic over
//! `Acquire`) and `AsMut<PgConnection>` (advisory locks), and `From<PgPool>` (`#[sqlx::test]`
//! pools). They hand out sqlx's raw connection, so statements sent through it are not seen by
//! the wrapper: with the observer layer installed ([`observe`](crate::observe())) they are
//! counted in the current scope all the same; without it they are unobserved.

use std::fmt;
use std::ops::{Deref, DerefMut};

use futures_core::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres};

use super::Pool;
use super::connection::{Connection, PoolConnection};

/// A pooled connection that dereferences to sqlx's `PgConnection`, as `sqlx::Acquire` requires
/// (`sqlx::migrate!().run(&pool)` acquires one). The time it is held and waited for counts in
/// the scope like any [`PoolConnection`]; its statements are sqlx's own: seen by the observer
/// layer ([`observe`](crate::observe())) when it is installed, unobserved otherwise.
pub struct RawConnection(PoolConnection);

impl RawConnection {
    /// The instrumented connection again.
    pub fn into_inner(self) -> PoolConnection {
        self.0
    }
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawConnection").field(&self.0).finish()
    }
}

impl Deref for RawConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0.raw
    }
}

impl DerefMut for RawConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.0.as_sqlx_mut()
    }
}

impl AsMut<PgConnection> for RawConnection {
    fn as_mut(&mut self) -> &mut PgConnection {
        self.0.as_sqlx_mut()
    }
}

/// sqlx's raw connection, for `PgAdvisoryLock::acquire(pool.acquire().await?)` and other APIs
/// bounded on `AsMut<PgConnection>`; see [`Connection::as_sqlx_mut`].
impl AsMut<PgConnection> for PoolConnection {
    fn as_mut(&mut self) -> &mut PgConnection {
        self.as_sqlx_mut()
    }
}

/// `sqlx::migrate!().run(&pool)`, and code generic over `sqlx::Acquire`.
///
/// `acquire` goes through the pool (wait and hold time count in the scope); `begin` starts a
/// `sqlx::Transaction` on the wrapped sqlx pool, whose statements only the observer sees.
impl<'a> sqlx::Acquire<'a> for &'_ Pool {
    type Database = Postgres;
    type Connection = RawConnection;

    fn acquire(self) -> BoxFuture<'static, Result<RawConnection, sqlx::Error>> {
        let acquire = self.acquire();
        Box::pin(async move { Ok(RawConnection(acquire.await?)) })
    }

    fn begin(self) -> BoxFuture<'static, Result<sqlx::Transaction<'a, Postgres>, sqlx::Error>> {
        let pool = self.as_sqlx().clone();
        Box::pin(async move { pool.begin().await })
    }
}

/// Code generic over `sqlx::Acquire` given `&mut *conn`.
impl<'c> sqlx::Acquire<'c> for &'c mut Connection {
    type Database = Postgres;
    type Connection = &'c mut PgConnection;

    fn acquire(self) -> BoxFuture<'c, Result<&'c mut PgConnection, sqlx::Error>> {
        Box::pin(std::future::ready(Ok(self.as_sqlx_mut())))
    }

    fn begin(self) -> BoxFuture<'c, Result<sqlx::Transaction<'c, Postgres>, sqlx::Error>> {
        sqlx::Transaction::begin(self.as_sqlx_mut(), None)
    }
}

/// A `sqlx::PgPool` you already have (`#[sqlx::test]` hands one out), with default pgscope
/// settings: [`Pool::from_sqlx`].
impl From<PgPool> for Pool {
    fn from(pool: PgPool) -> Pool {
        Pool::from_sqlx(pool)
    }
}
