//! The seed's feed service: `GET /api/feed` in four modes over PostgreSQL and Redis, with
//! pgscope's request scopes. Shared by `examples/feed` (the demo) and `tests/feed.rs`.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use pgscope::Pool;
use pgscope::http::ScopeLayer;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

pub const USERS: i64 = 2_000;
pub const POSTS: i64 = 50_000;
pub const PAGE_SIZE: i64 = 20;
/// Cache TTL: the feed tolerates five minutes of staleness (new posts invalidate it anyway);
/// ±10 % jitter spreads expiries so keys filled together do not expire together.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// posts query + one author query per post: the N+1
    Naive,
    /// one JOIN
    Join,
    /// Redis cache-aside over the JOIN, single-flight fill
    Cached,
    /// token-bucket rate limit per user in front of the cached feed
    Limited,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Naive, Mode::Join, Mode::Cached, Mode::Limited];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Join => "join",
            Mode::Cached => "cached",
            Mode::Limited => "limited",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Rate-limit tiers: requests per minute per user.
#[derive(Debug, Clone, Copy)]
pub struct Tiers {
    pub free: u32,
    pub pro: u32,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers { free: 60, pro: 600 }
    }
}

/// Per-request facts the load driver reports on, recorded inside the request scope.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub queries: AtomicU64,
    pub n_plus_one: AtomicU64,
    pub hold_ns: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub fills: AtomicU64,
    pub limited: AtomicU64,
    pub pool_wait_us: Mutex<Vec<u64>>,
    /// (count, call site) of every N+1 found, for tests and the report.
    pub n_plus_one_items: Mutex<Vec<(u64, String)>>,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub redis: ConnectionManager,
    pub mode: Mode,
    pub tiers: Tiers,
    pub stats: Arc<Stats>,
    /// Prefix for Redis keys, so runs and tests do not share cache entries.
    pub ns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeedItem {
    pub post_id: i64,
    pub title: String,
    pub author_id: i64,
    pub author: String,
}

#[derive(Deserialize)]
pub struct FeedParams {
    page: Option<i64>,
}

/// Creates and seeds the schema once; later runs find it in place.
pub async fn setup_schema(opts: &sqlx::postgres::PgConnectOptions) -> Result<(), sqlx::Error> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = opts.connect().await?;
    let mut tx = conn.begin().await?;
    // Serialise concurrent setups (parallel tests) on the same schema.
    sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name text NOT NULL, tier text NOT NULL DEFAULT 'free');
         CREATE TABLE IF NOT EXISTS posts (id bigserial PRIMARY KEY, author_id bigint NOT NULL REFERENCES users,
                                           title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX IF NOT EXISTS posts_created_at ON posts (created_at DESC, id DESC);",
    )
    .execute(&mut *tx)
    .await?;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    if users < USERS {
        sqlx::query("INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, $1) g ON CONFLICT DO NOTHING")
            .bind(USERS)
            .execute(&mut *tx)
            .await?;
    }
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts")
        .fetch_one(&mut *tx)
        .await?;
    if posts < POSTS {
        sqlx::query(
            "INSERT INTO posts (author_id, title, created_at)
             SELECT 1 + (g * 7919) % $2, 'post ' || g, now() - (g || ' seconds')::interval
             FROM generate_series(1, $1) g",
        )
        .bind(POSTS - posts)
        .bind(USERS)
        .execute(&mut *tx)
        .await?;
        sqlx::query("ANALYZE posts").execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub fn router(state: AppState) -> Router {
    router_with(state, ScopeLayer::new().server_timing(true))
}

/// The app with its request scopes opened by `scopes` (e.g. with a console's report hook).
pub fn router_with(state: AppState, scopes: ScopeLayer) -> Router {
    Router::new()
        .route("/api/feed", get(feed))
        .route("/api/posts", post(create_post))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .layer(scopes)
        // Outermost: a request span per request (INFO, so exporters keep it); ScopeLayer puts the
        // scope's summary and N+1 events on it.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
            ),
        )
        .with_state(state)
}

