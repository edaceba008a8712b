//! A collector that accepts connections and never answers must not slow queries down, grow
//! memory without bound, or hold up shutdown past the configured timeout.

mod common;

use std::time::{Duration, Instant};

use pgscope::otel::{OtelBuilder, Protocol};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn workload(pool: &pgscope::Pool, scopes: usize, per_scope: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(scopes * per_scope);
    for s in 0..scopes {
        let ((), _) = pgscope::capture_named(format!("route-{}", s % 10), async {
            for _ in 0..per_scope {
                let t = Instant::now();
                sqlx::query("SELECT 1").execute(pool).await.expect("query");
                latencies.push(t.elapsed());
            }
        })
        .await;
    }
    latencies
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 99 / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_costs_no_latency_no_unbounded_memory_and_no_slow_shutdown() {
    // Accepts TCP connections, never speaks: the worst kind of dead collector.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });

    let opts = common::schema("otel_down").await;
    let baseline_pool = pgscope::Pool::connect_with(opts.clone())
        .await
        .expect("connect");
    workload(&baseline_pool, 5, 50).await; // warm-up
    let baseline = p99(workload(&baseline_pool, 20, 100).await);

    let timeout = Duration::from_secs(1);
    let guard = OtelBuilder::new()
        .endpoint(format!("http://{addr}"))
        .protocol(Protocol::Grpc)
        .export_timeout(timeout)
        .metric_interval(Duration::from_millis(200))
        .max_queue_size(512)
        .log_to_stderr(false)
        .init();
    let pool = pgscope::Pool::connect_with(opts).await.expect("connect");
    workload(&pool, 5, 50).await;
    let rss_before = rss_bytes();
    let exporting = p99(workload(&pool, 200, 100).await); // 20 000 spans against a dead collector
    let rss_after = rss_bytes();

    assert!(
        exporting < baseline * 3 + Duration::from_millis(5),
        "p99 with a hanging collector {exporting:?} vs {baseline:?} without export"
    );
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024 * 1024,
        "memory grew by {} MiB",
        growth / 1024 / 1024
    );

    let t = Instant::now();
    drop(guard);
    let shutdown = t.elapsed();
    // Traces and metrics each wait at most `timeout`.
    assert!(
        shutdown < timeout * 2 + Duration::from_secs(2),
        "shutdown took {shutdown:?}"
    );
}
