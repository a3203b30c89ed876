//! Job results as the proto messages of the contract (`JobResult` in `controller.proto`), and
//! back: a node's runners build their domain results ([`NodeSweepResult`],
//! [`NodeTrainResult`]) and send them as `AllReduceResult` / `TrainResult`; a client that
//! combines the ranks (the bench) reads the messages back into the domain types here, with
//! every narrowing conversion checked and named. Said once so producer and consumer cannot
//! drift apart.

use spacefabric_fabric::host_load::HostShare;
use spacefabric_fabric::transport::MeshStats;
use spacefabric_fabric::transport::config::LinkTuningReport;
use spacefabric_proto::v1::{
    AllReducePoint, AllReduceResult, AllReduceSweep, BytesAtStep, HostLoad, JobResult,
    LinkClassBytes, LinkTuning, MeshCounters, NodeResult, StateSourceKind, TrainLossPoint,
    TrainResult, TrainStateSource, TransportSettings, job_result,
};

use crate::collective::Algorithm;
use crate::collective::sweep::{SweepPoint, SweepSpec};
use crate::jobs::allreduce::{LinkSettings, NodeSweepResult, SweepTransportSettings};
use crate::jobs::train::{CurvePoint, NodeTrainResult};
use crate::train::StrategyKind;
use crate::train::recovery::StateSource;
use spacefabric_proto::wire_enum::WireEnum;

/// A result message a client cannot use: which field of which rank's result, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultMessageError {
    /// The result has no payload, or the payload of another job kind.
    #[error("rank {rank}: the result is {found}, expected {expected}")]
    Kind {
        /// The rank whose result it is (`NodeResult.rank`).
        rank: u32,
        /// The kind expected (`all_reduce`, `train`).
        expected: &'static str,
        /// What was there (`absent` or the other kind).
        found: &'static str,
    },
    /// A number does not fit the field it is read into on this machine.
    #[error("rank {rank}: {field} = {value} is out of range")]
    OutOfRange {
        /// The rank whose result it is.
        rank: u32,
        /// The field, as a path inside the message (e.g. `points[3].wrong`).
        field: String,
        /// The value sent.
        value: u64,
    },
    /// A required sub-message is absent.
    #[error("rank {rank}: {field} is missing")]
    Missing {
        /// The rank whose result it is.
        rank: u32,
        /// The absent field.
        field: &'static str,
    },
    /// An enum field (algorithm, strategy) is unset or holds a number this build does not
    /// know.
    #[error("rank {rank}: {field}: {source}")]
    Enum {
        /// The rank whose result it is.
        rank: u32,
        /// The field, as a path inside the message (e.g. `points[3].used_algorithm`).
        field: String,
        /// Why.
        source: spacefabric_proto::wire_enum::WireEnumError,
    },
    /// A measurement that must be a finite, non-negative number is not.
    #[error("rank {rank}: {field} = {value} is not a finite non-negative number")]
    NotFinite {
        /// The rank whose result it is.
        rank: u32,
        /// The field, as a path inside the message (e.g. `points[3].host.wall_s`).
        field: String,
        /// The value sent, as it reads.
        value: String,
    },
}

fn kind_name(kind: Option<&job_result::Kind>) -> &'static str {
    match kind {
        None => "absent",
        Some(job_result::Kind::AllReduce(_)) => "all_reduce",
        Some(job_result::Kind::Train(_)) => "train",
        Some(job_result::Kind::Ping(_)) => "ping",
    }
}

/// The payload `pick` takes out of a rank's result, or an error naming what was there.
fn payload<'a, T>(
    result: &'a NodeResult,
    expected: &'static str,
    pick: fn(&'a job_result::Kind) -> Option<&'a T>,
) -> Result<&'a T, ResultMessageError> {
    let kind = result.result.as_ref().and_then(|r| r.kind.as_ref());
    kind.and_then(pick).ok_or(ResultMessageError::Kind {
        rank: result.rank,
        expected,
        found: kind_name(kind),
    })
}

/// The all-reduce payload of a rank's result.
pub fn all_reduce_of(result: &NodeResult) -> Result<&AllReduceResult, ResultMessageError> {
    payload(result, "all_reduce", |k| match k {
        job_result::Kind::AllReduce(r) => Some(r),
        _ => None,
    })
}

/// The train payload of a rank's result.
pub fn train_of(result: &NodeResult) -> Result<&TrainResult, ResultMessageError> {
    payload(result, "train", |k| match k {
        job_result::Kind::Train(r) => Some(r),
        _ => None,
    })
}

