//! The life of a query: the one place a statement is observed.
//!
//! `&Pool` and `&mut Connection` implement `sqlx::Executor`. Each call:
//! 1. takes the statement apart (`Execute` consumes itself to yield its SQL, so the text,
//!    arguments and cached statement are taken out and handed on in [`Parts`]);
//! 2. looks up the fingerprint (a cache hit: hash, shared lock, reference count);
//! 3. under the scope's lock, checks the budget and N+1 rules and counts the statement;
//! 4. runs it on the sqlx connection, wrapped so that rows, errors, the end, or a drop before
//!    the end are recorded exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::stream::{BoxStream, Stream};
use futures_util::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, Postgres, SqlStr};

use crate::detect::{self, Mode, NPlusOne};
use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::pool::{Connection, Pool, Shared, acquire_in};
use crate::scope::{self, ScopeInner};

/// A statement taken apart so its text can be read before sqlx consumes it.
struct Parts {
    sql: SqlStr,
    statement: Option<PgStatement>,
    arguments: Option<Result<Option<PgArguments>, BoxDynError>>,
    persistent: bool,
}

impl Parts {
    fn take<'q, E: Execute<'q, Postgres>>(mut query: E) -> Self {
        let statement = query.statement().cloned();
        let arguments = Some(query.take_arguments());
        let persistent = query.persistent();
        Parts {
            sql: query.sql(),
            statement,
            arguments,
            persistent,
        }
    }
}

impl Execute<'_, Postgres> for Parts {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.statement.as_ref()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        // An encoding error surfaces here, exactly where sqlx would report it.
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// One statement in flight. Recorded once: at its end, on error, or when dropped unfinished.
pub(crate) struct Query<'c> {
    shared: Arc<Shared>,
    /// Set when the query is dropped unfinished: the connection is then mid-protocol and must
    /// not go back to the pool (it would block the next user until the server finishes).
    interrupted: &'c AtomicBool,
    scope: Option<Arc<ScopeInner>>,
    fingerprint: Fingerprint,
    start: Instant,
    returned: u64,
    affected: u64,
    done: bool,
    #[cfg(feature = "otel")]
    span: crate::otel::StatementSpan,
}

impl<'c> Query<'c> {
    /// Counts the statement in its scope and applies the budget and N+1 rules; an `Err` means
    /// the statement must not be sent.
    fn start(
        shared: &Arc<Shared>,
        interrupted: &'c AtomicBool,
        scope: Option<Arc<ScopeInner>>,
        sql: &str,
    ) -> Result<Query<'c>, sqlx::Error> {
        let fingerprint = shared.cache.get(sql);
        let settings = &shared.settings;
        let decision = shared.with_state(scope.as_ref(), |state, s| {
            if shared.is_unscoped(s) {
                state.totals.queries += 1;
                state.row(&fingerprint).count += 1;
                return Ok(None);
            }
            let o = &s.overrides;
            if let Some(budget) = o.query_budget.or(settings.query_budget)
                && state.totals.queries >= u64::from(budget)
            {
                state.totals.rejected += 1;
                return Err(Error::QueryBudgetExceeded {
                    scope: s.name.to_string(),
                    budget,
                });
            }
            state.totals.queries += 1;
            let row = state.row(&fingerprint);
            row.count += 1;
            let count = row.count;
            let threshold = o
                .n_plus_one_threshold
                .unwrap_or(settings.n_plus_one_threshold);
            let mode = o.n_plus_one_mode.unwrap_or(settings.n_plus_one_mode);
            let checked = (settings.n_plus_one_writes || fingerprint.operation() == "SELECT")
                && !scope::in_batch();
            let crossing = if mode == Mode::Error {
                count > u64::from(threshold)
            } else {
                count == u64::from(threshold) + 1
            };
            if mode == Mode::Off
                || !checked
                || !crossing
                || o.allow.allows_fingerprint(fingerprint.id())
            {
                return Ok(None);
            }
            let reported = state
                .n_plus_one
                .iter()
                .any(|n| n.fingerprint.id() == fingerprint.id());
            Ok(Some((s.name.to_string(), count, threshold, mode, reported)))
        });
        let decision = decision.map_err(|e| {
            #[cfg(feature = "otel")]
            if let Error::QueryBudgetExceeded { scope, .. } = &e {
                crate::otel::record_budget_exceeded(scope);
            }
            e.into_sqlx()
        })?;
        if let Some((scope_name, count, threshold, mode, reported)) = decision {
            Self::n_plus_one(
                shared,
                scope.as_ref(),
                &fingerprint,
                scope_name,
                count,
                threshold,
                mode,
                reported,
            )?;
        }
        #[cfg(feature = "otel")]
        let span = if settings.statement_spans {
            crate::otel::StatementSpan::start(
                &shared.server.attributes,
                &fingerprint,
                settings.record_raw_sql.then_some(sql),
            )
        } else {
            crate::otel::StatementSpan::none()
        };
        Ok(Query {
            shared: Arc::clone(shared),
            interrupted,
            scope,
            fingerprint,
            start: Instant::now(),
            returned: 0,
            affected: 0,
            done: false,
            #[cfg(feature = "otel")]
            span,
        })
    }

    /// The slow path, taken once per (scope, fingerprint) in warn mode: find the call site,
    /// record, warn; in error mode also refuse the statement.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn n_plus_one(
        shared: &Arc<Shared>,
        scope: Option<&Arc<ScopeInner>>,
        fingerprint: &Fingerprint,
        scope_name: String,
        count: u64,
        threshold: u32,
        mode: Mode,
        reported: bool,
    ) -> Result<(), sqlx::Error> {
        let site = if reported {
            None
        } else {
            Some(detect::call_site())
        };
        let allowed = site
            .as_deref()
            .is_some_and(|s| scope.is_some_and(|sc| sc.overrides.allow.allows_site(s)));
        if allowed {
            return Ok(());
        }
        let item = site.map(|call_site| NPlusOne {
            scope: scope_name.clone(),
            fingerprint: fingerprint.clone(),
            count,
            threshold,
            call_site,
        });
        shared.with_state(scope, |state, _| {
            if let Some(item) = &item
                && !state
                    .n_plus_one
                    .iter()
                    .any(|n| n.fingerprint.id() == fingerprint.id())
            {
                state.n_plus_one.push(item.clone());
            }
            if mode == Mode::Error {
                // Not sent: undo the count taken on the way in.
                state.totals.queries -= 1;
                state.totals.rejected += 1;
                state.row(fingerprint).count -= 1;
            }
        });
        if let Some(item) = &item {
            detect::emit_n_plus_one(item);
            #[cfg(feature = "otel")]
            crate::otel::record_n_plus_one(item);
        }
        if mode == Mode::Error {
            return Err(Error::NPlusOne {
                scope: scope_name,
                statement: fingerprint.normalized().to_owned(),
                count,
                threshold,
            }
            .into_sqlx());
        }
        Ok(())
    }

    fn finish(&mut self, error: Option<&sqlx::Error>, cancelled: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.start.elapsed();
        let rows = if self.returned > 0 {
            self.returned
        } else {
            self.affected
        };
        let failed = error.is_some() || cancelled;
        self.shared.with_state(self.scope.as_ref(), |state, _| {
            record(state, &self.fingerprint, elapsed, rows, failed);
        });
        #[cfg(feature = "otel")]
        crate::otel::finish_query(
            &mut self.span,
            Some(&self.shared.metrics),
            &self.fingerprint,
            elapsed,
            rows,
            crate::otel::error_attributes(error, cancelled),
        );
    }
}

