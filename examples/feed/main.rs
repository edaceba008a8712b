//! The seed story, runnable: `GET /api/feed` from N+1 to JOIN to Redis cache to rate limit,
//! each act measured under the same load in one run.
//!
//! ```text
//! cargo run --release --example feed --features axum [-- --vus 50 --duration 6 --pool 10 --modes naive,join,cached,limited]
//! ```
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and `REDIS_URL`
//! (default `redis://127.0.0.1:6379`); starts throwaway servers when none answer and the
//! binaries are installed, and says how to start them otherwise.

mod app;
#[path = "../../tests/common/mod.rs"]
mod common;
mod plans;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use app::{AppState, Mode, Stats, Tiers};
use hdrhistogram::Histogram;
use sqlx::postgres::PgConnectOptions;

struct Args {
    /// Offered load in requests/second (constant arrival rate); 0 = closed loop.
    rate: f64,
    vus: usize,
    duration: Duration,
    pool: u32,
    pages: i64,
    modes: Vec<Mode>,
    /// Tag statements with their route (sqlcommenter), so `pg_stat_activity` shows it.
    tags: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rate: 700.0,
        vus: 50,
        duration: Duration::from_secs(6),
        pool: 10,
        pages: 10,
        modes: Mode::ALL.to_vec(),
        tags: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{} needs a number, got `{v}`", argv[i]))
        };
        if argv[i] == "--tags" {
            a.tags = true;
            i += 1;
            continue;
        }
        match argv[i].as_str() {
            "--vus" => a.vus = num(&value)? as usize,
            "--rate" => a.rate = num(&value)?,
            "--duration" => a.duration = Duration::from_secs_f64(num(&value)?),
            "--pool" => a.pool = num(&value)? as u32,
            "--pages" => a.pages = num(&value)? as i64,
            "--modes" => {
                a.modes = value
                    .split(',')
                    .map(|m| {
                        Mode::parse(m.trim()).ok_or_else(|| {
                            format!("unknown mode `{m}` (naive, join, cached, limited)")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!(
                    "usage: feed [--tags] [--vus N] [--duration SECS] [--pool N] [--pages N] [--modes naive,join,cached,limited]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag `{other}` (see --help)")),
        }
        i += 2;
    }
    Ok(a)
}

async fn feed_schema() -> PgConnectOptions {
    use sqlx::Connection;
    let url = common::database_url().await;
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS pgscope_feed")
        .execute(&mut admin)
        .await
        .expect("schema");
    PgConnectOptions::from_str(&url)
        .expect("url")
        .options([("search_path", "pgscope_feed")])
}

struct Outcome {
    mode: Mode,
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    too_many: u64,
    errors: u64,
    stats: Arc<Stats>,
}

enum Fetched {
    Ok,
    TooMany,
    Failed,
}

/// One `GET /api/feed` as user `user`, body read to the end.
async fn fetch_feed(client: &reqwest::Client, base: &str, page: i64, user: u64) -> Fetched {
    let resp = client
        .get(format!("{base}/api/feed?page={page}"))
        .header("x-user-id", format!("user-{user}"))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().as_u16() == 429 => Fetched::TooMany,
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(_) => Fetched::Ok,
            Err(_) => Fetched::Failed,
        },
        _ => Fetched::Failed,
    }
}

fn http_client(vus: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(vus)
        .build()
        .expect("http client")
}

async fn drive(
    base: &str,
    vus: usize,
    duration: Duration,
    pages: i64,
) -> (Histogram<u64>, u64, u64, u64, Duration) {
    let client = http_client(vus);
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for vu in 0..vus {
        let (client, base) = (client.clone(), base.to_owned());
        handles.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut n, mut too_many, mut errors) = (0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                let page = (vu as i64 + n as i64) % pages;
                let t = Instant::now();
                match fetch_feed(&client, &base, page, vu as u64).await {
                    Fetched::Ok => {}
                    Fetched::TooMany => too_many += 1,
                    Fetched::Failed => errors += 1,
                }
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                n += 1;
            }
            (hist, n, too_many, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut total, mut too_many, mut errors) = (0, 0, 0);
    for h in handles {
        let (h, n, t, e) = h.await.expect("virtual user");
        hist.add(&h).expect("merge");
        total += n;
        too_many += t;
        errors += e;
    }
    (hist, total, too_many, errors, start.elapsed())
}

