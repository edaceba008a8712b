//! A real Prometheus (Debian's package) for tests: started on a free port, scraping a target
//! every second, optionally with rule files; stopped and cleaned up on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `prometheus` on PATH: Debian's package, installed here when missing (as `.ci/run` does).
pub fn ensure_prometheus() {
    fn found() -> bool {
        Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }
    if found() {
        return;
    }
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "prometheus"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    assert!(
        found(),
        "no `prometheus` and `apt-get install prometheus` failed: install Debian's package"
    );
}

/// A real Prometheus scraping `target` every second; with `rules` (a rule file's text), also
/// evaluating them every second.
pub async fn start_prometheus(target: &str, rules: Option<&str>) -> Prometheus {
    ensure_prometheus();
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pgscope-prometheus-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    let mut text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pgscope\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    if let Some(rules) = rules {
        std::fs::write(dir.join("rules.yml"), rules).expect("rules");
        text.push_str("rule_files:\n  - rules.yml\n");
    }
    std::fs::write(&config, text).expect("config");
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("{}/-/ready", prometheus.base))
            .send()
            .await
            && r.status().is_success()
        {
            return prometheus;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shipped rules with every `for:` set to `for` (a test cannot wait minutes).
pub fn rules_with_for(r#for: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/collector-config/alerts.yml");
    let text = std::fs::read_to_string(path).expect("alerts.yml");
    let shortened: Vec<String> = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!(
                "{}for: {}",
                &line[..line.len() - line.trim_start().len()],
                r#for
            ),
            None => line.to_owned(),
        })
        .collect();
    assert!(
        shortened
            .iter()
            .any(|l| l.trim() == format!("for: {}", r#for))
    );
    shortened.join("\n")
}

/// pgscope's metrics through the OpenTelemetry SDK (installed as the global meter provider)
/// into the official Prometheus exporter, and a router serving them at `/metrics`, named as the
/// Collector's `prometheus` exporter names them. Pools made after this export into it.
pub fn metrics_endpoint() -> (axum::Router, opentelemetry_sdk::metrics::SdkMeterProvider) {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .expect("exporter");
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(exporter)
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                prometheus::TextEncoder::new()
                    .encode_utf8(&registry.gather(), &mut text)
                    .expect("encode");
                text
            }
        }),
    );
    (router, provider)
}
