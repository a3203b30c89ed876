//! The Kubernetes manifests under deploy/k8s, rendered by the real kustomize (`kubectl
//! kustomize`, what `kubectl apply -k` runs), checked against the code they run:
//! - the profiles ConfigMap is generated from netem-profiles/profiles: same files, byte for
//!   byte, and every profile in it parses with [`Profile::parse`]; its name carries kustomize's
//!   content hash, so a changed profile renames it and rolls the pods that mount it;
//! - every `SPACEFABRIC_*` variable a container sets is one its binary reads (from the
//!   binary's own `--help`, where clap lists `[env: NAME=]`), the ones a role needs are set, and
//!   the ports of env values, container ports, Services, probes and scrape annotations are the
//!   contract's (controller gRPC 7400/tcp, metrics 9400; node QUIC 7500/udp, metrics 9500) and
//!   the binaries' defaults;
//! - node identity, site and advertise address come from the Downward API;
//! - scale semantics: every overlay has one node StatefulSet per site of its profile; the
//!   site is the pod's own label (from the StatefulSet's selector and template), so a pod of
//!   ANY ordinal — one `kubectl scale` adds — runs on a valid site; each site has a
//!   PodDisruptionBudget over exactly its pods; readiness is `/readyz` (registered);
//! - the app.kubernetes.io/{name,instance,component,part-of,version} labels are on every
//!   object and pod template, the version the workspace's;
//! - the forwarders (`spacefabric-node forwarder`, trunk 7600/udp, metrics 9600) are one
//!   StatefulSet behind a headless Service, the controller hands their addresses to the nodes
//!   (one per replica, in ordinal order, each pod's stable DNS name), each pod's shard count is
//!   the replica count, and they load the controller's profile in every overlay;
//! - the benchmark Job uses flags `spacefabric-bench allreduce` has and reaches the
//!   controller's Service.
//!
//! scripts/validate-k8s.sh checks the same renderings against the Kubernetes schemas.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use netem_profiles::Profile;
use serde_norway::Value;
use support::kustomize::render;
use support::{
    HelpOptions, at, containers, env_entry, env_value, find, seq_at, str_at, workspace_bin,
    workspace_root, yaml_docs,
};

const CONTROLLER_GRPC: u16 = 7400;
const CONTROLLER_METRICS: u16 = 9400;
const NODE_QUIC: u16 = 7500;
const NODE_METRICS: u16 = 9500;
const FORWARDER_TRUNK: u16 = 7600;
const FORWARDER_METRICS: u16 = 9600;

fn k8s_dir() -> PathBuf {
    workspace_root().join("deploy/k8s")
}

/// The earth-moon overlay as kustomize renders it: the base plus one node StatefulSet per
/// site. What the per-role tests check (the overlays differ only in sites and profile).
fn earth_moon() -> Vec<Value> {
    render(&k8s_dir().join("overlays/earth-moon"))
}

/// The label that carries a node pod's site.
const SITE_LABEL: &str = "spacefabric.dev/site";

/// The node StatefulSets (component node) of a rendering.
fn node_statefulsets(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| {
            str_at(d, &["kind"]) == Some("StatefulSet")
                && str_at(d, &["metadata", "labels", "app.kubernetes.io/component"]) == Some("node")
        })
        .collect()
}

fn overlay_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(k8s_dir().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 2,
        "expected the earth-moon and leo overlays, found {dirs:?}"
    );
    dirs
}

fn toml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The profiles as the ConfigMap carries them: key -> text.
fn configmap_profiles() -> BTreeMap<String, String> {
    let dir = k8s_dir().join("base/profiles");
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))[0];
    let generators = seq_at(kustomization, &["configMapGenerator"]);
    let generator = generators
        .iter()
        .find(|g| str_at(g, &["name"]) == Some("spacefabric-profiles"))
        .expect("configMapGenerator spacefabric-profiles");
    assert_ne!(
        at(
            kustomization,
            &["generatorOptions", "disableNameSuffixHash"]
        )
        .and_then(Value::as_bool),
        Some(true),
        "the ConfigMap's name must carry kustomize's content hash, so a profile change rolls the pods"
    );
    seq_at(generator, &["files"])
        .iter()
        .map(|f| {
            let f = f.as_str().unwrap();
            (f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap())
        })
        .collect()
}

#[test]
fn profiles_configmap_is_a_byte_for_byte_copy_of_the_shipped_profiles() {
    let shipped = toml_files(&workspace_root().join("netem-profiles/profiles"));
    let copied = toml_files(&k8s_dir().join("base/profiles"));
    assert!(!shipped.is_empty(), "no shipped profiles found");
    assert_eq!(
        shipped.keys().collect::<Vec<_>>(),
        copied.keys().collect::<Vec<_>>(),
        "deploy/k8s/base/profiles must hold exactly netem-profiles/profiles/*.toml: run scripts/gen-k8s-profiles.sh"
    );
    for (name, bytes) in &shipped {
        assert!(
            copied[name] == *bytes,
            "deploy/k8s/base/profiles/{name} differs from netem-profiles/profiles/{name}: run scripts/gen-k8s-profiles.sh"
        );
    }
    let in_configmap = configmap_profiles();
    assert_eq!(
        in_configmap.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>(),
        "the configMapGenerator must list every shipped profile"
    );
    let total: usize = in_configmap.values().map(String::len).sum();
    assert!(
        total < 900 * 1024,
        "a ConfigMap holds at most 1 MiB; the profiles take {total} B"
    );
}

