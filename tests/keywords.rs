//! The normalizer's keywords against PostgreSQL 15's own list (`pg_get_keywords()`, which is
//! `kwlist.h`), read from the real server: every reserved keyword is upper-cased wherever it
//! stands; every keyword, of any category, is upper-cased where it acts as one (a statement's
//! first word); and the unreserved and column-name keywords, which PostgreSQL lets name
//! columns, stay identifiers where they stand as a column name.

mod common;

use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn every_postgres_keyword_is_known_with_its_category() {
    let url = common::database_url().await;
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut conn)
        .await
        .expect("version");
    assert!(version >= 150_000, "PostgreSQL 15 or later: {version}");
    let keywords: Vec<(String, String)> =
        sqlx::query_as("SELECT word, catcode::text FROM pg_get_keywords() ORDER BY word")
            .fetch_all(&mut conn)
            .await
            .expect("pg_get_keywords");
    assert!(keywords.len() > 450, "{}", keywords.len());
    let mut checked = 0;
    for (word, category) in &keywords {
        let upper = word.to_uppercase();
        // As a statement's first word, every keyword is one.
        let alone = pgscope::fingerprint(word);
        match upper.as_str() {
            // Values: placeholders.
            "TRUE" | "FALSE" | "NULL" => assert_eq!(alone.normalized(), "$1"),
            _ => assert_eq!(alone.normalized(), upper, "{word} ({category})"),
        }
        let in_select = pgscope::fingerprint(&format!("SELECT a, {word} FROM t"))
            .normalized()
            .to_owned();
        match category.as_str() {
            // Reserved (or reserved but for function and type names): a keyword everywhere.
            "R" | "T" if !matches!(upper.as_str(), "TRUE" | "FALSE" | "NULL") => assert!(
                in_select.contains(&format!(" {upper}")),
                "{word} ({category}): {in_select}"
            ),
            // Unreserved and column-name keywords where a column stands: a name, as written.
            // (Those the normalizer always upper-cases, such as `KEY` or `FIRST`, are checked by
            // the first assertion alone.)
            "U" | "C" if !always_upper(&upper) => assert_eq!(
                in_select,
                format!("SELECT a, {word} FROM t"),
                "{word} ({category})"
            ),
            _ => {}
        }
        checked += 1;
    }
    assert_eq!(checked, keywords.len());
}

/// The keywords pgscope upper-cases wherever they stand (its table of always-keywords holds
/// unreserved and column-name ones too, from before the full list).
fn always_upper(word: &str) -> bool {
    let shown = pgscope::fingerprint(&format!("SELECT a, {} FROM t", word.to_lowercase()));
    shown.normalized().contains(&format!(" {word}"))
}