/// `usize` → `u32` for a message field (saturating: a count beyond `u32::MAX` cannot occur in
/// a result a node builds, and a saturated value is refused when read back).
fn u32_of(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn u64_of(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Reads a message number into a `usize`, naming the field if it does not fit.
fn usize_of(rank: u32, field: impl Into<String>, v: u64) -> Result<usize, ResultMessageError> {
    usize::try_from(v).map_err(|_| ResultMessageError::OutOfRange {
        rank,
        field: field.into(),
        value: v,
    })
}

/// The mesh counters as a message.
pub fn mesh_counters(s: &MeshStats) -> MeshCounters {
    MeshCounters {
        connections: s.connections,
        connections_lost: s.connections_lost,
        resumed_transfers: s.resumed_transfers,
        resume_skipped_bytes: s.resume_skipped_bytes,
        payload_bytes_sent: s.payload_bytes_sent,
        payload_bytes_received: s.payload_bytes_received,
        transfers_delivered: s.transfers_delivered,
        duplicates_ignored: s.duplicates_ignored,
        protocol_errors: s.protocol_errors,
        contact_waits: s.contact_waits,
    }
}

/// The mesh counters from a message.
pub fn mesh_stats(c: &MeshCounters) -> MeshStats {
    MeshStats {
        connections: c.connections,
        connections_lost: c.connections_lost,
        resumed_transfers: c.resumed_transfers,
        resume_skipped_bytes: c.resume_skipped_bytes,
        payload_bytes_sent: c.payload_bytes_sent,
        payload_bytes_received: c.payload_bytes_received,
        transfers_delivered: c.transfers_delivered,
        duplicates_ignored: c.duplicates_ignored,
        protocol_errors: c.protocol_errors,
        contact_waits: c.contact_waits,
    }
}

fn link_tuning(l: &LinkSettings) -> LinkTuning {
    let t = &l.tuning;
    LinkTuning {
        from_rank: u32_of(l.from_rank),
        to_rank: u32_of(l.to_rank),
        rtt_ms: t.rtt_ms,
        initial_rtt_ms: t.initial_rtt_ms,
        send_rate_bps: t.send_rate_bps,
        send_bdp_bytes: t.send_bdp_bytes,
        recv_bdp_bytes: t.recv_bdp_bytes,
        stream_receive_window_bytes: t.stream_receive_window_bytes,
        receive_window_bytes: t.receive_window_bytes,
        send_window_bytes: t.send_window_bytes,
        cc_window_bytes: t.cc_window_bytes,
        cc: t.cc.clone(),
        idle_timeout_s: t.idle_timeout_s,
        mtu: u32::from(t.mtu),
    }
}

fn link_settings(rank: u32, i: usize, l: &LinkTuning) -> Result<LinkSettings, ResultMessageError> {
    let field = |name: &str| format!("transport_settings.per_link[{i}].{name}");
    Ok(LinkSettings {
        from_rank: usize_of(rank, field("from_rank"), u64::from(l.from_rank))?,
        to_rank: usize_of(rank, field("to_rank"), u64::from(l.to_rank))?,
        tuning: LinkTuningReport {
            rtt_ms: l.rtt_ms,
            initial_rtt_ms: l.initial_rtt_ms,
            send_rate_bps: l.send_rate_bps,
            send_bdp_bytes: l.send_bdp_bytes,
            recv_bdp_bytes: l.recv_bdp_bytes,
            stream_receive_window_bytes: l.stream_receive_window_bytes,
            receive_window_bytes: l.receive_window_bytes,
            send_window_bytes: l.send_window_bytes,
            cc_window_bytes: l.cc_window_bytes,
            cc: l.cc.clone(),
            idle_timeout_s: l.idle_timeout_s,
            mtu: u16::try_from(l.mtu).map_err(|_| ResultMessageError::OutOfRange {
                rank,
                field: field("mtu"),
                value: u64::from(l.mtu),
            })?,
        },
    })
}

/// The algorithm a result's wire field names (unset and unknown numbers are errors).
fn algorithm_of(rank: u32, field: String, value: i32) -> Result<Algorithm, ResultMessageError> {
    Algorithm::from_wire(value).map_err(|source| ResultMessageError::Enum {
        rank,
        field,
        source,
    })
}

fn point_message(p: &SweepPoint) -> AllReducePoint {
    AllReducePoint {
        index: u32_of(p.index),
        rank: u32_of(p.rank),
        requested_algorithm: p.algorithm.to_wire(),
        used_algorithm: p.used.to_wire(),
        bytes: p.bytes,
        count: u64_of(p.count),
        datatype: p.datatype.clone(),
        op: p.op.clone(),
        times_us: p.times_us.clone(),
        wrong: p.wrong.map(u64_of),
        in_place_times_us: p.in_place_times_us.clone(),
        in_place_wrong: p.in_place_wrong.map(u64_of),
        host: p.host.as_ref().map(host_message),
    }
}

fn host_message(h: &HostShare) -> HostLoad {
    HostLoad {
        wall_s: h.wall_s,
        cpu_util: h.cpu_util,
        cores: u32_of(h.cores),
        runq_wait_share: h.runq_wait_share,
        delay_line_datagrams: h.delay_line_datagrams,
        delay_line_mean_late_us: h.delay_line_mean_late_us,
        rcvbuf_drops: h.rcvbuf_drops,
    }
}

fn host_share(rank: u32, i: usize, h: &HostLoad) -> Result<HostShare, ResultMessageError> {
    let finite = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(ResultMessageError::NotFinite {
                rank,
                field: format!("points[{i}].host.{name}"),
                value: v.to_string(),
            })
        }
    };
    Ok(HostShare {
        wall_s: finite("wall_s", h.wall_s)?,
        cpu_util: h.cpu_util.map(|v| finite("cpu_util", v)).transpose()?,
        cores: usize_of(rank, format!("points[{i}].host.cores"), u64::from(h.cores))?,
        runq_wait_share: h
            .runq_wait_share
            .map(|v| finite("runq_wait_share", v))
            .transpose()?,
        delay_line_datagrams: h.delay_line_datagrams,
        delay_line_mean_late_us: finite("delay_line_mean_late_us", h.delay_line_mean_late_us)?,
        rcvbuf_drops: h.rcvbuf_drops,
    })
}

