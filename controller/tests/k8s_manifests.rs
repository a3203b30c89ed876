//! The Kubernetes manifests under deploy/k8s checked against the code they run:
//! - the profiles ConfigMap is generated from netem-profiles/profiles: same files, byte for
//!   byte, and every profile in it parses with [`Profile::parse`];
//! - every `SPACEFABRIC_*` variable a container sets is one its binary reads (from the
//!   binary's own `--help`, where clap lists `[env: NAME=]`), the ones a role needs are set, and
//!   the ports of env values, container ports, Services, probes and scrape annotations are the
//!   contract's (controller gRPC 7400/tcp, metrics 9400; node QUIC 7500/udp, metrics 9500) and
//!   the binaries' defaults;
//! - node identity and advertise address come from the Downward API;
//! - the forwarder (`spacefabric-node forwarder`, trunk 7600/udp, metrics 9600) has a headless
//!   Service, the controller hands its address to the nodes, and it loads the controller's
//!   profile in the base and every overlay;
//! - in the base and every overlay, the site ranges place each StatefulSet ordinal on exactly
//!   one site of the profile the controller loads;
//! - the benchmark Job uses flags `spacefabric-bench allreduce` has and reaches the
//!   controller's Service.
//!
//! scripts/validate-k8s.sh checks the same files against the Kubernetes schemas.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use netem_profiles::Profile;
use serde_norway::Value;
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

/// Every document of every manifest file in a directory (kustomization files excluded).
fn manifests_in(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files.iter().flat_map(|f| yaml_docs(f)).collect()
}

