//! The life of a query: the one place a statement is observed.
//!
//! `&Pool` and `&mut Connection` implement `sqlx::Executor`. Each call:
//! 1. takes the statement apart (`Execute` consumes itself to yield its SQL, so the text,
//!    arguments and cached statement are taken out and handed on in [`Parts`]);
//! 2. looks up the fingerprint (a cache hit: hash, shared lock, reference count);
//! 3. under the scope's lock, asks the rules for a [`Verdict`] (budget, N+1) and counts the
//!    statement;
//! 4. starts its span;
//! 5. runs it on the sqlx connection, wrapped so that rows, errors, the end, or a drop before
//!    the end are recorded exactly once, as one [`Outcome`].

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_core::future::BoxFuture;
use futures_core::stream::{BoxStream, Stream};
use futures_util::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, Postgres, SqlSafeStr, SqlStr};

use crate::detect::{Finding, Verdict};
use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::plan::Candidate;
use crate::pool::{Connection, Pool, PoolInner, Usage, acquire_in};
use crate::report::{ErrorClass, Execution, Outcome, Params};
use crate::scope::{self, ScopeInner};
use crate::telemetry::{self, StatementSpan};
use crate::wrapped::{self, Wrapped};

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

impl Parts {
    /// The statement's parameter set for the scope: the text's hash alone when nothing is
    /// bound; on its `first` execution in the scope the bound values kept unhashed (a clone,
    /// hashed only if a second execution comes); else their hash.
    fn params(&self, text_hash: u64, first: bool) -> Params {
        match &self.arguments {
            Some(Ok(Some(arguments))) if sqlx::Arguments::len(arguments) > 0 => {
                if first {
                    // Hashed at most once, on this thread or the next statement's: nothing is
                    // observed half-done if that panics.
                    let arguments = std::panic::AssertUnwindSafe(arguments.clone());
                    Params::Later(Box::new(move || hash_arguments(&arguments, text_hash)))
                } else {
                    Params::Hash(hash_arguments(arguments, text_hash))
                }
            }
            _ => Params::Hash(text_hash),
        }
    }
}

/// Bound values hashed with the text's hash: sqlx keeps the encoded values private; their
/// `Debug` rendering (types and bytes) is streamed into the hash without an allocation, and
/// cut off once the value bytes have passed.
fn hash_arguments(arguments: &PgArguments, text_hash: u64) -> u64 {
    let mut hasher = PieceHasher::new(text_hash);
    // An `Err` here is the hasher stopping the rendering early, not a failure.
    let _ = std::fmt::Write::write_fmt(&mut hasher, format_args!("{arguments:?}"));
    hasher.finish()
}

/// A hash of what `Debug` writes, in the many short pieces it writes them (`"0"`, `", "`, a
/// field name): each piece read whole in one or two loads (the small-input reads of wyhash:
/// every byte is read, and for a given length different bytes give different words) and
/// folded in with one multiply, instead of being gathered into a buffer for a block hash.
/// It only compares parameter sets within one scope and never leaves the process.
///
/// `PgArguments` renders as its parameter types, then its value bytes
/// (`PgArgumentBuffer { buffer: [0, 0, 0, 8, …] …`), then bookkeeping that follows from those
/// two (the count, and patches and type holes fixed by the types). The hasher stops the
/// rendering at the bytes' closing `]`, which skips about a sixth of the formatting; a
/// rendering it does not recognise (another sqlx layout) is hashed whole.
struct PieceHasher {
    hash: u64,
    /// How far the pieces that open the value bytes have been matched
    /// ([`PieceHasher::BYTES_OPEN`]); its length: inside the bytes.
    stage: usize,
}

