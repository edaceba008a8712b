//! A finding must never cost the request: in a fresh process (symbols not loaded yet), the
//! first scope with an N+1 holds its connections about as long as the same scope with
//! detection off. Its own binary, so it is the process's first finding.

mod common;

use std::time::Duration;

use pgscope::{Mode, PoolOptions};

async fn eight_lookups(pool: &pgscope::Pool) -> pgscope::Report {
    let ((), report) = pgscope::capture_named("GET /api/feed", async {
        let mut conn = pool.acquire().await.expect("acquire");
        for id in 0..8_i64 {
            sqlx::query("SELECT $1::bigint AS author_of_post")
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .expect("lookup");
        }
    })
    .await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_n_plus_one_of_a_process_does_not_add_to_hold_time() {
    let opts = common::schema("first_finding").await;
    let detecting = PoolOptions::new()
        .connect_with(opts.clone())
        .await
        .expect("connect");
    let off = PoolOptions::new()
        .n_plus_one_mode(Mode::Off)
        .connect_with(opts)
        .await
        .expect("connect");
    // Warm both pools' connections and statement caches, without any finding.
    for pool in [&detecting, &off] {
        sqlx::query("SELECT $1::bigint AS author_of_post")
            .bind(0_i64)
            .fetch_one(pool)
            .await
            .expect("warm");
    }
    let first = eight_lookups(&detecting).await;
    assert_eq!(first.n_plus_one().len(), 1, "{first}");
    let baseline = eight_lookups(&off).await;
    assert!(baseline.n_plus_one().is_empty());
    eprintln!(
        "hold: first N+1 of the process {:?}, detection off {:?}",
        first.connection_hold_time(),
        baseline.connection_hold_time()
    );
    let extra = first
        .connection_hold_time()
        .saturating_sub(baseline.connection_hold_time());
    assert!(
        extra < Duration::from_millis(10),
        "the finding added {extra:?} to the hold time (first {:?}, detection off {:?})",
        first.connection_hold_time(),
        baseline.connection_hold_time()
    );
    // The call site is still there when read (resolved now, off the statement's path).
    let site = first.n_plus_one()[0].call_site();
    assert!(site.starts_with("tests/first_finding.rs:"), "{site}");
}