fn sweep_point(rank: u32, i: usize, p: &AllReducePoint) -> Result<SweepPoint, ResultMessageError> {
    let field = |name: &str| format!("points[{i}].{name}");
    let opt = |name: &str, v: Option<u64>| v.map(|v| usize_of(rank, field(name), v)).transpose();
    Ok(SweepPoint {
        index: usize_of(rank, field("index"), u64::from(p.index))?,
        rank: usize_of(rank, field("rank"), u64::from(p.rank))?,
        algorithm: algorithm_of(rank, field("requested_algorithm"), p.requested_algorithm)?,
        used: algorithm_of(rank, field("used_algorithm"), p.used_algorithm)?,
        bytes: p.bytes,
        count: usize_of(rank, field("count"), p.count)?,
        datatype: p.datatype.clone(),
        op: p.op.clone(),
        times_us: p.times_us.clone(),
        wrong: opt("wrong", p.wrong)?,
        in_place_times_us: p.in_place_times_us.clone(),
        in_place_wrong: opt("in_place_wrong", p.in_place_wrong)?,
        host: p
            .host
            .as_ref()
            .map(|h| host_share(rank, i, h))
            .transpose()?,
    })
}

impl NodeSweepResult {
    /// This rank's sweep as the contract's message.
    pub fn to_message(&self) -> AllReduceResult {
        let s = &self.spec;
        AllReduceResult {
            rank: u32_of(self.rank),
            world_size: u32_of(self.world_size),
            site: self.site.clone(),
            sites_by_rank: self.sites_by_rank.clone(),
            sweep: Some(AllReduceSweep {
                sizes: s.sizes.clone(),
                collective_algorithms: s.algorithms.iter().map(|a| a.to_wire()).collect(),
                iterations: u32_of(s.iterations),
                warmup: u32_of(s.warmup),
                check: s.check,
                seed: s.seed,
                datatypes: s.datatypes.clone(),
                ops: s.ops.clone(),
            }),
            points: self.points.iter().map(point_message).collect(),
            transport_counters: self.transport_counters.as_ref().map(mesh_counters),
            transport_settings: Some(TransportSettings {
                socket: self.transport_settings.socket.clone(),
                emulated: self.transport_settings.emulated,
                cc: self.transport_settings.cc.clone(),
                udp_payload_bytes: u32::from(self.transport_settings.udp_payload_bytes),
                per_link: self
                    .transport_settings
                    .per_link
                    .iter()
                    .map(link_tuning)
                    .collect(),
            }),
        }
    }

