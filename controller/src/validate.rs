//! Checks of request fields, pure: every error names the field (`spec.all_reduce.factor`).

use std::net::SocketAddr;

use spacefabric_proto::algorithm::AlgorithmName;
use spacefabric_proto::job_cost::{NodeBudget, job_cost};
use spacefabric_proto::v1::{JobSpec, TrainJob, job_spec};

use crate::error::{ControllerError, bounded};
use crate::topology::Topology;

/// Longest node name accepted (a DNS name).
pub const MAX_NODE_NAME: usize = 253;
/// Largest CSR accepted, bytes of PEM.
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// Largest all-reduce buffer accepted, bytes.
pub const MAX_ALL_REDUCE_BYTES: u64 = 4 << 30;
/// Most iterations of any job kind.
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// Training strategy names.
pub const STRATEGIES: &[&str] = &["sync", "sharded", "diloco", "hier"];
/// Most steps a train job may ask for.
pub const MAX_TRAIN_STEPS: u64 = 10_000_000;
/// Largest student model a train job may ask for (parameters).
pub const MAX_TRAIN_PARAMETERS: u64 = 256 << 20;

type Result<T> = std::result::Result<T, ControllerError>;

fn invalid<T>(field: &str, reason: impl Into<String>) -> Result<T> {
    Err(ControllerError::invalid(field, reason))
}

/// A node name: a DNS name (1–253 characters of `a-z 0-9 - .`, labels of 1–63, not starting
/// or ending with `-` or `.`, not an IP address), because it becomes the DNS name in the
/// node's certificate, as the fabric's mutual TLS requires.
pub fn node_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return invalid("node_name", "required");
    }
    if name.len() > MAX_NODE_NAME {
        return invalid(
            "node_name",
            format!("longer than {MAX_NODE_NAME} characters"),
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return invalid(
            "node_name",
            format!("character {c:?} not allowed (use a-z 0-9 - .)"),
        );
    }
    if name.starts_with(['-', '.'])
        || name.ends_with(['-', '.'])
        || name.split('.').any(|l| l.is_empty() || l.len() > 63)
        || name.parse::<std::net::IpAddr>().is_ok()
    {
        return invalid(
            "node_name",
            format!("'{name}' is not a DNS name (labels of 1-63, no leading or trailing - or .)"),
        );
    }
    Ok(())
}

/// An advertise address: `ip:port`, neither unspecified (0.0.0.0) nor port 0.
pub fn advertise_addr(addr: &str) -> Result<SocketAddr> {
    let parsed: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => {
            return invalid(
                "advertise_addr",
                format!("'{}' is not an ip:port", bounded(addr)),
            );
        }
    };
    if parsed.ip().is_unspecified() {
        return invalid(
            "advertise_addr",
            format!("'{addr}' is unspecified: advertise an address peers can reach"),
        );
    }
    if parsed.port() == 0 {
        return invalid("advertise_addr", "port 0");
    }
    Ok(parsed)
}

/// A preferred site: empty, or a site of the profile.
pub fn preferred_site(site: &str, topology: &Topology) -> Result<()> {
    if site.is_empty() || topology.site_index(site).is_some() {
        Ok(())
    } else {
        invalid(
            "preferred_site",
            format!(
                "unknown site '{}' (profile '{}' has {})",
                bounded(site),
                topology.profile_name,
                topology.sites.join(", ")
            ),
        )
    }
}

/// A CSR: at most [`MAX_CSR_BYTES`] (its content is checked when it is signed).
pub fn csr(pem: &str) -> Result<()> {
    if pem.len() > MAX_CSR_BYTES {
        return invalid("csr_pem", format!("larger than {MAX_CSR_BYTES} bytes"));
    }
    Ok(())
}

/// What the controller admits — the spec's fields ([`job_spec`]) and what it costs one of
/// `world` ranks against `budget` (`spacefabric_proto::job_cost`) — and what the in-process
/// benches check with this same function before they run anything.
pub fn admit<'a>(
    spec: Option<&'a JobSpec>,
    world: u32,
    budget: &NodeBudget,
) -> Result<&'a JobSpec> {
    let spec = job_spec(spec)?;
    job_cost(spec, world).check(budget).map_err(|e| {
        ControllerError::invalid(e.fields(), format!("on {world} ranks the job {e}"))
    })?;
    Ok(spec)
}

