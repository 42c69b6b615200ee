//! The Dockerfile, compose file and Kubernetes manifests against the server's
//! real config: the ConfigMap's config parses with the Deployment's env and
//! passes the real binary's `check-config` once its secrets exist; ports,
//! probes, health names, env names, secret files, user and grace periods all
//! agree; metrics are scraped on the admin port, which no Service exposes. (hadolint and kubernetes-validate check the files' own syntax in CI.)
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use e2e::binary::run;
use serde::Deserialize;
use serde_json::Value;
use server::config::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every YAML document of `deploy/k8s`, by kind and name.
fn manifests() -> BTreeMap<(String, String), Value> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("deploy/k8s")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap();
            let key = (
                value["kind"].as_str().unwrap().to_owned(),
                value["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            );
            all.insert(key, value);
        }
    }
    all
}

fn get<'a>(all: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    all.get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `{ env = "X" }` and `{ file = "P" }` secret sources anywhere in `toml`.
fn secret_sources(toml: &toml::Value, envs: &mut BTreeSet<String>, files: &mut BTreeSet<String>) {
    match toml {
        toml::Value::Table(table) => {
            if table.len() == 1 {
                if let Some(toml::Value::String(name)) = table.get("env") {
                    envs.insert(name.clone());
                }
                if let Some(toml::Value::String(path)) = table.get("file") {
                    files.insert(path.clone());
                }
            }
            table.values().for_each(|v| secret_sources(v, envs, files));
        }
        toml::Value::Array(items) => items.iter().for_each(|v| secret_sources(v, envs, files)),
        _ => {}
    }
}

fn port_of(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_kubernetes_manifests_agree_with_the_servers_config_and_the_image() {
    let all = manifests();
    let deployment = get(&all, "Deployment", "wechat-identity");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let init = &pod["initContainers"][0];
    let config_map = get(&all, "ConfigMap", "wechat-identity-config");
    let secret = get(&all, "Secret", "wechat-identity-secrets");
    let toml_text = config_map["data"]["config.toml"].as_str().unwrap();

    // The env the pod gets: literal values as they are, secrets as placeholders.
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = e["value"].as_str().unwrap_or("from-a-secret").to_owned();
            (name, value)
        })
        .collect();
    assert_eq!(
        init["env"], container["env"],
        "the migration sees the same config"
    );
    // Any WECHAT_IDENTITY__ override in the pod must name a real field, or this fails.
    let config = Config::parse(toml_text, &env).expect("the ConfigMap's config fits the schema");

    // Ports: config, container, probes, Services, Dockerfile.
    let (grpc, http) = (port_of(container, "grpc"), port_of(container, "http"));
    assert_eq!(u64::from(config.server.grpc_listen.port()), grpc);
    assert_eq!(u64::from(config.server.http_listen.port()), http);
    assert!(
        config.server.grpc_listen.ip().is_unspecified(),
        "reachable from the Service"
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(
            container[probe]["grpc"]["port"].as_u64(),
            Some(grpc),
            "{probe}"
        );
    }
    assert_eq!(
        container["readinessProbe"]["grpc"]["service"],
        server::app::SERVICE_NAME
    );
    assert_eq!(
        container["livenessProbe"]["grpc"]["service"],
        server::app::LIVENESS_SERVICE
    );
    assert_eq!(
        container["startupProbe"]["grpc"]["service"],
        server::app::LIVENESS_SERVICE
    );
    for service in ["wechat-identity", "wechat-identity-headless"] {
        for port in get(&all, "Service", service)["spec"]["ports"]
            .as_array()
            .unwrap()
        {
            let target = port["targetPort"].as_str().unwrap();
            port_of(container, target);
        }
    }
    // Metrics: the admin port, scraped by annotation, in no Service.
    let admin = port_of(container, "admin");
    assert_eq!(u64::from(config.server.admin_listen.port()), admin);
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], admin.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    for service in ["wechat-identity", "wechat-identity-headless"] {
        for port in get(&all, "Service", service)["spec"]["ports"]
            .as_array()
            .unwrap()
        {
            assert_ne!(port["targetPort"], "admin", "{service} exposes no metrics");
            assert_ne!(port["port"].as_u64(), Some(admin), "{service}");
        }
    }
    assert!(
        config.server.tls.is_some() || config.server.allow_plaintext,
        "gRPC off loopback: TLS, or plaintext allowed for a mesh"
    );
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("EXPOSE {grpc} {http} {admin}")),
        "the image exposes them"
    );

    // The config file and every secret it names are where the pod puts them.
    let mounts: BTreeMap<String, String> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let config_env = env
        .iter()
        .find(|(n, _)| n == server::config::CONFIG_FILE_ENV)
        .unwrap();
    assert_eq!(config_env.1, format!("{}/config.toml", mounts["config"]));
    assert!(dockerfile.contains(&format!(
        "ENV {}={}",
        server::config::CONFIG_FILE_ENV,
        config_env.1
    )));
    let (mut envs, mut files) = (BTreeSet::new(), BTreeSet::new());
    secret_sources(&toml::from_str(toml_text).unwrap(), &mut envs, &mut files);
    for name in &envs {
        assert!(
            env.iter().any(|(n, _)| n == name),
            "{name} is set in the pod"
        );
    }
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(!files.is_empty());
    for file in &files {
        let key = file
            .strip_prefix(&format!("{}/", mounts["secrets"]))
            .unwrap_or_else(|| panic!("{file} is not under the secrets mount"));
        assert!(secret_keys.contains(key), "{key} is in the Secret");
    }

    // Start-up and shutdown.
    assert_eq!(init["args"], serde_json::json!(["migrate"]));
    assert_eq!(container["args"], serde_json::json!(["serve"]));
    assert_eq!(init["image"], container["image"]);
    assert!(
        !config.database.migrate_on_start,
        "the init container migrates"
    );
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    assert!(
        config.server.shutdown_grace.as_secs() + pre_stop < grace,
        "the drain fits in the grace period"
    );
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
    assert!(
        dockerfile.contains("USER 65532:65532"),
        "the image's user is the pod's"
    );
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(replicas, 3);
    let pdb = get(&all, "PodDisruptionBudget", "wechat-identity");
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < replicas);
    let hpa = get(&all, "HorizontalPodAutoscaler", "wechat-identity");
    assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(replicas));
    assert!(
        container["resources"]["requests"]["cpu"].is_string(),
        "the HPA needs a CPU request"
    );

    let kustomization = get(&all, "Kustomization", "");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for entry in std::fs::read_dir(repo().join("deploy/k8s")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "kustomization.yaml" || listed.contains(name.as_str()),
            "{name} is in the kustomization"
        );
    }
}

