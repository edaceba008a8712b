//! The class of a repeated statement on real data (issue "Right in real apps"): decided from all
//! its executions, never flipped by the first few; queue claims, reads after writes and
//! volatile calls are not duplicates. On real PostgreSQL, with the WARN events captured.

mod common;

use common::events::Events;
use pgscope::{Mode, Pool, PoolOptions};

/// A Conduit-like schema: 20 articles by 4 authors, 6 + 6 + 6 + 2, the six newest by one.
async fn conduit(name: &str, options: PoolOptions) -> Pool {
    let opts = common::schema(name).await;
    common::setup(
        &opts,
        r#"CREATE TABLE "user" (username text PRIMARY KEY, bio text NOT NULL);
           INSERT INTO "user" VALUES ('ann', 'a'), ('bob', 'b'), ('cat', 'c'), ('dan', 'd'), ('eve', 'e');
           CREATE TABLE article (id bigint PRIMARY KEY, author text NOT NULL REFERENCES "user", tag text NOT NULL);
           -- Newest first: ids 20..15 by ann, 14..9 by bob, 8..3 by cat, 2..1 by dan.
           INSERT INTO article SELECT g, CASE WHEN g > 14 THEN 'ann' WHEN g > 8 THEN 'bob'
               WHEN g > 2 THEN 'cat' ELSE 'dan' END, 'all' FROM generate_series(1, 20) g;
           -- Tag `pair`: 10 articles by 5 authors, two each.
           CREATE TABLE tagged (id bigint PRIMARY KEY, author text NOT NULL);
           INSERT INTO tagged SELECT g, (ARRAY['ann','bob','cat','dan','eve'])[(g + 1) / 2] FROM generate_series(1, 10) g;
           CREATE TABLE issue_delivery_queue (id bigint PRIMARY KEY, email text NOT NULL);
           INSERT INTO issue_delivery_queue SELECT g, 'reader' || g || '@example.com' FROM generate_series(1, 12) g;
           CREATE TABLE counter (n bigint NOT NULL);
           CREATE SEQUENCE ticket;"#,
    )
    .await;
    options.connect_with(opts).await.expect("connect")
}