/// Runs inside the request's scope (ScopeLayer is the outer layer): reads the scope's report
/// after the handler, for the load driver's table.
async fn record_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(report) = pgscope::current_report() {
        let s = &state.stats;
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.queries.fetch_add(report.queries(), Ordering::Relaxed);
        s.n_plus_one
            .fetch_add(report.n_plus_one().len() as u64, Ordering::Relaxed);
        s.hold_ns.fetch_add(
            report.connection_hold_time().as_nanos() as u64,
            Ordering::Relaxed,
        );
        s.pool_wait_us
            .lock()
            .push(report.pool_wait_time().as_micros() as u64);
        s.n_plus_one_items.lock().extend(
            report
                .n_plus_one()
                .iter()
                .map(|n| (n.count(), n.call_site().to_owned())),
        );
    }
    response
}

async fn feed(
    State(state): State<AppState>,
    Query(params): Query<FeedParams>,
    headers: HeaderMap,
) -> Response {
    let page = params.page.unwrap_or(0).clamp(0, 100);
    let mut rate_headers = None;
    if state.mode == Mode::Limited {
        let user = headers
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        match rate_limit(&state, &user).await {
            Ok(decision) if !decision.allowed => {
                state.stats.limited.fetch_add(1, Ordering::Relaxed);
                let mut resp =
                    (StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n").into_response();
                decision.apply(resp.headers_mut());
                return resp;
            }
            Ok(decision) => rate_headers = Some(decision),
            Err(e) => return internal(e),
        }
    }
    let result = match state.mode {
        Mode::Naive => naive_feed(&state.pool, page)
            .await
            .map(|items| (items, "none"))
            .map_err(AppError::from),
        Mode::Join => join_feed(&state.pool, page)
            .await
            .map(|items| (items, "none"))
            .map_err(AppError::from),
        Mode::Cached | Mode::Limited => cached_feed(&state, page).await,
    };
    match result {
        Ok((items, cache)) => {
            let mut resp = Json(items).into_response();
            resp.headers_mut()
                .insert("x-cache", HeaderValue::from_static(cache));
            if let Some(d) = rate_headers {
                d.apply(resp.headers_mut());
            }
            resp
        }
        Err(e) => internal(e),
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

/// Act 1: the lazy-loading handler from the seed.
pub async fn naive_feed(pool: &Pool, page: i64) -> Result<Vec<FeedItem>, sqlx::Error> {
    let posts: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, title, author_id FROM posts ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
    )
    .bind(PAGE_SIZE)
    .bind(page * PAGE_SIZE)
    .fetch_all(pool)
    .await?;
    let mut items = Vec::with_capacity(posts.len());
    for (post_id, title, author_id) in posts {
        // post.author.name, loaded one at a time
        let author: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(author_id)
            .fetch_one(pool)
            .await?;
        items.push(FeedItem {
            post_id,
            title,
            author_id,
            author,
        });
    }
    Ok(items)
}

/// Act 2: one query.
pub async fn join_feed(pool: &Pool, page: i64) -> Result<Vec<FeedItem>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT p.id, p.title, p.author_id, u.name FROM posts p JOIN users u ON u.id = p.author_id
         ORDER BY p.created_at DESC, p.id DESC LIMIT $1 OFFSET $2",
    )
    .bind(PAGE_SIZE)
    .bind(page * PAGE_SIZE)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(post_id, title, author_id, author)| FeedItem {
            post_id,
            title,
            author_id,
            author,
        })
        .collect())
}

fn jittered_ttl() -> u64 {
    // ±10 %, from the clock's sub-second noise (good enough to spread expiries).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = CACHE_TTL.as_secs();
    let spread = base / 5; // 20 % range → ±10 %
    base - base / 10 + u64::from(nanos) % (spread + 1)
}

