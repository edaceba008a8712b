//! N+1 detection, query budgets and nested acquires, modelled on a social feed endpoint.

mod common;

use std::time::Duration;

use pgscope::{Mode, Pool, PoolOptions};

async fn feed_pool(name: &str, options: PoolOptions) -> Pool {
    let opts = common::schema(name).await;
    common::setup(
        &opts,
        "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users, title text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g;
         INSERT INTO posts SELECT g, g, 'post ' || g FROM generate_series(1, 20) g;
         CREATE TABLE events (id serial PRIMARY KEY, n int);",
    )
    .await;
    options
        .max_connections(4)
        .connect_with(opts)
        .await
        .expect("connect")
}

/// The handler from the seed: load 20 posts, then each post's author, one query per post.
async fn naive_feed(pool: &Pool) -> Vec<(String, String)> {
    let posts: Vec<(i64, String)> =
        sqlx::query_as("SELECT author_id, title FROM posts ORDER BY id LIMIT 20")
            .fetch_all(pool)
            .await
            .expect("posts");
    let mut feed = Vec::new();
    for (author_id, title) in posts {
        let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1") // N+1 line
            .bind(author_id)
            .fetch_one(pool)
            .await
            .expect("author");
        feed.push((title, name));
    }
    feed
}

async fn run_naive_n(pool: &Pool, n: usize) {
    for id in 1..=n as i64 {
        sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("q");
    }
}

#[tokio::test]
async fn naive_feed_is_flagged_once_with_count_and_call_site() {
    let pool = feed_pool("np1_feed", PoolOptions::new()).await;
    let (feed, report) = pgscope::capture_named("GET /api/feed", naive_feed(&pool)).await;
    assert_eq!(feed.len(), 20);
    report.assert_queries(21);
    let found = report.n_plus_one();
    assert_eq!(found.len(), 1, "{report}");
    let item = &found[0];
    assert_eq!(item.count(), 20);
    assert_eq!(
        item.fingerprint().normalized(),
        "SELECT name FROM users WHERE id = $1"
    );
    assert_eq!(item.scope(), "GET /api/feed");
    let line = include_str!("detection.rs")
        .lines()
        .position(|l| l.ends_with("// N+1 line"))
        .expect("marker")
        + 1;
    // The call site is the `.await` of the query in `naive_feed` (a few lines below the marker,
    // since the chained builder spans lines).
    let (file, at) = item.call_site().rsplit_once(':').expect("file:line");
    assert!(
        file.ends_with("tests/detection.rs"),
        "call site {}",
        item.call_site()
    );
    let at: usize = at.parse().expect("line number");
    assert!(
        (line..=line + 4).contains(&at),
        "call site {} not near line {line}",
        item.call_site()
    );
}

#[tokio::test]
async fn join_and_any_batch_versions_are_not_flagged() {
    let pool = feed_pool("np1_fixed", PoolOptions::new()).await;
    let ((), report) = pgscope::capture_named("GET /api/feed", async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.author_id ORDER BY p.id LIMIT 20",
        )
        .fetch_all(&pool)
        .await
        .expect("join");
        assert_eq!(rows.len(), 20);
        let ids: Vec<i64> = sqlx::query_scalar("SELECT author_id FROM posts LIMIT 20").fetch_all(&pool).await.expect("ids");
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE id = ANY($1)").bind(&ids).fetch_all(&pool).await.expect("batch");
        assert_eq!(names.len(), 20);
    })
    .await;
    report.assert_no_n_plus_one();
    report.assert_queries(3);
}

#[tokio::test]
async fn threshold_edges_flag_only_past_the_threshold() {
    let pool = feed_pool("np1_edges", PoolOptions::new().n_plus_one_threshold(5)).await;
    let ((), at) = pgscope::capture(run_naive_n(&pool, 5)).await;
    assert!(
        at.n_plus_one().is_empty(),
        "exactly at threshold must not flag\n{at}"
    );
    let ((), over) = pgscope::capture(run_naive_n(&pool, 6)).await;
    assert_eq!(over.n_plus_one().len(), 1);
    assert_eq!(over.n_plus_one()[0].count(), 6);
    let ((), scoped) = pgscope::Scope::new("strict")
        .n_plus_one_threshold(2)
        .capture(run_naive_n(&pool, 3))
        .await;
    assert_eq!(scoped.n_plus_one().len(), 1, "per-scope threshold");
}

