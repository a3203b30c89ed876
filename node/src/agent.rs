//! The node's side of the controller protocol: register (join token, site, advertise address,
//! a CSR for the node's QUIC identity), heartbeat, follow the control stream (plan changes,
//! job start and abort), run jobs, report progress and results, leave cleanly on shutdown.
//!
//! The agent survives a controller restart: when its control stream ends or a call finds the
//! controller gone, it registers again under the same name (the controller hands out the same
//! identity) and resubscribes; running jobs keep running and report to the new controller.
//!
//! Jobs are dispatched by kind to a [`JobRunner`]. The agent brings one: [`PingRunner`], a
//! control-plane round-trip probe (every RTT includes the light delay between the node's site
//! and the controller's). All-reduce and training runners plug in with [`Agent::with_runner`];
//! a job of a kind without a runner fails with a result saying so.
//!
//! Time dilation: the controller hands out the cluster's K at registration (a node started
//! with another explicit K is refused, [`Agent::with_time_dilation`]); the agent then waits K
//! times longer on the wall clock for everything the controller specifies in emulated time
//! (the heartbeat interval), divides every wall span it measures by K before reporting it
//! (heartbeat and ping round trips), and gives the jobs K in [`Scenario::time_dilation`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use spacefabric_client::ConnectOptions;
use spacefabric_proto::job_cost::{NodeBudget, OverBudget, job_cost};
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::controller_client::ControllerClient;
use spacefabric_proto::v1::{
    ControlEvent, DeregisterRequest, HeartbeatRequest, JobPlan, JobResult, JobSpec, JobStart, Peer,
    PingResult, ProgressReport, RegisterRequest, RegisterResponse, ResultReport,
    WatchControlRequest, control_event, job_result, job_spec,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument;

/// Largest controller message the agent decodes (the profile text rides in Register).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--join-token` was not given.
    #[error("--join-token (SPACEFABRIC_JOIN_TOKEN) is required")]
    MissingJoinToken,
    /// `--node-name` was not given and the host has no name.
    #[error("--node-name: no host name found; give one")]
    NoHostName,
    /// `--site-by-ordinal` has a part that is not `SITE=FIRST-LAST`.
    #[error("--site-by-ordinal: '{part}' is not SITE=FIRST-LAST (e.g. earth=0-3,moon=4-7)")]
    SiteByOrdinal {
        /// The bad part of the spec.
        part: String,
    },
    /// `--site-by-ordinal` is given but the node name ends in no number.
    #[error("--site-by-ordinal: node name '{name}' ends in no ordinal")]
    NoOrdinal {
        /// The node name.
        name: String,
    },
    /// No range of `--site-by-ordinal` holds the node's ordinal.
    #[error("--site-by-ordinal {spec}: no range holds ordinal {ordinal} of '{name}'")]
    OrdinalOutsideRanges {
        /// The flag's value.
        spec: String,
        /// The node name's trailing number.
        ordinal: u64,
        /// The node name.
        name: String,
    },
    /// `--advertise` is needed: `--listen` is a wildcard address peers cannot dial.
    #[error("--advertise is required when --listen is {listen} (peers cannot reach 0.0.0.0)")]
    AdvertiseRequired {
        /// The `--listen` address.
        listen: SocketAddr,
    },
    /// `--advertise` is a wildcard address or port 0.
    #[error("--advertise {addr}: give an address peers can reach (not 0.0.0.0, not port 0)")]
    UnreachableAdvertise {
        /// The address given.
        addr: SocketAddr,
    },
    /// The controller's `RegisterResponse.time_dilation` is not a valid K.
    #[error("the controller's RegisterResponse.time_dilation: {0}")]
    ControllerDilation(spacefabric_proto::time_dilation::BadTimeDilation),
    /// This node's `--time-dilation` is not the controller's.
    #[error(transparent)]
    DilationMismatch(#[from] spacefabric_proto::time_dilation::TimeDilationMismatch),
    /// The controller refused the node for good (wrong token, invalid field).
    #[error("the controller refused the registration: {}: {}", .0.code(), .0.message())]
    Refused(Status),
    /// Generating the node's key failed.
    #[error("node identity: {0}")]
    Key(rcgen::Error),
    /// The node name cannot be a certificate name, or the CSR could not be built.
    #[error("node identity: name '{name}': {source}")]
    Csr {
        /// The node name.
        name: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// The controller URL, its CA or the CA env variable is wrong.
    #[error(transparent)]
    Client(#[from] spacefabric_client::ClientError),
}

/// What the agent needs to know.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Controller URL (`http://host:7400`, or `https://` with `controller_ca_pem`).
    pub controller: String,
    /// The cluster's join token.
    pub join_token: String,
    /// Node name: the identity key (same name → same node id).
    pub name: String,
    /// Preferred site (`None`: the controller picks).
    pub site: Option<String>,
    /// Where peers reach this node's QUIC endpoint.
    pub advertise: SocketAddr,
    /// Where this node's /metrics is (informational).
    pub metrics_addr: Option<String>,
    /// CA certificate (PEM) to trust for an https controller.
    pub controller_ca_pem: Option<String>,
    /// Pause between retries when the controller is unreachable (default 500 ms).
    pub retry_interval: Duration,
    /// Where the node keeps state across jobs (train commits); see `--state-dir`.
    pub state_dir: PathBuf,
}

/// What the agent knows now (watch it with [`Agent::status`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentStatus {
    /// Node id from the controller (after the first registration).
    pub node_id: Option<String>,
    /// Site assigned by the controller.
    pub site: String,
    /// Rank in the current plan.
    pub rank: Option<u32>,
    /// Version of the plan the node follows.
    pub plan_version: u64,
    /// Ranks in the plan.
    pub world_size: usize,
    /// Successful registrations (1 + re-attaches).
    pub registrations: u64,
    /// Jobs this node finished (any outcome).
    pub jobs_finished: u64,
    /// Last control-plane round trip measured by a heartbeat (emulated time).
    pub last_heartbeat_rtt: Option<Duration>,
    /// The cluster's time dilation K (from the last registration).
    pub time_dilation: TimeDilation,
}

/// The node's TLS identity for the QUIC fabric, issued by the cluster CA at registration.
#[derive(Clone, Default)]
pub struct AgentIdentity {
    /// Private key, PEM (generated on the node; never sent).
    pub key_pem: String,
    /// Certificate signed by the cluster CA, PEM.
    pub cert_pem: String,
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("cert_pem", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// The scenario as registration told it.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Node id.
    pub node_id: String,
    /// This node's site.
    pub site: String,
    /// The controller's site.
    pub controller_site: String,
    /// Profile as TOML text (parse with `netem_profiles::Profile::parse`).
    pub profile_toml: String,
    /// Profile name.
    pub profile_name: String,
    /// Scenario seed.
    pub seed: u64,
    /// Scenario epoch, unix ms.
    pub epoch_unix_ms: u64,
    /// The cluster's time dilation K: the scenario clock runs K times slower than the wall
    /// clock, and every time a job reports is emulated time.
    pub time_dilation: TimeDilation,
    /// TLS identity for the fabric.
    pub identity: AgentIdentity,
}

/// Kinds of jobs, for dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// `AllReduceJob`.
    AllReduce,
    /// `TrainJob`.
    Train,
    /// `PingJob`.
    Ping,
}

impl JobKind {
    /// The kind of a spec.
    pub fn of(spec: &JobSpec) -> Option<Self> {
        match spec.kind.as_ref()? {
            job_spec::Kind::AllReduce(_) => Some(Self::AllReduce),
            job_spec::Kind::Train(_) => Some(Self::Train),
            job_spec::Kind::Ping(_) => Some(Self::Ping),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllReduce => "all_reduce",
            Self::Train => "train",
            Self::Ping => "ping",
        }
    }
}

/// The controller, as a job sees it: progress reports and round-trip probes for one attempt.
#[derive(Debug, Clone)]
pub struct ControlLink {
    client: ControllerClient<Channel>,
    join_token: String,
    node_id: String,
    job_id: String,
    attempt: u32,
    dilation: TimeDilation,
}

/// A progress report.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub total_steps: u64,
    /// Last step whose state is committed (a restart resumes from the lowest over all ranks).
    pub committed_step: u64,
    /// Free text.
    pub message: String,
    /// Named numbers (loss, busbw, ...).
    pub metrics: HashMap<String, f64>,
}