    /// A rank's sweep read back from its message (every narrowing checked).
    pub fn from_message(m: &AllReduceResult) -> Result<Self, ResultMessageError> {
        let rank = m.rank;
        let sweep = m.sweep.as_ref().ok_or(ResultMessageError::Missing {
            rank,
            field: "sweep",
        })?;
        let settings = m.transport_settings.clone().unwrap_or_default();
        Ok(Self {
            rank: usize_of(rank, "rank", u64::from(m.rank))?,
            world_size: usize_of(rank, "world_size", u64::from(m.world_size))?,
            site: m.site.clone(),
            sites_by_rank: m.sites_by_rank.clone(),
            spec: SweepSpec {
                sizes: sweep.sizes.clone(),
                algorithms: sweep
                    .collective_algorithms
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        algorithm_of(rank, format!("sweep.collective_algorithms[{i}]"), a)
                    })
                    .collect::<Result<_, _>>()?,
                iterations: usize_of(rank, "sweep.iterations", u64::from(sweep.iterations))?,
                warmup: usize_of(rank, "sweep.warmup", u64::from(sweep.warmup))?,
                check: sweep.check,
                seed: sweep.seed,
                datatypes: sweep.datatypes.clone(),
                ops: sweep.ops.clone(),
            },
            points: m
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| sweep_point(rank, i, p))
                .collect::<Result<_, _>>()?,
            transport_counters: m.transport_counters.as_ref().map(mesh_stats),
            transport_settings: SweepTransportSettings {
                socket: settings.socket,
                emulated: settings.emulated,
                cc: settings.cc,
                udp_payload_bytes: u16::try_from(settings.udp_payload_bytes).map_err(|_| {
                    ResultMessageError::OutOfRange {
                        rank,
                        field: "transport_settings.udp_payload_bytes".to_string(),
                        value: u64::from(settings.udp_payload_bytes),
                    }
                })?,
                per_link: settings
                    .per_link
                    .iter()
                    .enumerate()
                    .map(|(i, l)| link_settings(rank, i, l))
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    /// The result as a node sends it.
    pub fn to_job_result(&self) -> JobResult {
        JobResult {
            kind: Some(job_result::Kind::AllReduce(self.to_message())),
        }
    }
}

fn class_bytes(bytes: &[(String, u64)]) -> Vec<LinkClassBytes> {
    bytes
        .iter()
        .map(|(class, b)| LinkClassBytes {
            link_class: class.clone(),
            bytes: *b,
        })
        .collect()
}

fn bytes_pairs(bytes: &[LinkClassBytes]) -> Vec<(String, u64)> {
    bytes
        .iter()
        .map(|b| (b.link_class.clone(), b.bytes))
        .collect()
}

fn state_source_message(s: &StateSource) -> TrainStateSource {
    match s {
        StateSource::Fresh => TrainStateSource {
            kind: StateSourceKind::Fresh.into(),
            ..TrainStateSource::default()
        },
        StateSource::OwnCommit => TrainStateSource {
            kind: StateSourceKind::OwnCommit.into(),
            ..TrainStateSource::default()
        },
        StateSource::Peer { rank, site, bytes } => TrainStateSource {
            kind: StateSourceKind::Peer.into(),
            peer_rank: u32_of(*rank),
            peer_site: site.clone(),
            peer_bytes: *bytes,
        },
    }
}

fn state_source(
    rank: u32,
    s: Option<&TrainStateSource>,
) -> Result<StateSource, ResultMessageError> {
    let s = s.ok_or(ResultMessageError::Missing {
        rank,
        field: "state_source",
    })?;
    match StateSourceKind::try_from(s.kind) {
        Ok(StateSourceKind::Fresh) => Ok(StateSource::Fresh),
        Ok(StateSourceKind::OwnCommit) => Ok(StateSource::OwnCommit),
        Ok(StateSourceKind::Peer) => Ok(StateSource::Peer {
            rank: usize_of(rank, "state_source.peer_rank", u64::from(s.peer_rank))?,
            site: s.peer_site.clone(),
            bytes: s.peer_bytes,
        }),
        Ok(StateSourceKind::Unspecified) | Err(_) => Err(ResultMessageError::OutOfRange {
            rank,
            field: "state_source.kind".to_string(),
            value: u64::try_from(s.kind).unwrap_or(0),
        }),
    }
}

impl NodeTrainResult {
    /// This rank's attempt as the contract's message.
    pub fn to_message(&self) -> TrainResult {
        TrainResult {
            rank: u32_of(self.rank),
            world_size: u32_of(self.world_size),
            site: self.site.clone(),
            sites_by_rank: self.sites_by_rank.clone(),
            train_strategy: self.strategy.to_wire(),
            attempt: self.attempt,
            resumed_from_step: self.resumed_from_step,
            state_source: Some(state_source_message(&self.state_source)),
            startup_s: self.startup_s,
            steps: self.steps,
            syncs: self.syncs,
            parameters: u64_of(self.parameters),
            curve: self
                .curve
                .iter()
                .map(|p| TrainLossPoint {
                    step: p.step,
                    elapsed_s: p.elapsed_s,
                    loss: p.loss,
                    bytes: class_bytes(&p.bytes),
                })
                .collect(),
            final_loss: self.final_loss,
            real_compute_s: self.real_compute_s,
            declared_compute_s: self.declared_compute_s,
            comm_s: self.comm_s,
            eval_s: self.eval_s,
            wall_s: self.wall_s,
            bytes: class_bytes(&self.bytes),
            bytes_curve: self
                .bytes_curve
                .iter()
                .map(|(step, b)| BytesAtStep {
                    step: *step,
                    bytes: class_bytes(b),
                })
                .collect(),
        }
    }

