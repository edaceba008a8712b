//! Overhead of pgscope against raw sqlx, measured in the same run.
//!
//! ```text
//! cargo run --release --example overhead [-- --seconds 0.5 --rounds 5]
//! ```
//! For each workload (`SELECT 1`, a 10-row query) and concurrency (1, 16), rounds alternate
//! between a raw `sqlx::PgPool` and a `pgscope::Pool` (each worker inside a scope, N+1 detection
//! on), so drift in the machine's load hits both sides alike. Prints queries/second and ratio.

#[path = "../tests/common/mod.rs"]
mod common;

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
}

async fn run(
    side: Side,
    raw: &PgPool,
    pg: &pgscope::Pool,
    w: Workload,
    workers: usize,
    dur: Duration,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (raw, pg, done, stop) = (raw.clone(), pg.clone(), done.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            match side {
                Side::Raw => {
                    while !stop.load(Ordering::Relaxed) {
                        sqlx::query(w.sql())
                            .fetch_all(&raw)
                            .await
                            .expect("raw query");
                        n += 1;
                    }
                }
                Side::Scoped => {
                    let ((), _report) = pgscope::capture_named("bench", async {
                        while !stop.load(Ordering::Relaxed) {
                            sqlx::query(w.sql())
                                .fetch_all(&pg)
                                .await
                                .expect("pgscope query");
                            n += 1;
                        }
                    })
                    .await;
                }
                Side::ScopePerQuery => {
                    while !stop.load(Ordering::Relaxed) {
                        let (r, _report) =
                            pgscope::capture_named("bench", sqlx::query(w.sql()).fetch_all(&pg))
                                .await;
                        r.expect("pgscope query");
                        n += 1;
                    }
                }
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("worker");
    }
    done.load(Ordering::Relaxed)
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 0.5);
    let rounds = arg("--rounds", 5.0) as usize;
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
    for side in [Side::Raw, Side::Scoped] {
        for w in [Workload::SelectOne, Workload::TenRows] {
            run(side, &raw, &pg, w, 16, Duration::from_millis(200)).await;
        }
    }
    println!(
        "pgscope overhead: {rounds} interleaved rounds of {seconds} s per cell, pool of 16, release build"
    );
    println!(
        "| workload | concurrency | raw sqlx q/s | pgscope q/s (scope per worker) | ratio | pgscope q/s (scope per query) | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    // `--otel-only` skips the plain comparison (for profiling the export path).
    let otel_only = std::env::args().any(|a| a == "--otel-only");
    let plain = if otel_only {
        vec![]
    } else {
        vec![Workload::SelectOne, Workload::TenRows]
    };
    for w in plain {
        for workers in [1usize, 16] {
            let mut totals = [0u64; 3];
            for round in 0..rounds {
                // alternate the order each round
                let order = if round % 2 == 0 {
                    [Side::Raw, Side::Scoped, Side::ScopePerQuery]
                } else {
                    [Side::ScopePerQuery, Side::Scoped, Side::Raw]
                };
                for side in order {
                    let n = run(side, &raw, &pg, w, workers, dur).await;
                    totals[side as usize] += n;
                }
            }
            let secs = seconds * rounds as f64;
            let qps = |n: u64| n as f64 / secs;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.3} |",
                w.name(),
                workers,
                qps(totals[0]),
                qps(totals[1]),
                totals[1] as f64 / totals[0] as f64,
                qps(totals[2]),
                totals[2] as f64 / totals[0] as f64,
            );
        }
    }
    #[cfg(feature = "otel")]
    {
        // Same comparison with OTLP export on: spans for every statement and the metrics go
        // through the real exporter (OTLP/HTTP protobuf) to an in-process sink.
        let (addr, received) = start_sink().await;
        let _guard = pgscope::otel::OtelBuilder::new()
            .endpoint(format!("http://{addr}"))
            .protocol(pgscope::otel::Protocol::HttpProtobuf)
            .log_to_stderr(false)
            .metric_interval(Duration::from_secs(1))
            // Variants for investigating the export cost; the defaults are what `init()` does.
            .context_activation(std::env::var_os("BENCH_NO_CONTEXT_ACTIVATION").is_none())
            .export_filter(
                std::env::var("BENCH_EXPORT_FILTER").unwrap_or_else(|_| "info,sqlx=off".into()),
            )
            .init();
        let pg_otel = pgscope::PoolOptions::new()
            .max_connections(16)
            .connect(&url)
            .await
            .expect("pgscope pool");
        run(
            Side::Scoped,
            &raw,
            &pg_otel,
            Workload::SelectOne,
            16,
            Duration::from_millis(200),
        )
        .await;
        println!("\nwith OTLP export (HTTP/protobuf to an in-process sink):");
        println!("| workload | concurrency | raw sqlx q/s | pgscope + OTLP q/s | ratio |");
        println!("|---|---:|---:|---:|---:|");
        for w in [Workload::SelectOne, Workload::TenRows] {
            for workers in [1usize, 16] {
                let (mut raw_n, mut otel_n) = (0u64, 0u64);
                for round in 0..rounds {
                    if round % 2 == 0 {
                        raw_n += run(Side::Raw, &raw, &pg_otel, w, workers, dur).await;
                        otel_n += run(Side::Scoped, &raw, &pg_otel, w, workers, dur).await;
                    } else {
                        otel_n += run(Side::Scoped, &raw, &pg_otel, w, workers, dur).await;
                        raw_n += run(Side::Raw, &raw, &pg_otel, w, workers, dur).await;
                    }
                }
                let secs = seconds * rounds as f64;
                println!(
                    "| {} | {} | {:.0} | {:.0} | {:.3} |",
                    w.name(),
                    workers,
                    raw_n as f64 / secs,
                    otel_n as f64 / secs,
                    otel_n as f64 / raw_n as f64
                );
            }
        }
        drop(_guard);
        println!("OTLP bytes exported: {}", received.load(Ordering::Relaxed));
    }
    let (entries, misses) = pg.fingerprint_cache_stats();
    println!(
        "\nfingerprint cache: {entries} entries, {misses} misses; total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
