//! The deployment artefacts under deploy/. `scripts/validate-manifests.sh`
//! renders the kustomize base and overlays (`kubectl kustomize`, pinned,
//! from PyPI into .tools/) and validates every document against the
//! Kubernetes schemas, strict, plus references and pod security, and checks
//! the Dockerfile against the manifests. Here: that it passes and counts
//! the documents it should; that it refuses broken manifests (so it can
//! fail); and that the environment each engram Deployment gets (image,
//! ConfigMap, Secret) loads as a real `Config` for the role it runs, with
//! probes and ports that match what the server serves; and the durability
//! settings of deploy/README.md, "Durability" (NATS fsyncs before every ack;
//! prod: a three-server JetStream cluster with R3 streams and buckets, and a
//! three-peer Qdrant cluster keeping 2 copies of every shard).

use engram_proto::v1::{ingest_service_server, recall_service_server};
use engram_server::{Config, Role};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The renders and how many documents each holds.
const RENDERS: [(&str, usize); 3] = [
    ("deploy/k8s/base", 22),
    ("deploy/k8s/overlays/dev", 23),
    ("deploy/k8s/overlays/prod", 25),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool() -> PathBuf {
    let p = repo().join("scripts/validate-manifests.sh");
    assert!(p.exists(), "{} missing", p.display());
    p
}

fn validate(args: &[&Path]) -> Output {
    Command::new("bash")
        .arg(tool())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("bash runs scripts/validate-manifests.sh")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the validation with `--out`, returning the rendered documents by
/// render label and the image's settings.
fn rendered() -> (BTreeMap<String, Vec<Value>>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = validate(&[Path::new("--out"), dir.path()]);
    assert!(out.status.success(), "{}", text(&out));
    let mut renders = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if let Some(label) = json["label"].as_str() {
            let docs = json["documents"].as_array().unwrap().clone();
            renders.insert(label.to_owned(), docs);
        }
    }
    let image = serde_json::from_slice(&std::fs::read(dir.path().join("image.json")).unwrap())
        .expect("image.json written");
    (renders, image)
}

#[test]
fn manifests_render_and_validate() {
    let out = validate(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    for (render, n) in RENDERS {
        let line = format!("{render}: {n} documents (");
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "expected `{line}…` in:\n{stdout}"
        );
    }
    let total: usize = RENDERS.iter().map(|(_, n)| n).sum();
    let summary = format!(
        "validate-manifests: {total} documents in 3 renders valid against Kubernetes 1.30.0, 1.37.0 (strict)"
    );
    assert!(
        stdout.lines().any(|l| l == summary),
        "expected `{summary}` in:\n{stdout}"
    );
    assert!(
        stdout.contains("deploy/Dockerfile: consistent with the manifests"),
        "{stdout}"
    );
}

#[test]
fn broken_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A field that does not exist, a Service that selects nothing, and a
    // budget with both bounds: one schema failure, two rule failures.
    std::fs::write(
        dir.path().join("broken.yaml"),
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
data:
  A: "1"
---
apiVersion: v1
kind: Service
metadata:
  name: orphan
spec:
  selector:
    app: nobody
  ports:
    - name: grpc
      port: 50051
      targetPortt: grpc
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: both
spec:
  minAvailable: 1
  maxUnavailable: 1
  selector:
    matchLabels:
      app: nobody
"#,
    )
    .unwrap();
    let out = validate(&[dir.path()]);
    let all = text(&out);
    assert!(!out.status.success(), "a broken manifest passed:\n{all}");
    for failure in [
        "Service/orphan: Kubernetes 1.30 schema: spec.ports.0: Additional properties are not allowed ('targetPortt' was unexpected)",
        "Service/orphan: selector {'app': 'nobody'} matches no pod template",
        "PodDisruptionBudget/both: sets both minAvailable and maxUnavailable",
    ] {
        assert!(all.contains(failure), "expected `{failure}` in:\n{all}");
    }
    assert!(!all.contains("ConfigMap/fine"), "{all}");
    assert!(all.contains(": 3 documents ("), "{all}");

    // A kustomization that does not render is a failure too.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("kustomization.yaml"),
        "resources:\n  - missing.yaml\n",
    )
    .unwrap();
    let out = validate(&[bad.path()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kustomize cannot render it"),
        "{}",
        text(&out)
    );
}