#[test]
fn every_profile_in_the_configmap_parses() {
    for (key, text) in configmap_profiles() {
        let origin = format!("ConfigMap spacefabric-profiles key {key}");
        if let Err(e) = Profile::parse(&text, &origin) {
            panic!("{origin} does not parse: {e}");
        }
    }
}

/// Which binary (and subcommand) a container runs, with its `--help` options.
struct Cli {
    bin: String,
    args: Vec<String>,
    help: HelpOptions,
}

fn cli_of(container: &Value) -> Cli {
    let command: Vec<String> = seq_at(container, &["command"])
        .iter()
        .chain(seq_at(container, &["args"]))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("command element {other:?} is not a string"),
        })
        .collect();
    let bin = command
        .first()
        .cloned()
        .expect("container without a command");
    let path = match bin.as_str() {
        "spacefabric-controller" => PathBuf::from(env!("CARGO_BIN_EXE_spacefabric-controller")),
        "spacefabric-node" => workspace_bin("spacefabric-node", "spacefabric-node"),
        "spacefabric-bench" => workspace_bin("spacefabric-bench", "spacefabric-bench"),
        other => panic!("container runs {other:?}, not a spacefabric binary"),
    };
    let subcommands: Vec<&str> = command[1..]
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let help = HelpOptions::of(&path, &subcommands);
    Cli {
        bin,
        args: command[1..].to_vec(),
        help,
    }
}

/// The port of "host:port", "$(VAR):port" or "scheme://host:port".
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

fn container_port(container: &Value, name: &str) -> (u16, String) {
    let port = seq_at(container, &["ports"])
        .iter()
        .find(|p| str_at(p, &["name"]) == Some(name))
        .unwrap_or_else(|| {
            panic!(
                "container {:?} has no port named {name}",
                str_at(container, &["name"])
            )
        });
    (
        u16::try_from(at(port, &["containerPort"]).unwrap().as_u64().unwrap()).unwrap(),
        str_at(port, &["protocol"]).unwrap_or("TCP").to_string(),
    )
}

/// Checks one container: env names against the binary, contract ports, listen defaults.
fn check_container(container: &Value, listen: (&str, u16, &str), metrics: u16, required: &[&str]) {
    let cli = cli_of(container);
    let name = str_at(container, &["name"]).unwrap();
    let envs: Vec<&str> = seq_at(container, &["env"])
        .iter()
        .map(|e| str_at(e, &["name"]).unwrap())
        .collect();
    for env in &envs {
        if env.starts_with("SPACEFABRIC_") {
            assert!(
                cli.help.by_env(env).is_some(),
                "container {name} sets {env}, which `{} {}` does not read (it reads {:?})",
                cli.bin,
                cli.args.join(" "),
                cli.help.envs()
            );
        } else {
            assert!(
                ["RUST_LOG", "POD_IP"].contains(env),
                "container {name} sets {env}: not a spacefabric variable"
            );
        }
    }
    for env in required {
        assert!(envs.contains(env), "container {name} must set {env}");
    }
    for (env, port_name, port) in [
        ("SPACEFABRIC_LISTEN", listen.0, listen.1),
        ("SPACEFABRIC_METRICS_LISTEN", "metrics", metrics),
    ] {
        let value = env_value(container, env).unwrap_or_else(|| panic!("{name}: {env} unset"));
        assert_eq!(port_of(value), port, "{name}: {env}={value}");
        let (container_port, protocol) = container_port(container, port_name);
        assert_eq!(container_port, port, "{name}: containerPort {port_name}");
        let expected_protocol = if port_name == listen.0 {
            listen.2
        } else {
            "TCP"
        };
        assert_eq!(
            protocol, expected_protocol,
            "{name}: port {port_name} protocol"
        );
        let default = cli
            .help
            .by_env(env)
            .and_then(|o| o.default.clone())
            .unwrap_or_else(|| panic!("`{}` --help shows no default for {env}", cli.bin));
        assert_eq!(
            port_of(&default),
            port,
            "{}: default of {env} is {default}",
            cli.bin
        );
    }
}