#[derive(Debug)]
pub enum AppError {
    Db(sqlx::Error),
    Redis(redis::RedisError),
    Json(serde_json::Error),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Db(e) => write!(f, "database: {e}"),
            AppError::Redis(e) => write!(f, "redis: {e}"),
            AppError::Json(e) => write!(f, "json: {e}"),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Db(e)
    }
}
impl From<redis::RedisError> for AppError {
    fn from(e: redis::RedisError) -> Self {
        AppError::Redis(e)
    }
}
impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> Self {
        AppError::Json(e)
    }
}

impl AppState {
    fn key(&self, page: i64) -> String {
        format!("{}:feed:page:{page}", self.ns)
    }
    fn keys_set(&self) -> String {
        format!("{}:feed:keys", self.ns)
    }
}

/// Act 3: cache-aside with a single-flight fill. The first request for a cold key takes a
/// short Redis lock (SET NX PX) and fills the key from the JOIN; concurrent requests for the same
/// key wait for the value instead of stampeding the database, and fall back to the database only
/// if the filler takes longer than the lock's lifetime.
pub async fn cached_feed(
    state: &AppState,
    page: i64,
) -> Result<(Vec<FeedItem>, &'static str), AppError> {
    let mut redis = state.redis.clone();
    let key = state.key(page);
    if let Some(json) = redis::cmd("GET")
        .arg(&key)
        .query_async::<Option<String>>(&mut redis)
        .await?
    {
        state.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        return Ok((serde_json::from_str(&json)?, "hit"));
    }
    state.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
    let lock = format!("{key}:lock");
    let lock_ms: u64 = 3_000;
    let won: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg("1")
        .arg("NX")
        .arg("PX")
        .arg(lock_ms)
        .query_async(&mut redis)
        .await?;
    if won.is_some() {
        // Double-check: another request may have filled the key and released the lock between
        // our miss and our lock.
        if let Some(json) = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<String>>(&mut redis)
            .await?
        {
            redis::cmd("DEL")
                .arg(&lock)
                .query_async::<()>(&mut redis)
                .await?;
            return Ok((serde_json::from_str(&json)?, "wait"));
        }
        let items = join_feed(&state.pool, page).await?;
        let json = serde_json::to_string(&items)?;
        redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&json)
            .arg("EX")
            .arg(jittered_ttl())
            .ignore()
            .cmd("SADD")
            .arg(state.keys_set())
            .arg(&key)
            .ignore()
            .cmd("DEL")
            .arg(&lock)
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        state.stats.fills.fetch_add(1, Ordering::Relaxed);
        return Ok((items, "fill"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(lock_ms);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if let Some(json) = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<String>>(&mut redis)
            .await?
        {
            return Ok((serde_json::from_str(&json)?, "wait"));
        }
    }
    Ok((join_feed(&state.pool, page).await?, "fallback"))
}

#[derive(Deserialize)]
pub struct NewPost {
    author_id: i64,
    title: String,
}

/// A new post invalidates every cached feed page (atomically, in one script).
async fn create_post(State(state): State<AppState>, Json(post): Json<NewPost>) -> Response {
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO posts (author_id, title) VALUES ($1, $2) RETURNING id",
    )
    .bind(post.author_id)
    .bind(&post.title)
    .fetch_one(&state.pool)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    if let Err(e) = invalidate(&state).await {
        return internal(e);
    }
    (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response()
}

pub async fn invalidate(state: &AppState) -> Result<(), redis::RedisError> {
    let script = redis::Script::new(
        r"local keys = redis.call('SMEMBERS', KEYS[1])
          for _, k in ipairs(keys) do redis.call('DEL', k) end
          redis.call('DEL', KEYS[1])
          return #keys",
    );
    let mut redis = state.redis.clone();
    script
        .key(state.keys_set())
        .invoke_async::<i64>(&mut redis)
        .await
        .map(|_| ())
}

/// Token bucket in one atomic Lua script: capacity = the tier's per-minute allowance, refilled
/// continuously at allowance/60 s per second, time from Redis itself (no clock skew between
/// app servers).
const TOKEN_BUCKET: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + (now - ts) * per_ms)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
local reset_ms = math.ceil((capacity - tokens) / per_ms)
return {allowed, math.floor(tokens), retry_ms, reset_ms}
";

