//! A todo service written the way sqlx's own examples are: the pool in the router's state,
//! migrations at startup, `FromRow` structs, transactions, and `#[sqlx::test]`-style tests.
//! The only pgscope-specific lines are the import of the pool type, the test attribute and
//! the `ScopeLayer` (the rest is the code a `sqlx::PgPool` app already has).
//!
//! ```text
//! cargo run --example todos --features axum          # serves on 127.0.0.1:3000
//! cargo test --example todos --features axum         # its tests, on a real PostgreSQL
//! ```
//!
//! `GET /todos` has an N+1 on purpose (tags loaded per todo): pgscope's log line names it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use pgscope::Pool as PgPool; // was: use sqlx::PgPool;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Todo {
    id: i64,
    description: String,
    done: bool,
    #[sqlx(skip)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct NewTodo {
    description: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
}

fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/todos", get(list_todos).post(add_todo))
        .route("/todos/{id}/done", post(complete_todo))
        .with_state(AppState { pool })
}

fn app(pool: PgPool) -> Router {
    // One pgscope scope per request, named by the matched route (`GET /todos`).
    routes(pool).layer(pgscope::http::ScopeLayer::new())
}

type Result<T> = std::result::Result<T, (StatusCode, String)>;

fn internal(e: sqlx::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn add_todo(State(state): State<AppState>, Json(new): Json<NewTodo>) -> Result<Json<i64>> {
    let mut tx = state.pool.begin().await.map_err(internal)?;
    let id: i64 = sqlx::query_scalar("INSERT INTO todos (description) VALUES ($1) RETURNING id")
        .bind(&new.description)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?;
    sqlx::query("INSERT INTO tags (todo_id, tag) SELECT $1, unnest($2::text[])")
        .bind(id)
        .bind(&new.tags)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(Json(id))
}

async fn list_todos(State(state): State<AppState>) -> Result<Json<Vec<Todo>>> {
    let mut todos: Vec<Todo> =
        sqlx::query_as("SELECT id, description, done FROM todos ORDER BY id")
            .fetch_all(&state.pool)
            .await
            .map_err(internal)?;
    for todo in &mut todos {
        // The N+1: one statement per todo (pgscope suggests `WHERE todo_id = ANY($1)`).
        todo.tags = sqlx::query_scalar("SELECT tag FROM tags WHERE todo_id = $1 ORDER BY tag")
            .bind(todo.id)
            .fetch_all(&state.pool)
            .await
            .map_err(internal)?;
    }
    Ok(Json(todos))
}

async fn complete_todo(State(state): State<AppState>, Path(id): Path<i64>) -> Result<StatusCode> {
    let done = sqlx::query("UPDATE todos SET done = TRUE WHERE id = $1")
        .bind(id)
        .execute(&state.pool)
        .await
        .map_err(internal)?;
    Ok(if done.rows_affected() == 1 {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = PgPool::connect(&url).await?;
    sqlx::migrate!("examples/todos/migrations")
        .run(&pool)
        .await?;
    let addr = std::env::var("TODOS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("todos on http://{addr}/todos");
    axum::serve(listener, app(pool)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `app` on a free port, as the binary would.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        format!("http://{addr}")
    }

    // was: #[sqlx::test(migrations = "examples/todos/migrations")]
    #[pgscope::test(migrations = "examples/todos/migrations")]
    async fn adding_then_listing_returns_the_todos_with_their_tags(pool: PgPool) {
        let base = serve(app(pool)).await;
        let client = reqwest::Client::new();
        let added = client
            .post(format!("{base}/todos"))
            .json(&serde_json::json!({"description": "write docs", "tags": ["urgent", "docs"]}))
            .send()
            .await
            .expect("POST");
        assert_eq!(added.status(), 200);
        let todos: serde_json::Value = client
            .get(format!("{base}/todos"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        assert_eq!(todos[0]["description"], "write docs");
        assert_eq!(todos[0]["tags"], serde_json::json!(["docs", "urgent"]));
    }

    #[pgscope::test(migrations = "examples/todos/migrations")]
    async fn completing_a_missing_todo_is_not_found(pool: PgPool) {
        let base = serve(app(pool)).await;
        let response = reqwest::Client::new()
            .post(format!("{base}/todos/999/done"))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 404);
    }

    /// What pgscope adds: the list route's N+1, read from the request's report.
    #[pgscope::test(migrations = "examples/todos/migrations")]
    async fn the_list_route_has_an_n_plus_one_on_tags(pool: PgPool) {
        for i in 0..8 {
            sqlx::query("INSERT INTO todos (description) VALUES ($1)")
                .bind(format!("todo {i}"))
                .execute(&pool)
                .await
                .expect("insert");
        }
        let recorder = pgscope::Recorder::new();
        let layer = pgscope::http::ScopeLayer::new().on_report(recorder.hook());
        let base = serve(routes(pool).layer(layer)).await;
        let response = reqwest::get(format!("{base}/todos")).await.expect("GET");
        assert_eq!(response.status(), 200);
        let report = recorder.last("GET /todos");
        report.assert_queries(9);
        let n_plus_one = &report.n_plus_one()[0];
        assert_eq!(
            n_plus_one.fingerprint().normalized(),
            "SELECT tag FROM tags WHERE todo_id = $1 ORDER BY tag"
        );
        assert_eq!(n_plus_one.count(), 8);
    }
}