#[test]
fn controller_manifest_matches_the_controller_binary() {
    let docs = earth_moon();
    let deployment = find(&docs, "Deployment", "spacefabric-controller");
    assert_eq!(
        at(deployment, &["spec", "replicas"]).and_then(Value::as_u64),
        Some(1)
    );
    assert_eq!(
        str_at(deployment, &["spec", "strategy", "type"]),
        Some("Recreate")
    );
    let container = &containers(deployment)[0];
    check_container(
        container,
        ("grpc", CONTROLLER_GRPC, "TCP"),
        CONTROLLER_METRICS,
        &[
            "SPACEFABRIC_LISTEN",
            "SPACEFABRIC_METRICS_LISTEN",
            "SPACEFABRIC_PROFILE",
            "SPACEFABRIC_STATE_DIR",
            "SPACEFABRIC_JOIN_TOKEN",
        ],
    );
    assert_eq!(seq_at(container, &["command"])[1].as_str(), Some("serve"));

    // probes: the native gRPC probe on the gRPC port
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            at(container, &[probe, "grpc", "port"]).and_then(Value::as_u64),
            Some(u64::from(CONTROLLER_GRPC)),
            "controller {probe}"
        );
    }
    check_scrape_annotations(deployment, CONTROLLER_METRICS);

    // the state dir is the PVC, the profile a key of the mounted ConfigMap
    let pod = at(deployment, &["spec", "template", "spec"]).unwrap();
    let state_dir = env_value(container, "SPACEFABRIC_STATE_DIR").unwrap();
    let state_volume = mounted_volume(pod, container, state_dir);
    let claim =
        str_at(state_volume, &["persistentVolumeClaim", "claimName"]).expect("state dir on a PVC");
    find(&docs, "PersistentVolumeClaim", claim);
    let profile = env_value(container, "SPACEFABRIC_PROFILE").unwrap();
    let (dir, key) = profile.rsplit_once('/').unwrap();
    let profiles_volume = mounted_volume(pod, container, dir);
    let configmap = str_at(profiles_volume, &["configMap", "name"]).unwrap();
    assert!(
        configmap.starts_with("spacefabric-profiles-"),
        "{configmap}: the hashed name kustomize generates"
    );
    find(&docs, "ConfigMap", configmap);
    assert!(
        configmap_profiles().contains_key(key),
        "{profile}: no key {key} in the ConfigMap"
    );
    check_join_token(&docs, container);

    // the Service: both ports, targeting named container ports, selecting this pod
    let service = find(&docs, "Service", "spacefabric-controller");
    check_service(
        service,
        deployment,
        &[
            ("grpc", CONTROLLER_GRPC, "TCP"),
            ("metrics", CONTROLLER_METRICS, "TCP"),
        ],
    );
}

#[test]
fn node_manifest_matches_the_node_binary() {
    let docs = earth_moon();
    let statefulsets = node_statefulsets(&docs);
    assert!(statefulsets.len() >= 2, "one node StatefulSet per site");
    for statefulset in statefulsets {
        let container = &containers(statefulset)[0];
        check_container(
            container,
            ("quic", NODE_QUIC, "UDP"),
            NODE_METRICS,
            &[
                "SPACEFABRIC_NODE_NAME",
                "SPACEFABRIC_SITE",
                "SPACEFABRIC_ADVERTISE",
                "SPACEFABRIC_CONTROLLER",
                "SPACEFABRIC_JOIN_TOKEN",
                "SPACEFABRIC_LISTEN",
                "SPACEFABRIC_METRICS_LISTEN",
            ],
        );

        // identity, site and advertise address from the Downward API; never 0.0.0.0
        let field_ref = |env: &str| {
            str_at(
                env_entry(container, env).unwrap(),
                &["valueFrom", "fieldRef", "fieldPath"],
            )
        };
        assert_eq!(field_ref("SPACEFABRIC_NODE_NAME"), Some("metadata.name"));
        assert_eq!(
            field_ref("SPACEFABRIC_SITE"),
            Some(format!("metadata.labels['{SITE_LABEL}']").as_str())
        );
        // A bare pod IP: the node adds its --listen port, and formats IPv6 with brackets.
        assert_eq!(field_ref("SPACEFABRIC_ADVERTISE"), Some("status.podIP"));
        assert!(env_entry(container, "SPACEFABRIC_SITE_BY_ORDINAL").is_none());

        // the controller address is the controller Service's gRPC port
        let controller_service = find(&docs, "Service", "spacefabric-controller");
        let grpc_port = service_port(controller_service, "grpc");
        assert_eq!(
            env_value(container, "SPACEFABRIC_CONTROLLER"),
            Some(format!("http://spacefabric-controller:{grpc_port}").as_str())
        );
        check_join_token(&docs, container);

        // ready = registered with the controller; alive = serving HTTP
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
            assert_eq!(
                str_at(container, &[probe, "httpGet", "path"]),
                Some(path),
                "node {probe}"
            );
            assert_eq!(
                str_at(container, &[probe, "httpGet", "port"]),
                Some("metrics"),
                "node {probe}"
            );
        }
        check_scrape_annotations(statefulset, NODE_METRICS);

        let service = find(&docs, "Service", "spacefabric-node");
        assert_eq!(
            str_at(service, &["spec", "clusterIP"]),
            Some("None"),
            "headless"
        );
        assert_eq!(
            str_at(statefulset, &["spec", "serviceName"]),
            Some("spacefabric-node")
        );
        check_service(
            service,
            statefulset,
            &[("quic", NODE_QUIC, "UDP"), ("metrics", NODE_METRICS, "TCP")],
        );
    }
}