impl ControlLink {
    /// Reports progress (best effort: an unreachable controller is logged, not fatal).
    pub async fn report_progress(&self, progress: Progress) {
        let mut client = self.client.clone();
        let request = ProgressReport {
            join_token: self.join_token.clone(),
            node_id: self.node_id.clone(),
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            step: progress.step,
            total_steps: progress.total_steps,
            committed_step: progress.committed_step,
            message: progress.message,
            metrics: progress.metrics,
        };
        if let Err(status) = client.report_progress(request).await {
            tracing::debug!(job_id = %self.job_id, %status, "progress report not delivered");
        }
    }

    /// One control-plane round trip (a heartbeat), timed in emulated time.
    pub async fn ping(&self) -> Result<Duration, Status> {
        let mut client = self.client.clone();
        let start = Instant::now();
        client
            .heartbeat(HeartbeatRequest {
                join_token: self.join_token.clone(),
                node_id: self.node_id.clone(),
                sent_unix_ms: unix_ms(),
            })
            .await?;
        Ok(self.dilation.emulated(start.elapsed()))
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }
}

/// Everything a job runner gets.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Job id.
    pub job_id: String,
    /// Attempt number (bumped on every re-plan).
    pub attempt: u32,
    /// What to run.
    pub spec: JobSpec,
    /// The controller's plan for it (ranks, sites, shards, algorithms).
    pub plan: JobPlan,
    /// This node's rank in `plan`.
    pub rank: u32,
    /// Resume from this step (0 = from scratch).
    pub resume_from_step: u64,
    /// Profile, seed, epoch, identity.
    pub scenario: Scenario,
    /// Progress reports and probes.
    pub control: ControlLink,
    /// Cancelled when the job is aborted or the agent stops.
    pub cancel: CancellationToken,
}

/// A job's result on this node.
#[derive(Debug, Clone, Default)]
pub struct JobOutput {
    /// The kind-specific result (the contract's `JobResult`).
    pub result: Option<JobResult>,
    /// Named numbers for the summary.
    pub metrics: HashMap<String, f64>,
}

