//! A global filter that hides `sqlx::query` from every layer: the observer cannot see
//! statements, and pgscope says so once, with the fix. Its own binary: it installs the global
//! subscriber.

mod common;

use common::events::Events;
use sqlx::postgres::PgPoolOptions;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_filter_hiding_statement_events_is_reported_once_with_the_fix() {
    let log = Events::default();
    tracing_subscriber::registry()
        .with(EnvFilter::new("info")) // global: applies to every layer, pgscope's too
        .with(log.clone())
        .with(pgscope::observe())
        .init();
    let pool = PgPoolOptions::new()
        .connect_with(common::schema("obs_filtered").await)
        .await
        .expect("connect");
    for _ in 0..3 {
        let ((), report) = pgscope::capture(async {
            sqlx::query("SELECT 1").execute(&pool).await.expect("query");
        })
        .await;
        assert_eq!(report.queries(), 0, "the observer sees nothing");
    }
    let warnings: Vec<String> = log
        .of_target("pgscope::observe")
        .into_iter()
        .map(|r| r.debug)
        .collect();
    assert_eq!(warnings.len(), 1, "once, not per scope: {warnings:?}");
    assert!(
        warnings[0].contains("a global filter hides `sqlx::query`")
            && warnings[0].contains("sqlx::query=debug"),
        "{warnings:?}"
    );
    let why = pgscope::verify_observed(sqlx::query("SELECT 1").execute(&pool))
        .await
        .expect_err("filtered");
    assert_eq!(why, pgscope::NotObserved::Filtered);
    assert!(why.to_string().contains("per-layer filters"));
}