impl PieceHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    /// The pieces `Debug` writes just before the value bytes of `PgArguments`.
    const BYTES_OPEN: [&'static str; 5] = ["PgArgumentBuffer", " { ", "buffer", ": ", "["];

    fn new(seed: u64) -> Self {
        PieceHasher {
            hash: seed,
            stage: 0,
        }
    }

    fn mix(h: u64, word: u64) -> u64 {
        (h ^ word).wrapping_mul(Self::K).rotate_left(29)
    }

    fn finish(&self) -> u64 {
        // The last pieces' bits spread over the whole word (SplitMix64's final mix).
        let mut x = self.hash;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Follows the rendering's structure; whether the value bytes just ended. A string
    /// comparison tests the length first, so most pieces cost one length test: before the
    /// bytes only a 16-byte piece can start the opening, inside them only `]` can close them.
    #[inline(always)]
    fn bytes_ended(&mut self, s: &str) -> bool {
        const OPEN: usize = PieceHasher::BYTES_OPEN.len();
        match self.stage {
            OPEN => s == "]",
            k => {
                self.stage = if s == Self::BYTES_OPEN[k] {
                    k + 1
                } else {
                    usize::from(s == Self::BYTES_OPEN[0])
                };
                false
            }
        }
    }
}

impl std::fmt::Write for PieceHasher {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let n = b.len();
        let u32_at = |at: usize| {
            b.get(at..at + 4)
                .and_then(|w| w.try_into().ok())
                .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
        };
        let word = match n {
            0 => 0,
            1..=3 => u64::from(b[0]) << 16 | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]),
            4..=8 => u32_at(0) << 32 | u32_at(n - 4),
            _ => {
                let (chunks, _) = b.as_chunks::<8>();
                for chunk in chunks {
                    self.hash = Self::mix(self.hash, u64::from_le_bytes(*chunk));
                }
                // The last eight bytes (overlapping the chunks when the length is not a
                // multiple of eight).
                b.last_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w))
            }
        };
        // The length keeps the pieces apart: `"ab", "c"` is not `"a", "bc"`.
        self.hash = Self::mix(self.hash, word ^ (n as u64) << 56);
        if self.bytes_ended(s) {
            // Stops the rendering: `Debug` impls pass the error straight back.
            return Err(std::fmt::Error);
        }
        Ok(())
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
    /// Borrowed from the connection the statement runs on: no shared reference count touched
    /// per statement.
    pool: &'c PoolInner,
    /// Set when the query is dropped unfinished: the connection is then mid-protocol and must
    /// not go back to the pool (it would block the next user until the server finishes).
    interrupted: &'c AtomicBool,
    /// The held connection's use (idle gaps), for statements on an acquired connection.
    usage: Option<&'c Usage>,
    /// Where the statement runs from, kept as the start of the next idle gap.
    idle_site: Option<crate::detect::CallSite>,
    scope: Option<Arc<ScopeInner>>,
    fingerprint: Fingerprint,
    /// Hash of the statement's text (the fingerprint cache's key).
    text_hash: u64,
    start: Instant,
    returned: u64,
    affected: u64,
    done: bool,
    /// An observer layer saw sqlx's event for this statement.
    logged: bool,
    span: StatementSpan,
    /// Chosen for `EXPLAIN` (its arguments cloned): explained once it succeeded.
    candidate: Option<Box<Candidate>>,
}