/// `ENGRAM__A__B=v` variables as the nested value figment builds from
/// them: keys lower-cased, numbers and booleans parsed, the rest strings.
fn nested(vars: &BTreeMap<String, String>) -> Value {
    let mut root = Map::new();
    for (key, raw) in vars {
        let Some(path) = key.strip_prefix("ENGRAM__") else {
            continue;
        };
        let value = if let Ok(n) = raw.parse::<i64>() {
            Value::from(n)
        } else if let Ok(b) = raw.parse::<bool>() {
            Value::from(b)
        } else {
            Value::from(raw.clone())
        };
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        let mut node = &mut root;
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is both a value and a section"));
        }
        node.insert(parts[parts.len() - 1].clone(), value);
    }
    Value::Object(root)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

fn port(container: &Value, name: &str) -> u16 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}")) as u16
}

#[test]
fn each_deployment_configures_its_role() {
    let (renders, image) = rendered();
    assert_eq!(
        renders.keys().map(String::as_str).collect::<Vec<_>>(),
        RENDERS.map(|(r, _)| r).to_vec()
    );
    let image_env: BTreeMap<String, String> =
        serde_json::from_value(image["env"].clone()).expect("image env");
    for (label, docs) in &renders {
        let mut roles = Vec::new();
        for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
            let name = d["metadata"]["name"].as_str().unwrap();
            let pod = &d["spec"]["template"];
            let c = &pod["spec"]["containers"][0];
            let role = c["args"][0].as_str().unwrap();
            let (role_enum, health) = match role {
                "ingest" => (Role::Ingest, ingest_service_server::SERVICE_NAME),
                "recall" => (Role::Recall, recall_service_server::SERVICE_NAME),
                "enrich" => (Role::Enrich, ""),
                other => panic!("{label}: {name} runs `engram {other}`"),
            };
            roles.push(role);

            // What the process sees: the image's ENV, then the ConfigMaps it
            // takes whole, then its own env (the Secret's key included).
            let mut vars = image_env.clone();
            for src in c["envFrom"].as_array().unwrap() {
                let cm = find(
                    docs,
                    "ConfigMap",
                    src["configMapRef"]["name"].as_str().unwrap(),
                );
                for (k, v) in cm["data"].as_object().unwrap() {
                    vars.insert(k.clone(), v.as_str().unwrap().to_owned());
                }
            }
            let mut placeholder = None;
            for e in c["env"].as_array().unwrap() {
                let key = e["name"].as_str().unwrap().to_owned();
                if let Some(v) = e["value"].as_str() {
                    vars.insert(key, v.to_owned());
                } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                    let secret = find(docs, "Secret", r["name"].as_str().unwrap());
                    let v = secret["stringData"][r["key"].as_str().unwrap()]
                        .as_str()
                        .expect("the secret's key, in stringData")
                        .to_owned();
                    placeholder = Some(v.clone());
                    vars.insert(key, v);
                }
            }

            let mut config: Config = serde_json::from_value(nested(&vars))
                .unwrap_or_else(|e| panic!("{label}: {name}: {e}\n{vars:#?}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{label}: {name}: {e}"));
            config
                .validate_role(role_enum)
                .unwrap_or_else(|e| panic!("{label}: {name}: {e}"));

            // The placeholder secret is refused at start-up; a real one works.
            let placeholder = placeholder.expect("the HS256 secret comes from a Secret");
            assert_eq!(
                config.auth.hs256_secret.as_deref(),
                Some(placeholder.as_str())
            );
            assert!(
                engram_auth::JwtVerifier::new(config.auth_config().unwrap()).is_err(),
                "{label}: the placeholder secret {placeholder:?} must not be accepted"
            );
            config.auth.hs256_secret = Some("0123456789abcdef".repeat(4));
            engram_auth::JwtVerifier::new(config.auth_config().unwrap()).unwrap();

            // Probes and ports match what the server serves.
            let readiness = &c["readinessProbe"]["grpc"];
            assert_eq!(readiness["service"], health, "{label}: {name} readiness");
            let liveness = &c["livenessProbe"]["grpc"];
            assert_eq!(
                liveness["service"],
                engram_server::LIVENESS,
                "{label}: {name} liveness"
            );
            assert_eq!(
                liveness["port"],
                config.server.listen.port(),
                "{label}: {name} liveness"
            );
            assert_eq!(
                readiness["port"],
                config.server.listen.port(),
                "{label}: {name}"
            );
            assert_eq!(
                port(c, "grpc"),
                config.server.listen.port(),
                "{label}: {name}"
            );
            let metrics = config.metrics.listen.expect("metrics.listen set");
            assert_eq!(port(c, "metrics"), metrics.port(), "{label}: {name}");
            assert_eq!(
                pod["metadata"]["annotations"]["prometheus.io/port"],
                metrics.port().to_string(),
                "{label}: {name}"
            );
            assert_eq!(
                config.embedder.models_dir,
                PathBuf::from("/opt/engram/models"),
                "{label}: {name}"
            );
            // The roles keep no data: nothing may depend on the data dir.
            assert!(
                config.storage.data_dir.starts_with("/tmp"),
                "{label}: {name}"
            );
        }
        roles.sort_unstable();
        assert_eq!(roles, ["enrich", "ingest", "recall"], "{label}");
    }
}

