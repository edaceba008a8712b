//! Every panel of `collector-config/grafana/dashboards/pgscope.json` returns data from a real
//! Prometheus scraping real pgscope metrics.
//!
//! pgscope's instruments go through the OpenTelemetry SDK to the official Prometheus exporter
//! (`opentelemetry-prometheus`, which names metrics by the OpenTelemetry-to-Prometheus rules the
//! Collector's `prometheus` exporter follows: `.` → `_`, unit suffixes such as `_seconds`,
//! `_total` on counters); a real `prometheus` server (Debian's package, installed by `.ci/run`
//! or by the test when missing) scrapes them every second while a workload runs N+1s, duplicates,
//! budget refusals, pool pressure and a plan flip; then each panel's PromQL is asked of
//! Prometheus' query API and must return at least one series.

mod common;
#[path = "common/prometheus.rs"]
mod prom;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The PromQL of every panel target in the dashboard.
fn panel_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/collector-config/grafana/dashboards/pgscope.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push((
                panel["title"].as_str().expect("title").to_owned(),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_series_from_a_real_prometheus() {
    // pgscope's metrics through the SDK into a Prometheus registry, served at /metrics.
    let (app, provider) = prom::metrics_endpoint();
    let base = common::serve(app).await;
    // With the shipped alert rules (their `for:` shortened): the dashboard's alert panel reads
    // their state.
    let rules = prom::rules_with_for("1s");
    let prometheus = prom::start_prometheus(base.trim_start_matches("http://"), Some(&rules)).await;

    // The workload, on pools made after the meter provider is installed.
    let opts = common::schema("dashboard").await;
    common::tasks_table(&opts).await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(2)
        .query_budget(50)
        .connect_with(opts.clone())
        .await
        .expect("connect");
    // EXPLAIN never runs while a pool has waiters: the plan flip gets a pool of its own.
    let plans = pgscope::PoolOptions::new()
        .max_connections(2)
        .explain(common::explain_every_execution().interval(Duration::from_millis(200)))
        .connect_with(opts)
        .await
        .expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (pool, plans, stop) = (pool.clone(), plans.clone(), stop.clone());
            tokio::spawn(async move {
                let mut round = 0_i64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    // An N+1 (different parameters), a duplicate (the same), pool pressure
                    // from 6 workers on 2 connections.
                    let ((), _) = pgscope::capture_named("GET /api/feed", async {
                        common::repeat(&pool, "SELECT $1::int AS dashboard_n1", 7).await;
                        for _ in 0..6 {
                            sqlx::query("SELECT 42 AS dashboard_dup")
                                .execute(&pool)
                                .await
                                .expect("dup");
                        }
                    })
                    .await;
                    // A request past its budget.
                    let ((), _) = pgscope::capture_named("GET /api/export", async {
                        for i in 0..60 {
                            if sqlx::query("SELECT $1::int AS dashboard_budget")
                                .bind(i)
                                .execute(&pool)
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    })
                    .await;
                    // The batched statement at two sizes: its plan flips.
                    if w == 0 {
                        let n = if round % 2 == 0 { 5 } else { 50_000 };
                        let ids: Vec<i64> = (0..n).collect();
                        let ((), _) = pgscope::capture_named("GET /api/tasks", async {
                            sqlx::query("SELECT count(*) FROM tasks WHERE project_id = ANY($1)")
                                .bind(&ids)
                                .fetch_all(&plans)
                                .await
                                .expect("batched");
                        })
                        .await;
                    }
                }
            })
        })
        .collect();

    // Ask every panel until it answers (Prometheus needs two scrapes for a rate).
    let client = reqwest::Client::new();
    let queries = panel_queries();
    assert!(queries.len() >= 11, "{} panel targets", queries.len());
    let mut missing = queries.clone();
    let started = Instant::now();
    while !missing.is_empty() && started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut still = Vec::new();
        for (title, expr) in missing {
            let answer: serde_json::Value = client
                .get(format!(
                    "{}/api/v1/query?query={}",
                    prometheus.base,
                    prom::percent_encode(&expr)
                ))
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            assert_eq!(answer["status"], "success", "{title}: `{expr}`: {answer}");
            if answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                still.push((title, expr));
            }
        }
        missing = still;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        missing.is_empty(),
        "panels without data after {:?}: {missing:#?}\nplans: {:?}\nscraped names: {:?}",
        started.elapsed(),
        plans.plans(),
        metrics
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .collect::<Vec<_>>()
    );
    let _ = provider.shutdown();
}
