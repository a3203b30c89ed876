//! The all-reduce job on a node: the controller's `AllReduceJob` run as one rank of an
//! nccl-tests-style sweep over the real QUIC fabric.
//!
//! From the [`JobContext`] the runner builds this node's mesh of the job (see
//! [`crate::jobs::job_mesh`]), wraps it in a [`Communicator`] with the profile's cost model and
//! runs [`run_sweep`]. Every measured point is reported as progress, and carries what the host
//! did to this process while it was measured (CPU, run-queue wait, the delay line's lateness:
//! `spacefabric_fabric::host_load`); the result is a [`NodeSweepResult`] sent as the
//! contract's `AllReduceResult`, from which a client combines all ranks (an iteration's time
//! is the slowest rank's, #wrong is summed, and a row is host-bound when any rank's host was).
//!
//! The mesh lives for one job attempt: it is closed when the sweep ends, fails or the job is
//! cancelled (abort, re-plan, agent shutdown), so the next job can bind the same port.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use spacefabric_fabric::host_load::{HostSample, HostShare, delay_line_stats};
use spacefabric_fabric::transport::config::LinkTuningReport;
use spacefabric_proto::v1::{AllReduceJob, job_spec};

use crate::agent::{JobContext, JobError, JobOutput, JobRunner, Progress};
use crate::collective::sweep::{SweepError, SweepPoint, SweepSpec, run_sweep};
use crate::collective::{Algorithm, CollectiveError, Communicator, CostModel, cost::CostError};
use crate::jobs::job_mesh::{
    FabricSettings, JobMeshError, JobPlacement, connect_mesh, scenario_time,
};
use spacefabric_fabric::transport::SocketKind;

