//! Overhead of pgscope against raw sqlx, measured in the same run.
//!
//! ```text
//! cargo run --release --example overhead [-- --seconds 0.5 --rounds 5]
//! ```
//! For each workload (`SELECT 1`, a 10-row query) and concurrency (1, 16), rounds alternate
//! between a raw `sqlx::PgPool`, a `pgscope::Pool` (each worker inside a scope, N+1 detection
//! on), and a raw `sqlx::PgPool` seen by pgscope's observer layer (each worker inside a scope),
//! so drift in the machine's load hits every side alike. Prints queries/second and ratio.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/shapes.rs"]
mod shapes;

use shapes::{LOOKUP, Shape, pgscope_scope, raw_scope};

/// An OTLP/HTTP sink that accepts and counts bytes without decoding them: in production the
/// collector runs elsewhere, so the benchmark should not charge its decoding to pgscope.
#[cfg(feature = "otel")]
async fn start_sink() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    use axum::body::Bytes;
    use axum::routing::post;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/v1/{signal}",
        post(move |body: Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(body.len() as u64, Ordering::Relaxed);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("sink") });
    (addr, received)
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tracing::Instrument;

#[derive(Clone, Copy)]
enum Workload {
    SelectOne,
    TenRows,
}

impl Workload {
    fn sql(self) -> &'static str {
        match self {
            Workload::SelectOne => "SELECT 1",
            Workload::TenRows => "SELECT g, 'row ' || g AS label FROM generate_series(1, 10) g",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Workload::SelectOne => "SELECT 1",
            Workload::TenRows => "10-row query",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Raw,
    Scoped,
    ScopePerQuery,
    /// A raw pool, its workers in scopes, under a subscriber with pgscope's observer layer.
    Observed,
    /// A raw pool under a subscriber whose only layer enables `sqlx::query` events and ignores
    /// them: what sqlx's own statement event costs, the floor of any observer.
    SqlxEvents,
}

/// The subscriber of the `SqlxEvents` side.
fn events_only() -> &'static tracing::Dispatch {
    static DISPATCH: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    DISPATCH.get_or_init(|| {
        use tracing_subscriber::prelude::*;
        struct Ignore;
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Ignore {}
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE);
        tracing::Dispatch::new(tracing_subscriber::registry().with(Ignore.with_filter(filter)))
    })
}

/// The subscriber of the `Observed` side: a registry with the observer layer only.
fn observer() -> &'static tracing::Dispatch {
    static DISPATCH: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    DISPATCH.get_or_init(|| {
        use tracing_subscriber::prelude::*;
        tracing::Dispatch::new(tracing_subscriber::registry().with(pgscope::observe()))
    })
}

/// Runs one cell and returns (queries, client CPU spent).
async fn run(
    side: Side,
    raw: &PgPool,
    pg: &pgscope::Pool,
    w: Workload,
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    let cpu_before = cpu_time();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (raw, pg, done, stop) = (raw.clone(), pg.clone(), done.clone(), stop.clone());
        // With tracing on, each worker is a traced request on both sides (a span per worker,
        // as a `TraceLayer` gives every request); pgscope's scope uses that span.
        let request = tracing::info_span!("request");
        let dispatch = match side {
            Side::Observed => observer().clone(),
            Side::SqlxEvents => events_only().clone(),
            _ => tracing::dispatcher::get_default(Clone::clone),
        };
        let worker = tracing::Instrument::instrument(
            async move {
                let mut n = 0u64;
                match side {
                    Side::Raw | Side::SqlxEvents => {
                        while !stop.load(Ordering::Relaxed) {
                            sqlx::query(w.sql())
                                .fetch_all(&raw)
                                .await
                                .expect("raw query");
                            n += 1;
                        }
                    }
                    // A worker in one scope: through pgscope's pool, or through the raw pool
                    // seen by the observer.
                    Side::Scoped | Side::Observed => {
                        let scope = pgscope::Scope::new("bench").use_current_span();
                        let ((), _report) = scope
                            .capture(async {
                                while !stop.load(Ordering::Relaxed) {
                                    let query = sqlx::query(w.sql());
                                    let rows = match side {
                                        Side::Observed => query.fetch_all(&raw).await,
                                        _ => query.fetch_all(&pg).await,
                                    };
                                    rows.expect("query");
                                    n += 1;
                                }
                            })
                            .await;
                    }
                    Side::ScopePerQuery => {
                        while !stop.load(Ordering::Relaxed) {
                            let scope = pgscope::Scope::new("bench").use_current_span();
                            let (r, _report) =
                                scope.capture(sqlx::query(w.sql()).fetch_all(&pg)).await;
                            r.expect("pgscope query");
                            n += 1;
                        }
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            },
            request,
        );
        handles.push(tokio::spawn(
            tracing::instrument::WithSubscriber::with_subscriber(worker, dispatch),
        ));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("worker");
    }
    (done.load(Ordering::Relaxed), cpu_time() - cpu_before)
}

/// Runs each of `N` sides `rounds` times, reversing the order every other round so drift in the
/// machine's load hits every side alike; queries and client CPU per side.
async fn interleaved<const N: usize, F, Fut>(rounds: usize, mut cell: F) -> [(u64, Duration); N]
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (u64, Duration)>,
{
    let mut totals = [(0u64, Duration::ZERO); N];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..N).collect()
        } else {
            (0..N).rev().collect()
        };
        for i in order {
            let (n, cpu) = cell(i).await;
            totals[i].0 += n;
            totals[i].1 += cpu;
        }
    }
    totals
}

