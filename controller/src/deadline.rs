//! How long one attempt of a job may run before the controller fails it — pure: the spec, its
//! plan and the topology's light delays in, a duration out. A spec's own `deadline_ms` wins;
//! otherwise the default is a generous upper bound of the job's rounds over the plan's slowest
//! path, so a rank that never joins or never reports fails the job instead of stalling the
//! queue forever.
//!
//! The bound: a fixed allowance for the mesh, data and evaluation ([`SETUP_ALLOWANCE`]), plus,
//! per round of the job, `2 × world` message latencies over the longest round trip in the
//! plan, the bytes the rank moves at [`FLOOR_RATE_BYTES_PER_S`] (below the slowest link of the
//! shipped profiles, 20 Mbit/s), and for training a second of compute per step plus its
//! declared `step_time_ms`. Capped at [`MAX_DEADLINE`].

use std::time::Duration;

use spacefabric_proto::reduction::{DataTypeName, ReduceOpName};
use spacefabric_proto::v1::{JobPlan, JobSpec, job_spec};

use crate::topology::Topology;

/// Mesh setup, data generation, evaluation and reporting, once per attempt.
pub const SETUP_ALLOWANCE: Duration = Duration::from_secs(120);
/// Bytes per second a rank is assumed to move at least (8 Mbit/s).
pub const FLOOR_RATE_BYTES_PER_S: u64 = 1_000_000;
/// Compute allowance per training step.
pub const STEP_COMPUTE_ALLOWANCE_MS: u64 = 1_000;
/// Longest deadline, given or derived (30 days).
pub const MAX_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

fn sat(values: &[u64]) -> u64 {
    values.iter().fold(1u64, |p, v| p.saturating_mul(*v))
}

/// The deadline of an attempt of `spec` running on `plan`.
pub fn attempt_deadline(spec: &JobSpec, plan: &JobPlan, topology: &Topology) -> Duration {
    if spec.deadline_ms > 0 {
        return Duration::from_millis(spec.deadline_ms).min(MAX_DEADLINE);
    }
    default_deadline(spec, plan, topology)
}