#[tokio::test]
async fn the_configmaps_config_passes_check_config_once_its_secrets_exist() {
    let all = manifests();
    let toml_text = get(&all, "ConfigMap", "wechat-identity-config")["data"]["config.toml"]
        .as_str()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let key = e2e::encryption_key();
    for (name, value) in [
        ("encryption-key", key.as_str()),
        (
            "jwt-signing-key.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJfhlgveE/cuFiEwq+xGRCFbRL3zLlV/2k+nuWfP5F7q\n-----END PRIVATE KEY-----\n",
        ),
        ("wx-mini-program-secret", "a-mini-program-secret"),
        ("wx-official-account-secret", "an-official-account-secret"),
    ] {
        std::fs::write(secrets.join(name), value).unwrap();
    }
    let config = toml_text.replace("/run/secrets/wechat-identity", secrets.to_str().unwrap());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let env = [
        (server::config::CONFIG_FILE_ENV, path.to_str().unwrap()),
        (
            "DATABASE_URL",
            "postgres://wechat_identity:pw@postgres:5432/wechat_identity",
        ),
    ];
    let (status, output) = run(&["check-config"], dir.path(), &env).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("config ok: 2 app(s), 2 caller(s)"),
        "{output}"
    );

    // The Secret's placeholders are refused, each named.
    let placeholders = dir.path().join("placeholders");
    std::fs::create_dir(&placeholders).unwrap();
    for name in [
        "encryption-key",
        "jwt-signing-key.pem",
        "wx-mini-program-secret",
        "wx-official-account-secret",
    ] {
        std::fs::write(placeholders.join(name), "CHANGE-ME").unwrap();
    }
    let config = toml_text.replace(
        "/run/secrets/wechat-identity",
        placeholders.to_str().unwrap(),
    );
    std::fs::write(&path, config).unwrap();
    let (status, output) = run(&["check-config"], dir.path(), &env).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("encryption") && output.contains("signing_key"),
        "{output}"
    );
}

#[test]
fn the_compose_setup_starts_the_service_on_postgres_redis_and_a_collector() {
    let text = std::fs::read_to_string(repo().join("docker/compose.yaml")).unwrap();
    let compose = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).unwrap();
    let services = compose["services"].as_object().unwrap();
    for needed in [
        "postgres",
        "redis",
        "otel-collector",
        "jaeger",
        "migrate",
        "wechat-identity",
    ] {
        assert!(services.contains_key(needed), "{needed}");
    }
    let identity = &services["wechat-identity"];
    let env: Vec<(String, String)> = identity["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let config_text = std::fs::read_to_string(repo().join("docker/compose-config.toml")).unwrap();
    let resolved = Config::parse(&config_text, &env)
        .unwrap()
        .resolve(&env)
        .expect("the compose config resolves with the compose env");
    assert!(resolved.redis_url.is_some(), "Redis holds the token cache");
    assert!(
        secrecy::ExposeSecret::expose_secret(&resolved.database_url).starts_with("postgres://")
    );
    let ports: Vec<&str> = identity["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        ports.contains(&format!("{0}:{0}", resolved.config.server.grpc_listen.port()).as_str())
    );
    assert!(
        ports.contains(&format!("{0}:{0}", resolved.config.server.http_listen.port()).as_str())
    );
    let admin = resolved.config.server.admin_listen.port();
    assert!(
        !ports.iter().any(|p| p.ends_with(&format!(":{admin}"))),
        "metrics are not published on the host"
    );
    let collector = std::fs::read_to_string(repo().join("docker/otel-collector.yaml")).unwrap();
    assert!(
        collector.contains(&format!("\"wechat-identity:{admin}\"")),
        "the collector scrapes the admin port"
    );
    assert_eq!(identity["command"], serde_json::json!(["serve"]));
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["migrate"])
    );
    assert!(env.iter().any(|(k, _)| k == "OTEL_EXPORTER_OTLP_ENDPOINT"));
}