/// Why a job failed on this node: the agent's reason for not running it, or the runner's own
/// typed error. Its text is the `error` of the job's result report.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A runner got a spec of another kind.
    #[error("not a {expected} job")]
    WrongKind {
        /// The kind the runner runs (`ping`, `all-reduce`, `train`).
        expected: &'static str,
    },
    /// This node build has no runner for the job's kind.
    #[error("no runner for job kind {kind} in this node build")]
    NoRunner {
        /// The job's kind (`(none)` for a spec without one).
        kind: &'static str,
    },
    /// The job does not fit this node's budget (checked before the runner allocates).
    #[error("refused by node {node}: {}: {source}", source.fields())]
    OverBudget {
        /// This node's name.
        node: String,
        /// What it would cost, and the spec fields to change.
        source: OverBudget,
    },
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A ping round trip failed for good.
    #[error("ping: {0}")]
    Ping(Status),
    /// The all-reduce runner failed.
    #[error(transparent)]
    AllReduce(#[from] crate::jobs::AllReduceError),
    /// The train runner failed.
    #[error(transparent)]
    Train(#[from] crate::jobs::TrainJobError),
}

/// Runs one kind of job. Implementations must return promptly once `ctx.cancel` fires.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs the job described by `ctx` to completion on this node.
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>>;
}

/// The control-plane round-trip probe: `iterations` timed heartbeats, resumable.
#[derive(Debug, Clone, Copy, Default)]
pub struct PingRunner;

impl JobRunner for PingRunner {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        Box::pin(async move {
            let iterations = match &ctx.spec.kind {
                Some(job_spec::Kind::Ping(p)) => u64::from(p.iterations),
                _ => return Err(JobError::WrongKind { expected: "ping" }),
            };
            let mut rtts_ms = Vec::new();
            let mut step = ctx.resume_from_step.min(iterations);
            while step < iterations {
                let rtt = tokio::select! {
                    r = ctx.control.ping() => r,
                    () = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
                };
                match rtt {
                    Ok(rtt) => {
                        step += 1;
                        let ms = rtt.as_secs_f64() * 1e3;
                        rtts_ms.push(ms);
                        let mut metrics = HashMap::new();
                        metrics.insert("rtt_ms".to_string(), ms);
                        ctx.control
                            .report_progress(Progress {
                                step,
                                total_steps: iterations,
                                committed_step: step,
                                message: format!("rtt {ms:.1} ms"),
                                metrics,
                            })
                            .await;
                    }
                    Err(status)
                        if matches!(
                            status.code(),
                            Code::Unavailable | Code::Unknown | Code::Cancelled
                        ) =>
                    {
                        // The controller is away (restarting; a request in flight when its
                        // connection closed comes back as Cancelled): try again shortly.
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                            () = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
                        }
                    }
                    Err(status) => return Err(JobError::Ping(status)),
                }
            }
            let mut sorted = rtts_ms.clone();
            sorted.sort_by(f64::total_cmp);
            let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
            let max = sorted.last().copied().unwrap_or(0.0);
            let mut metrics = HashMap::new();
            metrics.insert("rtt_p50_ms".to_string(), p50);
            metrics.insert("rtt_max_ms".to_string(), max);
            let result = PingResult {
                rank: ctx.rank,
                site: ctx.scenario.site.clone(),
                controller_site: ctx.scenario.controller_site.clone(),
                resumed_from_step: ctx.resume_from_step,
                rtt_ms: rtts_ms,
                rtt_p50_ms: p50,
                rtt_max_ms: max,
            };
            Ok(JobOutput {
                result: Some(JobResult {
                    kind: Some(job_result::Kind::Ping(result)),
                }),
                metrics,
            })
        })
    }
}

struct RunningJob {
    attempt: u32,
    cancel: CancellationToken,
    /// Set once this attempt's result was delivered: (order of finishing, the report). A
    /// controller restarted from a state that predates the report starts the attempt again;
    /// the node then sends the report again instead of running the job twice (the second run
    /// would hold the node's fabric port while its peers have moved on).
    finished: Option<(u64, ResultReport)>,
}

/// Finished attempts remembered per node, to answer a repeated start with their report.
const REMEMBERED_FINISHED_JOBS: usize = 16;

/// The node agent.
pub struct Agent {
    config: AgentConfig,
    runners: HashMap<JobKind, Arc<dyn JobRunner>>,
    status: watch::Sender<AgentStatus>,
    budget: NodeBudget,
    time_dilation: Option<TimeDilation>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Errors after which registering again cannot help.
fn is_fatal(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied
    )
}

/// The controller refused a report for what it holds (too large, invalid): sending the same
/// report again cannot help.
fn is_refusal(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument | Code::PermissionDenied
    )
}

/// The controller no longer knows us as a member: register again.
fn needs_register(status: &Status) -> bool {
    matches!(status.code(), Code::NotFound | Code::FailedPrecondition)
}

enum SessionEnd {
    Shutdown,
    Reconnect(String),
}

/// A node key and a CSR naming `name` (PEM): the controller signs it into the node's
/// certificate for the fabric's mutual TLS.
pub fn node_key_and_csr(name: &str) -> Result<(String, String), AgentError> {
    let key = rcgen::KeyPair::generate().map_err(AgentError::Key)?;
    let csr_error = |source| AgentError::Csr {
        name: name.to_string(),
        source,
    };
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(csr_error)?;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(csr_error)?;
    Ok((key.serialize_pem(), csr))
}

impl Agent {
    /// An agent with the built-in ping runner.
    pub fn new(config: AgentConfig) -> Self {
        let mut runners: HashMap<JobKind, Arc<dyn JobRunner>> = HashMap::new();
        runners.insert(JobKind::Ping, Arc::new(PingRunner));
        Self {
            config,
            runners,
            status: watch::channel(AgentStatus::default()).0,
            budget: NodeBudget::default(),
            time_dilation: None,
        }
    }

