//! Checks of request fields, pure: every error names the field (`spec.all_reduce.factor`).

use std::net::SocketAddr;

use spacefabric_proto::algorithm::AlgorithmName;
use spacefabric_proto::job_cost::{NodeBudget, job_cost};
use spacefabric_proto::reduction::{DataTypeName, ReduceOpName};
use spacefabric_proto::train_names::{Activation, Strategy};
use spacefabric_proto::v1::{JobSpec, TrainJob, job_spec};
use spacefabric_proto::wire_enum::WireEnum;

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
            if a.collective_algorithms.is_empty() {
                return invalid(
                    &f("collective_algorithms"),
                    format!("at least one of {}", AlgorithmName::NAMES),
                );
            }
            for (i, &algo) in a.collective_algorithms.iter().enumerate() {
                if let Err(e) = AlgorithmName::from_wire(algo) {
                    return invalid(
                        &format!("spec.all_reduce.collective_algorithms[{i}]"),
                        e.to_string(),
                    );
                }
            }
            for (i, name) in a.datatypes.iter().enumerate() {
                // `all` is accepted here as in the bench's flags.
                if let Err(e) = DataTypeName::parse_list(std::slice::from_ref(name)) {
                    return invalid(&format!("spec.all_reduce.datatypes[{i}]"), e.to_string());
                }
            }
            for (i, name) in a.ops.iter().enumerate() {
                // `all` is accepted here as in the bench's flags.
                if let Err(e) = ReduceOpName::parse_list(std::slice::from_ref(name)) {
                    return invalid(&format!("spec.all_reduce.ops[{i}]"), e.to_string());
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
    let strategy = match Strategy::from_wire(t.strategy) {
        Ok(s) => s,
        Err(e) => return invalid(&f("strategy"), e.to_string()),
    };
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
    if let Err(e) = Activation::from_wire(r.hidden_activation) {
        return invalid(&f("hidden_activation"), e.to_string());
    }
    if let Err(e) = AlgorithmName::from_wire(r.collective_algorithm) {
        return invalid(&f("collective_algorithm"), e.to_string());
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
    train_job_lm_and_outer(t, &r, strategy)
}

/// The transformer, schedule and outer-strategy fields of a train job (issue 14).
fn train_job_lm_and_outer(t: &TrainJob, r: &TrainJob, strategy: Strategy) -> Result<()> {
    use spacefabric_proto::train_job::{Accelerator, LM_PRESETS, defaults};
    let f = |name: &str| format!("spec.train.{name}");
    if r.model != defaults::MODEL && r.lm_preset().is_none() {
        let names: Vec<_> = LM_PRESETS.iter().map(|p| p.name).collect();
        return invalid(
            &f("model"),
            format!(
                "unknown model '{}' (use mlp, {})",
                r.model,
                names.join(", ")
            ),
        );
    }
    if r.lm_preset().is_some() {
        if r.dataset_samples > defaults::LM_TRAIN_CHARS {
            return invalid(
                &f("dataset_samples"),
                format!(
                    "{} characters, but the corpus has {} of training text",
                    r.dataset_samples,
                    defaults::LM_TRAIN_CHARS
                ),
            );
        }
        if r.eval_samples > 100_000 {
            return invalid(&f("eval_samples"), "at most 100000 validation windows");
        }
    }
    for (name, v) in [
        ("min_lr_ratio", r.min_lr_ratio),
        ("mixing", r.mixing),
        ("compress_density", r.compress_density),
    ] {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return invalid(&f(name), format!("{v} is not a number in [0, 1]"));
        }
    }
    for (name, v) in [("grad_clip", r.grad_clip), ("weight_decay", r.weight_decay)] {
        if !(v.is_finite() && v >= 0.0) {
            return invalid(&f(name), format!("{v} is not a finite number >= 0"));
        }
    }
    if r.lr_decay_steps != 0 && r.lr_decay_steps < r.warmup_steps {
        return invalid(
            &f("lr_decay_steps"),
            format!(
                "{} ends before the warm-up ({} steps)",
                r.lr_decay_steps, r.warmup_steps
            ),
        );
    }
    if ![2, 4, 8, 32].contains(&r.compress_bits) {
        return invalid(
            &f("compress_bits"),
            format!("{} (use 2, 4, 8 or 32)", r.compress_bits),
        );
    }
    let compressed = r.compress_density > 0.0;
    if compressed && !strategy.has_outer_step() {
        return invalid(
            &f("compress_density"),
            format!("compression applies to diloco, hier, streaming and delayed, not {strategy}"),
        );
    }
    if strategy == Strategy::Streaming {
        if r.fragments > r.inner_steps {
            return invalid(
                &f("fragments"),
                format!(
                    "{} fragments need inner_steps >= fragments ({})",
                    r.fragments, r.inner_steps
                ),
            );
        }
        if r.parameter_count() < u64::from(r.fragments) {
            return invalid(&f("fragments"), "more fragments than parameters");
        }
        let stride = r.inner_steps / r.fragments.max(1);
        if r.overlap_steps >= stride {
            return invalid(
                &f("overlap_steps"),
                format!(
                    "{} must be below inner_steps / fragments = {stride}",
                    r.overlap_steps
                ),
            );
        }
    }
    if !t.accelerator.is_empty() && Accelerator::find(&t.accelerator).is_none() {
        let names: Vec<_> = spacefabric_proto::train_job::ACCELERATORS
            .iter()
            .map(|a| a.name)
            .collect();
        return invalid(
            &f("accelerator"),
            format!(
                "unknown accelerator '{}' (use {})",
                t.accelerator,
                names.join(", ")
            ),
        );
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
            collective_algorithms: vec![
                AlgorithmName::Ring.to_wire(),
                AlgorithmName::Hierarchical.to_wire(),
            ],
            check: true,
            ..AllReduceJob::default()
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
            collective_algorithms: vec![AlgorithmName::Ring.to_wire(), 17],
            ..good.clone()
        };
        let err = job_spec(Some(&all_reduce(bad))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.all_reduce.collective_algorithms[1]: unknown value 17"
        );
        let bad = AllReduceJob {
            collective_algorithms: vec![0],
            ..good.clone()
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.collective_algorithms[0]"
        );
        let bad = AllReduceJob {
            collective_algorithms: vec![],
            ..good.clone()
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.collective_algorithms"
        );
        let typed = AllReduceJob {
            datatypes: vec!["all".into(), "bf16".into()],
            ops: vec!["avg".into()],
            ..good.clone()
        };
        assert!(job_spec(Some(&all_reduce(typed))).is_ok());
        let bad = AllReduceJob {
            datatypes: vec!["float".into(), "float8".into()],
            ..good.clone()
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.datatypes[1]"
        );
        let bad = AllReduceJob {
            ops: vec!["xor".into()],
            ..good.clone()
        };
        assert_eq!(
            field_of(job_spec(Some(&all_reduce(bad))).unwrap_err()),
            "spec.all_reduce.ops[0]"
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
            strategy: Strategy::Diloco.to_wire(),
            steps: 10,
            ..TrainJob::default()
        };
        assert!(job_spec(Some(&train(ok.clone()))).is_ok());
        let hier = TrainJob {
            strategy: Strategy::Hierarchical.to_wire(),
            compress_density: 0.1,
            ..ok.clone()
        };
        assert!(job_spec(Some(&train(hier))).is_ok());
        let cases = [
            (
                TrainJob {
                    strategy: 0,
                    ..ok.clone()
                },
                "spec.train.strategy: required (one of sync, sharded, diloco, hier, streaming, delayed)",
            ),
            (
                TrainJob {
                    strategy: 17,
                    ..ok.clone()
                },
                "spec.train.strategy: unknown value 17",
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
                    hidden_activation: 3,
                    ..ok.clone()
                },
                "spec.train.hidden_activation: unknown value 3",
            ),
            (
                TrainJob {
                    collective_algorithm: 17,
                    ..ok.clone()
                },
                "spec.train.collective_algorithm: unknown value 17",
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

    #[test]
    fn transformer_and_outer_strategy_fields_are_checked_by_name() {
        let train = |t: TrainJob| JobSpec {
            name: String::new(),
            kind: Some(job_spec::Kind::Train(t)),
            deadline_ms: 0,
        };
        let ok = TrainJob {
            strategy: Strategy::Streaming.to_wire(),
            steps: 100,
            model: "lm-small".into(),
            inner_steps: 40,
            fragments: 4,
            overlap_steps: 5,
            compress_density: 0.05,
            compress_bits: 2,
            accelerator: "h100".into(),
            warmup_steps: 10,
            lr_decay_steps: 100,
            min_lr_ratio: 0.1,
            grad_clip: 1.0,
            ..TrainJob::default()
        };
        assert!(job_spec(Some(&train(ok.clone()))).is_ok());
        let cases = [
            (
                TrainJob {
                    model: "gpt-5".into(),
                    ..ok.clone()
                },
                "spec.train.model",
            ),
            (
                TrainJob {
                    overlap_steps: 10,
                    ..ok.clone()
                },
                "spec.train.overlap_steps",
            ),
            (
                TrainJob {
                    fragments: 41,
                    ..ok.clone()
                },
                "spec.train.fragments",
            ),
            (
                TrainJob {
                    compress_bits: 3,
                    ..ok.clone()
                },
                "spec.train.compress_bits",
            ),
            (
                TrainJob {
                    compress_density: 1.5,
                    ..ok.clone()
                },
                "spec.train.compress_density",
            ),
            (
                TrainJob {
                    strategy: Strategy::Sync.to_wire(),
                    ..ok.clone()
                },
                "spec.train.compress_density",
            ),
            (
                TrainJob {
                    accelerator: "tpu9".into(),
                    ..ok.clone()
                },
                "spec.train.accelerator",
            ),
            (
                TrainJob {
                    lr_decay_steps: 5,
                    ..ok.clone()
                },
                "spec.train.lr_decay_steps",
            ),
            (
                TrainJob {
                    grad_clip: f32::NAN,
                    ..ok.clone()
                },
                "spec.train.grad_clip",
            ),
            (
                TrainJob {
                    dataset_samples: 2_000_000,
                    ..ok.clone()
                },
                "spec.train.dataset_samples",
            ),
            (
                TrainJob { strategy: -1, ..ok },
                "spec.train.strategy: unknown value -1",
            ),
        ];
        for (bad, field) in cases {
            let err = job_spec(Some(&train(bad))).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