/// The default deadline (see the module docs).
pub fn default_deadline(spec: &JobSpec, plan: &JobPlan, topology: &Topology) -> Duration {
    let max_one_way = plan
        .peers
        .iter()
        .flat_map(|a| plan.peers.iter().map(move |b| (a, b)))
        .map(|(a, b)| topology.one_way(&a.site, &b.site))
        .max()
        .unwrap_or_default();
    // Round trip plus a few milliseconds of host time per message.
    let rtt_ms = u64::try_from((max_one_way * 2).as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(5);
    let world = u64::from(plan.world_size.max(1));
    let latency_per_round = sat(&[2, world, rtt_ms]);
    let per_byte_ms = |bytes: u64| bytes.saturating_mul(1000) / FLOOR_RATE_BYTES_PER_S;
    let rounds_ms = match &spec.kind {
        Some(job_spec::Kind::Ping(p)) => {
            sat(&[u64::from(p.iterations), rtt_ms.saturating_add(1000)])
        }
        Some(job_spec::Kind::AllReduce(a)) => {
            let mut total = 0u64;
            let mut size = a.min_bytes.max(1);
            let factor = u64::from(a.factor.max(2));
            let rounds = u64::from(a.iterations)
                .saturating_add(u64::from(a.warmup))
                .saturating_add(1);
            let algorithms = (a.collective_algorithms.len() as u64).max(1);
            // Every (datatype, op) pair is a sweep of its own (`-d all -o all`: 50).
            let datatypes = DataTypeName::parse_list(&a.datatypes).map_or(1, |d| d.len() as u64);
            let ops = ReduceOpName::parse_list(&a.ops).map_or(1, |o| o.len() as u64);
            while size <= a.max_bytes {
                let one = latency_per_round.saturating_add(per_byte_ms(size.saturating_mul(2)));
                total = total.saturating_add(sat(&[one, rounds, algorithms, datatypes, ops]));
                let next = size.saturating_mul(factor);
                if next == size || next == u64::MAX {
                    break;
                }
                size = next;
            }
            total
        }
        Some(job_spec::Kind::Train(t)) => {
            let bytes_per_step = t.parameter_count().saturating_mul(4 * 2);
            let step = latency_per_round
                .saturating_add(per_byte_ms(bytes_per_step))
                .saturating_add(STEP_COMPUTE_ALLOWANCE_MS)
                .saturating_add(t.step_time_ms);
            sat(&[t.steps.max(1), step])
        }
        None => 0,
    };
    SETUP_ALLOWANCE
        .saturating_add(Duration::from_millis(rounds_ms))
        .min(MAX_DEADLINE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacefabric_proto::v1::{AllReduceJob, Peer, PingJob, TrainJob};

    fn topology() -> Topology {
        Topology::new("em", "", 1, vec!["earth".into(), "moon".into()], |a, b| {
            if a == b {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(1280)
            }
        })
    }

    fn plan(sites: &[&str]) -> JobPlan {
        JobPlan {
            world_size: sites.len() as u32,
            peers: sites
                .iter()
                .enumerate()
                .map(|(i, s)| Peer {
                    rank: i as u32,
                    site: (*s).into(),
                    ..Peer::default()
                })
                .collect(),
            ..JobPlan::default()
        }
    }

    fn ping(iterations: u32, deadline_ms: u64) -> JobSpec {
        JobSpec {
            name: String::new(),
            kind: Some(job_spec::Kind::Ping(PingJob { iterations })),
            deadline_ms,
        }
    }

    #[test]
    fn the_moon_gets_more_time_and_a_given_deadline_wins() {
        let t = topology();
        let earth = attempt_deadline(&ping(10, 0), &plan(&["earth", "earth"]), &t);
        let moon = attempt_deadline(&ping(10, 0), &plan(&["earth", "moon"]), &t);
        assert!(moon > earth + Duration::from_secs(20), "{earth:?} {moon:?}");
        assert_eq!(
            attempt_deadline(&ping(10, 1234), &plan(&["earth"]), &t),
            Duration::from_millis(1234)
        );
    }

    #[test]
    fn every_datatype_and_op_is_a_sweep_of_its_own() {
        let job = |datatypes: Vec<String>, ops: Vec<String>| JobSpec {
            name: String::new(),
            kind: Some(job_spec::Kind::AllReduce(AllReduceJob {
                min_bytes: 1024,
                max_bytes: 4096,
                factor: 4,
                iterations: 2,
                warmup: 1,
                collective_algorithms: vec![spacefabric_proto::v1::Algorithm::Ring as i32],
                check: true,
                datatypes,
                ops,
            })),
            deadline_ms: 0,
        };
        let p = plan(&["earth", "moon"]);
        let rounds = |spec: &JobSpec| attempt_deadline(spec, &p, &topology()) - SETUP_ALLOWANCE;
        let one = rounds(&job(Vec::new(), Vec::new()));
        let all = rounds(&job(vec!["all".into()], vec!["all".into()]));
        assert!(one > Duration::ZERO);
        assert_eq!(all, one * 50);
        assert_eq!(
            rounds(&job(vec!["half".into(), "int8".into()], Vec::new())),
            one * 2
        );
    }

    #[test]
    fn absurd_jobs_saturate_at_the_cap() {
        let spec = JobSpec {
            name: String::new(),
            kind: Some(job_spec::Kind::Train(TrainJob {
                steps: u64::MAX,
                step_time_ms: u64::MAX,
                ..TrainJob::default()
            })),
            deadline_ms: 0,
        };
        assert_eq!(
            attempt_deadline(&spec, &plan(&["earth", "moon"]), &topology()),
            MAX_DEADLINE
        );
    }
}
