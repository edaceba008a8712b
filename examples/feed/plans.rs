//! The last act: the N+1 fix's batched statement changes plan as the list grows, which is how
//! "50 queries → 2" can still make p99 worse. The "following" page loaded each followed
//! author's posts in a loop (the N+1); the fix loads them with one `author_id = ANY($1)` (what
//! an ORM's `includes` sends). pgscope explains it on the side and reports the flip.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::postgres::PgConnectOptions;

const FOLLOWED: &str = "SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2";
const AUTHORS: &str =
    "SELECT id, author_id, title FROM posts WHERE author_id = ANY($1) ORDER BY id DESC LIMIT 50";

/// Runs `rounds` page loads for each number of followed authors and prints sizes, plan
/// shapes and p99.
pub async fn act(opts: PgConnectOptions, sizes: &[i64], rounds: usize) {
    {
        use sqlx::ConnectOptions as _;
        let mut admin = opts.connect().await.expect("connect");
        sqlx::raw_sql(
            "CREATE INDEX IF NOT EXISTS posts_author_id ON posts (author_id); ANALYZE posts;",
        )
        .execute(&mut admin)
        .await
        .expect("index");
    }
    let pool = pgscope::PoolOptions::new()
        .max_connections(4)
        .explain(
            pgscope::ExplainOptions::new()
                .sample(25)
                .interval(Duration::from_secs(1)),
        )
        .connect_with(opts)
        .await
        .expect("pool");
    let mut rows = Vec::new();
    for &size in sizes {
        let mut batched = Histogram::<u64>::new(3).expect("histogram");
        let mut whole = Histogram::<u64>::new(3).expect("histogram");
        let mut authors_per_page = 0;
        for round in 0..rounds {
            let start = Instant::now();
            let authors: Vec<i64> = sqlx::query_scalar(FOLLOWED)
                .bind((round as i64 * 7) % 500)
                .bind(size)
                .fetch_all(&pool)
                .await
                .expect("followed authors");
            authors_per_page = authors.len();
            let t = Instant::now();
            let _posts: Vec<(i64, i64, String)> = sqlx::query_as(AUTHORS)
                .bind(&authors)
                .fetch_all(&pool)
                .await
                .expect("authors");
            batched.record(t.elapsed().as_micros() as u64).ok();
            whole.record(start.elapsed().as_micros() as u64).ok();
        }
        // Let the side EXPLAIN of the last sample land.
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows.push((size, authors_per_page, batched, whole));
    }
    let plans = pool.plans();
    let statement = plans.statement(AUTHORS);
    println!("\nthe N+1 fix's batched statement as the list grows (`{AUTHORS}`):");
    println!(
        "| followed authors | ids bound | size class | plan (explained by pgscope) | batched p99 | page p99 |"
    );
    println!("|---:|---:|---|---|---:|---:|");
    for (size, ids, batched, whole) in &rows {
        let class = pgscope::SizeClass::of_len(*ids);
        let shape = statement
            .and_then(|s| s.plan(class))
            .map_or_else(|| "(not explained)".to_owned(), |p| p.shape().to_string());
        println!(
            "| {size} | {ids} | {class} | {shape} | {:.2} ms | {:.2} ms |",
            batched.value_at_quantile(0.99) as f64 / 1000.0,
            whole.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    match statement {
        Some(s) if s.changes() > 0 => println!(
            "pgscope reported {} plan change(s) for it (WARN pgscope::plan_change): EXPLAIN it at the sizes you serve (`pgscope::assert_plan_stable` in a test), or cap the list",
            s.changes()
        ),
        _ => println!("no plan change at these sizes"),
    }
}
