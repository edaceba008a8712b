//! Findings a user can act on: the batched statement and the parent to JOIN with, one callback
//! for every kind of finding, a time gate for production, snapshots, and assertions that
//! survive data growth.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgscope::{Pool, PoolOptions};

async fn pool(name: &str, options: PoolOptions) -> Pool {
    let opts = common::schema(name).await;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users, title text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 50) g;
         INSERT INTO posts SELECT g, g, 'post ' || g FROM generate_series(1, 50) g;",
    )
    .await;
    options.connect_with(opts).await.expect("connect")
}

/// The seed's feed, `n` posts, one author lookup per post.
async fn naive_feed(pool: &Pool, n: usize) {
    let posts: Vec<(i64, String)> =
        sqlx::query_as("SELECT author_id, title FROM posts ORDER BY id LIMIT $1")
            .bind(n as i64)
            .fetch_all(pool)
            .await
            .expect("posts");
    for (author_id, _) in posts {
        sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE id = $1")
            .bind(author_id)
            .fetch_one(pool)
            .await
            .expect("author");
    }
}

/// The same feed with a JOIN.
async fn join_feed(pool: &Pool, n: usize) {
    sqlx::query(
        "SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.author_id ORDER BY p.id LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(pool)
    .await
    .expect("feed");
}

#[tokio::test]
async fn an_n_plus_one_carries_the_batched_statement_and_its_parent() {
    let pool = pool("findings_hint", PoolOptions::new()).await;
    let ((), report) = pgscope::capture_named("GET /api/feed", naive_feed(&pool, 20)).await;
    let n = &report.n_plus_one()[0];
    assert_eq!(n.count(), 20);
    assert_eq!(
        n.suggestion().as_deref(),
        Some("SELECT name FROM users WHERE id = ANY($1)")
    );
    assert_eq!(
        n.parent().map(|p| p.normalized()),
        Some("SELECT author_id, title FROM posts ORDER BY id LIMIT $1")
    );
    let shown = n.to_string();
    assert!(
        shown.contains(
            "20x `SELECT name FROM users WHERE id = $1` with 20 distinct values after `SELECT author_id, title FROM posts"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("`SELECT name FROM users WHERE id = ANY($1)`"),
        "{shown}"
    );
    // The suggestion is what it says: it returns the same names in one statement.
    let ids: Vec<i64> = (1..=20).collect();
    let batched = n.suggestion().expect("suggestion");
    let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(batched))
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .expect("the suggested statement runs");
    assert_eq!(names.len(), 20);
}

#[tokio::test]
async fn no_suggestion_when_the_shape_does_not_fit() {
    let pool = pool("findings_no_hint", PoolOptions::new()).await;
    let ((), report) = pgscope::capture(async {
        for i in 1..=8_i64 {
            sqlx::query("SELECT id FROM posts WHERE author_id = $1 AND title = $2")
                .bind(i)
                .bind("post 1")
                .fetch_all(&pool)
                .await
                .expect("two parameters");
        }
    })
    .await;
    assert_eq!(report.n_plus_one().len(), 1);
    assert_eq!(
        report.n_plus_one()[0].suggestion(),
        None,
        "two comparisons: no guess"
    );
    assert!(report.to_string().contains("with `= ANY($1)` or a JOIN"));
}

#[tokio::test]
async fn the_callback_sees_each_kind_of_finding_once() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let pool = pool(
        "findings_callback",
        PoolOptions::new()
            .query_budget(30)
            .on_finding(move |finding| {
                let what = match finding {
                    pgscope::Finding::NPlusOne(n) => format!("n+1 {}", n.count()),
                    pgscope::Finding::NestedAcquire(_) => "nested".to_owned(),
                    pgscope::Finding::QueryBudgetExceeded { budget, .. } => {
                        format!("budget {budget}")
                    }
                    _ => "other".to_owned(),
                };
                log.lock().expect("lock").push(what);
            }),
    )
    .await;
    let ((), _report) = pgscope::capture_named("POST /api/import", async {
        naive_feed(&pool, 20).await; // 21 statements: one N+1
        let tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("nested");
        drop(tx);
        for i in 0..20 {
            // Distinct statements (no second N+1), until the budget of 30 refuses one.
            let sql = format!("SELECT {i} AS column_{i}");
            if sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .is_err()
            {
                break;
            }
        }
    })
    .await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("n+1")).count(),
        1,
        "{seen:?}"
    );
    // Told when the scope ends, with the report's count (after the nested acquire and the
    // budget refusal, which are told as they happen).
    assert_eq!(
        seen.last().map(String::as_str),
        Some("n+1 20"),
        "told at the scope's end: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "nested").count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "budget 30").count(),
        1,
        "{seen:?}"
    );
}

/// 30 ms in the database per execution.
const SLOW: &str = "SELECT pg_sleep(0.03), $1::bigint";