/// The NATS StatefulSet of a render and the nats.conf its server runs: the
/// file `-c` names, from the ConfigMap volume mounted at its directory.
fn nats_conf(docs: &[Value]) -> (&Value, String) {
    let sts = find(docs, "StatefulSet", "nats");
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let [flag, file] = args[..] else {
        panic!("nats runs with {args:?}, not `-c <file>`");
    };
    assert_eq!(flag, "-c", "nats runs with {args:?}");
    let file = Path::new(file);
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str().map(Path::new) == file.parent())
        .unwrap_or_else(|| panic!("nothing mounted where {} is", file.display()));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let cm = find(
        docs,
        "ConfigMap",
        volume["configMap"]["name"]
            .as_str()
            .expect("nats.conf comes from a ConfigMap"),
    );
    let key = file.file_name().unwrap().to_str().unwrap();
    let conf = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not in the ConfigMap"))
        .to_owned();
    (sts, conf)
}

/// The lines of the block `name { ... }` of a nats.conf, trimmed, comments
/// and blank lines dropped; `None` when there is no such block.
fn conf_block(conf: &str, name: &str) -> Option<Vec<String>> {
    let open = format!("{name} {{");
    let mut lines = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty());
    lines.find(|l| *l == open)?;
    let mut depth = 1;
    let mut body = Vec::new();
    for l in lines {
        depth += l.matches('{').count();
        depth -= l.matches('}').count();
        if depth == 0 {
            return Some(body);
        }
        body.push(l.to_owned());
    }
    panic!("block {name} is not closed:\n{conf}");
}