#[tokio::test]
async fn two_different_n_plus_ones_in_one_scope_are_both_reported() {
    let pool = feed_pool("np1_two", PoolOptions::new()).await;
    let ((), report) = pgscope::capture(async {
        for id in 1..=8i64 {
            sqlx::query("SELECT name FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("u");
            sqlx::query("SELECT title FROM posts WHERE author_id = $1")
                .bind(id)
                .fetch_all(&pool)
                .await
                .expect("p");
        }
    })
    .await;
    let mut found: Vec<_> = report
        .n_plus_one()
        .iter()
        .map(|n| (n.fingerprint().normalized().to_owned(), n.count()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("SELECT name FROM users WHERE id = $1".to_owned(), 8),
            ("SELECT title FROM posts WHERE author_id = $1".to_owned(), 8)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_n_plus_one_in_100_concurrent_scopes_is_reported_100_times_without_cross_talk() {
    let pool = feed_pool("np1_100", PoolOptions::new()).await;
    let mut handles = Vec::new();
    for i in 0..100 {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            // even scopes repeat 6 times (flagged), odd ones 3 times (not flagged)
            let n = if i % 2 == 0 { 6 } else { 3 };
            pgscope::capture_named(format!("scope-{i}"), run_naive_n(&pool, n))
                .await
                .1
        }));
    }
    let mut flagged = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let report = h.await.expect("task");
        let expected = if i % 2 == 0 { 1 } else { 0 };
        assert_eq!(report.n_plus_one().len(), expected, "scope-{i}\n{report}");
        for n in report.n_plus_one() {
            assert_eq!(n.scope(), format!("scope-{i}"));
            assert_eq!(n.count(), 6);
            flagged += 1;
        }
    }
    assert_eq!(flagged, 50);
}

