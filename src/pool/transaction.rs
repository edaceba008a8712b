//! Transactions over pgscope connections.

use std::fmt;
use std::ops::{Deref, DerefMut};

use sqlx::postgres::PgTransactionManager;
use sqlx_core::transaction::TransactionManager;

use super::connection::{Connection, PoolConnection};
use super::usage::{self, Use};
use crate::wrapped::Wrapped;

/// An in-progress transaction or savepoint: `&mut *tx` is an instrumented `sqlx::Executor`.
///
/// Like `sqlx::Transaction`, it rolls back when dropped without [`commit`](Self::commit).
/// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoint statements are counted in the scope's
/// [`Report::transaction_queries`](crate::Report::transaction_queries), not in
/// [`Report::queries`](crate::Report::queries), so query-count assertions do not change when
/// code moves into a transaction.
///
/// # Examples
/// ```no_run
/// # async fn f(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE accounts SET balance = balance - 1 WHERE id = $1").bind(7).execute(&mut *tx).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Transaction<'c> {
    conn: MaybeOwned<'c>,
    open: bool,
}

// The owned connection is the common case (`pool.begin()`): boxing it would allocate per
// transaction to save bytes in a value that lives on the caller's stack.
#[allow(clippy::large_enum_variant)]
enum MaybeOwned<'c> {
    Owned(PoolConnection),
    Borrowed(&'c mut Connection),
}

impl MaybeOwned<'_> {
    fn get(&mut self) -> &mut Connection {
        match self {
            MaybeOwned::Owned(c) => c,
            MaybeOwned::Borrowed(c) => c,
        }
    }

    fn get_ref(&self) -> &Connection {
        match self {
            MaybeOwned::Owned(c) => c,
            MaybeOwned::Borrowed(c) => c,
        }
    }
}

impl Connection {
    /// Starts a transaction (or a savepoint, inside one) on this connection.
    pub async fn begin(&mut self) -> Result<Transaction<'_>, sqlx::Error> {
        Transaction::begin_borrowed(self).await
    }
}

fn count_statement(conn: &Connection) {
    conn.with_state(|state| state.transaction_statement());
}

/// Before a transaction statement on a held connection: the idle gap it ends, if it crossed.
fn control_starts(conn: &Connection, what: &Use) {
    if let Some(u) = &conn.usage
        && let Some(item) =
            conn.with_scope_name(|name| u.starts(&conn.pool.settings, name, what.text()))
    {
        usage::report(
            conn.query_scope().as_ref(),
            &conn.pool.unscoped,
            &conn.pool.settings,
            item,
        );
    }
}

/// After a transaction statement that started at `started` and succeeded.
fn control_ended(conn: &Connection, what: Use) {
    if let Some(u) = &conn.usage {
        let began = matches!(what, Use::Begin);
        conn.with_scope_name(|name| u.control_ended(&conn.pool.settings, name, what));
        u.transaction(began);
    }
}

impl<'c> Transaction<'c> {
    async fn begin_on(mut conn: MaybeOwned<'c>) -> Result<Self, sqlx::Error> {
        let c = conn.get();
        count_statement(c);
        control_starts(c, &Use::Begin);
        Wrapped::new(std::pin::pin!(PgTransactionManager::begin(
            c.as_sqlx_mut(),
            None
        )))
        .await?;
        control_ended(conn.get(), Use::Begin);
        Ok(Transaction { conn, open: true })
    }

    pub(crate) async fn begin_owned(
        conn: PoolConnection,
    ) -> Result<Transaction<'static>, sqlx::Error> {
        Transaction::begin_on(MaybeOwned::Owned(conn)).await
    }

    async fn begin_borrowed(conn: &'c mut Connection) -> Result<Transaction<'c>, sqlx::Error> {
        Transaction::begin_on(MaybeOwned::Borrowed(conn)).await
    }

    /// Commits the transaction (or releases the savepoint).
    // The future is boxed, as `Pool::begin`'s: the caller's future does not carry its state.
    pub fn commit(self) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
        Box::pin(self.end(true))
    }

    /// Rolls the transaction back (or to the savepoint).
    pub fn rollback(self) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
        Box::pin(self.end(false))
    }

    async fn end(mut self, commit: bool) -> Result<(), sqlx::Error> {
        let c = self.conn.get();
        count_statement(c);
        let what = if commit { Use::Commit } else { Use::Rollback };
        control_starts(c, &what);
        if commit {
            Wrapped::new(std::pin::pin!(PgTransactionManager::commit(
                c.as_sqlx_mut()
            )))
            .await?;
        } else {
            Wrapped::new(std::pin::pin!(PgTransactionManager::rollback(
                c.as_sqlx_mut()
            )))
            .await?;
        }
        self.open = false;
        control_ended(self.conn.get(), what);
        Ok(())
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.get_ref()
    }
}

impl DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.get()
    }
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("connection", self.conn.get_ref())
            .field("open", &self.open)
            .finish()
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Queues a ROLLBACK that sqlx sends before the connection is used or pooled again.
            let c = self.conn.get();
            count_statement(c);
            // The gap that ends here was inside the transaction, and the rollback ends it:
            // checked before the transaction is counted as closed.
            control_starts(c, &Use::RollbackOnDrop);
            PgTransactionManager::start_rollback(c.as_sqlx_mut());
            control_ended(c, Use::RollbackOnDrop);
        }
    }
}
