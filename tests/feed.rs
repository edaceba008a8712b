//! The feed service of `examples/feed`, run in-process in each mode against real PostgreSQL and
//! Redis, driven over real HTTP.

#[path = "../examples/feed/app.rs"]
mod app;
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use app::{AppState, Mode, Stats, Tiers};

struct Running {
    base: String,
    state: AppState,
    client: reqwest::Client,
}

async fn start(pool: &pgscope::Pool, mode: Mode, tiers: Tiers, ns: &str) -> Running {
    let redis_url = app::redis_url().await.unwrap_or_else(|e| panic!("{e}"));
    let redis = app::connect_redis(&redis_url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {redis_url}: {e}"));
    let state = AppState {
        pool: pool.clone(),
        redis,
        mode,
        tiers,
        stats: Arc::new(Stats::default()),
        ns: format!("pgscope-test-{ns}-{}", std::process::id()),
    };
    app::invalidate(&state).await.expect("clean cache");
    let router = app::router(state.clone());
    let base = common::serve(router).await;
    Running {
        base,
        state,
        client: reqwest::Client::new(),
    }
}

async fn pool(name: &str) -> pgscope::Pool {
    let opts = common::schema(name).await;
    app::setup_schema(&opts).await.expect("seed");
    pgscope::PoolOptions::new()
        .max_connections(5)
        .connect_with(opts)
        .await
        .expect("pool")
}

fn queries_of(resp: &reqwest::Response) -> u64 {
    let timing = resp.headers()["server-timing"].to_str().expect("ascii");
    let desc = timing.split("desc=\"").nth(1).expect("desc");
    desc.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("query count")
}

impl Running {
    async fn get(&self, page: i64, user: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/feed?page={page}", self.base))
            .header("x-user-id", user)
            .send()
            .await
            .expect("request")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_runs_21_queries_per_request_and_is_flagged_once_with_the_handler_line() {
    let pool = pool("feed_naive").await;
    let app = start(&pool, Mode::Naive, Tiers::default(), "naive").await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let (client, base) = (app.client.clone(), app.base.clone());
        handles.push(tokio::spawn(async move {
            client
                .get(format!("{base}/api/feed?page={}", i % 3))
                .send()
                .await
                .expect("request")
        }));
    }
    for h in handles {
        let resp = h.await.expect("task");
        assert_eq!(resp.status(), 200);
        assert_eq!(queries_of(&resp), 21);
        let items: Vec<app::FeedItem> = resp.json().await.expect("json");
        assert_eq!(items.len(), 20);
    }
    let s = &app.state.stats;
    assert_eq!(s.requests.load(Ordering::Relaxed), 8);
    assert_eq!(s.queries.load(Ordering::Relaxed), 8 * 21);
    let items = s.n_plus_one_items.lock().clone();
    assert_eq!(items.len(), 8, "exactly one N+1 per request");
    let line = include_str!("../examples/feed/app.rs")
        .lines()
        .position(|l| l.contains("post.author.name, loaded one at a time"))
        .expect("marker")
        + 2;
    for (count, site) in items {
        assert_eq!(count, 20);
        let (file, at) = site.rsplit_once(':').expect("file:line");
        assert!(file.ends_with("examples/feed/app.rs"), "{site}");
        let at: usize = at.parse().expect("line");
        assert!(
            (line..=line + 5).contains(&at),
            "{site} should point at the author query (line {line})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_runs_one_query_and_returns_the_same_feed() {
    let pool = pool("feed_join").await;
    let naive = app::naive_feed(&pool, 2).await.expect("naive");
    let app = start(&pool, Mode::Join, Tiers::default(), "join").await;
    for _ in 0..5 {
        let resp = app.get(2, "u").await;
        assert_eq!(queries_of(&resp), 1);
        let items: Vec<app::FeedItem> = resp.json().await.expect("json");
        assert_eq!(items, naive, "the JOIN returns exactly what the N+1 did");
    }
    assert_eq!(app.state.stats.n_plus_one.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_serves_hits_without_queries_and_a_cold_key_is_filled_once() {
    let pool = pool("feed_cached").await;
    let app = start(&pool, Mode::Cached, Tiers::default(), "cached").await;

    // 50 concurrent requests on a cold key: one fills, the others wait for it.
    let mut handles = Vec::new();
    for _ in 0..50 {
        let (client, base) = (app.client.clone(), app.base.clone());
        handles.push(tokio::spawn(async move {
            client
                .get(format!("{base}/api/feed?page=7"))
                .send()
                .await
                .expect("request")
        }));
    }
    let (mut fills, mut total_queries) = (0, 0);
    for h in handles {
        let resp = h.await.expect("task");
        assert_eq!(resp.status(), 200);
        total_queries += queries_of(&resp);
        if resp.headers()["x-cache"] == "fill" {
            fills += 1;
        }
    }
    assert_eq!(fills, 1, "exactly one request fills a cold key");
    assert_eq!(total_queries, 1, "no stampede: the database saw one query");

    // Warm-up: one miss per page; afterwards hits only.
    for page in 0..5 {
        app.get(page, "u").await;
    }
    let (hits0, misses0) = (
        app.state.stats.cache_hits.load(Ordering::Relaxed),
        app.state.stats.cache_misses.load(Ordering::Relaxed),
    );
    for i in 0..100 {
        let resp = app.get(i % 5, "u").await;
        if resp.headers()["x-cache"] == "hit" {
            assert!(queries_of(&resp) <= 1);
            assert_eq!(queries_of(&resp), 0);
        }
    }
    let hits = app.state.stats.cache_hits.load(Ordering::Relaxed) - hits0;
    let misses = app.state.stats.cache_misses.load(Ordering::Relaxed) - misses0;
    assert!(
        hits as f64 / (hits + misses) as f64 >= 0.9,
        "hit ratio {hits}/{}",
        hits + misses
    );

    // A new post invalidates the cache: the next read is a fill and shows the post first.
    let resp = app
        .client
        .post(format!("{}/api/posts", app.base))
        .json(&serde_json::json!({ "author_id": 3, "title": "fresh post" }))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 201);
    let resp = app.get(0, "u").await;
    assert_eq!(resp.headers()["x-cache"], "fill");
    let items: Vec<app::FeedItem> = resp.json().await.expect("json");
    assert_eq!(items[0].title, "fresh post");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_returns_429_with_retry_after_after_exactly_the_tier_allowance() {
    let pool = pool("feed_limited").await;
    let tiers = Tiers { free: 5, pro: 12 };
    let app = start(&pool, Mode::Limited, tiers, "limited").await;
    for (user, allowance) in [("free-user", 5), ("pro-user", 12)] {
        for i in 0..allowance {
            let resp = app.get(0, user).await;
            assert_eq!(resp.status(), 200, "{user} request {i}");
            assert_eq!(
                resp.headers()["ratelimit-limit"],
                allowance.to_string().as_str()
            );
            assert_eq!(
                resp.headers()["ratelimit-remaining"],
                (allowance - 1 - i).to_string().as_str()
            );
        }
        let resp = app.get(0, user).await;
        assert_eq!(resp.status(), 429, "{user} is over the allowance");
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        // One token every 60 / allowance seconds.
        let refill = 60 / allowance;
        assert!(
            (refill - 1..=refill).contains(&retry),
            "{user}: Retry-After {retry}, refill {refill}"
        );
        assert_eq!(resp.headers()["ratelimit-remaining"], "0");
    }
    // Another user is unaffected.
    assert_eq!(app.get(0, "free-other").await.status(), 200);
    assert_eq!(app.state.stats.limited.load(Ordering::Relaxed), 2);
}