#[test]
fn forwarder_manifest_matches_the_forwarder_subcommand() {
    let docs = earth_moon();
    let deployment = find(&docs, "StatefulSet", "spacefabric-forwarder");
    assert_eq!(
        at(deployment, &["spec", "replicas"]).and_then(Value::as_u64),
        Some(1),
        "the base runs one forwarder, carrying every trunk"
    );
    assert_eq!(
        str_at(deployment, &["spec", "serviceName"]),
        Some("spacefabric-forwarder"),
        "pods get stable DNS names through the headless Service"
    );
    let container = &containers(deployment)[0];
    assert_eq!(
        seq_at(container, &["command"])[1].as_str(),
        Some("forwarder")
    );
    check_container(
        container,
        ("trunk", FORWARDER_TRUNK, "UDP"),
        FORWARDER_METRICS,
        &[
            "SPACEFABRIC_PROFILE",
            "SPACEFABRIC_LISTEN",
            "SPACEFABRIC_METRICS_LISTEN",
            "SPACEFABRIC_CONTROLLER",
            "SPACEFABRIC_JOIN_TOKEN",
            "SPACEFABRIC_SHARD",
            "SPACEFABRIC_POD_NAME",
        ],
    );
    check_join_token(&docs, container);
    check_scrape_annotations(deployment, FORWARDER_METRICS);
    assert_eq!(
        str_at(
            env_entry(container, "SPACEFABRIC_POD_NAME").unwrap(),
            &["valueFrom", "fieldRef", "fieldPath"]
        ),
        Some("metadata.name"),
        "the shard index is the pod's ordinal"
    );
    let service = find(&docs, "Service", "spacefabric-forwarder");
    assert_eq!(
        str_at(service, &["spec", "clusterIP"]),
        Some("None"),
        "headless: nodes recognise the forwarder by its pod IP"
    );
    check_service(
        service,
        deployment,
        &[
            ("trunk", FORWARDER_TRUNK, "UDP"),
            ("metrics", FORWARDER_METRICS, "TCP"),
        ],
    );
    // The controller tells the nodes where they are: in the base and every overlay, one
    // address per replica in ordinal order, and every pod is shard ordinal/replicas.
    check_forwarder_shards(&docs, "base (earth-moon)");
    for dir in overlay_dirs() {
        check_forwarder_shards(&render(&dir), &dir.display().to_string());
    }
    // It applies the controller's profile, in the base and in every overlay.
    let profile_of = |docs: &[Value], kind: &str, name: &str| {
        env_value(
            &containers(find(docs, kind, name))[0],
            "SPACEFABRIC_PROFILE",
        )
        .map(str::to_string)
    };
    assert_eq!(
        profile_of(&docs, "StatefulSet", "spacefabric-forwarder"),
        profile_of(&docs, "Deployment", "spacefabric-controller")
    );
    for dir in overlay_dirs() {
        let rendered = render(&dir);
        assert_eq!(
            profile_of(&rendered, "StatefulSet", "spacefabric-forwarder"),
            profile_of(&rendered, "Deployment", "spacefabric-controller"),
            "{}: the forwarder and the controller must load the same profile",
            dir.display()
        );
    }
}