impl<'c> Query<'c> {
    /// Everything before the statement is sent: fingerprint (a cache hit), the rules' verdict
    /// (counted in the scope), the span. An `Err` means the statement must not be sent.
    fn start(
        pool: &'c PoolInner,
        interrupted: &'c AtomicBool,
        usage: Option<&'c Usage>,
        scope: Option<Arc<ScopeInner>>,
        parts: &Parts,
    ) -> Result<Query<'c>, sqlx::Error> {
        let sql = parts.sql.as_str();
        let (fingerprint, text_hash) = pool.cache.lookup(sql);
        if scope.is_none() {
            pool.unscoped_statement();
        }
        let owner = scope.as_deref().unwrap_or(&pool.unscoped);
        let verdict = scope::with_state(scope.as_ref(), &pool.unscoped, |state| {
            state.admit(
                &fingerprint,
                owner.rules(&pool.settings),
                scope::in_allowed_repetition(),
                |first| parts.params(text_hash, first),
            )
        });
        match verdict {
            Verdict::Run => {}
            Verdict::OverBudget { budget } => {
                telemetry::budget_exceeded(&owner.name);
                pool.settings
                    .on_finding
                    .call(&Finding::QueryBudgetExceeded {
                        scope: &owner.name,
                        budget,
                    });
                return Err(Error::QueryBudgetExceeded {
                    scope: owner.name.to_string(),
                    budget,
                }
                .into_sqlx());
            }
            Verdict::NPlusOne(crossing) => {
                if !scope::n_plus_one(
                    scope.as_ref(),
                    &pool.unscoped,
                    &fingerprint,
                    crossing,
                    &pool.settings,
                ) {
                    return Err(Error::NPlusOne {
                        scope: owner.name.to_string(),
                        statement: fingerprint.normalized().to_owned(),
                        count: crossing.count,
                        threshold: crossing.threshold,
                    }
                    .into_sqlx());
                }
            }
        }
        let candidate = pool.planner.as_ref().and_then(|planner| {
            let arguments = match &parts.arguments {
                Some(Ok(Some(arguments))) => Some(arguments),
                _ => None,
            };
            planner.consider(&fingerprint, sql, arguments, scope.as_ref())
        });
        // Called from the caller's code (before the future is polled): its stack is the
        // statement's call site.
        let idle_site = usage.and_then(|usage| {
            if let Some(item) = usage.starts(&pool.settings, &owner.name, fingerprint.normalized())
            {
                crate::pool::report_held_idle(scope.as_ref(), &pool.unscoped, &pool.settings, item);
            }
            usage.statement_site(&pool.settings, &owner.name, &fingerprint)
        });
        let span = pool.telemetry.start(&fingerprint, sql, scope.is_some());
        Ok(Query {
            pool,
            interrupted,
            usage,
            idle_site,
            scope,
            fingerprint,
            text_hash,
            start: Instant::now(),
            returned: 0,
            affected: 0,
            done: false,
            logged: false,
            span,
            candidate,
        })
    }

    /// The statement with the pool's tags appended, when it has tags and runs in a scope (the
    /// fingerprint is already taken from the untagged text). A prepared statement handed in by
    /// the caller keeps its text.
    fn tag(&self, mut parts: Parts) -> Parts {
        let (Some(tagger), Some(scope)) = (&self.pool.tagger, &self.scope) else {
            return parts;
        };
        if parts.statement.is_some() {
            return parts;
        }
        let site = tagger
            .wants_call_site()
            .then(|| crate::detect::resolved_call_site(&scope.name, self.fingerprint.id()))
            .flatten();
        if let Some(tagged) = tagger.tag(
            parts.sql.as_str(),
            self.text_hash,
            &scope.name,
            site.as_deref(),
            telemetry::traceparent,
        ) {
            parts.sql = sqlx::AssertSqlSafe(tagged).into_sql_str();
            if tagger.tags.per_request() {
                // A text per request: preparing it would fill the statement cache for nothing.
                parts.persistent = false;
            }
        }
        parts
    }

    /// Records how the statement ended, once.
    fn finish(&mut self, outcome: Outcome<'_>) {
        if self.done {
            return;
        }
        self.done = true;
        if matches!(outcome, Outcome::Ok) && !self.logged && wrapped::observer_installed() {
            wrapped::unlogged_statement();
        }
        let run = Execution {
            elapsed: self.start.elapsed(),
            rows: if self.returned > 0 {
                self.returned
            } else {
                self.affected
            },
            outcome,
        };
        let fp = &self.fingerprint;
        scope::with_state(self.scope.as_ref(), &self.pool.unscoped, |state| {
            state.finished(fp, &run)
        });
        if let Some(usage) = self.usage {
            usage.statement_ended(fp, self.idle_site.take());
        }
        self.pool.telemetry.finish(&mut self.span, fp, &run);
        if self.span.is_deferred()
            && let Some(scope) = &self.scope
        {
            scope.add_span(&mut self.span);
        }
        if let Some(planner) = &self.pool.planner
            && matches!(run.outcome, Outcome::Ok)
        {
            planner.finished(fp, run.elapsed);
            if let Some(candidate) = self.candidate.take() {
                planner.submit(candidate, run.elapsed);
            }
        }
    }
}

/// The class of a sqlx error, for reports and `error.type`.
fn classify(error: &sqlx::Error) -> ErrorClass {
    let kind = |k: &'static str| ErrorClass {
        kind: Cow::Borrowed(k),
        sqlstate: None,
    };
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => ErrorClass {
                kind: Cow::Owned(code.to_string()),
                sqlstate: Some(code.into_owned()),
            },
            None => kind("_OTHER"),
        },
        sqlx::Error::Io(_) => kind("io"),
        sqlx::Error::Tls(_) => kind("tls"),
        sqlx::Error::Protocol(_) => kind("protocol"),
        sqlx::Error::PoolTimedOut => kind("pool_timed_out"),
        sqlx::Error::PoolClosed => kind("pool_closed"),
        sqlx::Error::Encode(_) => kind("encode"),
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => kind("decode"),
        _ => kind("_OTHER"),
    }
}

