//! A fixed amount of scoped work for instruction-count profiles (`valgrind --tool=callgrind`):
//! `scope_profile raw|pgscope same|distinct|tx|held N` runs N scopes of 10 statements on one
//! connection (`tx`: inside `begin` … `commit`; `held`: on an `acquire`d connection; both with
//! distinct values),
//! on a current-thread runtime, and prints nothing but the count. Compare the instruction counts
//! of `raw` and `pgscope` for the same N to see what a scope costs.
//!
//! Both sides run with one extra, idle thread: pgscope starts a reporter thread at its first
//! finding, and once a process has a second thread glibc's socket calls take their
//! multi-threaded path (cancellation points, a few hundred instructions per statement). A
//! server on a multi-threaded runtime pays that on both sides; without the idle thread a
//! single-threaded raw run would not, and the difference would be charged to pgscope.

#[path = "../tests/common/mod.rs"]
mod common;

use tracing::Instrument;

#[path = "shared/shapes.rs"]
mod shapes;

use shapes::{Shape, pgscope_scope, raw_scope};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let side = args.get(1).map(String::as_str).unwrap_or("pgscope");
    let shape = args
        .get(2)
        .map_or(Some(Shape::Same), |s| Shape::parse(s))
        .expect("shape: same, distinct, tx or held");
    let scopes: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let _idle = std::thread::spawn(std::thread::park);
    let url = common::database_url().await;
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("raw pool");
    // `fast` as a fourth argument: `exact_repetition_counts(false)`.
    let exact = args.get(4).map(String::as_str) != Some("fast");
    let pg = pgscope::PoolOptions::new()
        .max_connections(1)
        .exact_repetition_counts(exact)
        .connect(&url)
        .await
        .expect("pgscope pool");
    let mut n = 0u64;
    for _ in 0..scopes {
        let request = tracing::info_span!("GET /api/feed");
        if side == "raw" {
            raw_scope(&raw, shape).instrument(request).await;
        } else {
            let ((), _report) = pgscope::Scope::new("GET /api/feed")
                .use_current_span()
                .capture(pgscope_scope(&pg, shape))
                .instrument(request)
                .await;
        }
        n += 10;
    }
    println!("{n} statements");
}
