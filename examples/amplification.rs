//! Query amplification as a denial of service, and the query budget that stops it.
//!
//! ```text
//! cargo run --release --example amplification --features axum [-- --seconds 5 --hostile-rate 20 --n 10000]
//! ```
//! `GET /items?n=N` loads N items with one statement per item, N taken from the request: the
//! hostile shape (a client asks for 10 000). `GET /profile` is normal traffic (2 statements).
//! Three phases on a pool of 8, each `--seconds` long: normal traffic alone (16 clients in a
//! closed loop: the baseline); normal traffic plus hostile requests for `/items?n=10000`
//! arriving at `--hostile-rate` per second (an attacker does not wait for answers) on a pool
//! without a budget; the same with `PoolOptions::query_budget(100)`, where each hostile request stops at
//! its 100th statement with `pgscope::Error::QueryBudgetExceeded`, which the handler turns
//! into a 413. Prints statements sent, p99 of each route and the pool wait p99.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[derive(serde::Deserialize)]
struct Items {
    n: i64,
}

async fn items(State(pool): State<pgscope::Pool>, Query(q): Query<Items>) -> (StatusCode, String) {
    let mut loaded = 0;
    for id in 0..q.n {
        // One statement per item: the shape an attacker multiplies.
        match sqlx::query("SELECT $1::bigint AS item_id, pg_sleep(0)")
            .bind(id)
            .fetch_one(&pool)
            .await
        {
            Ok(_) => loaded += 1,
            Err(e) => {
                return match pgscope::Error::from_sqlx(&e) {
                    Some(pgscope::Error::QueryBudgetExceeded { budget, .. }) => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("this request would need more than {budget} statements\n"),
                    ),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                };
            }
        }
    }
    (StatusCode::OK, format!("{loaded} items\n"))
}

async fn profile(State(pool): State<pgscope::Pool>) -> (StatusCode, String) {
    for sql in ["SELECT 1 AS user_row", "SELECT 2 AS settings_row"] {
        if let Err(e) = sqlx::query(sql).fetch_one(&pool).await {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    }
    (StatusCode::OK, "profile\n".to_owned())
}

/// Per route: statements sent, latency, pool wait.
#[derive(Default)]
struct Totals {
    statements: AtomicU64,
    requests: AtomicU64,
    pool_wait_us: Mutex<Vec<u64>>,
}

struct Phase {
    name: &'static str,
    normal: Histogram<u64>,
    hostile: Histogram<u64>,
    statuses: Vec<u16>,
    routes: Arc<[(String, Totals); 2]>,
}

async fn phase(
    name: &'static str,
    url: &str,
    budget: Option<u32>,
    hostile_rate: f64,
    n: i64,
    seconds: f64,
) -> Phase {
    let mut options = pgscope::PoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(60))
        // The loop is the point here, not the N+1 warning.
        .n_plus_one_mode(pgscope::Mode::Off);
    if let Some(budget) = budget {
        options = options.query_budget(budget);
    }
    let pool = options.connect(url).await.expect("pool");
    let routes: Arc<[(String, Totals); 2]> = Arc::new([
        ("GET /profile".to_owned(), Totals::default()),
        ("GET /items".to_owned(), Totals::default()),
    ]);
    let hook = routes.clone();
    let app = axum::Router::new()
        .route("/items", get(items))
        .route("/profile", get(profile))
        .with_state(pool)
        .layer(
            pgscope::http::ScopeLayer::new().on_report(move |report: &pgscope::Report| {
                if let Some((_, t)) = hook.iter().find(|(r, _)| r == report.name()) {
                    t.statements.fetch_add(report.queries(), Ordering::Relaxed);
                    t.requests.fetch_add(1, Ordering::Relaxed);
                    t.pool_wait_us
                        .lock()
                        .push(report.pool_wait_time().as_micros() as u64);
                }
            }),
        );
    let base = common::serve(app).await;
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, stop, url) = (client.clone(), stop.clone(), format!("{base}/profile"));
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                }
                latency.record(start.elapsed().as_micros() as u64).ok();
            }
            latency
        }));
    }
    // Hostile requests arrive at a fixed rate, whatever happens to the earlier ones.
    let hostile_results: Arc<Mutex<(Histogram<u64>, Vec<u16>)>> = Arc::new(Mutex::new((
        Histogram::<u64>::new(3).expect("histogram"),
        Vec::new(),
    )));
    let mut in_flight = tokio::task::JoinSet::new();
    let attacker = {
        let (client, stop, results) = (client.clone(), stop.clone(), hostile_results.clone());
        let url = format!("{base}/items?n={n}");
        async move {
            if hostile_rate <= 0.0 {
                return in_flight;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / hostile_rate));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (client, url, results) = (client.clone(), url.clone(), results.clone());
                in_flight.spawn(async move {
                    let start = Instant::now();
                    let status = match client.get(&url).send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    let mut results = results.lock();
                    results.0.record(start.elapsed().as_micros() as u64).ok();
                    if !results.1.contains(&status) {
                        results.1.push(status);
                    }
                });
            }
            in_flight
        }
    };
    let attacker = tokio::spawn(attacker);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut normal = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        normal.add(t.await.expect("client")).expect("add");
    }
    // Requests still running when the phase ends are abandoned (they count as unanswered).
    let mut in_flight = attacker.await.expect("attacker");
    while in_flight.try_join_next().is_some() {}
    let unanswered = in_flight.len();
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
    let (hostile, mut statuses) = {
        let results = hostile_results.lock();
        (results.0.clone(), results.1.clone())
    };
    if unanswered > 0 {
        eprintln!("  {name}: {unanswered} hostile requests unanswered at the end");
    }
    statuses.sort_unstable();
    statuses.dedup();
    Phase {
        name,
        normal,
        hostile,
        statuses,
        routes,
    }
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn p99(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1).min(v.len() * 99 / 100))
        .copied()
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let seconds = common::flag("--seconds", 5.0);
    let hostile = common::flag("--hostile-rate", 20.0);
    let n = common::flag("--n", 10_000.0) as i64;
    let url = common::database_url().await;
    eprintln!(
        "pool of 8; 16 normal clients on GET /profile; {hostile} hostile requests/s for GET /items?n={n}; {seconds} s per phase"
    );
    let phases = [
        phase("normal traffic only", &url, None, 0.0, n, seconds).await,
        phase("+ hostile, no budget", &url, None, hostile, n, seconds).await,
        phase(
            "+ hostile, query_budget(100)",
            &url,
            Some(100),
            hostile,
            n,
            seconds,
        )
        .await,
    ];
    println!(
        "| phase | /profile req | /profile p99 | /profile pool wait p99 | /items answered | statements per /items req | /items p99 | /items status | statements sent |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for p in &phases {
        let [(_, profile), (_, items)] = &*p.routes;
        let item_requests = items.requests.load(Ordering::Relaxed);
        let sent =
            profile.statements.load(Ordering::Relaxed) + items.statements.load(Ordering::Relaxed);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.name,
            profile.requests.load(Ordering::Relaxed),
            ms(p.normal.value_at_quantile(0.99)),
            ms(p99(&profile.pool_wait_us.lock())),
            p.hostile.len(),
            items
                .statements
                .load(Ordering::Relaxed)
                .checked_div(item_requests)
                .map_or_else(|| "-".to_owned(), |per| per.to_string()),
            if p.hostile.is_empty() {
                "-".to_owned()
            } else {
                ms(p.hostile.value_at_quantile(0.99))
            },
            if p.statuses.is_empty() {
                "-".to_owned()
            } else {
                p.statuses
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            sent,
        );
    }
}