    /// A rank's attempt read back from its message (every narrowing checked).
    pub fn from_message(m: &TrainResult) -> Result<Self, ResultMessageError> {
        let rank = m.rank;
        Ok(Self {
            rank: usize_of(rank, "rank", u64::from(m.rank))?,
            world_size: usize_of(rank, "world_size", u64::from(m.world_size))?,
            site: m.site.clone(),
            sites_by_rank: m.sites_by_rank.clone(),
            strategy: StrategyKind::from_wire(m.train_strategy).map_err(|source| {
                ResultMessageError::Enum {
                    rank,
                    field: "train_strategy".to_string(),
                    source,
                }
            })?,
            attempt: m.attempt,
            resumed_from_step: m.resumed_from_step,
            state_source: state_source(rank, m.state_source.as_ref())?,
            startup_s: m.startup_s,
            steps: m.steps,
            syncs: m.syncs,
            parameters: usize_of(rank, "parameters", m.parameters)?,
            curve: m
                .curve
                .iter()
                .map(|p| CurvePoint {
                    step: p.step,
                    elapsed_s: p.elapsed_s,
                    loss: p.loss,
                    bytes: bytes_pairs(&p.bytes),
                })
                .collect(),
            final_loss: m.final_loss,
            real_compute_s: m.real_compute_s,
            declared_compute_s: m.declared_compute_s,
            comm_s: m.comm_s,
            eval_s: m.eval_s,
            wall_s: m.wall_s,
            bytes: bytes_pairs(&m.bytes),
            bytes_curve: m
                .bytes_curve
                .iter()
                .map(|b| (b.step, bytes_pairs(&b.bytes)))
                .collect(),
        })
    }