fn base() -> Vec<Value> {
    manifests_in(&k8s_dir().join("base"))
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
    assert_eq!(
        at(
            kustomization,
            &["generatorOptions", "disableNameSuffixHash"]
        )
        .and_then(Value::as_bool),
        Some(true),
        "the workloads mount the ConfigMap by its plain name"
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
    let docs = base();
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
    assert_eq!(
        str_at(profiles_volume, &["configMap", "name"]),
        Some("spacefabric-profiles")
    );
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
    let docs = base();
    let statefulset = find(&docs, "StatefulSet", "spacefabric-node");
    let container = &containers(statefulset)[0];
    check_container(
        container,
        ("quic", NODE_QUIC, "UDP"),
        NODE_METRICS,
        &[
            "SPACEFABRIC_NODE_NAME",
            "SPACEFABRIC_ADVERTISE",
            "SPACEFABRIC_CONTROLLER",
            "SPACEFABRIC_JOIN_TOKEN",
            "SPACEFABRIC_SITE_BY_ORDINAL",
            "SPACEFABRIC_LISTEN",
            "SPACEFABRIC_METRICS_LISTEN",
        ],
    );

    // identity and advertise address from the Downward API; never 0.0.0.0
    let field_ref = |env: &str| {
        str_at(
            env_entry(container, env).unwrap(),
            &["valueFrom", "fieldRef", "fieldPath"],
        )
    };
    assert_eq!(field_ref("SPACEFABRIC_NODE_NAME"), Some("metadata.name"));
    assert_eq!(field_ref("POD_IP"), Some("status.podIP"));
    assert_eq!(
        env_value(container, "SPACEFABRIC_ADVERTISE"),
        Some(format!("$(POD_IP):{NODE_QUIC}").as_str())
    );

    // the controller address is the controller Service's gRPC port
    let controller_service = find(&docs, "Service", "spacefabric-controller");
    let grpc_port = service_port(controller_service, "grpc");
    assert_eq!(
        env_value(container, "SPACEFABRIC_CONTROLLER"),
        Some(format!("http://spacefabric-controller:{grpc_port}").as_str())
    );
    check_join_token(&docs, container);

    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            str_at(container, &[probe, "httpGet", "path"]),
            Some("/metrics"),
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

#[test]
fn forwarder_manifest_matches_the_forwarder_subcommand() {
    let docs = base();
    let deployment = find(&docs, "Deployment", "spacefabric-forwarder");
    assert_eq!(
        at(deployment, &["spec", "replicas"]).and_then(Value::as_u64),
        Some(1),
        "one process per trunk: two replicas would split its queue"
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
        ],
    );
    check_join_token(&docs, container);
    check_scrape_annotations(deployment, FORWARDER_METRICS);
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
    // The controller tells the nodes where it is.
    let controller = &containers(find(&docs, "Deployment", "spacefabric-controller"))[0];
    assert_eq!(
        env_value(controller, "SPACEFABRIC_FORWARDER"),
        Some(format!("spacefabric-forwarder:{FORWARDER_TRUNK}").as_str())
    );
    // It applies the controller's profile, in the base and in every overlay.
    let profile_of = |docs: &[Value], kind: &str, name: &str| {
        env_value(
            &containers(find(docs, kind, name))[0],
            "SPACEFABRIC_PROFILE",
        )
        .map(str::to_string)
    };
    assert_eq!(
        profile_of(&docs, "Deployment", "spacefabric-forwarder"),
        profile_of(&docs, "Deployment", "spacefabric-controller")
    );
    for dir in overlay_dirs() {
        let patches = manifests_in(&dir);
        assert_eq!(
            profile_of(&patches, "Deployment", "spacefabric-forwarder"),
            profile_of(&patches, "Deployment", "spacefabric-controller"),
            "{}: the forwarder and the controller must load the same profile",
            dir.display()
        );
    }
}

#[test]
fn workloads_run_unprivileged() {
    let mut docs = base();
    docs.extend(manifests_in(&k8s_dir().join("bench")));
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
    let jobs = manifests_in(&k8s_dir().join("bench"));
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
    let docs = base();
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

/// One deployable configuration: the base itself or an overlay applied on it.
struct Placement {
    what: String,
    replicas: u64,
    site_by_ordinal: String,
    profile_key: String,
}

fn placement(what: &str, patches: &[Value]) -> Placement {
    let docs = base();
    let base_sts = find(&docs, "StatefulSet", "spacefabric-node");
    let base_ctl = find(&docs, "Deployment", "spacefabric-controller");
    let patched = |kind: &str, name: &str| {
        patches.iter().find(|d| {
            str_at(d, &["kind"]) == Some(kind) && str_at(d, &["metadata", "name"]) == Some(name)
        })
    };
    let sts = patched("StatefulSet", "spacefabric-node");
    let ctl = patched("Deployment", "spacefabric-controller");
    let replicas = sts
        .and_then(|s| at(s, &["spec", "replicas"]))
        .or_else(|| at(base_sts, &["spec", "replicas"]))
        .and_then(Value::as_u64)
        .unwrap();
    let env = |patch: Option<&Value>, base: &Value, name: &str| {
        patch
            .and_then(|p| containers(p).iter().find_map(|c| env_value(c, name)))
            .or_else(|| env_value(&containers(base)[0], name))
            .unwrap()
            .to_string()
    };
    let profile = env(ctl, base_ctl, "SPACEFABRIC_PROFILE");
    Placement {
        what: what.to_string(),
        replicas,
        site_by_ordinal: env(sts, base_sts, "SPACEFABRIC_SITE_BY_ORDINAL"),
        profile_key: profile.rsplit('/').next().unwrap().to_string(),
    }
}

/// "earth=0-3,moon=4-7" -> [(earth, 0..=3), (moon, 4..=7)]; single ordinals ("leo-1=5") too.
fn site_ranges(spec: &str) -> Vec<(String, u64, u64)> {
    spec.split(',')
        .map(|part| {
            let (site, range) = part
                .trim()
                .split_once('=')
                .unwrap_or_else(|| panic!("{part:?}: no '='"));
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            (
                site.to_string(),
                lo.trim().parse().unwrap(),
                hi.trim().parse().unwrap(),
            )
        })
        .collect()
}

/// What is wrong with a placement: a site the profile lacks, an ordinal on two sites, an
/// ordinal of the StatefulSet on none (or a range beyond its replicas), a single-site cluster.
fn placement_errors(p: &Placement, profile: &Profile) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    let mut sites_used = BTreeSet::new();
    for (site, lo, hi) in site_ranges(&p.site_by_ordinal) {
        if profile.site_id(&site).is_none() {
            errors.push(format!(
                "{}: site {site} is not a site of profile {} ({:?})",
                p.what,
                p.profile_key,
                profile.sites.iter().map(|s| &s.name).collect::<Vec<_>>()
            ));
        }
        if lo > hi {
            errors.push(format!("{}: range {lo}-{hi} of {site} is empty", p.what));
        }
        for ordinal in lo..=hi {
            if let Some(other) = seen.insert(ordinal, site.clone()) {
                errors.push(format!(
                    "{}: ordinal {ordinal} on both {other} and {site}",
                    p.what
                ));
            }
        }
        sites_used.insert(site);
    }
    let expected: Vec<u64> = (0..p.replicas).collect();
    if seen.keys().copied().collect::<Vec<_>>() != expected {
        errors.push(format!(
            "{}: {} must place ordinals 0..={} (replicas {}) exactly once",
            p.what,
            p.site_by_ordinal,
            p.replicas.saturating_sub(1),
            p.replicas
        ));
    }
    if sites_used.len() < 2 {
        errors.push(format!(
            "{}: a spacefabric cluster spans at least two sites",
            p.what
        ));
    }
    errors
}

#[test]
fn every_ordinal_lands_on_exactly_one_site_of_the_profile() {
    let profiles = configmap_profiles();
    let mut placements = vec![placement("base", &[])];
    for dir in overlay_dirs() {
        let what = format!("overlay {}", dir.file_name().unwrap().to_string_lossy());
        placements.push(placement(&what, &manifests_in(&dir)));
    }
    for p in placements {
        let text = profiles.get(&p.profile_key).unwrap_or_else(|| {
            panic!(
                "{}: profile {} is not in the ConfigMap",
                p.what, p.profile_key
            )
        });
        let profile = Profile::parse(text, &p.profile_key).unwrap();
        let errors = placement_errors(&p, &profile);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[test]
fn the_placement_check_rejects_gaps_overlaps_and_unknown_sites() {
    let base = placement("base", &[]);
    let profile = Profile::parse(&configmap_profiles()[&base.profile_key], "base").unwrap();
    for (ranges, replicas, expected) in [
        ("earth=0-2,moon=4-7", 8, "exactly once"),
        ("earth=0-4,moon=4-7", 8, "ordinal 4 on both earth and moon"),
        ("earth=0-3,moon=4-7", 9, "exactly once"),
        ("earth=0-3,mars=4-7", 8, "site mars is not a site"),
        ("earth=0-7", 8, "at least two sites"),
    ] {
        let p = Placement {
            what: "case".to_string(),
            replicas,
            site_by_ordinal: ranges.to_string(),
            profile_key: base.profile_key.clone(),
        };
        let errors = placement_errors(&p, &profile);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{ranges} x{replicas}: expected an error with {expected:?}, got {errors:?}"
        );
    }
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