#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: i64,
    pub retry_after_ms: i64,
    pub reset_ms: i64,
}

impl Decision {
    /// `RateLimit-*` headers (IETF draft) and, when refused, `Retry-After` in whole seconds.
    fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(name, v);
            }
        };
        set("ratelimit-limit", self.limit.to_string());
        set("ratelimit-remaining", self.remaining.max(0).to_string());
        set(
            "ratelimit-reset",
            ((self.reset_ms + 999) / 1000).to_string(),
        );
        if !self.allowed {
            set(
                "retry-after",
                ((self.retry_after_ms + 999) / 1000).max(1).to_string(),
            );
        }
    }
}

pub fn tier_limit(tiers: Tiers, user: &str) -> u32 {
    if user.starts_with("pro-") {
        tiers.pro
    } else {
        tiers.free
    }
}

pub async fn rate_limit(state: &AppState, user: &str) -> Result<Decision, redis::RedisError> {
    let limit = tier_limit(state.tiers, user);
    let per_ms = f64::from(limit) / 60_000.0;
    let mut redis = state.redis.clone();
    let (allowed, remaining, retry_after_ms, reset_ms): (i64, i64, i64, i64) =
        redis::Script::new(TOKEN_BUCKET)
            .key(format!("{}:ratelimit:{user}", state.ns))
            .arg(limit)
            .arg(per_ms)
            .invoke_async(&mut redis)
            .await?;
    Ok(Decision {
        allowed: allowed == 1,
        limit,
        remaining,
        retry_after_ms,
        reset_ms,
    })
}

/// Connects to Redis at `url`.
pub async fn connect_redis(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(Duration::from_secs(3), ConnectionManager::new(client))
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timed out connecting")))?
}

/// `REDIS_URL` (default `redis://127.0.0.1:6379`) when it answers; else a throwaway
/// `redis-server` on port 6391 when the binary exists; else an error saying how to get one.
pub async fn redis_url() -> Result<String, String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if connect_redis(&url).await.is_ok() {
        return Ok(url);
    }
    let throwaway = "redis://127.0.0.1:6391".to_owned();
    if connect_redis(&throwaway).await.is_ok() {
        return Ok(throwaway);
    }
    let started = std::process::Command::new("redis-server")
        .args([
            "--port",
            "6391",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ])
        .status();
    if matches!(started, Ok(s) if s.success()) {
        for _ in 0..30 {
            if connect_redis(&throwaway).await.is_ok() {
                eprintln!(
                    "(no Redis at {url}: started a throwaway redis-server on 127.0.0.1:6391)"
                );
                return Ok(throwaway);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(format!(
        "Redis is not reachable at {url} and no redis-server binary could be started.\n\
         Start one with `apt-get install -y redis-server && redis-server --daemonize yes`, or set REDIS_URL."
    ))
}

impl AppState {
    /// A state serving `mode` on `pool`, with a Redis connection from `REDIS_URL` (else a
    /// server on 127.0.0.1:6379) and Redis keys under `ns`.
    pub async fn connect(pool: &Pool, mode: Mode, ns: String) -> Result<AppState, String> {
        let redis_url = redis_url().await?;
        let redis = connect_redis(&redis_url)
            .await
            .map_err(|e| format!("Redis at {redis_url}: {e}"))?;
        Ok(AppState {
            pool: pool.clone(),
            redis,
            mode,
            tiers: Tiers::default(),
            stats: Arc::new(Stats::default()),
            ns,
        })
    }
}