#[test]
fn workloads_run_unprivileged() {
    let mut docs = earth_moon();
    docs.extend(render(&k8s_dir().join("bench")));
    for obj in docs.iter().filter(|d| !containers(d).is_empty()) {
        let what = format!(
            "{}/{}",
            str_at(obj, &["kind"]).unwrap(),
            str_at(obj, &["metadata", "name"]).unwrap()
        );
        let pod = at(obj, &["spec", "template", "spec"]).unwrap();
        assert_eq!(
            at(pod, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
            Some(true),
            "{what}"
        );
        assert!(
            at(pod, &["securityContext", "runAsUser"])
                .and_then(Value::as_u64)
                .is_some_and(|u| u > 0),
            "{what}"
        );
        assert_eq!(
            at(pod, &["enableServiceLinks"]).and_then(Value::as_bool),
            Some(false),
            "{what}"
        );
        for c in containers(obj) {
            let sc =
                at(c, &["securityContext"]).unwrap_or_else(|| panic!("{what}: no securityContext"));
            assert_eq!(
                at(sc, &["allowPrivilegeEscalation"]).and_then(Value::as_bool),
                Some(false),
                "{what}"
            );
            assert_eq!(
                at(sc, &["readOnlyRootFilesystem"]).and_then(Value::as_bool),
                Some(true),
                "{what}"
            );
            let drop: Vec<&str> = seq_at(sc, &["capabilities", "drop"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(drop, ["ALL"], "{what}");
            assert!(
                at(sc, &["capabilities", "add"]).is_none(),
                "{what}: no capability beyond the defaults"
            );
            assert!(at(sc, &["privileged"]).is_none(), "{what}");
            for r in ["requests", "limits"] {
                for k in ["cpu", "memory"] {
                    assert!(
                        at(c, &["resources", r, k]).is_some(),
                        "{what}: resources.{r}.{k}"
                    );
                }
            }
        }
    }
}

#[test]
fn benchmark_job_uses_real_flags_and_reaches_the_controller() {
    let jobs = render(&k8s_dir().join("bench"));
    let job = find(&jobs, "Job", "spacefabric-bench-allreduce");
    let container = &containers(job)[0];
    let cli = cli_of(container);
    assert_eq!(cli.bin, "spacefabric-bench");
    assert_eq!(cli.args.first().map(String::as_str), Some("allreduce"));
    for flag in cli.args.iter().filter(|a| a.starts_with('-')) {
        let flag = flag.split('=').next().unwrap();
        assert!(
            cli.help.has_flag(flag),
            "spacefabric-bench allreduce has no flag {flag}"
        );
    }
    let controller = cli
        .args
        .iter()
        .position(|a| a == "--controller")
        .map(|i| cli.args[i + 1].clone())
        .expect("the Job attaches to the cluster's controller with --controller");
    let docs = earth_moon();
    let service = find(&docs, "Service", "spacefabric-controller");
    assert_eq!(
        controller,
        format!(
            "http://spacefabric-controller:{}",
            service_port(service, "grpc")
        )
    );
    assert_eq!(
        str_at(job, &["spec", "template", "spec", "restartPolicy"]),
        Some("Never")
    );
    // Once the bench reads the join token, the Job must pass it from the cluster's Secret.
    if cli.help.by_env("SPACEFABRIC_JOIN_TOKEN").is_some() {
        assert!(
            env_entry(container, "SPACEFABRIC_JOIN_TOKEN").is_some(),
            "deploy/k8s/bench/allreduce-job.yaml must set SPACEFABRIC_JOIN_TOKEN (secretKeyRef \
             spacefabric-join-token/token): spacefabric-bench allreduce reads it"
        );
        check_join_token(&docs, container);
    }
    for env in seq_at(container, &["env"])
        .iter()
        .filter_map(|e| str_at(e, &["name"]))
    {
        assert!(
            !env.starts_with("SPACEFABRIC_") || cli.help.by_env(env).is_some(),
            "the bench Job sets {env}, which spacefabric-bench allreduce does not read"
        );
    }
}

/// The profile (parsed) the controller of a rendering loads.
fn controller_profile(docs: &[Value]) -> (String, Profile) {
    let ctl = &containers(find(docs, "Deployment", "spacefabric-controller"))[0];
    let path = env_value(ctl, "SPACEFABRIC_PROFILE").unwrap();
    let key = path.rsplit('/').next().unwrap().to_string();
    let profiles = configmap_profiles();
    let text = profiles
        .get(&key)
        .unwrap_or_else(|| panic!("profile {key} is not in the ConfigMap"));
    let profile = Profile::parse(text, &key).unwrap();
    (key, profile)
}

/// The value the kubelet gives `env` of a pod of `statefulset` with this ordinal: a literal,
/// or a Downward API field of the pod the StatefulSet controller creates (name
/// `<statefulset>-<ordinal>`, the template's labels). None for other sources.
fn pod_env(statefulset: &Value, ordinal: u64, env: &str) -> Option<String> {
    let container = &containers(statefulset)[0];
    let entry = env_entry(container, env)?;
    if let Some(v) = str_at(entry, &["value"]) {
        return Some(v.to_string());
    }
    let field = str_at(entry, &["valueFrom", "fieldRef", "fieldPath"])?;
    if field == "metadata.name" {
        let name = str_at(statefulset, &["metadata", "name"]).unwrap();
        return Some(format!("{name}-{ordinal}"));
    }
    let label = field
        .strip_prefix("metadata.labels['")
        .and_then(|l| l.strip_suffix("']"))?;
    str_at(
        statefulset,
        &["spec", "template", "metadata", "labels", label],
    )
    .map(str::to_string)
}

/// What breaks `kubectl scale` in a rendering: a node StatefulSet whose pods (of the ordinals
/// it has and of ordinals a scale-up adds) get no site or one the profile lacks, whose
/// selector does not pin the site (a pod of another site would count as its own), two
/// StatefulSets on one site, a profile site without one, a site without its own
/// PodDisruptionBudget, or a duplicate pod name.
fn scale_errors(what: &str, docs: &[Value], profile_key: &str, profile: &Profile) -> Vec<String> {
    let mut errors = Vec::new();
    let mut sites = BTreeSet::new();
    let mut pod_names = BTreeSet::new();
    for sts in node_statefulsets(docs) {
        let name = str_at(sts, &["metadata", "name"]).unwrap();
        let replicas = at(sts, &["spec", "replicas"])
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let mut site_of_sts = None;
        // the ordinals it starts with, and those `kubectl scale --replicas=N` adds
        for ordinal in [0, replicas.saturating_sub(1), replicas, replicas + 7, 999] {
            match pod_env(sts, ordinal, "SPACEFABRIC_SITE") {
                None => errors.push(format!(
                    "{what}: {name}: pod {name}-{ordinal} gets no SPACEFABRIC_SITE"
                )),
                Some(site) if profile.site_id(&site).is_none() => errors.push(format!(
                    "{what}: {name}: pod {name}-{ordinal} on site {site}, not a site of profile \
                     {profile_key} ({:?})",
                    profile.sites.iter().map(|s| &s.name).collect::<Vec<_>>()
                )),
                Some(site) => {
                    if site_of_sts.get_or_insert_with(|| site.clone()) != &site {
                        errors.push(format!("{what}: {name}: pods on different sites"));
                    }
                }
            }
            if let Some(pod) = pod_env(sts, ordinal, "SPACEFABRIC_NODE_NAME")
                && !pod_names.insert(pod.clone())
            {
                errors.push(format!("{what}: node name {pod} twice"));
            }
        }
        if env_entry(&containers(sts)[0], "SPACEFABRIC_SITE_BY_ORDINAL").is_some() {
            errors.push(format!(
                "{what}: {name}: SPACEFABRIC_SITE_BY_ORDINAL ties the site to the ordinal"
            ));
        }
        let Some(site) = site_of_sts else { continue };
        let selector = at(sts, &["spec", "selector", "matchLabels"]);
        if selector.and_then(|s| str_at(s, &[SITE_LABEL])) != Some(site.as_str()) {
            errors.push(format!(
                "{what}: {name}: its selector does not pin {SITE_LABEL}={site}"
            ));
        }
        if !sites.insert(site.clone()) {
            errors.push(format!("{what}: two node StatefulSets on site {site}"));
        }
        let pdb = docs.iter().find(|d| {
            str_at(d, &["kind"]) == Some("PodDisruptionBudget")
                && at(d, &["spec", "selector", "matchLabels"]) == selector
        });
        match pdb {
            None => errors.push(format!(
                "{what}: {name}: no PodDisruptionBudget selecting exactly its pods"
            )),
            Some(pdb) => {
                let limit = at(pdb, &["spec", "maxUnavailable"])
                    .or_else(|| at(pdb, &["spec", "minAvailable"]));
                if limit.is_none() {
                    errors.push(format!(
                        "{what}: {name}: its PodDisruptionBudget sets no limit"
                    ));
                }
            }
        }
    }
    let profile_sites: BTreeSet<String> = profile.sites.iter().map(|s| s.name.clone()).collect();
    if sites != profile_sites {
        errors.push(format!(
            "{what}: node StatefulSets on sites {sites:?}, profile {profile_key} has {profile_sites:?} \
             (one StatefulSet per site)"
        ));
    }
    errors
}

#[test]
fn scaling_any_node_statefulset_adds_pods_on_a_site_of_the_profile() {
    for dir in overlay_dirs() {
        let what = format!("overlay {}", dir.file_name().unwrap().to_string_lossy());
        let docs = render(&dir);
        let (key, profile) = controller_profile(&docs);
        let errors = scale_errors(&what, &docs, &key, &profile);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        assert!(
            node_statefulsets(&docs).len() >= 2,
            "{what}: at least two sites"
        );
    }
}

/// The labels of a workload's pod template, to change.
fn pod_template_labels(workload: &mut Value) -> &mut Value {
    ["spec", "template", "metadata", "labels"]
        .iter()
        .fold(workload, |v, key| v.get_mut(*key).unwrap())
}

#[test]
fn the_scale_check_rejects_ordinal_sites_unknown_sites_and_missing_budgets() {
    let docs = earth_moon();
    let (key, profile) = controller_profile(&docs);
    let sts_index = docs
        .iter()
        .position(|d| str_at(d, &["metadata", "name"]) == Some("spacefabric-node-moon"))
        .unwrap();
    let template_labels = ["spec", "template", "metadata", "labels"];
    type Mutation = fn(&mut Vec<Value>, usize);
    let cases: [(&str, Mutation); 4] = [
        ("not a site of profile", |docs, i| {
            let labels = pod_template_labels(&mut docs[i]);
            labels[SITE_LABEL] = Value::String("mars".into());
        }),
        ("gets no SPACEFABRIC_SITE", |docs, i| {
            let labels = pod_template_labels(&mut docs[i]);
            labels.as_mapping_mut().unwrap().remove(SITE_LABEL);
        }),
        ("no PodDisruptionBudget", |docs, _| {
            docs.retain(|d| {
                str_at(d, &["metadata", "name"]) != Some("spacefabric-node-moon")
                    || str_at(d, &["kind"]) != Some("PodDisruptionBudget")
            });
        }),
        ("one StatefulSet per site", |docs, i| {
            docs.remove(i);
        }),
    ];
    assert!(at(&docs[sts_index], &template_labels).is_some());
    for (expected, mutate) in cases {
        let mut broken = docs.clone();
        mutate(&mut broken, sts_index);
        let errors = scale_errors("case", &broken, &key, &profile);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected an error with {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn recommended_labels_are_on_every_object_and_pod_template() {
    let mut renderings: Vec<(String, Vec<Value>)> = overlay_dirs()
        .into_iter()
        .map(|d| (d.display().to_string(), render(&d)))
        .collect();
    for extra in ["base", "bench"] {
        renderings.push((extra.to_string(), render(&k8s_dir().join(extra))));
    }
    let keys = ["name", "instance", "component", "part-of", "version"]
        .map(|k| format!("app.kubernetes.io/{k}"));
    for (what, docs) in renderings {
        let mut instances = BTreeSet::new();
        for doc in &docs {
            let object = format!(
                "{what}: {}/{}",
                str_at(doc, &["kind"]).unwrap(),
                str_at(doc, &["metadata", "name"]).unwrap()
            );
            let mut label_sets = vec![(object.clone(), at(doc, &["metadata", "labels"]))];
            if let Some(t) = at(doc, &["spec", "template", "metadata"]) {
                label_sets.push((format!("{object} pod template"), at(t, &["labels"])));
            }
            for (where_, labels) in label_sets {
                for key in &keys {
                    let value = labels.and_then(|l| str_at(l, &[key.as_str()]));
                    assert!(
                        value.is_some_and(|v| !v.is_empty()),
                        "{where_}: no label {key}"
                    );
                }
                let labels = labels.unwrap();
                assert_eq!(
                    str_at(labels, &["app.kubernetes.io/version"]),
                    Some(env!("CARGO_PKG_VERSION")),
                    "{where_}: the workspace version"
                );
                instances.insert(
                    str_at(labels, &["app.kubernetes.io/instance"])
                        .unwrap()
                        .to_string(),
                );
            }
        }
        assert_eq!(
            instances.len(),
            1,
            "{what}: one instance label: {instances:?}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

#[test]
fn a_profile_change_renames_the_configmap_and_rolls_the_pods_that_mount_it() {
    let configmap_of = |docs: &[Value]| {
        docs.iter()
            .find(|d| str_at(d, &["kind"]) == Some("ConfigMap"))
            .and_then(|d| str_at(d, &["metadata", "name"]))
            .unwrap()
            .to_string()
    };
    let mounted = |docs: &[Value], (kind, deployment): (&str, &str)| {
        seq_at(
            find(docs, kind, deployment),
            &["spec", "template", "spec", "volumes"],
        )
        .iter()
        .find_map(|v| str_at(v, &["configMap", "name"]))
        .unwrap()
        .to_string()
    };
    let before = earth_moon();
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&k8s_dir(), tmp.path());
    let profile = tmp.path().join("base/profiles/earth-moon.toml");
    let mut text = std::fs::read_to_string(&profile).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&profile, text).unwrap();
    let after = render(&tmp.path().join("overlays/earth-moon"));
    let (old, new) = (configmap_of(&before), configmap_of(&after));
    assert!(old.starts_with("spacefabric-profiles-"), "{old}");
    assert_ne!(old, new, "the ConfigMap's name follows its content");
    for deployment in [
        ("Deployment", "spacefabric-controller"),
        ("StatefulSet", "spacefabric-forwarder"),
    ] {
        assert_eq!(mounted(&before, deployment), old, "{deployment:?}");
        // a new name in the pod template is a new template: the workload rolls its pods
        assert_eq!(mounted(&after, deployment), new, "{deployment:?}");
    }
}

/// The forwarder StatefulSet's replicas N, its pods' `SPACEFABRIC_SHARD` (`ordinal/N`) and
/// the controller's `SPACEFABRIC_FORWARDER` (pod I's stable name as entry I) agree: every
/// shared trunk then has exactly one carrier, and every node sends it there.
fn check_forwarder_shards(docs: &[Value], what: &str) {
    let set = find(docs, "StatefulSet", "spacefabric-forwarder");
    let n = at(set, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{what}: forwarder replicas"));
    assert!(n >= 1, "{what}: at least one forwarder");
    let container = &containers(set)[0];
    assert_eq!(
        env_value(container, "SPACEFABRIC_SHARD"),
        Some(format!("ordinal/{n}").as_str()),
        "{what}: the shard count is the replica count"
    );
    let controller = &containers(find(docs, "Deployment", "spacefabric-controller"))[0];
    let want: Vec<String> = (0..n)
        .map(|i| format!("spacefabric-forwarder-{i}.spacefabric-forwarder:{FORWARDER_TRUNK}"))
        .collect();
    assert_eq!(
        env_value(controller, "SPACEFABRIC_FORWARDER"),
        Some(want.join(",").as_str()),
        "{what}: the controller lists every forwarder pod in ordinal order"
    );
}

fn mounted_volume<'a>(pod: &'a Value, container: &Value, mount_path: &str) -> &'a Value {
    let mount = seq_at(container, &["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]) == Some(mount_path))
        .unwrap_or_else(|| panic!("nothing mounted at {mount_path}"));
    let name = str_at(mount, &["name"]).unwrap();
    seq_at(pod, &["volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn check_join_token(docs: &[Value], container: &Value) {
    let entry = env_entry(container, "SPACEFABRIC_JOIN_TOKEN").unwrap();
    let secret =
        str_at(entry, &["valueFrom", "secretKeyRef", "name"]).expect("join token from a Secret");
    let key = str_at(entry, &["valueFrom", "secretKeyRef", "key"]).unwrap();
    let secret = find(docs, "Secret", secret);
    assert!(
        at(secret, &["stringData", key]).is_some() || at(secret, &["data", key]).is_some(),
        "Secret has no key {key}"
    );
}

fn check_scrape_annotations(workload: &Value, metrics_port: u16) {
    let annotations = at(workload, &["spec", "template", "metadata", "annotations"]).unwrap();
    assert_eq!(str_at(annotations, &["prometheus.io/scrape"]), Some("true"));
    assert_eq!(
        str_at(annotations, &["prometheus.io/port"]),
        Some(metrics_port.to_string().as_str())
    );
    assert_eq!(
        str_at(annotations, &["prometheus.io/path"]),
        Some("/metrics")
    );
}

fn service_port(service: &Value, name: &str) -> u16 {
    let port = seq_at(service, &["spec", "ports"])
        .iter()
        .find(|p| str_at(p, &["name"]) == Some(name))
        .unwrap_or_else(|| panic!("Service has no port {name}"));
    u16::try_from(at(port, &["port"]).unwrap().as_u64().unwrap()).unwrap()
}

fn check_service(service: &Value, workload: &Value, ports: &[(&str, u16, &str)]) {
    let selector = at(service, &["spec", "selector"])
        .and_then(Value::as_mapping)
        .unwrap();
    let labels = at(workload, &["spec", "template", "metadata", "labels"]).unwrap();
    for (k, v) in selector {
        assert_eq!(
            labels.get(k.as_str().unwrap()),
            Some(v),
            "Service selector {k:?}"
        );
    }
    let container = &containers(workload)[0];
    for (name, number, protocol) in ports {
        assert_eq!(service_port(service, name), *number, "Service port {name}");
        let port = seq_at(service, &["spec", "ports"])
            .iter()
            .find(|p| str_at(p, &["name"]) == Some(name))
            .unwrap();
        assert_eq!(
            str_at(port, &["protocol"]).unwrap_or("TCP"),
            *protocol,
            "Service port {name}"
        );
        let target = str_at(port, &["targetPort"])
            .unwrap_or_else(|| panic!("port {name}: targetPort by name"));
        assert_eq!(
            container_port(container, target).0,
            *number,
            "Service port {name} -> {target}"
        );
    }
}

#[test]
fn help_parser_reads_flags_envs_and_defaults_in_both_clap_layouts() {
    let long = "\
Runs the controller

Usage: spacefabric-controller serve [OPTIONS] --profile <FILE>

Options:
      --listen <ADDR>
          gRPC address

          [env: SPACEFABRIC_LISTEN=]
          [default: 0.0.0.0:7400]

      --profile <FILE>
          Link profile (TOML)

          [env: SPACEFABRIC_PROFILE=/tmp/x.toml]

  -b, --begin <BYTES>
          Smallest size
          [default: 1K]

  -h, --help
          Print help (see a summary with '-h')
";
    let help = HelpOptions::parse(long);
    let listen = help.by_env("SPACEFABRIC_LISTEN").unwrap();
    assert_eq!(listen.flags, ["--listen"]);
    assert_eq!(listen.default.as_deref(), Some("0.0.0.0:7400"));
    assert_eq!(help.by_env("SPACEFABRIC_PROFILE").unwrap().default, None);
    assert!(help.has_flag("-b") && help.has_flag("--begin") && help.has_flag("-h"));
    assert!(!help.has_flag("--end"));
    assert_eq!(help.envs(), ["SPACEFABRIC_LISTEN", "SPACEFABRIC_PROFILE"]);

    let short = "\
Usage: spacefabric-node [OPTIONS]

Options:
      --listen <ADDR>       QUIC address [env: SPACEFABRIC_LISTEN=] [default: 0.0.0.0:7500]
      --advertise <ADDR>    Address peers dial
                            [env: SPACEFABRIC_ADVERTISE=]
  -h, --help                Print help
";
    let help = HelpOptions::parse(short);
    assert_eq!(
        help.by_env("SPACEFABRIC_LISTEN")
            .unwrap()
            .default
            .as_deref(),
        Some("0.0.0.0:7500")
    );
    assert_eq!(
        help.by_env("SPACEFABRIC_ADVERTISE").unwrap().flags,
        ["--advertise"]
    );
    assert_eq!(help.options.len(), 3);
}