/// A job spec, every field checked; zero optional fields take documented defaults.
pub fn job_spec(spec: Option<&JobSpec>) -> Result<&JobSpec> {
    let Some(spec) = spec else {
        return invalid("spec", "required");
    };
    if spec.name.len() > 200 {
        return invalid("spec.name", "longer than 200 characters");
    }
    let max_deadline_ms = crate::deadline::MAX_DEADLINE.as_millis();
    if u128::from(spec.deadline_ms) > max_deadline_ms {
        return invalid(
            "spec.deadline_ms",
            format!(
                "{} is longer than {max_deadline_ms} ms (30 days)",
                spec.deadline_ms
            ),
        );
    }
    match &spec.kind {
        None => invalid("spec.kind", "one of all_reduce, train, ping is required"),
        Some(job_spec::Kind::AllReduce(a)) => {
            let f = |name: &str| format!("spec.all_reduce.{name}");
            if a.min_bytes < 4 {
                return invalid(&f("min_bytes"), "must be at least 4 (one f32)");
            }
            if a.max_bytes < a.min_bytes {
                return invalid(
                    &f("max_bytes"),
                    format!("{} is below min_bytes {}", a.max_bytes, a.min_bytes),
                );
            }
            if a.max_bytes > MAX_ALL_REDUCE_BYTES {
                return invalid(
                    &f("max_bytes"),
                    format!("larger than {MAX_ALL_REDUCE_BYTES} bytes"),
                );
            }
            if a.max_bytes > a.min_bytes && a.factor < 2 {
                return invalid(
                    &f("factor"),
                    "must be at least 2 when max_bytes > min_bytes",
                );
            }
            if a.iterations == 0 || a.iterations > MAX_ITERATIONS {
                return invalid(&f("iterations"), format!("must be 1..={MAX_ITERATIONS}"));
            }
            if a.warmup > MAX_ITERATIONS {
                return invalid(&f("warmup"), format!("must be at most {MAX_ITERATIONS}"));
            }
            if a.algorithms.is_empty() {
                return invalid(
                    &f("algorithms"),
                    format!(
                        "at least one of {}",
                        AlgorithmName::ALL.map(AlgorithmName::name).join(", ")
                    ),
                );
            }
            for (i, algo) in a.algorithms.iter().enumerate() {
                if let Err(e) = AlgorithmName::parse(algo) {
                    return invalid(&format!("spec.all_reduce.algorithms[{i}]"), e.to_string());
                }
            }
            Ok(spec)
        }
        Some(job_spec::Kind::Train(t)) => {
            train_job(t)?;
            Ok(spec)
        }
        Some(job_spec::Kind::Ping(p)) => {
            if p.iterations == 0 || p.iterations > 100_000 {
                return invalid("spec.ping.iterations", "must be 1..=100000");
            }
            Ok(spec)
        }
    }
}