/// One table row: `label`, raw sqlx's q/s (side 0), q/s and ratio to raw of sides
/// `1..=ratios`, then client CPU µs per query of every side.
fn row<const N: usize>(
    label: &str,
    cells: &[(u64, Duration); N],
    ratios: usize,
    secs: f64,
) -> String {
    let qps = |i: usize| cells[i].0 as f64 / secs;
    let mut out = format!("| {label} | {:.0} |", qps(0));
    for i in 1..=ratios {
        out.push_str(&format!(
            " {:.0} | {:.3} |",
            qps(i),
            cells[i].0 as f64 / cells[0].0.max(1) as f64
        ));
    }
    let cpu: Vec<String> = cells
        .iter()
        .map(|(n, cpu)| format!("{:.1}", cpu.as_secs_f64() * 1e6 / (*n).max(1) as f64))
        .collect();
    out.push_str(&format!(" {} |", cpu.join(" / ")));
    out
}

/// CPU time (user + system) this process has used so far: every thread, including the
/// exporter's and the in-process sink's.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::main]
async fn main() {
    #[cfg(feature = "otel")]
    if std::env::args().any(|a| a == "--sink-only") {
        let (addr, _) = start_sink().await;
        println!("sink on http://{addr}");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    let seconds = common::flag("--seconds", 0.5);
    let rounds = common::flag("--rounds", 5.0) as usize;
    let url = common::database_url().await;
    let raw = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("raw pool");
    let pg = pgscope::PoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("pgscope pool");
    let dur = Duration::from_secs_f64(seconds);
    // Warm both pools up to 16 connections and the statement caches.
    for side in [Side::Raw, Side::Scoped, Side::Observed] {
        for w in [Workload::SelectOne, Workload::TenRows] {
            run(side, &raw, &pg, w, 16, Duration::from_millis(200)).await;
        }
    }
    println!(
        "pgscope overhead: {rounds} interleaved rounds of {seconds} s per cell, pool of 16, release build"
    );
    println!(
        "| workload | concurrency | raw sqlx q/s | pgscope q/s (scope per worker) | ratio | pgscope q/s (scope per query) | ratio | raw sqlx + observer q/s | ratio | client CPU µs/query raw / per worker / per query / observer / sqlx events only |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let started = Instant::now();
    // `--otel-only` skips the plain comparison (for profiling the export path).
    let otel_only = std::env::args().any(|a| a == "--otel-only");
    // `--n-plus-one-only`: just the N+1-shaped table.
    let n_plus_one_only = std::env::args().any(|a| a == "--n-plus-one-only");
    // `--repeated-only`: just the repeated-statements table (issue-sized runs).
    let repeated_only = std::env::args().any(|a| a == "--repeated-only");
    if repeated_only {
        repeated_table(&raw, &pg, rounds, seconds).await;
        return;
    }
    let plain = if otel_only || n_plus_one_only {
        vec![]
    } else {
        vec![Workload::SelectOne, Workload::TenRows]
    };
    for w in plain {
        for workers in [1usize, 16] {
            const SIDES: [Side; 5] = [
                Side::Raw,
                Side::Scoped,
                Side::ScopePerQuery,
                Side::Observed,
                Side::SqlxEvents,
            ];
            let cells: [(u64, Duration); 5] =
                interleaved(rounds, |i| run(SIDES[i], &raw, &pg, w, workers, dur)).await;
            let label = format!("{} | {workers}", w.name());
            // Ratios for the three pgscope sides; sqlx's events alone only as CPU.
            println!("{}", row(&label, &cells, 3, seconds * rounds as f64));
        }
    }
    if !otel_only {
        n_plus_one_table(&raw, &url, rounds, seconds).await;
    }
    #[cfg(feature = "console")]
    if !otel_only {
        console_table(&raw, &pg, rounds, seconds).await;
    }
    if !otel_only {
        repeated_table(&raw, &pg, rounds, seconds).await;
        held_table(&raw, &url, rounds, seconds).await;
        tags_table(&raw, &url, rounds, seconds).await;
    }
    #[cfg(feature = "otel")]
    otel_table(&raw, &url, rounds, seconds).await;
    let (entries, misses) = pg.fingerprint_cache_stats();
    println!(
        "\nfingerprint cache: {entries} entries, {misses} misses; total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The shape of an N+1 endpoint under load: each request a scope running one lookup ten times
/// (so every scope crosses the N+1 threshold and reports a finding), on raw sqlx (no scope),
/// on pgscope with detection on, and with detection off (`Mode::Off`).
async fn n_plus_one_table(raw: &PgPool, url: &str, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    let pool = |mode: pgscope::Mode| {
        pgscope::PoolOptions::new()
            .max_connections(16)
            .n_plus_one_mode(mode)
            .n_plus_one_threshold(
                std::env::var("BENCH_THRESHOLD")
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(5),
            )
            .connect(url)
    };
    let on = pool(pgscope::Mode::Warn).await.expect("pgscope pool");
    let off = pool(pgscope::Mode::Off).await.expect("pgscope pool");
    // EXPLAIN on with its defaults (explain after executions slower than 100 ms): nothing
    // here is slow, so this is its cost on the path of every statement.
    let explain = pgscope::PoolOptions::new()
        .max_connections(16)
        .explain(pgscope::ExplainOptions::new())
        .connect(url)
        .await
        .expect("pgscope pool");
    println!(
        "\nN+1-shaped requests (a scope of 10 × `SELECT $1::bigint`, 10 values: every scope an N+1, parameters hashed from the 2nd execution), pool of 16:"
    );
    println!(
        "| concurrency | raw sqlx q/s | detection on q/s | ratio | detection off q/s | ratio | detection + explain on q/s | ratio | client CPU µs/query raw / on / off / explain |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for workers in [1usize, 16] {
        let cells: [(u64, Duration); 4] = interleaved(rounds, |i| {
            requests(i, raw, [&on, &off, &explain], workers, dur)
        })
        .await;
        println!(
            "{}",
            row(&workers.to_string(), &cells, 3, seconds * rounds as f64)
        );
    }
}

/// The cost of the request console: the N+1-shaped requests on pgscope with every report handed
/// to a `Console` (which also makes every scope keep its statement timeline), against the same
/// pool with no console in the process.
#[cfg(feature = "console")]
async fn console_table(raw: &PgPool, pg: &pgscope::Pool, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    println!(
        "\nThe console's cost: N+1-shaped requests (a scope of 10 × `SELECT $1::bigint`), pool of 16:"
    );
    println!(
        "| concurrency | raw sqlx q/s | pgscope q/s | ratio | pgscope + console q/s | ratio | client CPU µs/query raw / pgscope / + console | console CPU |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|---:|");
    for workers in [1usize, 16] {
        let cells: [(u64, Duration); 3] = interleaved(rounds, |i| async move {
            match i {
                0 => requests(0, raw, [pg, pg, pg], workers, dur).await,
                1 => requests(1, raw, [pg, pg, pg], workers, dur).await,
                _ => {
                    // Created per run and dropped after it: timelines are kept only while one
                    // exists, so the other sides run without.
                    let console = pgscope::console::Console::new();
                    let hook: Hook = Arc::new(console.hook());
                    let cell = requests_with(raw, pg, Some(hook), workers, dur).await;
                    drop(console);
                    cell
                }
            }
        })
        .await;
        let per = |c: &(u64, Duration)| c.1.as_secs_f64() * 1e6 / c.0.max(1) as f64;
        println!(
            "{} {:+.1} % |",
            row(&workers.to_string(), &cells, 2, seconds * rounds as f64),
            (per(&cells[2]) / per(&cells[1]) - 1.0) * 100.0
        );
    }
}

/// The cost of measuring held connections' idle time: each request acquires a connection and
/// runs 10 statements on it, with the held-idle finding on (default threshold, nothing
/// crosses it) and off, against raw sqlx doing the same on an acquired connection.
async fn held_table(raw: &PgPool, url: &str, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    let pool = |threshold: Option<Duration>| {
        pgscope::PoolOptions::new()
            .max_connections(16)
            .held_idle_threshold(threshold)
            .connect(url)
    };
    let on = pool(Some(Duration::from_millis(100))).await.expect("pool");
    let off = pool(None).await.expect("pool");
    println!(
        "\nHeld connections: a scope that acquires a connection and runs 10 × `SELECT $1::bigint` on it, pool of 16:"
    );
    println!(
        "| concurrency | raw sqlx q/s | held-idle on q/s | ratio | held-idle off q/s | ratio | client CPU µs/query raw / on / off |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for workers in [1usize, 16] {
        let cells: [(u64, Duration); 3] = interleaved(rounds, |i| {
            let pool = [None, Some(&on), Some(&off)][i];
            held_requests(raw, pool, workers, dur)
        })
        .await;
        println!(
            "{}",
            row(&workers.to_string(), &cells, 2, seconds * rounds as f64)
        );
    }
}

/// The per-scope cost of detection on repeated statements: scopes of 10 × `SELECT 1` (the same
/// statement with the same (no) parameters: a duplicate finding in every scope) and of
/// 10 × `SELECT $1::bigint` with ten values (an N+1 in every scope), raw sqlx against pgscope
/// with detection on, interleaved.
async fn repeated_table(raw: &PgPool, pg: &pgscope::Pool, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    println!(
        "\nRepeated statements per scope (10 × `SELECT 1`: a duplicate; 10 × `SELECT $1` with distinct values: an N+1; the same in a transaction and on a held connection), pool of 16:"
    );
    // The same pool size with `exact_repetition_counts(false)`: reading bound values stops
    // once two sets differ.
    let fast = pgscope::PoolOptions::new()
        .max_connections(16)
        .exact_repetition_counts(false)
        .connect(&common::database_url().await)
        .await
        .expect("pgscope pool");
    println!(
        "| scope | concurrency | raw sqlx q/s | pgscope q/s | ratio | pgscope, exact counts off q/s | ratio | client CPU µs/query raw / pgscope / exact counts off | CPU ratio raw / pgscope | raw / exact counts off |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    // `--shapes tx,held` (or `pool`): only those.
    let only = std::env::args()
        .skip_while(|a| a != "--shapes")
        .nth(1)
        .unwrap_or_else(|| "pool,tx,held".into());
    let shapes = [
        (Shape::Same, "pool"),
        (Shape::Distinct, "pool"),
        (Shape::Transaction, "tx"),
        (Shape::Held, "held"),
    ];
    for (shape, key) in shapes {
        if !only.split(',').any(|k| k == key) {
            continue;
        }
        let label = shape.label();
        for workers in [1usize, 16] {
            let cells: [(u64, Duration); 3] = interleaved(rounds, |i| {
                let pool = [None, Some(pg), Some(&fast)][i];
                requests_shaped(raw, pool, None, shape, workers, dur)
            })
            .await;
            let per = |c: &(u64, Duration)| c.1.as_secs_f64() * 1e6 / c.0.max(1) as f64;
            println!(
                "| {label} {} {:.3} | {:.3} |",
                row(&workers.to_string(), &cells, 2, seconds * rounds as f64),
                per(&cells[0]) / per(&cells[1]),
                per(&cells[0]) / per(&cells[2])
            );
        }
    }
}

/// The cost of statement tags: N+1-shaped requests (10 × `SELECT $1::bigint` on `&Pool` in a
/// scope) untagged, tagged with the route (cached text, prepared), and with `traceparent()`
/// (run unprepared: parsed and planned by the server on every execution).
async fn tags_table(raw: &PgPool, url: &str, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    let pool = |tags: Option<pgscope::Tags>| {
        let mut options = pgscope::PoolOptions::new().max_connections(16);
        if let Some(tags) = tags {
            options = options.tag_statements(tags);
        }
        options.connect(url)
    };
    let plain = pool(None).await.expect("pool");
    let route = pool(Some(pgscope::Tags::new().route().application("bench")))
        .await
        .expect("pool");
    let unprepared = pool(Some(pgscope::Tags::new().route().traceparent()))
        .await
        .expect("pool");
    println!(
        "\nStatement tags: N+1-shaped requests (a scope of 10 × `SELECT $1::bigint`), pool of 16:"
    );
    println!(
        "| concurrency | raw sqlx q/s | untagged q/s | ratio | route tags q/s | ratio | traceparent (unprepared) q/s | ratio | client CPU µs/query raw / untagged / route / unprepared |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for workers in [1usize, 16] {
        let cells: [(u64, Duration); 4] = interleaved(rounds, |i| {
            let pool = [None, Some(&plain), Some(&route), Some(&unprepared)][i];
            requests_on(raw, pool, None, workers, dur)
        })
        .await;
        println!(
            "{}",
            row(&workers.to_string(), &cells, 3, seconds * rounds as f64)
        );
    }
}

/// Requests that acquire a connection and run 10 statements on it; (queries, CPU).
async fn held_requests(
    raw: &PgPool,
    pool: Option<&pgscope::Pool>,
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    let cpu_before = cpu_time();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (raw, done, stop) = (raw.clone(), done.clone(), stop.clone());
        let pool = pool.cloned();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match &pool {
                    None => {
                        let mut conn = raw.acquire().await.expect("acquire");
                        for i in 0..10_i64 {
                            sqlx::query(LOOKUP)
                                .bind(i)
                                .execute(&mut *conn)
                                .await
                                .expect("raw");
                        }
                    }
                    Some(pool) => {
                        let ((), _report) = pgscope::capture_named("POST /checkout", async {
                            let mut conn = pool.acquire().await.expect("acquire");
                            for i in 0..10_i64 {
                                sqlx::query(LOOKUP)
                                    .bind(i)
                                    .execute(&mut *conn)
                                    .await
                                    .expect("pgscope");
                            }
                        })
                        .await;
                    }
                }
                n += 10;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("worker");
    }
    (done.load(Ordering::Relaxed), cpu_time() - cpu_before)
}

/// Runs N+1-shaped requests on side `i` (0 raw, 1 detection on, 2 off, 3 explain on);
/// (queries, CPU).
async fn requests(
    i: usize,
    raw: &PgPool,
    pools: [&pgscope::Pool; 3],
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    match i {
        0 => requests_on(raw, None, None, workers, dur).await,
        _ => requests_on(raw, Some(pools[i - 1]), None, workers, dur).await,
    }
}

/// A report hook shared by a run's workers.
type Hook = Arc<dyn Fn(&pgscope::Report) + Send + Sync>;

/// N+1-shaped requests on `pool` with each report handed to `hook`; (queries, CPU).
#[cfg(feature = "console")]
async fn requests_with(
    raw: &PgPool,
    pool: &pgscope::Pool,
    hook: Option<Hook>,
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    requests_on(raw, Some(pool), hook, workers, dur).await
}

/// N+1-shaped requests on `pool` (raw sqlx when `None`); (queries, CPU).
async fn requests_on(
    raw: &PgPool,
    pool: Option<&pgscope::Pool>,
    hook: Option<Hook>,
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    requests_shaped(raw, pool, hook, Shape::Distinct, workers, dur).await
}

/// Scopes of 10 statements of `shape` (see [`Shape`]); (queries, CPU).
async fn requests_shaped(
    raw: &PgPool,
    pool: Option<&pgscope::Pool>,
    hook: Option<Hook>,
    shape: Shape,
    workers: usize,
    dur: Duration,
) -> (u64, Duration) {
    let cpu_before = cpu_time();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (raw, done, stop) = (raw.clone(), done.clone(), stop.clone());
        let pool = pool.cloned();
        let hook = hook.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Each request a traced request on every side (a no-op without a subscriber).
                let request = tracing::info_span!("GET /api/feed");
                match &pool {
                    None => raw_scope(&raw, shape).instrument(request).await,
                    Some(pool) => {
                        let mut scope = pgscope::Scope::new("GET /api/feed").use_current_span();
                        if let Some(hook) = hook.clone() {
                            scope = scope.on_report(move |r| hook(r));
                        }
                        let ((), _report) = scope
                            .capture(pgscope_scope(pool, shape))
                            .instrument(request)
                            .await;
                    }
                }
                n += 10;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("worker");
    }
    (done.load(Ordering::Relaxed), cpu_time() - cpu_before)
}

/// The same comparison with OTLP export on (HTTP/protobuf to an in-process sink that counts
/// bytes), each worker a traced request on both sides (its span exported): raw sqlx, pgscope
/// exporting a span per statement plus the scope summary and metrics, and pgscope with
/// statement spans off (scope summary, N+1 events and metrics only). `--sample R`
/// samples traces at ratio R (`OtelBuilder::trace_sample_ratio`).
///
/// Profiling helpers: `BENCH_PROFILE=raw|otel` runs only that side (SELECT 1, 16 workers) for
/// `--seconds` and prints its CPU per query; `BENCH_ENDPOINT` exports elsewhere (e.g. a closed
/// port, to separate building spans from shipping them, or another process's sink started with
/// `--sink-only`), `BENCH_PROTOCOL=grpc` over gRPC (to a receiver of your own).
#[cfg(feature = "otel")]
async fn otel_table(raw: &PgPool, url: &str, rounds: usize, seconds: f64) {
    let dur = Duration::from_secs_f64(seconds);
    let (addr, received) = start_sink().await;
    let sample = std::env::args()
        .position(|a| a == "--sample")
        .map(|_| common::flag("--sample", 1.0));
    let mut builder = pgscope::otel::OtelBuilder::new()
        .endpoint(std::env::var("BENCH_ENDPOINT").unwrap_or(format!("http://{addr}")))
        .protocol(match std::env::var("BENCH_PROTOCOL").as_deref() {
            Ok("grpc") => pgscope::otel::Protocol::Grpc,
            _ => pgscope::otel::Protocol::HttpProtobuf,
        })
        .log_to_stderr(false)
        .metric_interval(Duration::from_secs(1));
    if let Some(ratio) = sample {
        builder = builder.trace_sample_ratio(ratio);
    }
    let _guard = builder.init();
    let pool = |spans: bool| {
        pgscope::PoolOptions::new()
            .max_connections(16)
            .query_spans(spans)
            .connect(url)
    };
    let spans = pool(true).await.expect("pgscope pool");
    let quiet = pool(false).await.expect("pgscope pool");
    for p in [&spans, &quiet] {
        run(
            Side::Scoped,
            raw,
            p,
            Workload::SelectOne,
            16,
            Duration::from_millis(200),
        )
        .await;
    }
    if let Ok(side) = std::env::var("BENCH_PROFILE") {
        let side = if side == "raw" {
            Side::Raw
        } else {
            Side::Scoped
        };
        let (n, used) = run(side, raw, &spans, Workload::SelectOne, 16, dur).await;
        println!(
            "{n} queries, {:.1} µs CPU/query",
            used.as_secs_f64() * 1e6 / n as f64
        );
        return;
    }
    match sample {
        Some(r) => println!(
            "\nwith OTLP export (HTTP/protobuf to an in-process sink; a request span per worker on both sides), traces sampled at {r}:"
        ),
        None => println!(
            "\nwith OTLP export (HTTP/protobuf to an in-process sink; a request span per worker on both sides), every trace:"
        ),
    }
    println!(
        "| workload | concurrency | raw sqlx q/s | pgscope + OTLP q/s | ratio | same, statement spans off | ratio | client CPU µs/query raw / OTLP / spans off |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for w in [Workload::SelectOne, Workload::TenRows] {
        for workers in [1usize, 16] {
            let cells: [(u64, Duration); 3] = interleaved(rounds, |i| {
                let (side, pool) = match i {
                    0 => (Side::Raw, &spans),
                    1 => (Side::Scoped, &spans),
                    _ => (Side::Scoped, &quiet),
                };
                run(side, raw, pool, w, workers, dur)
            })
            .await;
            let label = format!("{} | {workers}", w.name());
            println!("{}", row(&label, &cells, 2, seconds * rounds as f64));
        }
    }
    // The N+1 shape with export on: raw sqlx, a span per statement, compressed spans.
    let compressed = pgscope::PoolOptions::new()
        .max_connections(16)
        .compress_query_spans(true)
        .connect(url)
        .await
        .expect("pgscope pool");
    println!(
        "\nN+1-shaped requests (a traced request of 10 × `SELECT $1::bigint`) with OTLP export:"
    );
    println!(
        "| concurrency | raw sqlx q/s | span per statement q/s | ratio | compressed spans q/s | ratio | statement spans off q/s | ratio | client CPU µs/query raw / per statement / compressed / off |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for workers in [1usize, 16] {
        let cells: [(u64, Duration); 4] = interleaved(rounds, |i| {
            requests(i, raw, [&spans, &compressed, &quiet], workers, dur)
        })
        .await;
        println!(
            "{}",
            row(&workers.to_string(), &cells, 3, seconds * rounds as f64)
        );
    }
    drop(_guard);
    println!("OTLP bytes exported: {}", received.load(Ordering::Relaxed));
}
