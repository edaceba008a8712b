//! The request console, end to end: the feed example's app (naive and join) serves real HTTP
//! requests with `console.hook()` on its `ScopeLayer` and the console nested at `/_pgscope`;
//! the pages are opened in a real headless Chromium (Debian's `chromium`, `--dump-dom`: the DOM
//! after the page's script ran) and their JSON read over HTTP.

#[path = "../examples/feed/app.rs"]
mod app;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pgscope::console::Console;
use serde_json::Value;

/// Serves `app` with connect info (for `Console::local_only`) on a free local port.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    format!("http://{addr}")
}

/// Debian's Chromium: installed with apt when missing (as `.ci/run` does), once per process.
fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .flat_map(|name| {
                ["/usr/bin", "/usr/local/bin", "/snap/bin"].map(|d| PathBuf::from(d).join(name))
            })
            .find(|p| p.exists())
    };
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if find().is_none() {
        INSTALL.call_once(|| {
            eprintln!("(no Chromium: installing Debian's chromium with apt-get)");
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "export DEBIAN_FRONTEND=noninteractive; \
                     (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
                     (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium) >/dev/null 2>&1",
                ])
                .status();
        });
    }
    find().unwrap_or_else(|| {
        panic!("no Chromium and apt-get could not install it: `sudo apt-get install -y chromium`")
    })
}

/// The DOM of `url` once loaded in headless Chromium, its script run.
async fn dump_dom(url: &str) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let profile = std::env::temp_dir().join(format!(
            "pgscope-chromium-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out = Command::new("timeout")
            .arg("90")
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("run chromium");
        let _ = std::fs::remove_dir_all(&profile);
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && dom.contains("</html>"),
            "chromium --dump-dom {url} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        dom
    })
    .await
    .expect("chromium task")
}

async fn get_json(url: &str) -> Value {
    let resp = reqwest::get(url).await.expect("GET");
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("json")
}

/// The line of `examples/feed/app.rs` the N+1's call site names: the `.await` of the author
/// query.
fn author_query_line() -> usize {
    let source = include_str!("../examples/feed/app.rs");
    let lines: Vec<&str> = source.lines().collect();
    let query = lines
        .iter()
        .position(|l| l.contains("\"SELECT name FROM users WHERE id = $1\""))
        .expect("author query");
    query
        + lines[query..]
            .iter()
            .position(|l| l.contains(".await?"))
            .expect("its .await")
        + 1
}

/// The `<tr data-id=…>` rows of a requests table.
fn rows(dom: &str) -> Vec<&str> {
    dom.split("<tr data-id=\"")
        .skip(1)
        .map(|r| &r[..r.find("</tr>").unwrap_or(r.len())])
        .collect()
}

/// The waterfall rows (`<div class="wf-row …">`) of a request page, up to their track.
fn waterfall_rows(dom: &str) -> Vec<&str> {
    dom.split("<div class=\"wf-row ")
        .skip(1)
        .map(|r| &r[..r.find("class=\"wf-track\"").unwrap_or(r.len())])
        .collect()
}