#[tokio::test]
async fn the_time_gate_keeps_fast_repetition_quiet() {
    let gated = pool(
        "findings_gate",
        PoolOptions::new().n_plus_one_min_total(Duration::from_secs(10)),
    )
    .await;
    let ((), report) = pgscope::capture(naive_feed(&gated, 20)).await;
    assert!(
        report.n_plus_one().is_empty(),
        "20 fast lookups are under 10 s: {report}"
    );
    let ((), slow) = pgscope::capture(common::repeat(&gated, SLOW, 8)).await;
    assert!(slow.n_plus_one().is_empty(), "8 × 30 ms is under 10 s");
    let low = pool(
        "findings_gate_low",
        PoolOptions::new().n_plus_one_min_total(Duration::from_millis(100)),
    )
    .await;
    let ((), flagged) = pgscope::capture(common::repeat(&low, SLOW, 8)).await;
    assert_eq!(flagged.n_plus_one().len(), 1, "{flagged}");
    assert!(
        flagged.n_plus_one()[0].count() >= 6,
        "reported once the repeats reach 100 ms"
    );
}

#[tokio::test]
async fn a_snapshot_lists_statements_in_order_with_counts_and_no_timings() {
    let pool = pool("findings_snapshot", PoolOptions::new()).await;
    let ((), report) = pgscope::capture(naive_feed(&pool, 3)).await;
    assert_eq!(
        report.snapshot(),
        "1 × SELECT author_id, title FROM posts ORDER BY id LIMIT $1\n\
         3 × SELECT name FROM users WHERE id = $1"
    );
}

#[tokio::test]
async fn constant_query_assertions_fail_on_the_naive_feed_and_pass_on_the_join() {
    let pool = pool("findings_constant", PoolOptions::new()).await;
    pgscope::assert_constant_queries([2, 10], |n| join_feed(&pool, n)).await;
    let naive = pool.clone();
    let failure = tokio::spawn(async move {
        pgscope::assert_constant_queries([2, 10], |n| naive_feed(&naive, n)).await;
    })
    .await
    .expect_err("the naive feed grows with n");
    let message = match failure.into_panic().downcast::<String>() {
        Ok(message) => *message,
        Err(_) => panic!("a String panic"),
    };
    assert!(message.contains("grows with the data"), "{message}");
    assert!(
        message.contains("grew: `SELECT name FROM users WHERE id = $1` (2@n=2, 10@n=10; 2 at n=2)"),
        "{message}"
    );
    assert!(
        message.contains("batch it: `SELECT name FROM users WHERE id = ANY($1)`"),
        "{message}"
    );
}

#[tokio::test]
async fn different_parameters_are_an_n_plus_one_and_the_same_ones_a_duplicate() {
    let pool = pool("findings_duplicate", PoolOptions::new()).await;
    let lookup = "SELECT name FROM users WHERE id = $1";
    let ((), distinct) = pgscope::capture(common::repeat(&pool, lookup, 20)).await;
    assert_eq!(distinct.n_plus_one().len(), 1, "{distinct}");
    assert!(distinct.duplicates().is_empty(), "{distinct}");

    let ((), same) = pgscope::capture(async {
        for _ in 0..20 {
            sqlx::query_scalar::<_, String>(lookup)
                .bind(7_i64)
                .fetch_one(&pool)
                .await
                .expect("lookup");
        }
    })
    .await;
    assert!(same.n_plus_one().is_empty(), "{same}");
    assert_eq!(same.duplicates().len(), 1, "{same}");
    let d = &same.duplicates()[0];
    assert_eq!(d.count(), 20);
    assert_eq!(d.fingerprint().normalized(), lookup);
    assert!(
        d.call_site().starts_with("tests/findings.rs:"),
        "{}",
        d.call_site()
    );
    assert!(
        same.to_string().contains("with the same parameters"),
        "{same}"
    );

    // Literal values are parameters too: the same literal is a duplicate, varying ones an N+1.
    let ((), literal) = pgscope::capture(async {
        for _ in 0..8 {
            sqlx::query("SELECT name FROM users WHERE id = 3")
                .fetch_one(&pool)
                .await
                .expect("literal");
        }
    })
    .await;
    assert_eq!(literal.duplicates().len(), 1, "{literal}");
    let ((), literals) = pgscope::capture(async {
        for id in 1..=8 {
            let sql = format!("SELECT name FROM users WHERE id = {id}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .expect("literal");
        }
    })
    .await;
    assert_eq!(literals.n_plus_one().len(), 1, "{literals}");
    assert!(literals.duplicates().is_empty());
}

#[tokio::test]
async fn duplicates_reach_the_callback() {
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = seen.clone();
    let pool = pool(
        "findings_duplicate_cb",
        PoolOptions::new().on_finding(move |finding| {
            if let pgscope::Finding::Duplicate(d) = finding {
                log.lock().expect("lock").push(d.count());
            }
        }),
    )
    .await;
    let ((), _) = pgscope::capture(async {
        for _ in 0..10 {
            sqlx::query("SELECT count(*) FROM posts")
                .fetch_one(&pool)
                .await
                .expect("count");
        }
    })
    .await;
    assert_eq!(
        *seen.lock().expect("lock"),
        [10],
        "once, when the scope ends, with the report's count"
    );
}
