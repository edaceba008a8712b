//! The request console on the seed's feed service: the N+1 version and the JOIN version of
//! `GET /api/feed` under a little concurrent load, their reports in one console.
//!
//! ```text
//! cargo run --example console --features console            # then open the printed URL
//! cargo run --example console --features console -- --screenshots docs
//! ```
//! With `--screenshots DIR` it takes pictures of the requests page, one request's waterfall
//! and the routes page with headless Chromium and exits (`docs/screenshots.sh` runs this).
//! Uses `DATABASE_URL` and `REDIS_URL` like the feed example.

#[path = "feed/app.rs"]
mod app;
#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgscope::console::Console;

struct Args {
    port: u16,
    screenshots: Option<PathBuf>,
    requests: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        screenshots: None,
        requests: 24,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--port" => {
                args.port = value
                    .parse()
                    .map_err(|_| format!("--port needs a number, got `{value}`"))?
            }
            "--requests" => {
                args.requests = value
                    .parse()
                    .map_err(|_| format!("--requests needs a number, got `{value}`"))?
            }
            "--screenshots" => args.screenshots = Some(PathBuf::from(value)),
            "-h" | "--help" => {
                println!("usage: console [--port N] [--requests N] [--screenshots DIR]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag `{other}` (see --help)")),
        }
        i += 2;
    }
    Ok(args)
}

async fn state(pool: &pgscope::Pool, mode: app::Mode) -> Result<app::AppState, String> {
    let ns = format!("pgscope-console-demo-{}", std::process::id());
    app::AppState::connect(pool, mode, ns).await
}

async fn listen(port: u16, app: axum::Router) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
        if let Err(e) = served {
            eprintln!("server: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// `count` GET requests to `url`, all at once (more than the pool's five connections, so some
/// wait for one).
async fn burst(
    client: &reqwest::Client,
    url: &str,
    count: usize,
    page: usize,
) -> Result<(), String> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let request = client.get(format!("{url}?page={}", (page + i) % 10));
        tasks.push(tokio::spawn(request.send()));
    }
    for task in tasks {
        let resp = task
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
    }
    Ok(())
}

/// A new post (`POST /api/posts`): a second route, an INSERT and a cache invalidation.
async fn post(client: &reqwest::Client, base: &str, n: usize) -> Result<(), String> {
    let resp = client
        .post(format!("{base}/api/posts"))
        .json(
            &serde_json::json!({ "author_id": 1 + n as i64, "title": format!("console demo {n}") }),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 201 {
        return Err(format!("POST /api/posts: {}", resp.status()));
    }
    Ok(())
}

fn chromium() -> Result<PathBuf, String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| ["/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(name)))
        .find(|p| p.exists())
        .ok_or_else(|| "no Chromium: sudo apt-get install -y chromium".to_owned())
}

fn screenshot(url: &str, file: &Path, height: u32) -> Result<(), String> {
    let profile = std::env::temp_dir().join(format!("pgscope-shot-{}", std::process::id()));
    let out = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size=1280,{height}"))
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .map_err(|e| format!("chromium: {e}"))?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() || !file.exists() {
        return Err(format!(
            "chromium --screenshot {url}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    println!("  {}", file.display());
    Ok(())
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let opts = common::schema("console_demo").await;
    app::setup_schema(&opts)
        .await
        .map_err(|e| format!("seed: {e}"))?;
    let pool = pgscope::PoolOptions::new()
        .max_connections(5)
        .connect_with(opts)
        .await
        .map_err(|e| format!("pool: {e}"))?;

    // The three lines: a console, its hook on the scope layer, its pages nested in the app.
    let console = Console::new().local_only();
    console.watch(&pool);
    let scopes = || {
        pgscope::http::ScopeLayer::new()
            .server_timing(true)
            .on_report(console.hook())
    };
    let naive = app::router_with(state(&pool, app::Mode::Naive).await?, scopes())
        .merge(console.routes_at("/_pgscope"));
    let join = app::router_with(state(&pool, app::Mode::Join).await?, scopes());
    let port = if args.screenshots.is_some() {
        0
    } else {
        args.port
    };
    let naive = listen(port, naive).await?;
    let join = listen(0, join).await?;

    println!(
        "{} requests to the N+1 feed and {} to the JOIN, in bursts of 8, and a few new posts…",
        args.requests, args.requests
    );
    let client = reqwest::Client::new();
    for batch in 0..args.requests.div_ceil(8) {
        let count = 8.min(args.requests - batch * 8);
        burst(&client, &format!("{join}/api/feed"), count, batch).await?;
        post(&client, &naive, batch).await?;
        burst(&client, &format!("{naive}/api/feed"), count, batch).await?;
    }
    let base = format!("{naive}/_pgscope");

    let Some(dir) = args.screenshots else {
        println!("console: {base}   (the N+1 feed: {naive}/api/feed, the JOIN: {join}/api/feed)");
        println!("Ctrl-C to stop.");
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        return Ok(());
    };
    // The waterfall worth showing: an N+1 request that also waited for the pool.
    let list: serde_json::Value = reqwest::get(format!("{base}/api/requests"))
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = list["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["statements"] == 21)
        .max_by(|a, b| {
            let wait = |r: &serde_json::Value| r["pool_wait_ms"].as_f64().unwrap_or(0.0);
            wait(a).total_cmp(&wait(b))
        })
        .and_then(|r| r["id"].as_u64())
        .ok_or("no N+1 request in the console")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("screenshots:");
    screenshot(&base, &dir.join("console-requests.png"), 900)?;
    screenshot(
        &format!("{base}/requests/{id}"),
        &dir.join("console-request.png"),
        1100,
    )?;
    screenshot(
        &format!("{base}/routes"),
        &dir.join("console-routes.png"),
        560,
    )?;
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
