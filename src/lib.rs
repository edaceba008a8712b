//! # pgscope
//!
//! See what each request does to PostgreSQL. `pgscope::Pool` is a drop-in replacement for
//! `sqlx::PgPool` that attributes every statement to the current *scope* (a request, a task, a
//! test) and reports, per scope: how many statements ran, which ones (grouped by
//! [fingerprint](fingerprint())), time in the database, connection hold time, time waiting for
//! the pool, and N+1 patterns with the line of code that caused them.
//!
//! ```no_run
//! # async fn f() -> Result<(), sqlx::Error> {
//! let pool = pgscope::Pool::connect("postgres://postgres@127.0.0.1/test").await?;
//!
//! let (posts, report) = pgscope::capture_named("GET /api/feed", async {
//!     let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM posts LIMIT 20").fetch_all(&pool).await?;
//!     for id in &ids {
//!         // one query per post: an N+1
//!         sqlx::query("SELECT name FROM users WHERE id = $1").bind(id).fetch_optional(&pool).await?;
//!     }
//!     Ok::<_, sqlx::Error>(ids)
//! })
//! .await;
//! posts?;
//! println!("{report}");             // table of statements, counts and times
//! for n in report.n_plus_one() {
//!     println!("{} x{} at {}", n.fingerprint().normalized(), n.count(), n.call_site());
//! }
//! # Ok(()) }
//! ```
//!
//! ## Scopes
//! [`capture`] / [`capture_named`] / [`Scope::capture`] run a future in a scope. Queries count for
//! the scope when they run in that future, in tasks started with [`spawn`], in futures
//! instrumented with a `tracing` span created inside the scope, or through a connection or
//! transaction acquired in the scope. The span route needs a `tracing_subscriber::Registry`-based
//! subscriber, and finds the scope through the request span it runs in or, without one, through
//! the scope's own `pgscope.scope` span: a DEBUG span on target `pgscope::scope`, kept out of
//! logs at the usual levels and recorded when any layer enables it (give that target `debug` in
//! a per-layer filter, e.g. the OpenTelemetry layer's, as `otel::init` does). Everything else
//! goes to [`Pool::unscoped_report`]: nothing is lost.
//!
//! ## Detection
//! A statement repeated more than the threshold (default 5) in one scope is classified when the
//! scope ends, from all its executions, and each finding is reported once per scope and
//! statement as a `tracing` WARN (a `log` record when no `tracing` subscriber is installed) and
//! in the report, with the report's counts:
//! - with two or more *distinct* parameter sets, an **N+1** ([`Report::n_plus_one`], target
//!   `pgscope::n_plus_one`): batch it. The finding says how many distinct values the loop had
//!   ([`NPlusOne::distinct_values`]), names the statement that ran before the loop
//!   ([`NPlusOne::parent`], the one to JOIN with) and, when the shape makes it certain, the
//!   batched statement ([`NPlusOne::suggestion`]: `… WHERE id = ANY($1)`). In [`Mode::Error`]
//!   each execution past the threshold fails once two distinct sets have been seen.
//! - with *one* parameter set shared by more executions than the threshold and no write between
//!   them, a **duplicate** ([`Report::duplicates`], target `pgscope::duplicate`): reuse the
//!   result. Locking reads (`FOR UPDATE … SKIP LOCKED`), volatile calls (`now()`, `nextval`)
//!   and reads repeated across a write are never duplicates; a loop that repeats some values is
//!   an N+1 with a duplicate note ([`Duplicate::part_of_n_plus_one`]).
//!
//! ```text
//! WARNING N+1 in GET /api/feed: 20x `SELECT name FROM users WHERE id = $1` with 4 distinct
//! values after `SELECT author_id, title FROM posts ORDER BY id LIMIT $1` from src/feed.rs:42
//! (fix: one query, `SELECT name FROM users WHERE id = ANY($1)` with an array of the 4 distinct
//! values, or a JOIN)
//! ```
//!
//! [`PoolOptions::on_finding`] hands every finding to one callback. A
//! [query budget](PoolOptions::query_budget) refuses statements past a per-scope limit before
//! they reach PostgreSQL.
//!
//! ## Web frameworks
//! [`http::ScopeLayer`] (feature `tower`, or `axum`) is a tower layer that runs each request in
//! a scope named by its route (axum's matched path, or the gRPC method for tonic), logs a
//! summary, can add a `Server-Timing` header, and hands each report to an `on_report` hook. Put
//! it inside tower-http's `TraceLayer` and the request span carries the scope's summary.
//! Other frameworks wrap their handler future in [`Scope::capture`] and can use
//! [`Report::server_timing`].
//!
//! ## OpenTelemetry
//! With feature `otel`, every query is a CLIENT span following the database semantic
//! conventions, each scope's summary and N+1 findings land on the request's span, and pools
//! export `db.client.*` metrics; [`otel::init`] sets up OTLP export from the standard
//! `OTEL_*` environment variables. Literal values never leave the process unless
//! [`PoolOptions::record_raw_sql`] opts in.
//!
//! ## Feature flags
//! | feature | what it adds |
//! |---|---|
//! | (none) | the pool, scopes, reports, fingerprints, N+1 / budget / pool-health rules |
//! | `tower` | [`http::ScopeLayer`]: one scope per request for any tower service (tonic, …) |
//! | `axum` | `tower`, with scopes named by axum's `MatchedPath` |
//! | `otel` | [`otel`]: spans, metrics and OTLP setup |
//! | `console` | `console::Console`: the request console, pages in the running app (axum) |
#![forbid(unsafe_code)]
// Builds with only one way in leave part of the shared core unused: observer-only builds the
// wrapper's accounting (hold time, pool wait, refusals), wrapper-only builds the observer's
// hooks.
#![cfg_attr(
    not(all(feature = "pool", feature = "observe")),
    allow(dead_code, unused_imports)
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
mod detect;
mod error;
#[cfg(feature = "pool")]
mod executor;
mod fingerprint;
mod health;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod http;
#[cfg(feature = "observe")]
#[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
pub mod observe;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
#[cfg(feature = "pool")]
mod plan;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
mod pool;
mod report;
mod scope;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub mod tags;
mod telemetry;
mod testing;
mod wrapped;

pub use self::detect::{Duplicate, Finding, HeldIdle, Mode, NPlusOne, NestedAcquire};
pub use self::error::{Error, Result};
pub use self::fingerprint::{
    Fingerprint, FingerprintCache, fingerprint, fingerprint_append, fingerprint_to,
};
pub use self::health::{Diagnosis, PoolStats, ScopeLoad};
#[cfg(feature = "observe")]
#[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
pub use self::observe::{NotObserved, Observer, observe, verify_observed};
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use self::plan::{
    ExplainOptions, PlanChange, PlanShape, Plans, SizeClass, SizedPlan, StatementPlans,
};
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use self::pool::{
    Connection, Pool, PoolConnection, PoolOptions, RawConnection, Transaction, assert_plan_stable,
    explain,
};
pub use self::report::{FingerprintStats, Report, Timeline, TimelineEntry, TimelineKind};
pub use self::scope::{
    Capture, Scope, allow_repetition, capture, capture_named, current_report, spawn,
};
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use self::tags::Tags;
pub use self::testing::{Recorder, assert_constant_queries};

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use pgscope_macros::test;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
