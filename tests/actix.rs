//! actix-web with `pgscope::actix::Scopes`, over real HTTP: one scope per request named by its
//! route pattern, reports read through a `Recorder`, the N+1 found, `Server-Timing` set.

mod common;

use actix_web::{App, HttpResponse, HttpServer, web};

async fn feed(pool: web::Data<pgscope::Pool>, page: web::Path<i64>) -> HttpResponse {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT g::bigint FROM generate_series(1, 10) g")
        .fetch_all(pool.get_ref())
        .await
        .expect("ids");
    for id in ids {
        sqlx::query("SELECT $1::bigint + $2 AS author")
            .bind(id)
            .bind(*page)
            .fetch_one(pool.get_ref())
            .await
            .expect("author");
    }
    HttpResponse::Ok().body("feed")
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

#[actix_web::test]
async fn each_request_is_a_scope_named_by_its_route_and_its_n_plus_one_is_found() {
    let pool = pgscope::Pool::connect_with(common::schema("actix").await)
        .await
        .expect("connect");
    let recorder = pgscope::Recorder::new();
    let (data, hook) = (web::Data::new(pool.clone()), recorder.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(
                pgscope::actix::Scopes::new()
                    .server_timing(true)
                    .on_report(hook.hook()),
            )
            .route("/feed/{page}", web::get().to(feed))
            .route("/health", web::get().to(health))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());

    let client = reqwest::Client::new();
    for page in [1, 2] {
        let resp = client
            .get(format!("http://{addr}/feed/{page}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let timing = resp.headers()["server-timing"].to_str().expect("ascii");
        assert!(timing.ends_with("desc=\"11 queries\""), "{timing}");
    }
    let reports = recorder.all("GET /feed/{page}");
    assert_eq!(reports.len(), 2);
    for report in &reports {
        report.assert_queries(11);
        assert_eq!(report.n_plus_one().len(), 1, "{report}");
        assert_eq!(report.n_plus_one()[0].count(), 10);
        assert!(
            report.n_plus_one()[0]
                .call_site()
                .starts_with("tests/actix.rs:"),
            "{}",
            report.n_plus_one()[0].call_site()
        );
    }
    let resp = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    recorder.last("GET /health").assert_queries(0);
    let resp = client
        .get(format!("http://{addr}/nowhere/42"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    recorder.last("GET <unmatched>").assert_queries(0);
    assert_eq!(pool.unscoped_report().queries(), 0);
}
