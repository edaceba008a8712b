//! A small sqlx 0.8 application: a feed of posts with their authors, the N+1 way and the
//! batched way. It knows nothing about pgscope; its tests observe it.

use sqlx::PgPool;

/// A post with its author's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    pub title: String,
    pub author: String,
}

/// Creates and fills the tables in the connection's schema.
pub async fn seed(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS posts; DROP TABLE IF EXISTS users;
         CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
         CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users, title text NOT NULL);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g;
         INSERT INTO posts SELECT g, 1 + g % 20, 'post ' || g FROM generate_series(1, 100) g;",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The feed, one author query per post: an N+1.
pub async fn feed_naive(pool: &PgPool, limit: i64) -> Result<Vec<FeedItem>, sqlx::Error> {
    let posts: Vec<(String, i64)> =
        sqlx::query_as("SELECT title, author_id FROM posts ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await?;
    let mut feed = Vec::with_capacity(posts.len());
    for (title, author_id) in posts {
        let author: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(author_id)
            .fetch_one(pool)
            .await?;
        feed.push(FeedItem { title, author });
    }
    Ok(feed)
}

/// The same feed in one statement.
pub async fn feed_join(pool: &PgPool, limit: i64) -> Result<Vec<FeedItem>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.title, u.name FROM posts p JOIN users u ON u.id = p.author_id ORDER BY p.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(title, author)| FeedItem { title, author })
        .collect())
}