    /// The time dilation K this node was started with (`--time-dilation`); `None` (the
    /// default) takes the controller's. A controller running another K refuses the node
    /// (FAILED_PRECONDITION naming both), and [`Agent::run`] returns that refusal.
    pub fn with_time_dilation(mut self, dilation: Option<TimeDilation>) -> Self {
        self.time_dilation = dilation;
        self
    }

    /// What a job may cost this node (default [`NodeBudget::default`]); a job above it fails
    /// with a result naming the spec fields, before anything is allocated.
    pub fn with_budget(mut self, budget: NodeBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Plugs in the runner for a job kind (replacing any before it).
    pub fn with_runner(mut self, kind: JobKind, runner: Arc<dyn JobRunner>) -> Self {
        self.runners.insert(kind, runner);
        self
    }

    /// Follows the agent's status.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.subscribe()
    }

    fn channel(&self) -> Result<Channel, AgentError> {
        let options = ConnectOptions::new(
            &self.config.controller,
            self.config.controller_ca_pem.clone(),
        )
        .ca_flag("--controller-ca")
        .keep_alive(Duration::from_secs(10));
        Ok(spacefabric_client::endpoint(&options)?.connect_lazy())
    }

    /// Runs until `shutdown` resolves (then deregisters) or the controller refuses the node.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
        if self.config.advertise.ip().is_unspecified() || self.config.advertise.port() == 0 {
            return Err(AgentError::UnreachableAdvertise {
                addr: self.config.advertise,
            });
        }
        let client =
            ControllerClient::new(self.channel()?).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (key_pem, csr_pem) = node_key_and_csr(&self.config.name)?;
        let jobs: Arc<Mutex<HashMap<String, RunningJob>>> = Arc::new(Mutex::new(HashMap::new()));
        let stop_all = CancellationToken::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let result = loop {
            let registration = tokio::select! {
                r = self.register(&client, &csr_pem) => r,
                () = &mut shutdown => break Ok(None),
            };
            let reg = match registration {
                Ok(reg) => reg,
                Err(e) => break Err(e),
            };
            let time_dilation = match self.dilation_of(&reg) {
                Ok(k) => k,
                Err(e) => break Err(e),
            };
            let scenario = Scenario {
                node_id: reg.node_id.clone(),
                site: reg.site.clone(),
                controller_site: reg.controller_site.clone(),
                profile_toml: reg.profile_toml.clone(),
                profile_name: reg.profile_name.clone(),
                seed: reg.seed,
                epoch_unix_ms: reg.scenario_epoch_unix_ms,
                time_dilation,
                identity: AgentIdentity {
                    key_pem: key_pem.clone(),
                    cert_pem: reg.certificate_pem.clone(),
                    ca_pem: reg.ca_certificate_pem.clone(),
                },
            };
            let span = tracing::info_span!("node", name = %self.config.name, rank = reg.rank, site = %reg.site);
            let end = self
                .session(&client, &reg, &scenario, &jobs, &stop_all, &mut shutdown)
                .instrument(span)
                .await;
            match end {
                SessionEnd::Shutdown => break Ok(Some(reg.node_id)),
                SessionEnd::Reconnect(why) => {
                    tracing::info!(node = %self.config.name, reason = %why, "reconnecting to the controller");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.retry_interval) => {}
                        () = &mut shutdown => break Ok(Some(reg.node_id)),
                    }
                }
            }
        };
        stop_all.cancel();
        let node_id = result?;
        if let Some(node_id) = node_id {
            let mut client = client.clone();
            let request = DeregisterRequest {
                join_token: self.config.join_token.clone(),
                node_id: node_id.clone(),
            };
            // The answer takes a light round trip from the Moon (K times longer when dilated):
            // allow for it.
            let patience = self
                .status
                .borrow()
                .time_dilation
                .wall(Duration::from_secs(10));
            match tokio::time::timeout(patience, client.deregister(request)).await {
                Ok(Ok(_)) => tracing::info!(node = %self.config.name, %node_id, "left the cluster"),
                Ok(Err(status)) => tracing::warn!(%status, "deregister failed"),
                Err(_) => tracing::warn!("deregister timed out"),
            }
        }
        Ok(())
    }

    async fn register(
        &self,
        client: &ControllerClient<Channel>,
        csr_pem: &str,
    ) -> Result<RegisterResponse, AgentError> {
        let request = RegisterRequest {
            join_token: self.config.join_token.clone(),
            node_name: self.config.name.clone(),
            preferred_site: self.config.site.clone().unwrap_or_default(),
            advertise_addr: self.config.advertise.to_string(),
            csr_pem: csr_pem.to_string(),
            metrics_addr: self.config.metrics_addr.clone().unwrap_or_default(),
            time_dilation: self.time_dilation.map_or(0, TimeDilation::get),
        };
        let mut attempts = 0u64;
        loop {
            let mut client = client.clone();
            match client.register(request.clone()).await {
                Ok(response) => {
                    let reg = response.into_inner();
                    metrics::counter!("spacefabric_node_registrations_total").increment(1);
                    tracing::info!(
                        node = %self.config.name, node_id = %reg.node_id, rank = reg.rank,
                        site = %reg.site, world = reg.peers.len(), plan_version = reg.plan_version,
                        seed = reg.seed, profile = %reg.profile_name, "registered"
                    );
                    self.status.send_modify(|s| {
                        s.node_id = Some(reg.node_id.clone());
                        s.site = reg.site.clone();
                        s.rank = Some(reg.rank);
                        s.plan_version = reg.plan_version;
                        s.world_size = reg.peers.len();
                        s.registrations += 1;
                    });
                    return Ok(reg);
                }
                // FAILED_PRECONDITION at registration: our --time-dilation is not the cluster's.
                Err(status) if is_fatal(&status) || status.code() == Code::FailedPrecondition => {
                    return Err(AgentError::Refused(status));
                }
                Err(status) => {
                    attempts += 1;
                    if attempts == 1 || attempts.is_multiple_of(20) {
                        tracing::warn!(controller = %self.config.controller, %status, attempts, "cannot register yet; retrying");
                    }
                    tokio::time::sleep(self.config.retry_interval).await;
                }
            }
        }
    }

    /// The K the controller handed out, checked against ours (the controller refuses a node
    /// with another K; this catches a controller that does not know the field).
    fn dilation_of(&self, reg: &RegisterResponse) -> Result<TimeDilation, AgentError> {
        let controller =
            TimeDilation::from_wire(reg.time_dilation).map_err(AgentError::ControllerDilation)?;
        let k = TimeDilation::agree(self.time_dilation, controller)?;
        self.status.send_modify(|s| s.time_dilation = k);
        if k.is_dilated() {
            tracing::info!(
                time_dilation = k.get(),
                "time dilated: the emulated clock runs K times slower than the wall clock"
            );
        }
        Ok(k)
    }

    async fn session(
        &self,
        client: &ControllerClient<Channel>,
        reg: &RegisterResponse,
        scenario: &Scenario,
        jobs: &Arc<Mutex<HashMap<String, RunningJob>>>,
        stop_all: &CancellationToken,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> SessionEnd {
        let node_id = reg.node_id.clone();
        let mut stream = {
            let mut client = client.clone();
            let request = WatchControlRequest {
                join_token: self.config.join_token.clone(),
                node_id: node_id.clone(),
            };
            let opened = tokio::select! {
                r = client.watch_control(request) => r,
                () = shutdown.as_mut() => return SessionEnd::Shutdown,
            };
            match opened {
                Ok(response) => response.into_inner(),
                Err(status) => return SessionEnd::Reconnect(format!("watch: {status}")),
            }
        };
        // The interval is emulated time: K times longer on the wall clock.
        let dilation = scenario.time_dilation;
        let interval_ms = u64::from(reg.heartbeat_interval_ms.max(10));
        let mut ticker = tokio::time::interval(dilation.wall(Duration::from_millis(interval_ms)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (hb_tx, mut hb_rx) = tokio::sync::mpsc::channel::<Result<Duration, Status>>(4);
        loop {
            tokio::select! {
                () = shutdown.as_mut() => return SessionEnd::Shutdown,
                _ = ticker.tick() => {
                    // Heartbeats run concurrently: a Moon round trip (2.56 s) is longer than the interval.
                    let mut client = client.clone();
                    let request = HeartbeatRequest {
                        join_token: self.config.join_token.clone(),
                        node_id: node_id.clone(),
                        sent_unix_ms: unix_ms(),
                    };
                    let tx = hb_tx.clone();
                    tokio::spawn(async move {
                        let start = Instant::now();
                        let r = client
                            .heartbeat(request)
                            .await
                            .map(|_| dilation.emulated(start.elapsed()));
                        let _ = tx.try_send(r);
                    });
                }
                Some(result) = hb_rx.recv() => match result {
                    Ok(rtt) => {
                        metrics::histogram!("spacefabric_node_heartbeat_rtt_seconds").record(rtt.as_secs_f64());
                        self.status.send_modify(|s| s.last_heartbeat_rtt = Some(rtt));
                    }
                    Err(status) if needs_register(&status) => {
                        return SessionEnd::Reconnect(format!("heartbeat: {status}"));
                    }
                    Err(status) => tracing::debug!(%status, "heartbeat failed"),
                },
                event = stream.message() => match event {
                    Ok(Some(event)) => self.on_event(event, client, scenario, jobs, stop_all),
                    Ok(None) => return SessionEnd::Reconnect("control stream ended".into()),
                    Err(status) => return SessionEnd::Reconnect(format!("control stream: {status}")),
                },
            }
        }
    }

    fn on_event(
        &self,
        event: ControlEvent,
        client: &ControllerClient<Channel>,
        scenario: &Scenario,
        jobs: &Arc<Mutex<HashMap<String, RunningJob>>>,
        stop_all: &CancellationToken,
    ) {
        match event.event {
            Some(control_event::Event::Plan(plan)) => {
                tracing::info!(
                    version = plan.version, rank = plan.your_rank, world = plan.peers.len(),
                    reason = %plan.reason, "plan"
                );
                self.status.send_modify(|s| {
                    s.rank = Some(plan.your_rank);
                    s.plan_version = plan.version;
                    s.world_size = plan.peers.len();
                });
            }
            Some(control_event::Event::JobStart(start)) => {
                self.start_job(start, client, scenario, jobs, stop_all);
            }
            Some(control_event::Event::JobAbort(abort)) => {
                let mut map = jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(running) = map.get(&abort.job_id)
                    && running.attempt <= abort.attempt
                {
                    tracing::info!(job_id = %abort.job_id, attempt = abort.attempt, reason = %abort.reason, "job aborted");
                    running.cancel.cancel();
                    map.remove(&abort.job_id);
                }
            }
            None => {}
        }
    }

    fn start_job(
        &self,
        start: JobStart,
        client: &ControllerClient<Channel>,
        scenario: &Scenario,
        jobs: &Arc<Mutex<HashMap<String, RunningJob>>>,
        stop_all: &CancellationToken,
    ) {
        let job_id = start.job_id.clone();
        let cancel = stop_all.child_token();
        {
            let mut map = jobs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(running) = map.get(&job_id) {
                if running.attempt == start.attempt {
                    if let Some((_, report)) = &running.finished {
                        tracing::info!(%job_id, attempt = start.attempt, "this attempt already finished here: reporting its result again instead of running it twice");
                        let control = ControlLink {
                            client: client.clone(),
                            join_token: self.config.join_token.clone(),
                            node_id: scenario.node_id.clone(),
                            job_id: job_id.clone(),
                            attempt: start.attempt,
                            dilation: scenario.time_dilation,
                        };
                        tokio::spawn(deliver_report(
                            control,
                            report.clone(),
                            stop_all.child_token(),
                            self.config.retry_interval,
                        ));
                    }
                    return; // already running (a resubscription's snapshot), or finished
                }
                running.cancel.cancel();
            }
            map.insert(
                job_id.clone(),
                RunningJob {
                    attempt: start.attempt,
                    cancel: cancel.clone(),
                    finished: None,
                },
            );
        }
        let spec = start.spec.unwrap_or_default();
        let plan = start.plan.unwrap_or_default();
        let rank = plan
            .peers
            .iter()
            .find(|p: &&Peer| p.node_id == scenario.node_id)
            .map(|p| p.rank)
            .unwrap_or(0);
        let control = ControlLink {
            client: client.clone(),
            join_token: self.config.join_token.clone(),
            node_id: scenario.node_id.clone(),
            job_id: job_id.clone(),
            attempt: start.attempt,
            dilation: scenario.time_dilation,
        };
        let kind = JobKind::of(&spec);
        let runner = kind.and_then(|k| self.runners.get(&k).cloned());
        // The same cost function the controller admitted the job with, against this node's
        // own budget, before the runner allocates anything.
        let over_budget = job_cost(&spec, plan.world_size)
            .check(&self.budget)
            .err()
            .map(|source| JobError::OverBudget {
                node: self.config.name.clone(),
                source,
            });
        let ctx = JobContext {
            job_id: job_id.clone(),
            attempt: start.attempt,
            spec,
            plan,
            rank,
            resume_from_step: start.resume_from_step,
            scenario: scenario.clone(),
            control: control.clone(),
            cancel: cancel.clone(),
        };
        tracing::info!(%job_id, attempt = start.attempt, rank, kind = kind.map(JobKind::name).unwrap_or("?"), resume_from_step = start.resume_from_step, "job start");
        let jobs = jobs.clone();
        let status = self.status.clone();
        let retry = self.config.retry_interval;
        // Every log line of the job carries its id, attempt and rank (and, from the session's
        // span this one sits in, the node's name and site).
        let job_span = tracing::info_span!("job", job = %job_id, attempt = start.attempt, rank);
        tokio::spawn(async move {
            let outcome = match (over_budget, runner) {
                (Some(refused), _) => Err(refused),
                (None, Some(runner)) => runner.run(ctx).await,
                (None, None) => Err(JobError::NoRunner {
                    kind: kind.map(JobKind::name).unwrap_or("(none)"),
                }),
            };
            if cancel.is_cancelled() {
                return; // aborted: the controller does not want this attempt's result
            }
            let (ok, error, output) = match outcome {
                Ok(out) => (true, String::new(), out),
                Err(e) => (false, e.to_string(), JobOutput::default()),
            };
            metrics::counter!("spacefabric_node_jobs_total", "kind" => kind.map(JobKind::name).unwrap_or("?"), "ok" => ok.to_string()).increment(1);
            let report = ResultReport {
                join_token: control.join_token.clone(),
                node_id: control.node_id.clone(),
                job_id: control.job_id.clone(),
                attempt: control.attempt,
                ok,
                error,
                result: output.result,
                metrics: output.metrics,
            };
            let Some(delivered) = deliver_report(control.clone(), report, cancel.clone(), retry).await else {
                return;
            };
            {
                let mut map = jobs.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = map
                    .get_mut(&control.job_id)
                    .filter(|r| r.attempt == control.attempt)
                {
                    let order = status.borrow().jobs_finished;
                    r.finished = Some((order, delivered));
                }
                // Forget the oldest finished attempts beyond what is remembered.
                let mut done: Vec<(u64, String)> = map
                    .iter()
                    .filter_map(|(id, r)| r.finished.as_ref().map(|(o, _)| (*o, id.clone())))
                    .collect();
                if done.len() > REMEMBERED_FINISHED_JOBS {
                    done.sort_unstable();
                    for (_, id) in done.iter().take(done.len() - REMEMBERED_FINISHED_JOBS) {
                        map.remove(id);
                    }
                }
            }
            status.send_modify(|s| s.jobs_finished += 1);
        }.instrument(job_span));
    }
}

/// Sends a job's result until the controller has it (it may be restarting); a result the
/// controller refuses becomes a small failure report. Returns what was sent last (delivered,
/// or refused for good), `None` if `cancel` fired first (the attempt was aborted).
async fn deliver_report(
    control: ControlLink,
    mut report: ResultReport,
    cancel: CancellationToken,
    retry: Duration,
) -> Option<ResultReport> {
    // Keep trying until the controller has it (it may be restarting).
    loop {
        let mut client = control.client.clone();
        let sent = tokio::select! {
            r = client.report_result(report.clone()) => r,
            () = cancel.cancelled() => return None,
        };
        match sent {
            Ok(_) => break,
            Err(status)
                if is_refusal(&status)
                    && (report.ok || report.result.is_some() || !report.metrics.is_empty()) =>
            {
                // The controller will not take this result (too large, invalid): the
                // job must fail with the reason, not wait for a result that never
                // comes. Report a small failure instead.
                tracing::warn!(job_id = %control.job_id, %status, "result refused; reporting the job as failed");
                report.ok = false;
                report.error = format!(
                    "result refused by the controller: {:?}: {}",
                    status.code(),
                    status.message().chars().take(200).collect::<String>()
                );
                report.result = None;
                report.metrics.clear();
            }
            Err(status)
                if is_fatal(&status) || is_refusal(&status) || status.code() == Code::NotFound =>
            {
                tracing::warn!(job_id = %control.job_id, %status, "result refused");
                return Some(report);
            }
            Err(status) => {
                tracing::debug!(%status, "result not delivered yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = cancel.cancelled() => return None,
                }
            }
        }
    }
    tracing::info!(job_id = %control.job_id, attempt = control.attempt, ok = report.ok, "job result reported");
    Some(report)
}

/// `spacefabric-node` agent mode: flags (each also from the environment) and helpers.
pub mod args {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use super::{AgentConfig, AgentError};

    /// Flags of the agent mode.
    #[derive(Debug, Clone, clap::Args)]
    pub struct AgentArgs {
        /// Controller URL.
        #[arg(
            long,
            env = "SPACEFABRIC_CONTROLLER",
            default_value = "http://127.0.0.1:7400"
        )]
        pub controller: String,
        /// The cluster's join token.
        #[arg(long, env = "SPACEFABRIC_JOIN_TOKEN", hide_env_values = true)]
        pub join_token: Option<String>,
        /// Node name (default: the host name); `--name` is accepted too.
        #[arg(long = "node-name", alias = "name", env = "SPACEFABRIC_NODE_NAME")]
        pub name: Option<String>,
        /// Preferred site (a site of the controller's profile).
        #[arg(long, env = "SPACEFABRIC_SITE")]
        pub site: Option<String>,
        /// Site from the trailing ordinal of the node name, e.g. `earth=0-3,moon=4-7`
        /// (StatefulSets); `--site` wins when both are given.
        #[arg(long, env = "SPACEFABRIC_SITE_BY_ORDINAL")]
        pub site_by_ordinal: Option<String>,
        /// QUIC listen address.
        #[arg(long, env = "SPACEFABRIC_LISTEN", default_value = "0.0.0.0:7500")]
        pub listen: SocketAddr,
        /// Address peers use to reach this node: IP:PORT, [IPv6]:PORT, or a bare IP (v4 or
        /// v6) that takes the port of --listen — what a pod passes from the Downward API's
        /// status.podIP on single- and dual-stack clusters alike. Never 0.0.0.0; default:
        /// --listen if it is specific.
        #[arg(long, env = "SPACEFABRIC_ADVERTISE", value_parser = parse_advertise)]
        pub advertise: Option<Advertise>,
        /// HTTP listen address of /metrics (Prometheus), /readyz (200 once registered with the
        /// controller, else 503) and /livez.
        #[arg(
            long,
            env = "SPACEFABRIC_METRICS_LISTEN",
            default_value = "0.0.0.0:9500"
        )]
        pub metrics_listen: SocketAddr,
        /// CA certificate (PEM) to trust for an https:// controller.
        #[arg(long, env = "SPACEFABRIC_CONTROLLER_CA")]
        pub controller_ca: Option<PathBuf>,
        /// UDP payload bytes per fabric datagram (quinn's MTU): 1452 fits an Ethernet path;
        /// on loopback (a local cluster) up to 65507 cuts the datagrams a CPU-bound host
        /// handles (each still serialises on the emulated link for its full length). Lower it
        /// (e.g. 1200) on overlay pod networks with a smaller MTU.
        #[arg(
            long,
            env = "SPACEFABRIC_UDP_PAYLOAD",
            default_value_t = spacefabric_fabric::transport::config::FABRIC_MTU,
            value_parser = clap::value_parser!(u16).range(1200..=i64::from(spacefabric_fabric::transport::config::MAX_FABRIC_MTU))
        )]
        pub udp_payload: u16,
        /// Directory for this node's state: train jobs keep their last commits under
        /// `<dir>/train/<job id>/` (default: `spacefabric-node-<name>` in the system's temp
        /// directory; in Kubernetes, a volume).
        #[arg(long, env = "SPACEFABRIC_STATE_DIR")]
        pub state_dir: Option<PathBuf>,
        /// Memory one job may take on this node, bytes (1 MiB to 1 TiB): a job whose cost (the
        /// controller's own cost function) is above it fails before anything is allocated.
        #[arg(
            long,
            env = "SPACEFABRIC_MEMORY_BUDGET",
            default_value_t = spacefabric_proto::job_cost::budget_defaults::MEMORY_BYTES,
            value_parser = clap::value_parser!(u64).range((1 << 20)..=(1 << 40))
        )]
        pub memory_budget: u64,
        /// Time dilation K (an integer from 1 to 1,000,000) this node expects: the
        /// controller owns K and hands it out at registration; a node started with another K
        /// is refused, naming both. Default: take the controller's.
        #[arg(long, env = "SPACEFABRIC_TIME_DILATION")]
        pub time_dilation: Option<spacefabric_proto::time_dilation::TimeDilation>,
    }

    /// The trailing ordinal of a name (`node-12` → 12).
    pub fn trailing_ordinal(name: &str) -> Option<u64> {
        let digits: String = name
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().ok()
    }

    /// The site for `ordinal` from a spec like `earth=0-3,moon=4-7`.
    pub fn site_by_ordinal(spec: &str, ordinal: u64) -> Result<Option<String>, AgentError> {
        let bad = |part: &str| AgentError::SiteByOrdinal {
            part: part.to_string(),
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (site, range) = part.split_once('=').ok_or_else(|| bad(part))?;
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse::<u64>(), hi.trim().parse::<u64>()),
                None => (range.trim().parse::<u64>(), range.trim().parse::<u64>()),
            };
            let (Ok(lo), Ok(hi)) = (lo, hi) else {
                return Err(bad(part));
            };
            if site.trim().is_empty() || lo > hi {
                return Err(bad(part));
            }
            if (lo..=hi).contains(&ordinal) {
                return Ok(Some(site.trim().to_string()));
            }
        }
        Ok(None)
    }

    fn host_name() -> Option<String> {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// `--advertise`: a full socket address, or only the IP (the port is --listen's).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Advertise {
        /// IP:PORT or [IPv6]:PORT.
        Addr(SocketAddr),
        /// A bare IPv4 or IPv6 address.
        Ip(std::net::IpAddr),
    }

    /// Parses `--advertise`: `10.0.0.5:7500`, `[fd00::5]:7500`, `10.0.0.5` or `fd00::5`.
    pub fn parse_advertise(text: &str) -> Result<Advertise, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Advertise::Addr(addr));
        }
        text.parse::<std::net::IpAddr>().map(Advertise::Ip).map_err(|_| {
            format!(
                "'{text}': expected IP:PORT, [IPv6]:PORT or a bare IP (then the port of --listen)"
            )
        })
    }

    impl AgentArgs {
        /// The agent's configuration from the flags.
        pub fn to_config(&self) -> Result<AgentConfig, AgentError> {
            let join_token = self
                .join_token
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or(AgentError::MissingJoinToken)?;
            let name = match &self.name {
                Some(n) => n.clone(),
                None => host_name().ok_or(AgentError::NoHostName)?,
            };
            let site = match (&self.site, &self.site_by_ordinal) {
                (Some(site), _) => Some(site.clone()),
                (None, Some(spec)) => {
                    let ordinal = trailing_ordinal(&name)
                        .ok_or_else(|| AgentError::NoOrdinal { name: name.clone() })?;
                    let site = site_by_ordinal(spec, ordinal)?;
                    if site.is_none() {
                        return Err(AgentError::OrdinalOutsideRanges {
                            spec: spec.clone(),
                            ordinal,
                            name,
                        });
                    }
                    site
                }
                (None, None) => None,
            };
            let advertise = match self.advertise {
                Some(Advertise::Addr(a)) => a,
                Some(Advertise::Ip(ip)) => SocketAddr::new(ip, self.listen.port()),
                None if !self.listen.ip().is_unspecified() => self.listen,
                None => {
                    return Err(AgentError::AdvertiseRequired {
                        listen: self.listen,
                    });
                }
            };
            spacefabric_client::refuse_retired_ca_env()?;
            let controller_ca_pem = self
                .controller_ca
                .as_deref()
                .map(|path| spacefabric_client::read_ca("--controller-ca", path))
                .transpose()?;
            Ok(AgentConfig {
                state_dir: self.state_dir.clone().unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("spacefabric-node-{name}"))
                }),
                controller: self.controller.clone(),
                join_token,
                name,
                site,
                advertise,
                metrics_addr: Some(self.metrics_listen.to_string()),
                controller_ca_pem,
                retry_interval: std::time::Duration::from_millis(500),
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn advertise_takes_ipv4_ipv6_and_bare_ips() {
            let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
            assert_eq!(
                parse_advertise("10.0.0.5:7500"),
                Ok(Advertise::Addr("10.0.0.5:7500".parse().unwrap()))
            );
            assert_eq!(
                parse_advertise("[fd00::5]:7500"),
                Ok(Advertise::Addr("[fd00::5]:7500".parse().unwrap()))
            );
            assert_eq!(
                parse_advertise("10.0.0.5"),
                Ok(Advertise::Ip(ip("10.0.0.5")))
            );
            assert_eq!(parse_advertise("fd00::5"), Ok(Advertise::Ip(ip("fd00::5"))));
            // Without brackets, a trailing :7500 is read as part of the IPv6 address.
            assert!(
                parse_advertise("fd00::5:7500")
                    .is_ok_and(|a| a == Advertise::Ip(ip("fd00::5:7500")))
            );
            let err = parse_advertise("pod-ip:7500").unwrap_err();
            assert!(
                err.contains("pod-ip:7500") && err.contains("[IPv6]:PORT"),
                "{err}"
            );
        }

        #[test]
        fn ordinals_pick_sites() {
            assert_eq!(trailing_ordinal("spacefabric-node-12"), Some(12));
            assert_eq!(trailing_ordinal("node"), None);
            let spec = "earth=0-3,moon=4-7";
            assert_eq!(site_by_ordinal(spec, 3).unwrap().as_deref(), Some("earth"));
            assert_eq!(site_by_ordinal(spec, 4).unwrap().as_deref(), Some("moon"));
            assert_eq!(site_by_ordinal(spec, 9).unwrap(), None);
            assert!(site_by_ordinal("earth=3-1", 0).is_err());
            assert!(site_by_ordinal("earth", 0).is_err());
        }
    }
}
