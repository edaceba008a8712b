//! `collector-config/` stays valid: YAML parses and every pipeline references components that
//! are defined; the compose file pins its images and mounts the config.

use serde_yaml_ng::Value;

fn load(path: &str) -> Value {
    let full = format!("{}/collector-config/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn keys(v: &Value, section: &str) -> Vec<String> {
    v[section]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn collector_pipelines_reference_defined_components() {
    let cfg = load("otel-collector.yaml");
    let pipelines = cfg["service"]["pipelines"].as_mapping().expect("pipelines");
    assert!(pipelines.contains_key("traces") && pipelines.contains_key("metrics"));
    for (name, pipeline) in pipelines {
        for section in ["receivers", "processors", "exporters"] {
            let defined = keys(&cfg, section);
            let used = pipeline[section]
                .as_sequence()
                .map(|s| s.to_vec())
                .unwrap_or_default();
            if section != "processors" {
                assert!(!used.is_empty(), "{name:?} has no {section}");
            }
            for c in used {
                let c = c.as_str().expect("component name");
                assert!(
                    defined.contains(&c.to_owned()),
                    "{name:?} uses undefined {section} `{c}`"
                );
            }
        }
    }
    for ext in cfg["service"]["extensions"]
        .as_sequence()
        .expect("extensions")
    {
        assert!(keys(&cfg, "extensions").contains(&ext.as_str().expect("name").to_owned()));
    }
    // OTLP in on both transports; traces to Jaeger; metrics to Prometheus.
    assert!(cfg["receivers"]["otlp"]["protocols"]["grpc"].is_mapping());
    assert!(cfg["receivers"]["otlp"]["protocols"]["http"].is_mapping());
    let exporters = |p: &str| {
        cfg["service"]["pipelines"][p]["exporters"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        exporters("traces")
            .iter()
            .any(|e| e.as_str() == Some("otlp/jaeger"))
    );
    assert!(
        exporters("metrics")
            .iter()
            .any(|e| e.as_str() == Some("prometheus"))
    );
    // The documented SQL-dropping processors exist and delete db.query.text.
    let actions = &cfg["processors"]["attributes/drop-sql"]["actions"][0];
    assert_eq!(actions["key"].as_str(), Some("db.query.text"));
    assert_eq!(actions["action"].as_str(), Some("delete"));
    // Only components the Jaeger v2 distribution ships (tests/jaeger.rs runs `jaeger validate`).
    assert!(cfg["processors"]["transform/drop-sql"].is_null());
}

#[test]
fn compose_pins_images_and_mounts_the_configs() {
    let compose = load("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in ["otel-collector", "jaeger", "prometheus", "grafana"] {
        let image = compose["services"][name]["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{name} image must be pinned: {image}"
        );
    }
    assert_eq!(services.len(), 4);
    // Grafana gets the datasource and the dashboard, both of which exist beside the compose file.
    let grafana = format!("{:?}", compose["services"]["grafana"]["volumes"]);
    assert!(grafana.contains("./grafana/provisioning") && grafana.contains("./grafana/dashboards"));
    let datasource = load("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let provider = load("grafana/provisioning/dashboards/pgscope.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
    let mounts = format!("{:?}", compose["services"]["otel-collector"]["volumes"]);
    assert!(mounts.contains("otel-collector.yaml"));
    let prom = load("prometheus.yml");
    let target = format!(
        "{:?}",
        prom["scrape_configs"][0]["static_configs"][0]["targets"]
    );
    assert!(target.contains("otel-collector:8889"), "{target}");
}