fn record(
    state: &mut crate::scope::State,
    fp: &Fingerprint,
    elapsed: Duration,
    rows: u64,
    failed: bool,
) {
    state.totals.db_time += elapsed;
    state.totals.rows += rows;
    state.totals.failed += u64::from(failed);
    let row = state.row(fp);
    row.total += elapsed;
    row.max = row.max.max(elapsed);
    row.rows += rows;
    row.failed += u64::from(failed);
}

impl Drop for Query<'_> {
    fn drop(&mut self) {
        // A future dropped mid-query (a cancelled request): the statement was sent, so it
        // counts, as failed.
        if !self.done {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        self.finish(None, true);
    }
}

type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

struct Observed<'e> {
    inner: BoxStream<'e, Item>,
    query: Query<'e>,
}

impl Stream for Observed<'_> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        let next = ready!(this.inner.poll_next_unpin(cx));
        match &next {
            Some(Ok(Either::Right(_))) => this.query.returned += 1,
            Some(Ok(Either::Left(result))) => this.query.affected += result.rows_affected(),
            Some(Err(e)) => this.query.finish(Some(e), false),
            None => this.query.finish(None, false),
        }
        Poll::Ready(next)
    }
}

impl Connection {
    fn query_scope(&self) -> Option<Arc<ScopeInner>> {
        self.scope.clone().or_else(scope::current)
    }
}

impl<'c> Executor<'c> for &'c mut Connection {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let parts = Parts::take(query);
        let scope = self.query_scope();
        let query = match Query::start(&self.shared, &self.interrupted, scope, parts.sql.as_str()) {
            Ok(q) => q,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let inner = (&mut *self.raw).fetch_many(parts);
        Box::pin(Observed { inner, query })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let parts = Parts::take(query);
        let scope = self.query_scope();
        let started = Query::start(&self.shared, &self.interrupted, scope, parts.sql.as_str());
        let raw = &mut *self.raw;
        Box::pin(async move {
            let mut query = started?;
            let result = raw.fetch_optional(parts).await;
            match &result {
                Ok(row) => query.returned = u64::from(row.is_some()),
                Err(e) => query.finish(Some(e), false),
            }
            query.finish(None, false);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.as_sqlx_mut().prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.as_sqlx_mut().describe(sql)
    }
}

impl<'p> Executor<'p> for &'_ Pool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let shared = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async_stream::try_stream! {
            let mut conn = acquire_in(shared, scope, None).await?;
            let mut rows = (&mut *conn).fetch_many(query);
            while let Some(item) = rows.try_next().await? {
                yield item;
            }
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let shared = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async move {
            (&mut *acquire_in(shared, scope, None).await?)
                .fetch_optional(query)
                .await
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            (&mut *acquire_in(shared, None, None).await?)
                .prepare_with(sql, parameters)
                .await
        })
    }

    #[doc(hidden)]
    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move {
            (&mut *acquire_in(shared, None, None).await?)
                .describe(sql)
                .await
        })
    }
}