/// The list handler: the articles, newest first, then each one's author, one lookup per row.
async fn list_articles(pool: &Pool, table: &str) -> usize {
    let sql = format!("SELECT id, author FROM {table} ORDER BY id DESC");
    let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("articles");
    for (_, author) in &rows {
        sqlx::query_scalar::<_, String>(r#"SELECT bio FROM "user" WHERE username = $1"#)
            .bind(author)
            .fetch_one(pool)
            .await
            .expect("author");
    }
    rows.len()
}

#[tokio::test]
async fn a_loop_that_repeats_some_values_is_an_n_plus_one_with_its_distinct_count() {
    let events = Events::global();
    let pool = conduit("rep_mixed", PoolOptions::new()).await;
    let (n, report) =
        pgscope::capture_named("GET /api/articles", list_articles(&pool, "article")).await;
    assert_eq!(n, 20);

    // One N+1: 20 executions, 4 distinct authors, batched over the distinct values.
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    let np1 = &report.n_plus_one()[0];
    assert_eq!(np1.count(), 20);
    assert_eq!(np1.distinct_values(), 4);
    assert_eq!(
        np1.suggestion().as_deref(),
        Some(r#"SELECT bio FROM "user" WHERE username = ANY($1)"#)
    );
    let text = np1.to_string();
    assert!(
        text.contains("20x") && text.contains("with 4 distinct values"),
        "{text}"
    );
    assert!(text.contains("an array of the 4 distinct values"), "{text}");
    assert!(!text.contains("reuse the result"), "{text}");

    // And the duplicate note: the largest shared set (six lookups of one author).
    assert_eq!(report.duplicates().len(), 1, "{report}");
    let dup = &report.duplicates()[0];
    assert_eq!(dup.count(), 6, "{dup}");
    assert_eq!(dup.executions(), 20);
    assert!(dup.part_of_n_plus_one());
    assert!(dup.to_string().contains("batch the N+1"), "{dup}");
    assert_eq!(dup.call_site(), np1.call_site());

    // The WARN, the report's table and the snapshot say the same numbers.
    let warns: Vec<_> = events
        .of_target("pgscope::n_plus_one")
        .into_iter()
        .filter(|r| r.field("scope") == Some("GET /api/articles"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert_eq!(warns[0].field("count"), Some("20"));
    assert_eq!(warns[0].field("distinct_values"), Some("4"));
    assert_eq!(warns[0].field("message"), Some(text.as_str()));
    let dups: Vec<_> = events
        .of_target("pgscope::duplicate")
        .into_iter()
        .filter(|r| r.field("scope") == Some("GET /api/articles"))
        .collect();
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert_eq!(dups[0].field("count"), Some("6"));
    let shown = report.to_string();
    assert!(shown.contains(&format!("WARNING {text}")), "{shown}");
    assert!(
        report
            .snapshot()
            .contains(r#"20 × SELECT bio FROM "user" WHERE username = $1"#),
        "{}",
        report.snapshot()
    );

    // The same code over other data (10 articles, 5 authors, 2 each): the same class.
    let (n, other) =
        pgscope::capture_named("GET /api/articles", list_articles(&pool, "tagged")).await;
    assert_eq!(n, 10);
    assert_eq!(other.n_plus_one().len(), 1, "{other}");
    assert_eq!(other.n_plus_one()[0].distinct_values(), 5);
    assert!(other.duplicates().is_empty(), "{other}");
}

#[tokio::test]
async fn the_class_is_not_decided_by_the_first_executions_in_error_mode_either() {
    let pool = conduit("rep_error", PoolOptions::new().n_plus_one_mode(Mode::Error)).await;
    let (result, report) = pgscope::capture(async {
        // Seven lookups of one author (past the threshold: not refused, a duplicate so far),
        // then another author: now certainly an N+1, refused.
        for author in ["ann"; 7].into_iter().chain(["bob"]) {
            sqlx::query_scalar::<_, String>(r#"SELECT bio FROM "user" WHERE username = $1"#)
                .bind(author)
                .fetch_one(&pool)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    })
    .await;
    let err = result.expect_err("the varied execution past the threshold is refused");
    assert!(err.to_string().contains("N+1"), "{err}");
    assert_eq!(report.queries(), 7);
    assert_eq!(report.rejected_queries(), 1);
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    assert_eq!(report.n_plus_one()[0].distinct_values(), 2);
    assert_eq!(report.duplicates().len(), 1, "{report}");
    assert_eq!(report.duplicates()[0].count(), 7);
}

#[tokio::test]
async fn a_skip_locked_queue_claim_is_not_a_duplicate() {
    let pool = conduit("rep_queue", PoolOptions::new()).await;
    let (claimed, report) = pgscope::capture_named("worker: deliver issues", async {
        let mut claimed = Vec::new();
        loop {
            let mut tx = pool.begin().await.expect("begin");
            let row: Option<(i64, String)> = sqlx::query_as(
                "SELECT id, email FROM issue_delivery_queue FOR UPDATE SKIP LOCKED LIMIT $1",
            )
            .bind(1_i64)
            .fetch_optional(&mut *tx)
            .await
            .expect("claim");
            let Some((id, _email)) = row else { break };
            sqlx::query("DELETE FROM issue_delivery_queue WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("delete");
            tx.commit().await.expect("commit");
            claimed.push(id);
        }
        claimed
    })
    .await;
    assert_eq!(claimed.len(), 12, "every execution claimed another row");
    assert!(report.duplicates().is_empty(), "{report}");
    assert!(report.n_plus_one().is_empty(), "{report}");
    assert!(!report.to_string().contains("reuse the result"), "{report}");

    // The same claim without the deletes between (nothing else written): still not a
    // duplicate, a locking read claims whatever is free each time.
    common::setup(
        &pgscope_opts(&pool),
        "INSERT INTO issue_delivery_queue SELECT g, 'x' FROM generate_series(1, 8) g",
    )
    .await;
    let ((), claims) = pgscope::capture(async {
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..8 {
            sqlx::query("SELECT id FROM issue_delivery_queue FOR UPDATE SKIP LOCKED LIMIT $1")
                .bind(1_i64)
                .fetch_optional(&mut *tx)
                .await
                .expect("claim");
        }
        tx.rollback().await.expect("rollback");
    })
    .await;
    assert!(claims.duplicates().is_empty(), "{claims}");
}

fn pgscope_opts(pool: &Pool) -> sqlx::postgres::PgConnectOptions {
    pool.as_sqlx().connect_options().as_ref().clone()
}

#[tokio::test]
async fn a_read_repeated_across_writes_or_a_volatile_call_is_not_a_duplicate() {
    let pool = conduit("rep_writes", PoolOptions::new()).await;
    // The same count after each insert: each execution sees one row more.
    let (counts, report) = pgscope::capture(async {
        let mut counts = Vec::new();
        for _ in 0..8 {
            counts.push(
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM counter WHERE n >= $1")
                    .bind(0_i64)
                    .fetch_one(&pool)
                    .await
                    .expect("count"),
            );
            sqlx::query("INSERT INTO counter VALUES (1)")
                .execute(&pool)
                .await
                .expect("insert");
        }
        counts
    })
    .await;
    assert_eq!(counts, (0..8).collect::<Vec<i64>>());
    assert!(report.duplicates().is_empty(), "{report}");

    // A function pgscope cannot see into counts as a write too.
    common::setup(
        &pgscope_opts(&pool),
        "CREATE FUNCTION bump() RETURNS void LANGUAGE sql AS 'INSERT INTO counter VALUES (2)'",
    )
    .await;
    let ((), opaque) = pgscope::capture(async {
        for _ in 0..8 {
            sqlx::query("SELECT count(*) FROM counter")
                .fetch_one(&pool)
                .await
                .expect("count");
            sqlx::query("SELECT bump()")
                .execute(&pool)
                .await
                .expect("bump");
        }
    })
    .await;
    assert!(opaque.duplicates().is_empty(), "{opaque}");

    // Sequences, the clock, random numbers and advisory locks.
    let ((), volatile) = pgscope::capture(async {
        for _ in 0..8 {
            for sql in [
                "SELECT nextval('ticket')",
                "SELECT now()",
                "SELECT random()",
                "SELECT pg_advisory_xact_lock(7)",
            ] {
                sqlx::query(sql).execute(&pool).await.expect("volatile");
            }
        }
    })
    .await;
    assert!(volatile.duplicates().is_empty(), "{volatile}");
    assert!(volatile.n_plus_one().is_empty(), "{volatile}");

    // Control: the same read with nothing written between is a duplicate.
    let ((), same) = pgscope::capture(async {
        for _ in 0..8 {
            sqlx::query("SELECT count(*) FROM counter")
                .fetch_one(&pool)
                .await
                .expect("count");
        }
    })
    .await;
    assert_eq!(same.duplicates().len(), 1, "{same}");
    assert_eq!(same.duplicates()[0].count(), 8);
    assert!(!same.duplicates()[0].part_of_n_plus_one());
}

/// The call sites of every kind of finding in one scope: an N+1 and a duplicate (stack-walked),
/// a nested acquire and a held-idle gap (`#[track_caller]` locations and stack-walked).
async fn sites_of_every_finding(pool: &Pool) -> Vec<String> {
    let ((), report) = pgscope::capture_named("GET /sites", async {
        list_articles(pool, "article").await;
        let mut held = pool.acquire().await.expect("acquire");
        sqlx::query("SELECT 1")
            .execute(&mut *held)
            .await
            .expect("one");
        tokio::time::sleep(std::time::Duration::from_millis(130)).await;
        let second = pool.acquire().await.expect("nested");
        drop(second);
        sqlx::query("SELECT 2")
            .execute(&mut *held)
            .await
            .expect("two");
    })
    .await;
    let mut sites = Vec::new();
    sites.extend(report.n_plus_one().iter().map(|n| n.call_site().to_owned()));
    sites.extend(report.duplicates().iter().map(|d| d.call_site().to_owned()));
    for n in report.nested_acquires() {
        sites.push(n.held_at().to_owned());
        sites.push(n.acquired_at().to_owned());
    }
    for h in report.held_idle() {
        sites.push(h.from().to_owned());
        sites.push(h.to().to_owned());
    }
    sites
}

#[tokio::test]
async fn call_sites_are_the_same_from_any_working_directory() {
    const CHILD: &str = "PGSCOPE_TEST_SITES_CHILD";
    let pool = conduit("rep_sites", PoolOptions::new()).await;
    let sites = sites_of_every_finding(&pool).await;
    if std::env::var_os(CHILD).is_some() {
        println!("SITES {}", sites.join("|"));
        return;
    }
    assert_eq!(sites.len(), 6, "{sites:?}");
    for site in &sites {
        assert!(site.starts_with("tests/repetition.rs:"), "{sites:?}");
    }
    // The same test binary, run from `/` and from the parent of the crate directory.
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        std::path::Path::new("/"),
        crate_dir.parent().expect("parent"),
    ] {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "call_sites_are_the_same_from_any_working_directory",
                "--nocapture",
                "--test-threads=1",
            ])
            .current_dir(dir)
            .env(CHILD, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("SITES ").map(|(_, sites)| sites))
            .unwrap_or_else(|| panic!("no sites from {}: {stdout}", dir.display()));
        assert_eq!(
            line.split('|').collect::<Vec<_>>(),
            sites,
            "run from {}",
            dir.display()
        );
    }
}

#[tokio::test]
async fn without_exact_counts_the_class_is_the_same_and_the_counts_are_lower_bounds() {
    let pool = conduit(
        "rep_fast",
        PoolOptions::new().exact_repetition_counts(false),
    )
    .await;
    let (_, report) =
        pgscope::capture_named("GET /api/articles", list_articles(&pool, "article")).await;
    assert_eq!(report.n_plus_one().len(), 1, "{report}");
    let np1 = &report.n_plus_one()[0];
    assert_eq!(np1.count(), 20);
    // Reading stopped at the second author: at least two.
    assert_eq!(np1.distinct_values(), 2);
    assert!(
        np1.to_string().contains("with at least 2 distinct values"),
        "{np1}"
    );
    // The first author's six lookups were all read: the duplicate note stands.
    assert_eq!(report.duplicates().len(), 1, "{report}");
    assert_eq!(report.duplicates()[0].count(), 6);
    // A pure duplicate is still one (every execution read: no second set ever appears).
    let ((), same) = pgscope::capture(async {
        for _ in 0..8 {
            sqlx::query_scalar::<_, String>(r#"SELECT bio FROM "user" WHERE username = $1"#)
                .bind("ann")
                .fetch_one(&pool)
                .await
                .expect("lookup");
        }
    })
    .await;
    assert!(same.n_plus_one().is_empty(), "{same}");
    assert_eq!(same.duplicates()[0].count(), 8);
}