/// A train job: one known strategy, positive steps, finite hyper-parameters, a model and a
/// data set that fit (zero fields take the defaults of `TrainJob::resolved`).
fn train_job(t: &TrainJob) -> Result<()> {
    let f = |name: &str| format!("spec.train.{name}");
    match t.strategies.as_slice() {
        [] => {
            return invalid(
                &f("strategies"),
                format!("one of {} is required", STRATEGIES.join(", ")),
            );
        }
        [s] if !STRATEGIES.contains(&s.as_str()) => {
            return invalid(
                "spec.train.strategies[0]",
                format!(
                    "unknown strategy '{}' (use {})",
                    bounded(s),
                    STRATEGIES.join(", ")
                ),
            );
        }
        [_] => {}
        more => {
            return invalid(
                &f("strategies"),
                format!(
                    "{} strategies given: a train job runs one (submit one job per strategy to compare them)",
                    more.len()
                ),
            );
        }
    }
    if t.steps == 0 || t.steps > MAX_TRAIN_STEPS {
        return invalid(&f("steps"), format!("must be 1..={MAX_TRAIN_STEPS}"));
    }
    if !t.target_loss.is_finite() || t.target_loss < 0.0 {
        return invalid(
            &f("target_loss"),
            format!("{} is not a finite number >= 0", t.target_loss),
        );
    }
    if t.step_time_ms > 3_600_000 {
        return invalid(&f("step_time_ms"), "longer than an hour");
    }
    for (name, value) in [
        ("width", t.width),
        ("depth", t.depth),
        ("input_dim", t.input_dim),
        ("output_dim", t.output_dim),
        ("teacher_width", t.teacher_width),
        ("teacher_depth", t.teacher_depth),
    ] {
        if value > 1 << 16 {
            return invalid(&f(name), format!("{value} is larger than 65536"));
        }
    }
    let r = t.resolved();
    if r.depth > 64 || r.teacher_depth > 64 {
        return invalid(&f("depth"), "at most 64 layers");
    }
    if t.parameter_count() > MAX_TRAIN_PARAMETERS {
        return invalid(
            &f("width"),
            format!(
                "the model would have {} parameters (at most {MAX_TRAIN_PARAMETERS})",
                t.parameter_count()
            ),
        );
    }
    if !(r.lr.is_finite() && r.lr > 0.0) {
        return invalid(&f("lr"), format!("{} is not a positive number", r.lr));
    }
    for (name, value) in [
        ("outer_lr", r.outer_lr),
        ("outer_momentum", r.outer_momentum),
    ] {
        if !value.is_some_and(|v| v.is_finite() && v >= 0.0) {
            return invalid(&f(name), format!("{value:?} is not a finite number >= 0"));
        }
    }
    if !["relu", "tanh"].contains(&r.activation.as_str()) {
        return invalid(
            &f("activation"),
            format!(
                "unknown activation '{}' (use relu or tanh)",
                bounded(&r.activation)
            ),
        );
    }
    if let Err(e) = AlgorithmName::parse(&r.algorithm) {
        return invalid(&f("algorithm"), e.to_string());
    }
    if r.batch_size > 1 << 20 || r.eval_samples > 1 << 20 {
        return invalid(
            &f("batch_size"),
            "batch_size and eval_samples are at most 2^20",
        );
    }
    if r.dataset_samples > 1 << 40 {
        return invalid(&f("dataset_samples"), "at most 2^40");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacefabric_proto::v1::{AllReduceJob, PingJob};

    fn all_reduce(a: AllReduceJob) -> JobSpec {
        JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::AllReduce(a)),
        }
    }

    fn field_of(err: ControllerError) -> String {
        match err {
            ControllerError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let good = AllReduceJob {
            min_bytes: 1024,
            max_bytes: 1 << 20,
            factor: 2,
            iterations: 5,
            warmup: 1,
            algorithms: vec!["ring".into(), "hier".into()],
            check: true,
        };
        assert!(job_spec(Some(&all_reduce(good.clone()))).is_ok());
        let bad = AllReduceJob {
            factor: 1,
            ..good.clone()
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.factor"
        );
        let bad = AllReduceJob {
            algorithms: vec!["ring".into(), "magic".into()],
            ..good
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.algorithms[1]"
        );
        let ping = JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::Ping(PingJob { iterations: 0 })),
        };
        assert_eq!(
            field_of(job_spec(Some(&ping)).unwrap_err()),
            "spec.ping.iterations"
        );
        assert_eq!(field_of(job_spec(None).unwrap_err()), "spec");
    }

    #[test]
    fn addresses_and_names() {
        assert!(advertise_addr("0.0.0.0:7500").is_err());
        assert!(advertise_addr("10.0.0.1:0").is_err());
        assert!(advertise_addr("nonsense").is_err());
        assert!(advertise_addr("10.0.0.1:7500").is_ok());
        assert!(node_name("node-0").is_ok());
        assert!(node_name("").is_err());
        assert!(node_name("a b").is_err());
        assert!(node_name("Node-0").is_err());
        assert!(node_name("-node").is_err());
        assert!(node_name("10.0.0.1").is_err());
    }

    #[test]
    fn train_jobs_name_the_bad_field() {
        let train = |t: TrainJob| JobSpec {
            deadline_ms: 0,
            name: String::new(),
            kind: Some(job_spec::Kind::Train(t)),
        };
        let ok = TrainJob {
            strategies: vec!["diloco".into()],
            steps: 10,
            ..TrainJob::default()
        };
        assert!(job_spec(Some(&train(ok.clone()))).is_ok());
        let cases = [
            (
                TrainJob {
                    strategies: vec!["sync".into(), "diloco".into()],
                    ..ok.clone()
                },
                "spec.train.strategies",
            ),
            (
                TrainJob {
                    strategies: vec!["gossip".into()],
                    ..ok.clone()
                },
                "spec.train.strategies[0]",
            ),
            (
                TrainJob {
                    steps: 0,
                    ..ok.clone()
                },
                "spec.train.steps",
            ),
            (
                TrainJob {
                    lr: f32::NAN,
                    ..ok.clone()
                },
                "spec.train.lr",
            ),
            (
                TrainJob {
                    outer_momentum: Some(-1.0),
                    ..ok.clone()
                },
                "spec.train.outer_momentum",
            ),
            (
                TrainJob {
                    activation: "gelu".into(),
                    ..ok.clone()
                },
                "spec.train.activation",
            ),
            (
                TrainJob {
                    algorithm: "butterfly".into(),
                    ..ok.clone()
                },
                "spec.train.algorithm",
            ),
            (
                TrainJob {
                    width: 60_000,
                    depth: 60,
                    ..ok
                },
                "spec.train.width",
            ),
        ];
        for (bad, field) in cases {
            let err = job_spec(Some(&train(bad))).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
