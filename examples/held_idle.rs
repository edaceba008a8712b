//! Held idle, measured: a checkout route that calls a 50 ms "payment API" inside its
//! transaction, against the same route calling it before `begin`, on a pool of 8 under the same
//! offered load (a constant arrival rate), interleaved in one run.
//!
//! ```text
//! cargo run --release --example held_idle [-- --rate 200 --seconds 5 --pool 8 --api-ms 50]
//! ```
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), starting a throwaway
//! server when none answers.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `begin`, `UPDATE`, the API call, `INSERT`, `commit`.
    Inside,
    /// The API call, then `begin`, `UPDATE`, `INSERT`, `commit`.
    Before,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Inside => "API call inside the transaction",
            Variant::Before => "API call before `begin`",
        }
    }
}

#[derive(Default)]
struct Outcome {
    latency_us: Vec<u64>,
    wait_us: Vec<u64>,
    hold: Duration,
    idle: Duration,
    findings: u64,
    failed: u64,
}

async fn checkout(
    pool: &pgscope::Pool,
    variant: Variant,
    api: Duration,
    order: i64,
) -> Result<(), sqlx::Error> {
    if variant == Variant::Before {
        tokio::time::sleep(api).await; // the payment API
    }
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE held_idle_orders SET state = 'paying' WHERE id = $1")
        .bind(order)
        .execute(&mut *tx)
        .await?;
    if variant == Variant::Inside {
        tokio::time::sleep(api).await; // the payment API, with the transaction open
    }
    sqlx::query("INSERT INTO held_idle_payments (order_id) VALUES ($1)")
        .bind(order)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn run(
    pool: &pgscope::Pool,
    variant: Variant,
    rate: f64,
    seconds: f64,
    api: Duration,
) -> (Outcome, f64) {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let total = (rate * seconds) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (pool, outcome) = (pool.clone(), outcome.clone());
        tasks.push(tokio::spawn(async move {
            let (result, report) = pgscope::capture_named(
                "POST /checkout",
                checkout(&pool, variant, api, 1 + (i as i64 % 1000)),
            )
            .await;
            let mut o = outcome.lock();
            o.latency_us.push(due.elapsed().as_micros() as u64);
            o.wait_us.push(report.pool_wait_time().as_micros() as u64);
            o.hold += report.connection_hold_time();
            o.idle += report.idle_hold_time();
            o.findings += report.held_idle().len() as u64;
            o.failed += u64::from(result.is_err());
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let outcome = std::mem::take(&mut *outcome.lock());
    (outcome, total as f64 / elapsed)
}

fn p(values: &[u64], q: f64) -> f64 {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for v in values {
        let _ = h.record(*v);
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let rate = common::flag("--rate", 200.0);
    let seconds = common::flag("--seconds", 5.0);
    let size = common::flag("--pool", 8.0) as u32;
    let api = Duration::from_secs_f64(common::flag("--api-ms", 50.0) / 1000.0);
    let opts = common::schema("held_idle_demo").await;
    common::setup(
        &opts,
        "CREATE TABLE IF NOT EXISTS held_idle_orders (id bigint PRIMARY KEY, state text NOT NULL);
         INSERT INTO held_idle_orders SELECT g, 'new' FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS held_idle_payments (id bigserial PRIMARY KEY, order_id bigint NOT NULL);",
    )
    .await;
    println!(
        "held idle: POST /checkout with a {} ms API call, pool of {size}, {rate} requests/s offered for {seconds} s per variant (release build)\n",
        api.as_millis()
    );
    println!(
        "| variant | offered req/s | served req/s | p50 | p99 | pool wait p99 | idle share of hold | held-idle findings | pool capacity (size / mean hold) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for variant in [Variant::Inside, Variant::Before] {
        // A pool per variant: its diagnosis window sees only this variant's requests.
        let pool = pgscope::PoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(60))
            // Half the API call: the default (100 ms) would let a 50 ms call pass unreported.
            .held_idle_threshold(api / 2)
            .connect_with(opts.clone())
            .await
            .expect("pool");
        let (o, served) = run(&pool, variant, rate, seconds, api).await;
        let d = pool.diagnose();
        println!(
            "| {} | {rate:.0} | {served:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} % | {} | {:.0} req/s |",
            variant.name(),
            p(&o.latency_us, 0.5),
            p(&o.latency_us, 0.99),
            p(&o.wait_us, 0.99),
            o.idle.as_secs_f64() / o.hold.as_secs_f64().max(1e-9) * 100.0,
            o.findings,
            d.capacity_per_second().unwrap_or(0.0),
        );
        if variant == Variant::Inside
            && let Some(without) = d.capacity_without_idle_per_second()
        {
            println!(
                "|   (the same holds without their idle time) | | | | | | | | {without:.0} req/s |"
            );
        }
        if o.failed > 0 {
            println!("|   ({} requests failed) | | | | | | | | |", o.failed);
        }
    }
}