/// A container's `value` environment variables (not those from refs).
fn env_values(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Whether a Service of the render exposes `port`, by the container port name.
fn service_port(docs: &[Value], service: &str, port: u16, target: &str) -> bool {
    find(docs, "Service", service)["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == port && p["targetPort"] == target)
}

/// Pods of `sts` never share a node (required anti-affinity on themselves).
fn one_per_node(sts: &Value) -> bool {
    let anti = &sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    let terms = &anti["requiredDuringSchedulingIgnoredDuringExecution"];
    terms.as_array().is_some_and(|terms| {
        terms.iter().any(|t| {
            t["topologyKey"] == "kubernetes.io/hostname"
                && t["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        })
    })
}

/// deploy/README.md, "Durability": every NATS server fsyncs a message before
/// it acknowledges the publish; engram gives its streams and buckets one
/// replica per NATS server; prod runs NATS as a three-server JetStream
/// cluster and Qdrant as a three-peer cluster whose collections keep 2
/// copies of every shard, one pod per node, one pod of each out at a time.
#[test]
fn durability_settings() {
    let (renders, _) = rendered();
    assert_eq!(renders.len(), RENDERS.len());
    for (label, docs) in &renders {
        let prod = label == "deploy/k8s/overlays/prod";

        // NATS: fsync before the ack, everywhere.
        let (nats, conf) = nats_conf(docs);
        let jetstream = conf_block(&conf, "jetstream")
            .unwrap_or_else(|| panic!("{label}: no jetstream block in nats.conf:\n{conf}"));
        for setting in ["store_dir: /data", "sync_interval: always"] {
            assert!(
                jetstream.iter().any(|l| l == setting),
                "{label}: `{setting}` not in jetstream {jetstream:?}"
            );
        }
        assert!(
            conf.lines().any(|l| l.trim() == "server_name: $POD_NAME"),
            "{label}: nats.conf must name each server after its pod:\n{conf}"
        );
        let servers = nats["spec"]["replicas"].as_u64().unwrap();
        assert_eq!(servers, if prod { 3 } else { 1 }, "{label}: NATS servers");

        // Stream and bucket replicas (nats.replicas): one per server.
        let vars: BTreeMap<String, String> = find(docs, "ConfigMap", "engram-config")["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let config: Config = serde_json::from_value(nested(&vars))
            .unwrap_or_else(|e| panic!("{label}: engram-config: {e}"));
        assert_eq!(
            config.nats.replicas as u64, servers,
            "{label}: ENGRAM__NATS__REPLICAS"
        );

        let nats_pod = &nats["spec"]["template"]["spec"];
        let cluster = conf_block(&conf, "cluster");
        let qdrant = find(docs, "StatefulSet", "qdrant");
        let q = &qdrant["spec"]["template"]["spec"]["containers"][0];
        let qenv = env_values(q);
        let peers = qdrant["spec"]["replicas"].as_u64().unwrap();
        if !prod {
            assert_eq!(
                cluster, None,
                "{label}: a single NATS server has no cluster block"
            );
            assert_eq!(peers, 1, "{label}: Qdrant peers");
            assert!(
                !qenv.contains_key("QDRANT__CLUSTER__ENABLED"),
                "{label}: a single Qdrant runs without cluster mode"
            );
            continue;
        }

        // prod NATS: one JetStream cluster of the three pods, routes by their
        // stable names under the headless Service, started together.
        let cluster = cluster.unwrap_or_else(|| panic!("{label}: no cluster block:\n{conf}"));
        let route_port = port(&nats_pod["containers"][0], "cluster");
        assert!(
            cluster.contains(&format!("port: {route_port}")),
            "{label}: cluster {cluster:?}"
        );
        let headless = nats["spec"]["serviceName"].as_str().unwrap();
        for i in 0..servers {
            let route = format!("nats://nats-{i}.{headless}:{route_port}");
            assert!(
                cluster.contains(&route),
                "{label}: no route {route} in cluster {cluster:?}"
            );
        }
        assert!(
            service_port(docs, headless, route_port, "cluster"),
            "{label}: {headless} lacks the route port"
        );
        assert_eq!(nats["spec"]["podManagementPolicy"], "Parallel", "{label}");
        assert!(one_per_node(nats), "{label}: NATS servers may share a node");

        // prod Qdrant: pod 0 founds the cluster, pods 1..2 bootstrap from it
        // over the p2p port; new collections get 2 copies of every shard and
        // acknowledge an upsert once both copies applied it. engram creates
        // its collection without these parameters (it has no setting for
        // them), so Qdrant's defaults for new collections are what counts.
        assert_eq!(peers, 3, "{label}: Qdrant peers");
        assert_eq!(qenv["QDRANT__CLUSTER__ENABLED"], "true", "{label}");
        let p2p = port(q, "p2p");
        assert_eq!(
            qenv["QDRANT__CLUSTER__P2P__PORT"],
            p2p.to_string(),
            "{label}"
        );
        assert_eq!(
            qenv["QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR"], "2",
            "{label}"
        );
        assert_eq!(
            qenv["QDRANT__STORAGE__COLLECTION__WRITE_CONSISTENCY_FACTOR"], "2",
            "{label}"
        );
        let qheadless = qdrant["spec"]["serviceName"].as_str().unwrap();
        assert_eq!(
            q["command"],
            serde_json::json!(["/bin/bash", "-c"]),
            "{label}"
        );
        let script = q["args"][0].as_str().unwrap();
        for part in [
            format!("self=\"http://${{HOSTNAME}}.{qheadless}:{p2p}\""),
            "exec ./entrypoint.sh --uri \"$self\"".to_owned(),
            format!("--bootstrap \"http://qdrant-0.{qheadless}:{p2p}\" --uri \"$self\""),
        ] {
            assert!(
                script.contains(&part),
                "{label}: `{part}` not in:\n{script}"
            );
        }
        assert!(
            service_port(docs, qheadless, p2p, "p2p"),
            "{label}: {qheadless} lacks the p2p port"
        );
        assert_eq!(qdrant["spec"]["podManagementPolicy"], "Parallel", "{label}");
        assert!(
            one_per_node(qdrant),
            "{label}: Qdrant peers may share a node"
        );

        // Drains take one NATS server (the quorum stays) and one Qdrant peer
        // (every shard keeps a copy) at a time.
        for name in ["nats", "qdrant"] {
            let pdb = find(docs, "PodDisruptionBudget", name);
            assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{label}: {name}");
        }
    }
}