impl Drop for Query<'_> {
    fn drop(&mut self) {
        // A future dropped mid-query (a cancelled request): the statement was sent, so it
        // counts, as failed.
        if !self.done {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        self.finish(Outcome::Cancelled);
    }
}

type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

/// The rows of one statement, counted as they pass. The sqlx stream is polled under the
/// wrapper's mark, so an observer layer does not count the statement a second time.
struct Counted<'e> {
    inner: Wrapped<BoxStream<'e, Item>>,
    query: Query<'e>,
}

impl Stream for Counted<'_> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        let next = ready!(this.inner.poll_next_unpin(cx));
        this.query.logged |= this.inner.seen;
        match &next {
            Some(Ok(Either::Right(_))) => this.query.returned += 1,
            Some(Ok(Either::Left(result))) => this.query.affected += result.rows_affected(),
            Some(Err(e)) => this.query.finish(Outcome::Failed(&classify(e))),
            None => this.query.finish(Outcome::Ok),
        }
        Poll::Ready(next)
    }
}

/// Starts a statement on a held connection: the verdict, the span and the sqlx stream, counted
/// (not boxed: `execute` and `fetch_all` consume it in place). Called from the caller's code,
/// before any future is polled, so the stack is the statement's call site.
fn counted<'e, 'q: 'e, E>(conn: &'e mut Connection, query: E) -> Result<Counted<'e>, sqlx::Error>
where
    E: 'q + Execute<'q, Postgres>,
{
    let parts = Parts::take(query);
    let scope = conn.query_scope();
    let query = Query::start(
        &conn.pool,
        &conn.interrupted,
        conn.usage.as_ref(),
        scope,
        &parts,
    )?;
    let parts = query.tag(parts);
    let inner = (&mut *conn.raw).fetch_many(parts);
    Ok(Counted {
        inner: Wrapped::new(inner),
        query,
    })
}

/// What `execute` returns: the statements' results added up, as sqlx's default does, without
/// its filtering and collecting stream layers.
async fn results(mut rows: impl Stream<Item = Item> + Unpin) -> Result<PgQueryResult, sqlx::Error> {
    let mut sum = PgQueryResult::default();
    while let Some(item) = rows.try_next().await? {
        if let Either::Left(result) = item {
            sum.extend(Some(result));
        }
    }
    Ok(sum)
}

/// What `fetch_all` returns: every row, as sqlx's default does, without its extra layers.
async fn all_rows(mut rows: impl Stream<Item = Item> + Unpin) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut all = Vec::new();
    while let Some(item) = rows.try_next().await? {
        if let Either::Right(row) = item {
            all.push(row);
        }
    }
    Ok(all)
}

