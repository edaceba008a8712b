//! Differential test: pgscope fingerprints against PostgreSQL's own `queryid`.
//!
//! A corpus of statement templates over a schema the test creates is expanded into variants that
//! differ in literal values, keyword case, whitespace, comments and identifier quoting. Every
//! statement runs on a server with `pg_stat_statements`; the `queryid` it records is compared
//! with pgscope's fingerprint: two statements must share a fingerprint iff they share a
//! `queryid`, except where pgscope deliberately merges what PostgreSQL keeps apart: constant
//! lists of different lengths, and constants of different types in the same place (a
//! fingerprint is the statement's shape).

mod common;

use std::collections::HashMap;

use sqlx::{Connection, PgConnection};

/// `{i}` is an integer literal, `{f}` a non-integer number, `{s}` a string literal, `{iv}` an
/// interval, `{b}` a boolean,
/// `{n}` a list of 1–4 integers, `{rows}` 1–3 VALUES rows.
const TEMPLATES: &[&str] = &[
    "SELECT id, name FROM users WHERE id = {i}",
    "SELECT id, name FROM users WHERE id > {i}",
    "SELECT id, name FROM users WHERE name = {s}",
    "SELECT id, email FROM users WHERE name = {s}",
    "SELECT id, name FROM users WHERE id = {i} AND active",
    "SELECT id, name FROM users WHERE id = {i} OR name = {s}",
    "SELECT count(*) FROM users",
    "SELECT count(*) FROM posts WHERE author_id = {i}",
    "SELECT max(score) FROM posts WHERE author_id = {i}",
    "SELECT title FROM posts WHERE author_id = {i} ORDER BY created_at DESC LIMIT {i}",
    "SELECT title FROM posts WHERE author_id = {i} ORDER BY created_at ASC LIMIT {i}",
    "SELECT title FROM posts WHERE author_id = {i} ORDER BY created_at DESC",
    "SELECT title FROM posts ORDER BY 1",
    "SELECT title FROM posts ORDER BY 1 DESC",
    "SELECT title FROM posts WHERE score BETWEEN {i} AND {i}",
    "SELECT title FROM posts WHERE title LIKE {s}",
    // An integer and a numeric constant in the same place: different queryids, one
    // fingerprint (the same shape).
    "SELECT title FROM posts WHERE score > {i}",
    "SELECT title FROM posts WHERE score > {f}",
    "SELECT title FROM posts WHERE score > -{f}",
    "SELECT title FROM posts WHERE title ILIKE {s}",
    "SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = {i}",
    "SELECT p.title, u.name FROM posts p LEFT JOIN users u ON u.id = p.author_id WHERE p.id = {i}",
    "SELECT p.title, c.body FROM posts p JOIN comments c ON c.post_id = p.id WHERE c.user_id = {i}",
    "SELECT author_id, count(*) FROM posts GROUP BY author_id HAVING count(*) > {i}",
    "SELECT author_id, sum(score) FROM posts GROUP BY author_id",
    "SELECT DISTINCT author_id FROM posts WHERE score > {i}",
    "SELECT id FROM users WHERE id = ANY(ARRAY[{i}, {i}])",
    "SELECT id FROM users WHERE EXISTS (SELECT 1 FROM posts WHERE posts.author_id = users.id AND score > {i})",
    "SELECT id FROM users WHERE id IN (SELECT author_id FROM posts WHERE score > {i})",
    "SELECT name FROM users WHERE created_at > now() - interval {iv}",
    "SELECT name || {s} FROM users WHERE id = {i}",
    "SELECT coalesce(email, {s}) FROM users WHERE id = {i}",
    "SELECT CASE WHEN score > {i} THEN {s} ELSE {s} END FROM posts",
    "SELECT id FROM users WHERE email IS NULL",
    "SELECT id FROM users WHERE email IS NOT NULL",
    "SELECT id FROM users WHERE active IS TRUE",
    "SELECT id FROM users WHERE active = {b}",
    "SELECT {s}::text",
    "SELECT {i} + score FROM posts WHERE id = {i}",
    "SELECT score - {i} FROM posts WHERE id = {i}",
    "SELECT id FROM posts WHERE score = -{i}",
    "SELECT id FROM posts WHERE id = {i} FOR UPDATE",
    "SELECT id FROM posts WHERE id = {i} FOR UPDATE SKIP LOCKED",
    "WITH top AS (SELECT author_id FROM posts WHERE score > {i}) SELECT count(*) FROM top",
    "SELECT id FROM users UNION SELECT author_id FROM posts WHERE score > {i}",
    "SELECT id FROM users UNION ALL SELECT author_id FROM posts WHERE score > {i}",
    "UPDATE users SET name = {s} WHERE id = {i}",
    "UPDATE users SET name = {s}, email = {s} WHERE id = {i}",
    "UPDATE posts SET score = score + {i} WHERE id = {i}",
    "DELETE FROM comments WHERE id = {i}",
    "DELETE FROM comments WHERE post_id = {i} AND user_id = {i}",
    "INSERT INTO comments (post_id, user_id, body) VALUES ({i}, {i}, {s})",
    "INSERT INTO comments (post_id, user_id, body) VALUES ({i}, {i}, {s}) RETURNING id",
    "INSERT INTO comments (post_id, user_id, body) SELECT id, author_id, title FROM posts WHERE id = {i}",
    "SELECT \"Name\" FROM \"Quoted\" WHERE \"Name\" = {s}",
    "SELECT name FROM quoted_lower WHERE name = {s}",
];