    /// The result as a node sends it.
    pub fn to_job_result(&self) -> JobResult {
        JobResult {
            kind: Some(job_result::Kind::Train(self.to_message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep_result() -> NodeSweepResult {
        NodeSweepResult {
            rank: 1,
            world_size: 2,
            site: "moon".into(),
            sites_by_rank: vec!["earth".into(), "moon".into()],
            spec: SweepSpec {
                sizes: vec![4, 64],
                algorithms: vec![Algorithm::Ring],
                iterations: 3,
                warmup: 1,
                check: true,
                seed: 9,
                datatypes: vec!["half".into()],
                ops: vec!["max".into()],
            },
            points: vec![SweepPoint {
                index: 1,
                rank: 1,
                algorithm: Algorithm::Ring,
                used: Algorithm::Ring,
                bytes: 64,
                count: 32,
                datatype: "half".into(),
                op: "max".into(),
                times_us: vec![1.5, 2.5],
                wrong: Some(0),
                in_place_times_us: vec![3.0],
                in_place_wrong: None,
                host: Some(HostShare {
                    wall_s: 0.25,
                    cpu_util: Some(0.5),
                    cores: 2,
                    runq_wait_share: None,
                    delay_line_datagrams: 40,
                    delay_line_mean_late_us: 12.5,
                    rcvbuf_drops: Some(3),
                }),
            }],
            transport_counters: Some(MeshStats {
                connections: 1,
                payload_bytes_sent: 640,
                ..MeshStats::default()
            }),
            transport_settings: SweepTransportSettings {
                socket: "emulated".into(),
                emulated: true,
                cc: "cubic".into(),
                udp_payload_bytes: 1200,
                per_link: vec![LinkSettings {
                    from_rank: 1,
                    to_rank: 0,
                    tuning: LinkTuningReport {
                        rtt_ms: 2560.0,
                        initial_rtt_ms: 2560.0,
                        send_rate_bps: Some(1_000_000),
                        send_bdp_bytes: Some(320_000),
                        recv_bdp_bytes: None,
                        stream_receive_window_bytes: 1,
                        receive_window_bytes: 2,
                        send_window_bytes: 3,
                        cc_window_bytes: 4,
                        cc: "cubic".into(),
                        idle_timeout_s: 30.0,
                        mtu: 1200,
                    },
                }],
            },
        }
    }

    fn train_result(source: StateSource) -> NodeTrainResult {
        NodeTrainResult {
            rank: 3,
            world_size: 4,
            site: "south".into(),
            sites_by_rank: vec!["north".into(); 4],
            strategy: StrategyKind::Diloco,
            attempt: 3,
            resumed_from_step: 200,
            state_source: source,
            startup_s: 0.5,
            steps: 600,
            syncs: 6,
            parameters: 1234,
            curve: vec![CurvePoint {
                step: 300,
                elapsed_s: 1.0,
                loss: 0.25,
                bytes: vec![("intra".into(), 10)],
            }],
            final_loss: Some(0.125),
            real_compute_s: 1.0,
            declared_compute_s: 2.0,
            comm_s: 3.0,
            eval_s: 0.1,
            wall_s: 6.0,
            bytes: vec![("intra".into(), 10), ("earth-moon".into(), 20)],
            bytes_curve: vec![(300, vec![("intra".into(), 10)])],
        }
    }

    #[test]
    fn a_sweep_result_survives_its_message_and_the_wire() {
        use prost::Message;
        let r = sweep_result();
        let bytes = r.to_job_result().encode_to_vec();
        let decoded = JobResult::decode(bytes.as_slice()).unwrap();
        let node = NodeResult {
            rank: 1,
            result: Some(decoded),
            ..NodeResult::default()
        };
        let back = NodeSweepResult::from_message(all_reduce_of(&node).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(matches!(
            train_of(&node),
            Err(ResultMessageError::Kind {
                found: "all_reduce",
                ..
            })
        ));
    }

    #[test]
    fn a_train_result_survives_its_message_for_every_state_source() {
        for source in [
            StateSource::Fresh,
            StateSource::OwnCommit,
            StateSource::Peer {
                rank: 2,
                site: "south".into(),
                bytes: 4096,
            },
        ] {
            let r = train_result(source);
            let node = NodeResult {
                rank: 3,
                result: Some(r.to_job_result()),
                ..NodeResult::default()
            };
            let back = NodeTrainResult::from_message(train_of(&node).unwrap()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn unusable_messages_are_refused_naming_rank_and_field() {
        let absent = NodeResult {
            rank: 5,
            ..NodeResult::default()
        };
        let e = all_reduce_of(&absent).unwrap_err().to_string();
        assert_eq!(e, "rank 5: the result is absent, expected all_reduce");

        let mut m = sweep_result().to_message();
        m.transport_settings.as_mut().unwrap().per_link[0].mtu = 70_000;
        let e = NodeSweepResult::from_message(&m).unwrap_err().to_string();
        assert_eq!(
            e,
            "rank 1: transport_settings.per_link[0].mtu = 70000 is out of range"
        );

        let mut m = sweep_result().to_message();
        m.sweep = None;
        let e = NodeSweepResult::from_message(&m).unwrap_err().to_string();
        assert_eq!(e, "rank 1: sweep is missing");

        let mut m = sweep_result().to_message();
        m.points[0].host.as_mut().unwrap().delay_line_mean_late_us = f64::NAN;
        let e = NodeSweepResult::from_message(&m).unwrap_err().to_string();
        assert_eq!(
            e,
            "rank 1: points[0].host.delay_line_mean_late_us = NaN is not a finite non-negative number"
        );

        let mut t = train_result(StateSource::Fresh).to_message();
        t.state_source = Some(TrainStateSource::default());
        let e = NodeTrainResult::from_message(&t).unwrap_err().to_string();
        assert_eq!(e, "rank 3: state_source.kind = 0 is out of range");
    }
}
