//! `collector-config/alerts.yml` end to end: the feed example's app serves real HTTP requests
//! under load, pgscope's metrics go through the OpenTelemetry SDK to the official Prometheus
//! exporter (named as the Collector's `prometheus` exporter names them), a real Prometheus
//! (Debian's package) scrapes them every second and evaluates the shipped rules, with their
//! `for:` shortened so the run is bounded. The naive feed (21 statements a request) on a pool
//! of 2 makes `PgscopePoolPressure` fire; the JOIN feed at the same offered load, on a pool of
//! its own, does not.

#[path = "../examples/feed/app.rs"]
mod app;
mod common;
#[path = "common/prometheus.rs"]
mod prom;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn feed_state(pool: &pgscope::Pool, mode: app::Mode, ns: &str) -> app::AppState {
    app::AppState::connect(
        pool,
        mode,
        format!("pgscope-alerts-{ns}-{}", std::process::id()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `clients` loops, each sending `GET {url}` every `every` (or as fast as answers come when
/// the server is slower), until `stop`; counts answers. The clients start spread over one
/// period, so the load is even rather than a burst of all of them at once.
fn load(url: String, clients: usize, every: Duration, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let answered = Arc::new(AtomicU64::new(0));
    for c in 0..clients {
        let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut next = tokio::time::Instant::now() + every * c as u32 / clients as u32;
            tokio::time::sleep_until(next).await;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = client.get(&url).send().await
                    && r.status().is_success()
                {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                next += every;
                tokio::time::sleep_until(next.max(tokio::time::Instant::now())).await;
            }
        });
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_pressure_fires_for_the_naive_feed_and_not_for_the_join() {
    // pgscope's metrics into a Prometheus registry, served at /metrics.
    let (router, provider) = prom::metrics_endpoint();
    let metrics = common::serve(router).await;
    let rules = prom::rules_with_for("5s");
    let prometheus =
        prom::start_prometheus(metrics.trim_start_matches("http://"), Some(&rules)).await;

    // The feed app twice, each on a pool of 2 of its own (made after the meter provider).
    let opts = common::schema("alerts_feed").await;
    app::setup_schema(&opts).await.expect("seed");
    let pool = |name: &'static str| {
        pgscope::PoolOptions::new()
            .max_connections(2)
            .name(name)
            .connect_with(opts.clone())
    };
    let naive_pool = pool("feed-naive").await.expect("pool");
    let join_pool = pool("feed-join").await.expect("pool");
    let (naive_reports, join_reports) = (pgscope::Recorder::new(), pgscope::Recorder::new());
    let naive = common::serve(app::router_with(
        feed_state(&naive_pool, app::Mode::Naive, "naive").await,
        pgscope::http::ScopeLayer::new().on_report(naive_reports.hook()),
    ))
    .await;
    let join = common::serve(app::router_with(
        feed_state(&join_pool, app::Mode::Join, "join").await,
        pgscope::http::ScopeLayer::new().on_report(join_reports.hook()),
    ))
    .await;
    let (naive_url, join_url) = (
        format!("{naive}/api/feed?page=1"),
        format!("{join}/api/feed?page=1"),
    );

    // How long each variant holds connections per request on this machine, one request at a
    // time: the offered load is set from it, so the test means the same on a fast machine and
    // a slow one.
    let client = reqwest::Client::new();
    let mut mean_hold = Vec::new();
    for (url, reports) in [(&naive_url, &naive_reports), (&join_url, &join_reports)] {
        for _ in 0..40 {
            let r = client.get(url).send().await.expect("request");
            assert_eq!(r.status(), 200);
        }
        let all = reports.all("GET /api/feed");
        let total: Duration = all.iter().map(|r| r.connection_hold_time()).sum();
        mean_hold.push(total / u32::try_from(all.len()).expect("count"));
    }
    let (naive_hold, join_hold) = (mean_hold[0], mean_hold[1]);
    assert!(
        join_hold * 3 < naive_hold,
        "the JOIN holds connections a fraction of the naive feed's time: {join_hold:?} vs {naive_hold:?}"
    );
    // The same offered load on both, one after the other (each has the machine to itself):
    // 1.3 times what two connections can serve of the naive feed, so its pool stays full and
    // requests queue; the JOIN needs a fraction of one connection's time at that rate.
    let rate = 1.3 * 2.0 / naive_hold.as_secs_f64();
    let clients = 16;
    let every = Duration::from_secs_f64(clients as f64 / rate);
    let alerts = || async {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", prometheus.base))
            .await
            .expect("alerts")
            .json()
            .await
            .expect("json");
        assert_eq!(v["status"], "success", "{v}");
        v
    };
    let pressure = |alerts: &serde_json::Value, pool: &str, states: &[&str]| {
        alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "PgscopePoolPressure"
                    && x["labels"]["db_client_connection_pool_name"] == pool
                    && states.iter().any(|s| x["state"] == *s)
            })
        })
    };

    // The naive feed: until its pool's alert fires (at most 60 s).
    let stop = Arc::new(AtomicBool::new(false));
    let naive_answered = load(naive_url, clients, every, stop.clone());
    let started = Instant::now();
    let mut seen = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seen = alerts().await;
        if pressure(&seen, "feed-naive", &["firing"]) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let naive_n = naive_answered.load(Ordering::Relaxed);
    assert!(
        pressure(&seen, "feed-naive", &["firing"]),
        "PgscopePoolPressure did not fire for the naive feed in {:?} at {rate:.0} requests/s \
         ({naive_n} answered): {seen}",
        started.elapsed()
    );
    // The naive feed's N+1s were counted by route, and their alert fired too.
    assert!(
        seen["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| {
                x["labels"]["alertname"] == "PgscopeNPlusOne"
                    && x["labels"]["pgscope_route"] == "GET /api/feed"
            })),
        "{seen}"
    );

    // The JOIN at the same rate, for longer than the rule's `for:` twice over: never firing (a
    // reading of a full pool at one instant may make it pending; the `for:` is what keeps
    // bursts from paging anyone).
    let stop = Arc::new(AtomicBool::new(false));
    let join_answered = load(join_url, clients, every, stop.clone());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = alerts().await;
        assert!(
            !pressure(&now, "feed-join", &["firing"]),
            "the join feed at the same load ({rate:.0} requests/s, holds {join_hold:?} against \
             {naive_hold:?}) must not be under pressure: {now}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let join_n = join_answered.load(Ordering::Relaxed);
    // It was served at the offered rate (not starved into looking healthy).
    assert!(
        join_n as f64 > 0.8 * rate * 12.0,
        "{join_n} join requests answered in 12 s at {rate:.0}/s offered"
    );
    let _ = provider.shutdown();
}