/// Constant arrival rate, like k6's `constant-arrival-rate`: request `i` is due at
/// `start + i / rate`, at most `vus` are in flight, and latency is measured from the due time,
/// so time spent queued behind a slow server counts (no coordinated omission).
async fn drive_rate(
    base: &str,
    rate: f64,
    vus: usize,
    duration: Duration,
    pages: i64,
) -> (Histogram<u64>, u64, u64, u64, Duration) {
    let client = http_client(vus);
    let slots = Arc::new(tokio::sync::Semaphore::new(vus));
    let hist = Arc::new(parking_lot::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
    ));
    let counts = Arc::new([
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    ]);
    let start = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&slots).acquire_owned().await.expect("semaphore");
        let (client, base, hist, counts) = (
            client.clone(),
            base.to_owned(),
            hist.clone(),
            counts.clone(),
        );
        let user = i % vus as u64;
        let page = (i as i64) % pages;
        tasks.push(tokio::spawn(async move {
            match fetch_feed(&client, &base, page, user).await {
                Fetched::Ok => {}
                Fetched::TooMany => {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                Fetched::Failed => {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = hist.lock().record(due.elapsed().as_micros().max(1) as u64);
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let hist = hist.lock().clone();
    (
        hist,
        total,
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        elapsed,
    )
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("feed: {e}");
            std::process::exit(2);
        }
    };
    // With `--features otel` and OTEL_EXPORTER_OTLP_ENDPOINT set, every request's trace (with
    // its N+1 event) and the pool metrics go to the collector (see collector-config/).
    #[cfg(feature = "otel")]
    let _otel = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").map(|_| {
        pgscope::otel::OtelBuilder::new()
            .service_name("pgscope-feed")
            .log_filter("error")
            .init()
    });
    #[cfg(feature = "otel")]
    let fmt_needed = _otel.is_none();
    #[cfg(not(feature = "otel"))]
    let fmt_needed = true;
    if fmt_needed {
        tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
            .init();
    }
    let redis_url = match app::redis_url().await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("feed: {e}");
            std::process::exit(1);
        }
    };
    let opts = feed_schema().await;
    let plan_opts = opts.clone();
    let t = Instant::now();
    app::setup_schema(&opts)
        .await
        .expect("schema and seed data");
    eprintln!(
        "schema ready ({} users, {} posts) in {:.1} s",
        app::USERS,
        app::POSTS,
        t.elapsed().as_secs_f64()
    );
    let mut options = pgscope::PoolOptions::new()
        .max_connections(args.pool)
        .acquire_timeout(Duration::from_secs(30));
    if args.tags {
        options = options.tag_statements(pgscope::Tags::new().route().application("feed"));
    }
    let pool = options.connect_with(opts).await.expect("pool");
    let redis = app::connect_redis(&redis_url).await.expect("redis");
    let ns = format!(
        "pgscope-feed-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );

    let load = if args.rate > 0.0 {
        format!(
            "{:.0} requests/s offered (at most {} in flight)",
            args.rate, args.vus
        )
    } else {
        format!("{} virtual users in a closed loop", args.vus)
    };
    eprintln!(
        "load: {load} for {:.1} s per mode, pool of {}, {} feed pages; modes: {}",
        args.duration.as_secs_f64(),
        args.pool,
        args.pages,
        args.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut outcomes = Vec::new();
    let mut naive_diagnosis: Option<pgscope::Diagnosis> = None;
    for &mode in &args.modes {
        let state = AppState {
            pool: pool.clone(),
            redis: redis.clone(),
            mode,
            tiers: Tiers::default(),
            stats: Arc::new(Stats::default()),
            ns: format!("{ns}-{}", mode.name()),
        };
        let router = app::router(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let (latency, requests, too_many, errors, elapsed) = if args.rate > 0.0 {
            drive_rate(&base, args.rate, args.vus, args.duration, args.pages).await
        } else {
            drive(&base, args.vus, args.duration, args.pages).await
        };
        if mode == Mode::Naive {
            naive_diagnosis = Some(pool.diagnose());
        }
        server.abort();
        let _ = app::invalidate(&state).await;
        eprintln!("  {:<8} done: {requests} requests", mode.name());
        outcomes.push(Outcome {
            mode,
            requests,
            elapsed,
            latency,
            too_many,
            errors,
            stats: state.stats,
        });
    }

    println!();
    println!(
        "| mode | req/s | p50 | p99 | queries/req | N+1 flagged | pool wait p99 | cache hit % | 429s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let s = &o.stats;
        let served = s.requests.load(Ordering::Relaxed).max(1);
        let mut waits = s.pool_wait_us.lock().clone();
        waits.sort_unstable();
        let wait_p99 = waits
            .get(waits.len().saturating_sub(1).min(waits.len() * 99 / 100))
            .copied()
            .unwrap_or(0);
        let (hits, misses) = (
            s.cache_hits.load(Ordering::Relaxed),
            s.cache_misses.load(Ordering::Relaxed),
        );
        let hit = if hits + misses == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", 100.0 * hits as f64 / (hits + misses) as f64)
        };
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {} | {} | {} | {} |",
            o.mode.name(),
            o.requests as f64 / o.elapsed.as_secs_f64(),
            ms(o.latency.value_at_quantile(0.5)),
            ms(o.latency.value_at_quantile(0.99)),
            s.queries.load(Ordering::Relaxed) as f64 / served as f64,
            s.n_plus_one.load(Ordering::Relaxed),
            ms(wait_p99),
            hit,
            o.too_many,
        );
        if o.errors > 0 {
            eprintln!("  ({} errors in {})", o.errors, o.mode.name());
        }
    }

    // Seed 002's arithmetic, from measured hold times: pool capacity = connections / hold time.
    println!(
        "\npool arithmetic (pool of {} connections), measured:",
        args.pool
    );
    let mut capacity = Vec::new();
    for o in &outcomes {
        let s = &o.stats;
        let served = s.requests.load(Ordering::Relaxed);
        if served == 0 || matches!(o.mode, Mode::Limited) {
            continue;
        }
        let hold = Duration::from_nanos(s.hold_ns.load(Ordering::Relaxed) / served);
        if hold < Duration::from_micros(50) {
            println!(
                "  {:<7} mean connection hold {:>7.3} ms/request: served from the cache, the pool is no longer the limit",
                o.mode.name(),
                hold.as_secs_f64() * 1000.0
            );
            continue;
        }
        let cap = f64::from(args.pool) / hold.as_secs_f64();
        capacity.push((o.mode, cap));
        println!(
            "  {:<7} mean connection hold {:>7.3} ms/request → {} / {:.3} ms = {:>9.0} requests/s before requests queue",
            o.mode.name(),
            hold.as_secs_f64() * 1000.0,
            args.pool,
            hold.as_secs_f64() * 1000.0,
            cap
        );
    }
    if let (Some((_, naive)), Some((_, join))) = (
        capacity.iter().find(|(m, _)| *m == Mode::Naive),
        capacity.iter().find(|(m, _)| *m == Mode::Join),
    ) {
        println!(
            "  fixing the N+1 multiplies pool capacity by {:.1}×",
            join / naive
        );
    }
    if let Some(d) = naive_diagnosis {
        println!("\npool diagnosis at the end of the naive act: {d}");
    }
    plans::act(plan_opts, &[5, 100, 1000], 300).await;
}