async fn feed_state(pool: &pgscope::Pool, mode: app::Mode, ns: &str) -> app::AppState {
    app::AppState::connect(
        pool,
        mode,
        format!("pgscope-console-{ns}-{}", std::process::id()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_the_feed_n_plus_one_and_its_fix_in_a_real_browser() {
    let opts = common::schema("console_feed").await;
    app::setup_schema(&opts).await.expect("seed");
    let pool = pgscope::PoolOptions::new()
        .max_connections(5)
        .connect_with(opts)
        .await
        .expect("pool");
    let console = Console::new().local_only();
    console.watch(&pool);
    let layer = || {
        pgscope::http::ScopeLayer::new()
            .server_timing(true)
            .on_report(console.hook())
    };
    // The three lines a user adds: the feature, the hook, the routes.
    let naive = app::router_with(feed_state(&pool, app::Mode::Naive, "naive").await, layer())
        .merge(console.routes_at("/_pgscope"));
    let join = app::router_with(feed_state(&pool, app::Mode::Join, "join").await, layer());
    let naive = serve(naive).await;
    let join = serve(join).await;
    for url in [
        format!("{naive}/api/feed?page=1"),
        format!("{join}/api/feed?page=1"),
    ] {
        let resp = reqwest::get(&url).await.expect("request");
        assert_eq!(resp.status(), 200, "{url}");
    }
    let base = format!("{naive}/_pgscope");

    // JSON: both requests, newest first.
    let list = get_json(&format!("{base}/api/requests")).await;
    let requests = list["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 2, "{list}");
    let (join_req, naive_req) = (&requests[0], &requests[1]);
    for r in requests {
        assert_eq!(r["scope"], "GET /api/feed");
        assert_eq!(r["status"], 200);
    }
    assert_eq!(naive_req["statements"], 21);
    assert_eq!(naive_req["findings"], serde_json::json!(["N+1"]));
    assert_eq!(join_req["statements"], 1);
    assert_eq!(join_req["findings"], serde_json::json!([]));
    let naive_id = naive_req["id"].as_u64().expect("id");
    let join_id = join_req["id"].as_u64().expect("id");

    // The requests page, in the browser.
    let dom = dump_dom(&base).await;
    let listed = rows(&dom);
    assert_eq!(listed.len(), 2, "{dom}");
    let naive_row = listed
        .iter()
        .find(|r| r.starts_with(&format!("{naive_id}\"")))
        .expect("naive row");
    assert!(naive_row.contains(">GET /api/feed</a>"), "{naive_row}");
    assert!(
        naive_row.contains("class=\"n statements\">21<"),
        "{naive_row}"
    );
    assert!(
        naive_row.contains("<span class=\"badge n1\">N+1</span>"),
        "{naive_row}"
    );
    let join_row = listed
        .iter()
        .find(|r| r.starts_with(&format!("{join_id}\"")))
        .expect("join row");
    assert!(join_row.contains("class=\"n statements\">1<"), "{join_row}");
    assert!(!join_row.contains("badge"), "{join_row}");
    assert!(
        dom.contains("id=\"refresh\""),
        "the auto-refresh switch is there"
    );

    // The filter: only requests with findings.
    let filtered = dump_dom(&format!("{base}?route=GET+%2Fapi%2Ffeed&findings=1")).await;
    let filtered_rows = rows(&filtered);
    assert_eq!(filtered_rows.len(), 1, "{filtered}");
    assert!(filtered_rows[0].starts_with(&format!("{naive_id}\"")));

    // The naive request: the N+1 as one row ×20, its call site and the batched statement.
    let dom = dump_dom(&format!("{base}/requests/{naive_id}")).await;
    let wf = waterfall_rows(&dom);
    let repeated: Vec<&&str> = wf.iter().filter(|r| r.starts_with("lane-stmt")).collect();
    assert_eq!(repeated.len(), 2, "posts and users rows: {dom}");
    let users = repeated
        .iter()
        .find(|r| r.contains("SELECT name FROM users WHERE id = $1"))
        .expect("the users row");
    assert!(users.contains("data-count=\"20\""), "{users}");
    assert!(users.contains("×20"), "{users}");
    assert!(
        wf.iter().any(|r| r.starts_with("lane-held")),
        "connection holds are drawn: {dom}"
    );
    let site = format!("examples/feed/app.rs:{}", author_query_line());
    assert!(
        dom.contains(&site),
        "the handler's call site {site} is shown: {dom}"
    );
    assert!(
        dom.contains("SELECT name FROM users WHERE id = ANY($1)"),
        "the batched statement is suggested: {dom}"
    );
    assert!(
        dom.contains("SELECT id, title, author_id FROM posts"),
        "the statement before the loop is named"
    );

    // The same request as JSON: the timeline is the request's, in order.
    let detail = get_json(&format!("{base}/api/requests/{naive_id}")).await;
    let wf = &detail["waterfall"];
    let rows_json = wf["rows"].as_array().expect("rows");
    let stmt_rows: Vec<&Value> = rows_json
        .iter()
        .filter(|r| r["lane"] == "statement")
        .collect();
    assert_eq!(stmt_rows.len(), 2);
    let posts = stmt_rows
        .iter()
        .find(|r| r["count"] == 1)
        .expect("posts row");
    let users = stmt_rows
        .iter()
        .find(|r| r["count"] == 20)
        .expect("users row");
    let posts_bar = &posts["bars"][0];
    let posts_end = posts_bar["start_ms"].as_f64().expect("start")
        + posts_bar["duration_ms"].as_f64().expect("duration");
    let span = wf["span_ms"].as_f64().expect("span");
    let mut previous_end = posts_end;
    for bar in users["bars"].as_array().expect("bars") {
        let start = bar["start_ms"].as_f64().expect("start");
        let end = start + bar["duration_ms"].as_f64().expect("duration");
        // Rounded to the microsecond in JSON.
        assert!(
            start + 0.002 >= previous_end,
            "each author query starts after the one before it ended: {wf}"
        );
        assert!(end <= span + 0.002, "inside the request: {wf}");
        previous_end = end;
    }
    assert_eq!(detail["finding_details"][0]["kind"], "N+1");
    assert_eq!(detail["finding_details"][0]["count"], 20);

    // The join request: one statement, no finding.
    let dom = dump_dom(&format!("{base}/requests/{join_id}")).await;
    let stmt_rows: Vec<&str> = waterfall_rows(&dom)
        .into_iter()
        .filter(|r| r.starts_with("lane-stmt"))
        .collect();
    assert_eq!(stmt_rows.len(), 1, "{dom}");
    assert!(stmt_rows[0].contains("data-count=\"1\""));
    assert!(stmt_rows[0].contains("JOIN users"), "{}", stmt_rows[0]);
    assert!(!dom.contains("<h2>Findings</h2>"), "{dom}");

    // Routes: both requests under one route, p99 statements 21; the pool's capacity math.
    let routes = get_json(&format!("{base}/api/routes")).await;
    let route = &routes["routes"][0];
    assert_eq!(route["route"], "GET /api/feed");
    assert_eq!(route["requests"], 2);
    assert_eq!(route["statements_p99"], 21);
    assert_eq!(route["statements_p50"], 1);
    assert_eq!(route["requests_with_findings"], 1);
    let pool_json = &routes["pools"][0];
    assert_eq!(pool_json["max_connections"], 5);
    assert!(
        pool_json["capacity_per_second"].as_f64().expect("capacity") > 0.0,
        "{routes}"
    );
    let dom = dump_dom(&format!("{base}/routes")).await;
    assert!(
        dom.contains("requests/s</b> before requests queue"),
        "{dom}"
    );

    // Pool: the watched pool with its samples and chart.
    let pools = get_json(&format!("{base}/api/pool")).await;
    assert_eq!(pools["pools"][0]["max_connections"], 5);
    assert!(
        !pools["pools"][0]["samples"]
            .as_array()
            .expect("samples")
            .is_empty()
    );
    let dom = dump_dom(&format!("{base}/pool")).await;
    assert!(dom.contains("open / max"), "{dom}");

    // An unknown request is a 404, not a panic.
    let resp = reqwest::get(format!("{base}/requests/999999"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_denies_every_request_unless_allowed() {
    let denied = serve(axum::Router::new().nest("/_pgscope", Console::new().router())).await;
    for path in [
        "",
        "/api/requests",
        "/routes",
        "/pool",
        "/api/pool",
        "/nope",
    ] {
        let resp = reqwest::get(format!("{denied}/_pgscope{path}"))
            .await
            .expect("GET");
        assert_eq!(resp.status(), 403, "{path} is denied by default");
    }

    let token = Console::new().authorize(|parts| {
        parts
            .headers
            .get("x-console-token")
            .is_some_and(|v| v == "s3cret")
    });
    let app = serve(axum::Router::new().nest("/_pgscope", token.router())).await;
    let client = reqwest::Client::new();
    let without = client
        .get(format!("{app}/_pgscope/api/requests"))
        .send()
        .await
        .expect("GET");
    assert_eq!(without.status(), 403);
    let wrong = client
        .get(format!("{app}/_pgscope/api/requests"))
        .header("x-console-token", "guess")
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 403);
    let with = client
        .get(format!("{app}/_pgscope/api/requests"))
        .header("x-console-token", "s3cret")
        .send()
        .await
        .expect("GET");
    assert_eq!(with.status(), 200);

    // local_only needs the peer address: served without connect info, it denies.
    let local = Console::new().local_only();
    let no_info = common::serve(axum::Router::new().nest("/_pgscope", local.router())).await;
    let resp = reqwest::get(format!("{no_info}/_pgscope"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.expect("body").contains("connect_info"));
    let with_info = serve(axum::Router::new().nest("/_pgscope", local.router())).await;
    let resp = reqwest::get(format!("{with_info}/_pgscope"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200, "127.0.0.1 is loopback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_name_with_markup_renders_as_text() {
    let opts = common::schema("console_escape").await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .expect("pool");
    let console = Console::new().local_only();
    let name = "<script>document.documentElement.setAttribute('data-pwned','1')</script>\
                <img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">";
    let (_, report) = pgscope::Scope::new(name)
        .on_report(console.hook())
        .capture(async {
            sqlx::query("SELECT 1").execute(&pool).await.expect("query");
        })
        .await;
    assert_eq!(report.queries(), 1);
    let base = format!(
        "{}/_pgscope",
        serve(axum::Router::new().nest("/_pgscope", console.router())).await
    );
    let id = get_json(&format!("{base}/api/requests")).await["requests"][0]["id"]
        .as_u64()
        .expect("id");
    for page in [
        base.clone(),
        format!("{base}/requests/{id}"),
        format!("{base}/routes"),
    ] {
        let html = reqwest::get(&page)
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert!(html.contains("&lt;script&gt;document"), "{page}: {html}");
        assert!(!html.contains("<script>document"), "{page}: {html}");
        assert!(!html.contains("<img src=x"), "{page}: {html}");
        assert_eq!(
            html.matches("<script>").count(),
            1,
            "only the console's own script"
        );
        let dom = dump_dom(&page).await;
        let html_tag = &dom[dom.find("<html").expect("html")..];
        let html_tag = &html_tag[..html_tag.find('>').expect("tag end")];
        assert!(
            !html_tag.contains("data-pwned"),
            "{page}: the name ran as script: {html_tag}"
        );
        assert!(dom.contains("&lt;script&gt;"), "{page}: shown as text");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_the_newest_reports_within_its_bounds() {
    let opts = common::schema("console_bounds").await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .expect("pool");
    let console = Console::new().capacity(3).authorize(|_| true);
    for i in 0..10 {
        let (_, _report) = pgscope::Scope::new(format!("job {i}"))
            .on_report(console.hook())
            .capture(async {
                sqlx::query("SELECT 1").execute(&pool).await.expect("query");
            })
            .await;
    }
    let base = format!(
        "{}/_pgscope",
        serve(axum::Router::new().nest("/_pgscope", console.router())).await
    );
    let list = get_json(&format!("{base}/api/requests")).await;
    let names: Vec<&str> = list["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["scope"].as_str().expect("scope"))
        .collect();
    assert_eq!(
        names,
        ["job 9", "job 8", "job 7"],
        "newest first, oldest dropped"
    );
    assert_eq!(list["evicted"], 7);

    // A byte bound smaller than one report keeps only the newest.
    let tiny = Console::new().max_bytes(1).authorize(|_| true);
    for i in 0..4 {
        let (_, _) = pgscope::Scope::new(format!("tiny {i}"))
            .on_report(tiny.hook())
            .capture(async {
                sqlx::query("SELECT 1").execute(&pool).await.expect("query");
            })
            .await;
    }
    let page = tiny.render("/api/requests", "", "");
    let list: Value = serde_json::from_str(page.body()).expect("json");
    assert_eq!(list["requests"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["requests"][0]["scope"], "tiny 3");
}

/// The console as people use it: `/_pgscope/` typed with its slash, two `on_report` hooks on
/// one layer (print the reports and feed the console), a nested acquire drawn as two
/// connection rows, and the routes page after traffic stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_as_people_type_it() {
    use std::sync::Mutex;
    use std::time::Duration;

    let opts = common::schema("console_typed").await;
    let pool = pgscope::PoolOptions::new()
        .max_connections(3)
        .starvation_window(Duration::from_millis(400))
        .connect_with(opts)
        .await
        .expect("pool");
    let console = Console::new().local_only();
    console.watch(&pool);
    let printed: Arc<Mutex<Vec<String>>> = Arc::default();
    let print = printed.clone();
    let layer = pgscope::http::ScopeLayer::new()
        .on_report(move |r| print.lock().expect("lock").push(r.to_string()))
        .on_report(console.hook());
    let handler_pool = pool.clone();
    let app = axum::Router::new()
        .route(
            "/api/nested",
            axum::routing::get(move || {
                let pool = handler_pool.clone();
                async move {
                    let mut first = pool.acquire().await.expect("first");
                    sqlx::query("SELECT 1")
                        .execute(&mut *first)
                        .await
                        .expect("one");
                    let mut second = pool.acquire().await.expect("second");
                    sqlx::query("SELECT 2")
                        .execute(&mut *second)
                        .await
                        .expect("two");
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    drop(second);
                    sqlx::query("SELECT 3")
                        .execute(&mut *first)
                        .await
                        .expect("three");
                    "ok"
                }
            }),
        )
        .layer(layer)
        .merge(console.routes_at("/_pgscope"));
    let server = serve(app).await;
    let resp = reqwest::get(format!("{server}/api/nested"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);

    // Both hooks ran.
    let printed = printed.lock().expect("lock").clone();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert!(printed[0].contains("GET /api/nested"), "{printed:?}");
    let list = get_json(&format!("{server}/_pgscope/api/requests")).await;
    assert_eq!(list["requests"].as_array().map(Vec::len), Some(1), "{list}");
    let id = list["requests"][0]["id"].as_u64().expect("id");

    // With the slash: a redirect to the console, which the browser follows.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let slash = no_follow
        .get(format!("{server}/_pgscope/"))
        .send()
        .await
        .expect("GET /_pgscope/");
    assert_eq!(slash.status(), 303);
    assert_eq!(slash.headers()["location"], "/_pgscope");
    let dom = dump_dom(&format!("{server}/_pgscope/")).await;
    assert!(dom.contains(">GET /api/nested</a>"), "{dom}");
    let resp = reqwest::get(format!("{server}/_pgscope"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);

    // One row per connection held at once, and the hold card says the holds add up.
    let dom = dump_dom(&format!("{server}/_pgscope/requests/{id}")).await;
    let held: Vec<&str> = waterfall_rows(&dom)
        .into_iter()
        .filter(|r| r.starts_with("lane-held"))
        .collect();
    assert_eq!(held.len(), 2, "{dom}");
    assert!(held[0].contains("connection 1 held"), "{}", held[0]);
    assert!(held[1].contains("connection 2 held"), "{}", held[1]);
    assert!(dom.contains("up to 2 held at once"), "{dom}");
    let detail = get_json(&format!("{server}/_pgscope/api/requests/{id}")).await;
    let held_json: Vec<&Value> = detail["waterfall"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["lane"] == "held")
        .collect();
    assert_eq!(held_json.len(), 2, "{detail}");
    // Each connection's idle gaps on its own row, in their own colour: both sat idle through
    // the 30 ms sleep.
    for row in &held_json {
        let longest_idle = row["bars"]
            .as_array()
            .expect("bars")
            .iter()
            .filter(|b| b["idle"] == true)
            .map(|b| b["duration_ms"].as_f64().expect("duration"))
            .fold(0.0, f64::max);
        assert!(longest_idle >= 29.0, "{row}");
    }
    assert!(
        dom.contains("<span class=\"idle\""),
        "idle gaps drawn: {dom}"
    );
    assert!(dom.contains("held idle"), "and in the legend: {dom}");

    // Traffic stopped two windows ago: the last window that had traffic, with its age.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(pool.diagnose().scopes().is_empty(), "the window emptied");
    let routes = get_json(&format!("{server}/_pgscope/api/routes")).await;
    let p = &routes["pools"][0];
    assert!(
        p["window_age_s"]
            .as_u64()
            .unwrap_or_else(|| panic!("an age: {routes}"))
            >= 1,
        "{routes}"
    );
    assert!(
        p["capacity_per_second"].as_f64().expect("capacity") > 0.0,
        "{routes}"
    );
    assert_eq!(p["scopes"][0]["scope"], "GET /api/nested", "{routes}");
    let dom = dump_dom(&format!("{server}/_pgscope/routes")).await;
    assert!(dom.contains("the last window with traffic"), "{dom}");
    assert!(!dom.contains("mean hold – ms"), "{dom}");
}