/// List-collapse groups: pgscope gives each one fingerprint whatever the list length;
/// pg_stat_statements gives one queryid per length (documented divergence).
const LIST_TEMPLATES: &[&str] = &[
    "SELECT id, name FROM users WHERE id IN ({n})",
    "SELECT id FROM posts WHERE author_id NOT IN ({n})",
    "INSERT INTO comments (post_id, user_id, body) VALUES {rows}",
];

struct Variant {
    sql: String,
    group: usize,
    list_group: bool,
}

/// Deterministic variety without a random-number dependency.
fn lit(kind: &str, v: usize, k: usize) -> String {
    let x = (v * 7 + k * 13) % 97 + 1;
    match kind {
        "i" => x.to_string(),
        "f" => match v % 3 {
            0 => format!("{x}.5"),
            1 => format!("0.00{x}"),
            _ => format!("{x}e-3"),
        },
        "s" => format!("'w{x}%'"),
        "iv" => format!("'{x} days'"),
        "b" => if (v + k).is_multiple_of(2) {
            "true"
        } else {
            "false"
        }
        .to_owned(),
        _ => unreachable!(),
    }
}

fn fill(template: &str, v: usize) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut k = 0;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let kind = &rest[start + 1..end];
        k += 1;
        match kind {
            "n" => {
                let len = v % 4 + 1;
                let items: Vec<String> = (0..len).map(|j| lit("i", v + j, k)).collect();
                out.push_str(&items.join(", "));
            }
            "rows" => {
                let len = v % 3 + 1;
                let rows: Vec<String> = (0..len)
                    .map(|j| {
                        format!(
                            "({}, {}, {})",
                            lit("i", v + j, 1),
                            lit("i", v + j, 2),
                            lit("s", v + j, 3)
                        )
                    })
                    .collect();
                out.push_str(&rows.join(", "));
            }
            other => out.push_str(&lit(other, v, k)),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    // Formatting variety that must not matter.
    match v % 4 {
        0 => out,
        1 if !out.contains('"') && !out.contains('\'') => out.to_lowercase(),
        1 => out
            .replace("SELECT", "select")
            .replace("FROM", "from")
            .replace("WHERE", "where"),
        2 => format!(
            "/* variant {v} */ {}  -- trailing comment",
            out.replace(' ', "  \n ")
        ),
        _ => out
            .replace("users", "\"users\"")
            .replace("posts", "\"posts\""),
    }
}

fn corpus() -> Vec<Variant> {
    let mut out = Vec::new();
    for (g, t) in TEMPLATES.iter().enumerate() {
        for v in 0..3 {
            out.push(Variant {
                sql: fill(t, v),
                group: g,
                list_group: false,
            });
        }
    }
    for (g, t) in LIST_TEMPLATES.iter().enumerate() {
        for v in 0..4 {
            out.push(Variant {
                sql: fill(t, v),
                group: TEMPLATES.len() + g,
                list_group: true,
            });
        }
    }
    out
}

fn single_in(sql: &str) -> bool {
    sql.to_uppercase()
        .split(" IN (")
        .nth(1)
        .is_some_and(|rest| !rest.split(')').next().unwrap_or("").contains(','))
}

async fn queryid_of(conn: &mut PgConnection, sql: &str) -> i64 {
    let before: HashMap<i64, i64> =
        sqlx::query_as("SELECT queryid, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'")
            .fetch_all(&mut *conn)
            .await
            .expect("read pg_stat_statements")
            .into_iter()
            .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let after: Vec<(i64, i64)> =
        sqlx::query_as("SELECT queryid, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%'")
            .fetch_all(&mut *conn)
            .await
            .expect("read pg_stat_statements");
    let changed: Vec<i64> = after
        .into_iter()
        .filter(|(id, calls)| before.get(id) != Some(calls))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "expected exactly one pg_stat_statements entry to change for {sql}: {changed:?}"
    );
    changed[0]
}