#[tokio::test]
async fn error_mode_refuses_the_crossing_query() {
    let pool = feed_pool(
        "np1_error",
        PoolOptions::new()
            .n_plus_one_mode(Mode::Error)
            .n_plus_one_threshold(3),
    )
    .await;
    let (result, report) = pgscope::capture(async {
        for id in 1..=5i64 {
            if let Err(err) = sqlx::query("SELECT name FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
            {
                return Err((id, err));
            }
        }
        Ok(())
    })
    .await;
    let (at, err) = result.expect_err("fourth query must be refused");
    assert_eq!(at, 4);
    match pgscope::Error::from_sqlx(&err) {
        Some(pgscope::Error::NPlusOne {
            count,
            threshold,
            statement,
            ..
        }) => {
            assert_eq!((*count, *threshold), (4, 3));
            assert_eq!(statement, "SELECT name FROM users WHERE id = $1");
        }
        other => panic!("expected pgscope N+1 error, got {other:?} / {err}"),
    }
    assert_eq!(report.queries(), 3);
    assert_eq!(report.rejected_queries(), 1);
    assert_eq!(report.n_plus_one().len(), 1);
}

#[tokio::test]
async fn allowlisted_fingerprints_and_call_sites_are_not_reported() {
    let pool = feed_pool("np1_allow", PoolOptions::new()).await;
    let ((), report) = pgscope::Scope::new("batch job")
        .allow_n_plus_one("select name from users where id = 1")
        .capture(run_naive_n(&pool, 10))
        .await;
    assert!(report.n_plus_one().is_empty(), "{report}");
    let ((), report) = pgscope::Scope::new("batch job")
        .allow_call_site("tests/detection.rs")
        .capture(run_naive_n(&pool, 10))
        .await;
    assert!(report.n_plus_one().is_empty(), "{report}");
}

#[tokio::test]
async fn statements_inside_a_marked_batch_count_but_are_not_flagged() {
    let pool = feed_pool("np1_batch", PoolOptions::new()).await;
    let ((), report) = pgscope::capture(async {
        pgscope::allow_repetition(run_naive_n(&pool, 10)).await;
    })
    .await;
    report.assert_queries(10);
    assert!(report.n_plus_one().is_empty(), "{report}");
    // Outside the batch the same loop is flagged.
    let ((), report) = pgscope::capture(run_naive_n(&pool, 10)).await;
    assert_eq!(report.n_plus_one().len(), 1);
}

#[tokio::test]
async fn writes_are_not_checked_unless_enabled() {
    let pool = feed_pool("np1_writes", PoolOptions::new()).await;
    let insert_ten = |pool: Pool| async move {
        common::repeat(&pool, "INSERT INTO events (n) VALUES ($1)", 10).await
    };
    let ((), report) = pgscope::capture(insert_ten(pool.clone())).await;
    assert!(report.n_plus_one().is_empty());
    let strict = feed_pool(
        "np1_writes2",
        PoolOptions::new().n_plus_one_includes_writes(true),
    )
    .await;
    let ((), report) = pgscope::capture(insert_ten(strict)).await;
    assert_eq!(report.n_plus_one().len(), 1);
}

#[tokio::test]
async fn query_budget_stops_amplification_before_postgres_sees_it() {
    let pool = feed_pool("budget", PoolOptions::new().query_budget(10)).await;
    let (inserted, report) = pgscope::capture_named("POST /api/import", async {
        let mut ok = 0;
        let mut first_err = None;
        for n in 0..50 {
            match sqlx::query("INSERT INTO events (n) VALUES ($1)")
                .bind(n)
                .execute(&pool)
                .await
            {
                Ok(_) => ok += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        (ok, first_err)
    })
    .await;
    let (ok, err) = inserted;
    assert_eq!(ok, 10);
    let err = err.expect("budget error");
    assert!(
        matches!(
            pgscope::Error::from_sqlx(&err),
            Some(pgscope::Error::QueryBudgetExceeded { budget: 10, .. })
        ),
        "{err}"
    );
    assert_eq!(report.queries(), 10);
    assert_eq!(report.rejected_queries(), 40);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 10, "exactly the budget reached the table");

    let ((), report) = pgscope::Scope::new("override")
        .query_budget(2)
        .capture(run_naive_n(&pool, 0))
        .await;
    assert_eq!(report.queries(), 0);
}

#[tokio::test]
async fn holding_two_connections_in_one_scope_warns_with_both_call_sites() {
    let pool = feed_pool("nested", PoolOptions::new()).await;
    let ((), report) = pgscope::capture_named("POST /api/transfer", async {
        let mut tx = pool.begin().await.expect("begin"); // held here
        sqlx::query("SELECT 1")
            .execute(&mut *tx)
            .await
            .expect("in tx");
        // The classic mistake: querying the pool instead of the transaction.
        sqlx::query("SELECT 2")
            .execute(&pool)
            .await
            .expect("outside tx");
        let _second = pool.acquire().await.expect("second");
        tx.commit().await.expect("commit");
    })
    .await;
    let nested = report.nested_acquires();
    assert_eq!(nested.len(), 2, "{report}");
    assert!(
        nested[0].held_at().starts_with("tests/detection.rs:"),
        "{}",
        nested[0]
    );
    assert!(
        nested[0].acquired_at().contains("tests/detection.rs:"),
        "{}",
        nested[0]
    );
    assert_ne!(nested[1].held_at(), nested[1].acquired_at());
    assert_eq!(report.max_connections_held(), 2);
    let ((), clean) = pgscope::capture(async {
        let conn = pool.acquire().await.expect("one");
        drop(conn);
        let _again = pool.acquire().await.expect("sequential is fine");
    })
    .await;
    assert!(clean.nested_acquires().is_empty());
}

#[tokio::test]
async fn a_nested_acquire_in_a_loop_is_reported_once_per_pair_of_call_sites() {
    let pool = feed_pool("nested_loop", PoolOptions::new()).await;
    let ((), report) = pgscope::capture_named("POST /api/batch", async {
        let tx = pool.begin().await.expect("begin");
        for _ in 0..8 {
            // The same mistake eight times: one finding.
            sqlx::query("SELECT 2")
                .execute(&pool)
                .await
                .expect("outside tx");
        }
        tx.commit().await.expect("commit");
    })
    .await;
    assert_eq!(report.nested_acquires().len(), 1, "{report}");
    assert_eq!(
        report
            .to_string()
            .matches("acquired a second connection")
            .count(),
        1
    );
}

#[tokio::test]
#[should_panic(expected = "SELECT name FROM users WHERE id = $1")]
async fn assert_no_n_plus_one_names_the_statement() {
    let pool = feed_pool("np1_assert", PoolOptions::new()).await;
    let (_, report) = pgscope::capture(naive_feed(&pool)).await;
    report.assert_no_n_plus_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starved_pool_names_the_routes_holding_it_and_its_capacity() {
    // The seed's scenario, scaled down: a pool of 2, slow N+1 requests.
    let opts = common::schema("starvation").await;
    let pool2 = PoolOptions::new()
        .max_connections(2)
        .starvation_window(Duration::from_millis(200))
        .connect_with(opts)
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    let mut workers = Vec::new();
    for w in 0..8 {
        let pool = pool2.clone();
        workers.push(tokio::spawn(async move {
            let mut observed_starving = false;
            while tokio::time::Instant::now() < deadline {
                if w == 0 {
                    // a cheap route, sharing the same pool
                    pgscope::capture_named("GET /health", async {
                        sqlx::query("SELECT 1")
                            .execute(&pool)
                            .await
                            .expect("health");
                    })
                    .await;
                } else {
                    // the slow N+1 route: ten 5 ms lookups, each on its own acquire
                    pgscope::capture_named("GET /api/feed", async {
                        for _ in 0..10 {
                            sqlx::query("SELECT pg_sleep(0.005)")
                                .execute(&pool)
                                .await
                                .expect("lookup");
                        }
                    })
                    .await;
                }
                observed_starving |= pool.diagnose().is_starving();
            }
            observed_starving
        }));
    }
    let mut starving = false;
    for w in workers {
        starving |= w.await.expect("worker");
    }
    assert!(
        starving,
        "waiters should have stayed > 0 for a whole window"
    );
    assert!(
        pool2.starvation_warnings() >= 1,
        "one WARN per starving window"
    );
    let d = pool2.diagnose();
    let top = &d.scopes()[0];
    assert_eq!(top.scope(), "GET /api/feed", "{d}");
    assert!(top.mean_hold_time() >= Duration::from_millis(50), "{d}");
    let health = d
        .scopes()
        .iter()
        .find(|r| r.scope() == "GET /health")
        .expect("health route");
    assert!(health.mean_hold_time() < top.mean_hold_time() / 5, "{d}");
    // capacity = max_connections / mean hold per request, from the same numbers
    let mean = d.mean_hold_time().expect("mean");
    let capacity = d.capacity_per_second().expect("capacity");
    assert!((capacity - 2.0 / mean.as_secs_f64()).abs() < 1e-9);
    assert!((5.0..200.0).contains(&capacity), "{d}");
    assert!(d.to_string().contains("requests/s capacity"), "{d}");
}

#[tokio::test]
async fn assertion_macros_pass_through_values_and_fail_on_wrong_counts() {
    let pool = feed_pool("np1_macros", PoolOptions::new()).await;
    let n: i64 = pgscope::assert_queries!(2, async {
        sqlx::query("SELECT 1").execute(&pool).await.expect("q");
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .expect("q")
    });
    assert_eq!(n, 20);
    let names: Vec<String> = pgscope::assert_no_n_plus_one!(async {
        sqlx::query_scalar("SELECT name FROM users WHERE id = ANY($1)")
            .bind(vec![1i64, 2, 3])
            .fetch_all(&pool)
            .await
            .expect("batch")
    });
    assert_eq!(names.len(), 3);
    let pool2 = pool.clone();
    let failed = tokio::spawn(async move {
        pgscope::assert_queries!(1, async {
            sqlx::query("SELECT 1").execute(&pool2).await.expect("q");
            sqlx::query("SELECT 2").execute(&pool2).await.expect("q");
        })
    })
    .await
    .expect_err("a wrong count panics");
    let msg = failed.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("expected 1 queries") && msg.contains("got 2"),
        "{msg}"
    );
    assert!(
        msg.contains("tests/detection.rs:"),
        "the scope is named after the assertion's line: {msg}"
    );
}