/// Why an all-reduce job failed on this node.
#[derive(Debug, thiserror::Error)]
pub enum AllReduceError {
    /// The job's spec is not an all-reduce.
    #[error("all-reduce spec: not an all-reduce job")]
    NotAllReduce,
    /// The sweep's smallest size is above its largest.
    #[error("all-reduce spec: min_bytes {min} is larger than max_bytes {max}")]
    SizeRange {
        /// `min_bytes`.
        min: u64,
        /// `max_bytes`.
        max: u64,
    },
    /// An algorithm of the job is unset or unknown to this node.
    #[error("all-reduce spec: collective_algorithms[{index}]: {source}")]
    Algorithm {
        /// Its index in `collective_algorithms`.
        index: usize,
        /// Why.
        source: spacefabric_proto::wire_enum::WireEnumError,
    },
    /// The sweep's factor cannot step from the smallest size to the largest.
    #[error("all-reduce spec: factor must be at least 2 (got {factor})")]
    Factor {
        /// `factor`.
        factor: u64,
    },
    /// The job's mesh could not be built (plan, profile, identity, QUIC).
    #[error(transparent)]
    Fabric(#[from] JobMeshError),
    /// The cost model could not be built from the profile and placement.
    #[error("cost model: {0}")]
    Cost(#[from] CostError),
    /// The communicator refused the cost model.
    #[error("communicator: {0}")]
    Communicator(#[from] CollectiveError),
    /// The sweep failed (a collective, an algorithm name).
    #[error("sweep: {0}")]
    Sweep(#[from] SweepError),
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// What one rank reports for an all-reduce job (sent as the contract's `AllReduceResult`,
/// see [`crate::jobs::result_messages`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSweepResult {
    /// This node's rank in the job's plan.
    pub rank: usize,
    /// Ranks in the job.
    pub world_size: usize,
    /// This node's site.
    pub site: String,
    /// Every rank's site name, by rank (from the plan).
    pub sites_by_rank: Vec<String>,
    /// The spec that was run (sizes expanded).
    pub spec: SweepSpec,
    /// This rank's points, algorithm-major, in the order of `spec`.
    pub points: Vec<SweepPoint>,
    /// The mesh's transport counters after the sweep.
    pub transport_counters: Option<spacefabric_fabric::transport::MeshStats>,
    /// The mesh's transport settings.
    pub transport_settings: SweepTransportSettings,
}

/// How a node's mesh for a sweep was built (the `transport.per_rank[].settings` of the
/// bench's JSON file).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepTransportSettings {
    /// `emulated`, `passthrough` or `plain_udp`.
    pub socket: String,
    /// The socket applies the profile's links.
    pub emulated: bool,
    /// Congestion controller.
    pub cc: String,
    /// UDP payload size, bytes.
    pub udp_payload_bytes: u16,
    /// The quinn tuning towards every peer.
    pub per_link: Vec<LinkSettings>,
}

/// The quinn tuning of one directed link of a sweep's mesh.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkSettings {
    /// This node's rank.
    pub from_rank: usize,
    /// The peer's rank.
    pub to_rank: usize,
    /// The tuning towards the peer.
    pub tuning: LinkTuningReport,
}

/// Sizes of an nccl-tests sweep: `min`, `min·f`, ... up to `max`, each rounded down to
/// whole f32 (at least one).
pub fn sweep_sizes(min: u64, max: u64, factor: u64) -> Result<Vec<u64>, AllReduceError> {
    if min > max {
        return Err(AllReduceError::SizeRange { min, max });
    }
    if factor < 2 && min != max {
        return Err(AllReduceError::Factor { factor });
    }
    let mut out = Vec::new();
    let mut s = min.max(4);
    while s <= max {
        out.push(s / 4 * 4);
        if factor < 2 {
            break;
        }
        s = s.saturating_mul(factor);
    }
    Ok(out)
}

/// The sweep a job asks for (the checked iteration's inputs are seeded with `seed`).
pub fn sweep_spec(job: &AllReduceJob, seed: u64) -> Result<SweepSpec, AllReduceError> {
    Ok(SweepSpec {
        sizes: sweep_sizes(job.min_bytes, job.max_bytes, u64::from(job.factor))?,
        algorithms: job
            .collective_algorithms
            .iter()
            .enumerate()
            .map(|(index, &a)| {
                Algorithm::from_wire(a)
                    .map_err(|source| AllReduceError::Algorithm { index, source })
            })
            .collect::<Result<_, _>>()?,
        iterations: job.iterations as usize,
        warmup: job.warmup as usize,
        check: job.check,
        seed,
        datatypes: job.datatypes.clone(),
        ops: job.ops.clone(),
    })
}

/// Runs all-reduce jobs on this node's fabric address.
#[derive(Debug, Clone)]
pub struct AllReduceRunner {
    fabric: FabricSettings,
}

impl AllReduceRunner {
    /// A runner whose meshes are built as `fabric` says.
    pub fn new(fabric: FabricSettings) -> Self {
        Self { fabric }
    }

    async fn run_job(&self, ctx: &JobContext) -> Result<NodeSweepResult, AllReduceError> {
        let Some(job_spec::Kind::AllReduce(job)) = &ctx.spec.kind else {
            return Err(AllReduceError::NotAllReduce);
        };
        let spec = sweep_spec(job, ctx.scenario.seed)?;
        let scenario = &ctx.scenario;
        let placement = JobPlacement::from_job(ctx)?;
        let rank = placement.rank;
        let sites_by_rank = placement.sites_by_rank.clone();
        let cost = CostModel::from_profile(
            &placement.profile,
            placement.site_of_rank.clone(),
            scenario_time(scenario),
        )?;
        let config = placement.mesh_config(ctx, &self.fabric)?;
        let (socket, cc, udp_payload) = (config.socket, config.cc, config.udp_payload);
        let mesh = Arc::new(connect_mesh(ctx, config).await?);
        let comm = Communicator::new(Arc::clone(&mesh)).with_cost_model(cost)?;
        let total = (spec.sizes.len() * spec.algorithms.len()) as u64;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SweepPoint>();
        let control = ctx.control.clone();
        let reporter = tokio::spawn(async move {
            while let Some(point) = rx.recv().await {
                let mean = mean(&point.times_us);
                let mut metrics = HashMap::new();
                metrics.insert("time_us".to_string(), mean);
                metrics.insert("bytes".to_string(), point.bytes as f64);
                metrics.insert("wrong".to_string(), point.wrong.map_or(0.0, |w| w as f64));
                let step = point.index as u64 + 1;
                control
                    .report_progress(Progress {
                        step,
                        total_steps: total,
                        committed_step: 0,
                        message: format!("{} {} B: {mean:.1} us", point.algorithm, point.bytes),
                        metrics,
                    })
                    .await;
            }
        });
        // What the host does to this process around each point, reported with the point so
        // that whoever combines the ranks can say when the host, not the links, set a time.
        let ports: BTreeSet<u16> = mesh.local_addr().map(|a| a.port()).into_iter().collect();
        let sample = || {
            HostSample::now(
                delay_line_stats(mesh.emulated_socket().map(AsRef::as_ref)),
                &ports,
            )
        };
        let mut before = sample();
        let mut host_by_point = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let swept = run_sweep(&comm, &spec, |point| {
            let now = sample();
            host_by_point.push(HostShare::between(&before, &now));
            before = now;
            // The reporter only stops after the sender is dropped.
            let _ = tx.send(point.clone());
        })
        .await;
        let swept = swept.map(|mut points| {
            for (point, host) in points.iter_mut().zip(host_by_point) {
                point.host = Some(host);
            }
            points
        });
        drop(tx);
        // Deliver the last progress reports before the result.
        let _ = reporter.await;
        let transport_counters = mesh.stats();
        let per_link: Vec<LinkSettings> = (0..mesh.world_size())
            .filter_map(|to| {
                mesh.tuning(to).map(|t| LinkSettings {
                    from_rank: rank,
                    to_rank: to,
                    tuning: t.report(),
                })
            })
            .collect();
        let transport_settings = SweepTransportSettings {
            socket: match socket {
                SocketKind::Emulated => "emulated",
                SocketKind::Passthrough => "passthrough",
                SocketKind::PlainUdp => "plain_udp",
            }
            .to_string(),
            emulated: socket == SocketKind::Emulated,
            cc: cc.as_str().to_string(),
            udp_payload_bytes: udp_payload,
            per_link,
        };
        drop(comm);
        if let Ok(mesh) = Arc::try_unwrap(mesh) {
            mesh.close().await;
        }
        Ok(NodeSweepResult {
            rank,
            world_size: sites_by_rank.len(),
            site: scenario.site.clone(),
            sites_by_rank,
            spec,
            points: swept?,
            transport_counters: Some(transport_counters),
            transport_settings,
        })
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

impl JobRunner for AllReduceRunner {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let runner = self.clone();
        Box::pin(async move {
            let outcome = tokio::select! {
                r = runner.run_job(&ctx) => r,
                () = ctx.cancel.cancelled() => Err(AllReduceError::Cancelled),
            };
            let result = outcome.map_err(|e| {
                tracing::warn!(job_id = %ctx.job_id, rank = ctx.rank, error = %e, "all-reduce job failed");
                JobError::from(e)
            })?;
            let wrong: usize = result.points.iter().filter_map(|p| p.wrong).sum();
            let mut metrics = HashMap::new();
            metrics.insert("points".to_string(), result.points.len() as f64);
            metrics.insert("wrong".to_string(), wrong as f64);
            Ok(JobOutput {
                result: Some(result.to_job_result()),
                metrics,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_job() {
        assert_eq!(
            sweep_sizes(1024, 65536, 4).ok(),
            Some(vec![1024, 4096, 16384, 65536])
        );
        assert_eq!(sweep_sizes(6, 6, 0).ok(), Some(vec![4]));
        assert!(sweep_sizes(2048, 1024, 2).is_err());
        assert!(sweep_sizes(1024, 2048, 1).is_err());
    }
}