#[tokio::test]
async fn fingerprints_agree_with_pg_stat_statements_queryid() {
    let base = common::pg_stat_statements_url().await;
    let mut admin = PgConnection::connect(&base).await.expect("connect");
    sqlx::raw_sql("DROP DATABASE IF EXISTS pgscope_diff WITH (FORCE)")
        .execute(&mut admin)
        .await
        .expect("drop db");
    sqlx::raw_sql("CREATE DATABASE pgscope_diff")
        .execute(&mut admin)
        .await
        .expect("create db");
    let url = match base.rfind('/') {
        Some(i) => format!("{}/pgscope_diff", &base[..i]),
        None => panic!("unexpected url {base}"),
    };
    let mut conn = PgConnection::connect(&url).await.expect("connect diff db");
    sqlx::raw_sql(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
         CREATE TABLE users (id bigint PRIMARY KEY, name text, email text, active bool, created_at timestamptz DEFAULT now());
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint, title text, score int, created_at timestamptz DEFAULT now());
         CREATE TABLE comments (id serial PRIMARY KEY, post_id bigint, user_id bigint, body text);
         CREATE TABLE \"Quoted\" (\"Name\" text);
         CREATE TABLE quoted_lower (name text);
         INSERT INTO users SELECT g, 'u' || g, NULL, true FROM generate_series(1, 100) g;
         INSERT INTO posts SELECT g, g % 100 + 1, 'p' || g, g FROM generate_series(1, 100) g;",
    )
    .execute(&mut conn)
    .await
    .expect("schema");

    let corpus = corpus();
    assert!(
        corpus.len() >= 150,
        "corpus has {} statements",
        corpus.len()
    );
    let mut rows = Vec::new();
    for v in &corpus {
        let qid = queryid_of(&mut conn, &v.sql).await;
        rows.push((v, qid, pgscope::fingerprint(&v.sql)));
    }

    let mut mismatches = Vec::new();
    for (i, (a, qa, fa)) in rows.iter().enumerate() {
        for (b, qb, fb) in &rows[i + 1..] {
            let same_q = qa == qb;
            let same_f = fa.id() == fb.id();
            if same_q == same_f {
                continue;
            }
            // Documented divergences, both from list collapsing:
            // 1. pgscope merges constant lists of different lengths (IN, VALUES rows) that
            //    PostgreSQL keeps apart — including a one-row VALUES with a multi-row one.
            if same_f && (a.list_group || b.list_group) {
                continue;
            }
            // 3. pgscope does not split a statement by the type of a constant: `score > 42` and
            //    `score > 0.5` are one shape (PostgreSQL types them integer and numeric).
            let typed = |v: &Variant| TEMPLATES.get(v.group).is_some_and(|t| t.contains("{f}"));
            if same_f && a.group != b.group && (typed(a) || typed(b)) {
                continue;
            }
            // 2. PostgreSQL rewrites a one-element `IN (x)` to `= x`; pgscope keeps `IN (...)`
            //    so the statement groups with its longer-list siblings.
            if same_q
                && ((a.list_group && single_in(&a.sql)) || (b.list_group && single_in(&b.sql)))
            {
                continue;
            }
            mismatches.push(format!(
                "queryid {} / fingerprint {}:\n    {}\n    -> {}\n    {}\n    -> {}",
                if same_q { "same" } else { "different" },
                if same_f { "same" } else { "different" },
                a.sql,
                fa.normalized(),
                b.sql,
                fb.normalized()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // The collapse groups really are collapsed on our side and split on PostgreSQL's.
    for g in TEMPLATES.len()..TEMPLATES.len() + LIST_TEMPLATES.len() {
        let members: Vec<_> = rows.iter().filter(|(v, _, _)| v.group == g).collect();
        assert!(
            members.windows(2).all(|w| w[0].2 == w[1].2),
            "group {g} not collapsed"
        );
        let distinct_q: std::collections::HashSet<_> = members.iter().map(|(_, q, _)| *q).collect();
        assert!(
            distinct_q.len() > 1,
            "pg_stat_statements unexpectedly merged list lengths in group {g}"
        );
    }
    drop(conn);
    let _ = sqlx::raw_sql("DROP DATABASE IF EXISTS pgscope_diff WITH (FORCE)")
        .execute(&mut admin)
        .await;
}