impl<'c> Executor<'c> for &'c mut Connection {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Item>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        match counted(self, query) {
            Ok(rows) => Box::pin(rows),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let rows = counted(self, query);
        Box::pin(async move { results(rows?).await })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let rows = counted(self, query);
        Box::pin(async move { all_rows(rows?).await })
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
        let started = Query::start(
            &self.pool,
            &self.interrupted,
            self.usage.as_ref(),
            scope,
            &parts,
        );
        let parts = match &started {
            Ok(query) => query.tag(parts),
            Err(_) => parts,
        };
        let raw = &mut *self.raw;
        Box::pin(async move {
            let mut query = started?;
            let mut fetch = Wrapped::new(raw.fetch_optional(parts));
            let result = (&mut fetch).await;
            query.logged = fetch.seen;
            match &result {
                Ok(row) => query.returned = u64::from(row.is_some()),
                Err(e) => query.finish(Outcome::Failed(&classify(e))),
            }
            query.finish(Outcome::Ok);
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
        let pool = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async_stream::try_stream! {
            let mut conn = acquire_in(pool, scope, None).await?;
            let mut rows = counted(&mut conn, query)?;
            while let Some(item) = rows.try_next().await? {
                yield item;
            }
        })
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async move {
            let mut conn = acquire_in(pool, scope, None).await?;
            results(counted(&mut conn, query)?).await
        })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async move {
            let mut conn = acquire_in(pool, scope, None).await?;
            all_rows(counted(&mut conn, query)?).await
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
        let pool = Arc::clone(&self.0);
        let scope = scope::current();
        Box::pin(async move {
            (&mut *acquire_in(pool, scope, None).await?)
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
        let pool = Arc::clone(&self.0);
        Box::pin(async move {
            (&mut *acquire_in(pool, None, None).await?)
                .prepare_with(sql, parameters)
                .await
        })
    }

    #[doc(hidden)]
    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>> {
        let pool = Arc::clone(&self.0);
        Box::pin(async move {
            (&mut *acquire_in(pool, None, None).await?)
                .describe(sql)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Params, Parts, PieceHasher};
    use sqlx::Arguments;
    use sqlx::SqlSafeStr;
    use sqlx::postgres::PgArguments;

    fn arguments(add: impl FnOnce(&mut PgArguments)) -> PgArguments {
        let mut arguments = PgArguments::default();
        add(&mut arguments);
        arguments
    }

    /// The hash, and whether the hasher recognised the rendering and stopped after the bytes.
    fn hash(arguments: &PgArguments) -> (u64, bool) {
        let mut hasher = PieceHasher::new(7);
        let stopped = std::fmt::Write::write_fmt(&mut hasher, format_args!("{arguments:?}"));
        (hasher.finish(), stopped.is_err())
    }

    #[test]
    fn a_first_execution_kept_for_later_hashes_as_it_would_have_at_once() {
        let parts = |v: i64| Parts {
            sql: sqlx::AssertSqlSafe("SELECT $1".to_owned()).into_sql_str(),
            statement: None,
            arguments: Some(Ok(Some(arguments(|a| a.add(v).unwrap())))),
            persistent: true,
        };
        let now = |p: &Parts| match p.params(9, false) {
            Params::Hash(h) => h,
            _ => panic!("hashed at once"),
        };
        let later = |p: &Parts| match p.params(9, true) {
            Params::Later(f) => f(),
            _ => panic!("kept for later"),
        };
        assert_eq!(now(&parts(5)), later(&parts(5)));
        assert_ne!(now(&parts(5)), later(&parts(6)));
        // Nothing bound: the text's hash, never kept.
        let bare = Parts {
            arguments: Some(Ok(None)),
            ..parts(1)
        };
        assert!(matches!(bare.params(9, true), Params::Hash(9)));
    }

    #[test]
    fn stops_after_the_value_bytes_of_this_sqlx() {
        // If sqlx renders its arguments differently, hashing still works but reads the whole
        // rendering: this says so.
        let one = arguments(|a| a.add(5_i64).unwrap());
        assert!(hash(&one).1, "{one:?}");
        let text = arguments(|a| {
            a.add("a ] b").unwrap();
            a.add(Option::<i32>::None).unwrap();
        });
        assert!(hash(&text).1, "{text:?}");
    }

    #[test]
    fn equal_values_hash_equal_and_different_values_differ() {
        let five = || arguments(|a| a.add(5_i64).unwrap());
        assert_eq!(hash(&five()).0, hash(&five()).0);
        let six = arguments(|a| a.add(6_i64).unwrap());
        assert_ne!(hash(&five()).0, hash(&six).0);
        // Same bytes, another type.
        let int = arguments(|a| a.add(1_i32).unwrap());
        let float = arguments(|a| a.add(f32::from_bits(1)).unwrap());
        assert_ne!(hash(&int).0, hash(&float).0);
        // Values that differ only in their last byte, among several.
        let pair = |last: &str| {
            arguments(|a| {
                a.add(1_i64).unwrap();
                a.add(last.to_owned()).unwrap();
            })
        };
        assert_ne!(hash(&pair("abc")).0, hash(&pair("abd")).0);
        assert_eq!(hash(&pair("abc")).0, hash(&pair("abc")).0);
        // NULL is not an empty string.
        let null = arguments(|a| a.add(Option::<String>::None).unwrap());
        let empty = arguments(|a| a.add(String::new()).unwrap());
        assert_ne!(hash(&null).0, hash(&empty).0);
    }
}
