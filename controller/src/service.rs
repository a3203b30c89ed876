//! Thin tonic handlers over the [`Core`]: check the join token, wait out the light delay,
//! call the core under its lock, deliver its effects (control events to node streams, job
//! snapshots to job watchers), persist the state when it changed, map errors with the one
//! `From<ControllerError> for Status`.
//!
//! The core's lock is a plain mutex held only for the core call, the delivery of its effects
//! (non-blocking sends) and the state-dir write (small JSON, only on membership, plan and job
//! changes — never on a heartbeat), so a subscriber never misses an event between its
//! snapshot and its first live event.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use spacefabric_proto::time_dilation::TimeDilation;
use spacefabric_proto::v1::controller_server::Controller;
use spacefabric_proto::v1::{
    Ack, CancelJobRequest, ControlEvent, DeregisterRequest, DeregisterResponse, GetJobRequest,
    HeartbeatRequest, HeartbeatResponse, Job, JobEvent, JobState, ListJobsRequest,
    ListJobsResponse, ListNodesRequest, ListNodesResponse, NodeProgress, NodeResult,
    ProgressReport, RegisterRequest, RegisterResponse, ResultReport, SubmitJobRequest,
    WatchControlRequest, WatchJobRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::ca::ClusterCa;
use crate::core::{Core, Effect, Now, RegisterFields};
use crate::error::{ControllerError, bounded};
use crate::light_delay::{LightDelay, delay_line};
use crate::state_log::{Compaction, StateLog};
use crate::validate;

/// Control events queued per node before its stream is dropped (it resubscribes and gets a
/// fresh snapshot).
const CONTROL_QUEUE: usize = 1024;

/// State shared by the handlers and the failure detector.
pub struct Shared {
    core: Mutex<Core>,
    store: Option<Arc<Mutex<StateLog>>>,
    /// Hands compactions to the snapshot-writing thread.
    compactor: Option<std::sync::mpsc::Sender<Compaction>>,
    ca: ClusterCa,
    join_token: String,
    delay: LightDelay,
    started: Instant,
    /// The cluster's K: [`Now::mono`] is the wall time since `started` divided by it.
    dilation: TimeDilation,
    watchers: Mutex<HashMap<String, mpsc::Sender<(Instant, ControlEvent)>>>,
    jobs: Mutex<HashMap<String, watch::Sender<Job>>>,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Takes a finished compaction's outcome into the store (and the metrics).
fn finish_compaction(store: &Mutex<StateLog>, result: Result<u64, ControllerError>) {
    let bytes = *result.as_ref().unwrap_or(&0);
    match lock(store).compaction_finished(result) {
        Ok(()) => {
            metrics::counter!("spacefabric_controller_state_bytes_written_total").increment(bytes)
        }
        Err(e) => {
            metrics::counter!("spacefabric_controller_state_write_errors_total").increment(1);
            tracing::error!(error = %e, "cannot compact the controller state (the logs keep every change; retried at the next compaction)");
        }
    }
}

/// The one thread that writes snapshots, so neither the core nor the store is held while the
/// whole state is encoded and fsynced (seconds with a full history of large results). One
/// long-lived thread, not one per compaction: each new thread may get its own allocator
/// arena, which a soak sees as RSS growing step by step. `None` if the thread cannot start
/// (compactions then run in place).
fn start_compactor(store: Arc<Mutex<StateLog>>) -> Option<std::sync::mpsc::Sender<Compaction>> {
    let (tx, rx) = std::sync::mpsc::channel::<Compaction>();
    std::thread::Builder::new()
        .name("state-compaction".into())
        .spawn(move || {
            while let Ok(compaction) = rx.recv() {
                finish_compaction(&store, compaction.run());
            }
        })
        .ok()
        .map(|_| tx)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a handler panicked mid-update; the data is still the best we have.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Shared state over a core; `started` is the monotonic origin of [`Now::mono`].
    pub fn new(
        core: Core,
        store: Option<StateLog>,
        ca: ClusterCa,
        join_token: String,
        delay: LightDelay,
        started: Instant,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let dilation = core.config().time_dilation;
        let store = store.map(|s| Arc::new(Mutex::new(s)));
        Self {
            dilation,
            core: Mutex::new(core),
            compactor: store.clone().and_then(start_compactor),
            store,
            ca,
            join_token,
            delay,
            started,
            watchers: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    /// The time now.
    pub fn now(&self) -> Now {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            mono: self.dilation.emulated(self.started.elapsed()),
            unix_ms,
        }
    }

    /// Jobs with a WatchJob channel (only jobs that have not ended keep one).
    pub fn watched_jobs(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// The CA.
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// Runs `f` on the core, then delivers its effects and persists the state if it changed.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let now = self.now();
        let mut core = lock(&self.core);
        let out = f(&mut core, now);
        self.deliver(core.take_effects());
        if core.is_dirty() {
            match &self.store {
                Some(store) => {
                    // Saved with the store's guard dropped at once: a compaction finishing
                    // takes it on its own thread.
                    let saved = lock(store).save_deferred(core.persisted(), core.touched_jobs());
                    match saved {
                        Ok((report, compaction)) => {
                            metrics::counter!("spacefabric_controller_state_bytes_written_total")
                                .increment(report.bytes);
                            core.mark_clean();
                            if let Some(compaction) = compaction {
                                let queued = match &self.compactor {
                                    Some(tx) => tx.send(compaction).map_err(|e| e.0),
                                    None => Err(compaction),
                                };
                                if let Err(compaction) = queued {
                                    finish_compaction(store, compaction.run());
                                }
                            }
                        }
                        Err(e) => {
                            metrics::counter!("spacefabric_controller_state_write_errors_total")
                                .increment(1);
                            tracing::error!(error = %e, "cannot persist the controller state (will retry on the next change)");
                        }
                    }
                }
                None => core.mark_clean(),
            }
        }
        let (plan, version) = core.plan();
        metrics::gauge!("spacefabric_controller_plan_version").set(version as f64);
        metrics::gauge!("spacefabric_controller_nodes_in_plan").set(plan.world_size() as f64);
        out
    }

    fn deliver(&self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut watchers = lock(&self.watchers);
        let mut jobs = lock(&self.jobs);
        for effect in effects {
            match effect {
                Effect::Control { node_id, event } => {
                    if let Some(tx) = watchers.get(&node_id)
                        && tx.try_send((now, event)).is_err()
                    {
                        // Full or closed: drop the stream; the node resubscribes and gets a snapshot.
                        watchers.remove(&node_id);
                    }
                }
                Effect::JobChanged(job) => {
                    if is_final(&job) {
                        metrics::counter!(
                            "spacefabric_controller_jobs_finished_total",
                            "state" => job_state_name(job.state)
                        )
                        .increment(1);
                    }
                    let id = job.job_id.clone();
                    let last = is_final(&job);
                    if let Some(tx) = jobs.get(&id) {
                        tx.send_replace(job);
                    }
                    // Watchers still see the final value after the sender is gone; without
                    // this every job ever watched would stay in memory with its results.
                    if last {
                        jobs.remove(&id);
                    }
                }
            }
        }
    }

    /// Declares dead the nodes whose heartbeats stopped (called by the failure detector).
    pub fn expire(&self) -> Vec<String> {
        let dead = self.with_core(|core, now| core.expire(now));
        for name in &dead {
            metrics::counter!("spacefabric_controller_nodes_declared_dead_total").increment(1);
            tracing::warn!(node = %name, "heartbeats stopped: node declared dead, re-planned");
        }
        dead
    }

    fn check_token(&self, token: &str) -> Result<(), Status> {
        // Compare without an early exit so timing does not reveal a matching prefix.
        let a = token.as_bytes();
        let b = self.join_token.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, byte) in b.iter().enumerate() {
            diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
        }
        if diff == 0 && !b.is_empty() {
            Ok(())
        } else {
            metrics::counter!("spacefabric_controller_unauthenticated_total").increment(1);
            Err(ControllerError::Unauthenticated.into())
        }
    }

    /// One-way delays (node → controller, controller → node) for `node_id`'s site.
    fn node_delays(&self, node_id: &str) -> (Duration, Duration) {
        let core = lock(&self.core);
        let site = core
            .member(node_id)
            .map(|m| m.site.clone())
            .unwrap_or_default();
        Self::site_delays(&core, &site)
    }

    fn site_delays(core: &Core, site: &str) -> (Duration, Duration) {
        let controller = &core.config().controller_site;
        let topology = core.topology();
        (
            topology.one_way(site, controller),
            topology.one_way(controller, site),
        )
    }

    fn job_watch(&self, job: Job) -> watch::Receiver<Job> {
        if is_final(&job) {
            // Nothing will change: a channel of its own, not kept.
            return watch::channel(job).1;
        }
        let mut jobs = lock(&self.jobs);
        jobs.entry(job.job_id.clone())
            .or_insert_with(|| watch::channel(job).0)
            .subscribe()
    }
}

/// Milliseconds as the protocol's u32, saturating (the flags keep intervals far below).
fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn is_final(job: &Job) -> bool {
    job.is_finished()
}

fn job_state_name(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Pending) => "pending",
        Ok(JobState::Running) => "running",
        Ok(JobState::Succeeded) => "succeeded",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        _ => "unspecified",
    }
}

/// The `spacefabric.v1.Controller` service.
#[derive(Debug, Clone)]
pub struct ControllerService {
    shared: Arc<Shared>,
}

impl ControllerService {
    /// A service over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn err(e: ControllerError) -> Status {
    e.into()
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        // A node started with an explicit K must run the controller's (0: it takes ours).
        let node_dilation = TimeDilation::from_wire(req.time_dilation)
            .map_err(|e| err(ControllerError::invalid("time_dilation", e.to_string())))?;
        if req.time_dilation != 0 {
            TimeDilation::agree(Some(node_dilation), s.dilation).map_err(|e| {
                tracing::warn!(node = %bounded(&req.node_name), error = %e, "registration refused");
                err(e.into())
            })?;
        }
        let (up, down) = {
            let core = lock(&s.core);
            let site = if req.preferred_site.is_empty() {
                core.persisted()
                    .members
                    .iter()
                    .find(|m| m.name == req.node_name)
                    .map(|m| m.site.clone())
                    .unwrap_or_default()
            } else {
                req.preferred_site.clone()
            };
            Shared::site_delays(&core, &site)
        };
        s.delay.wait(up).await;
        // Check what goes into the certificate before anything changes.
        validate::node_name(&req.node_name).map_err(err)?;
        let addr = validate::advertise_addr(&req.advertise_addr).map_err(err)?;
        validate::csr(&req.csr_pem).map_err(err)?;
        let certificate_pem = if req.csr_pem.is_empty() {
            String::new()
        } else {
            s.ca.sign_node_csr(&req.csr_pem, &req.node_name, addr.ip())
                .map_err(err)?
        };
        let key = if req.csr_pem.is_empty() {
            String::new()
        } else {
            ClusterCa::csr_public_key(&req.csr_pem).map_err(err)?
        };
        let fields = RegisterFields {
            key,
            node_name: req.node_name.clone(),
            preferred_site: req.preferred_site.clone(),
            advertise_addr: req.advertise_addr.clone(),
            metrics_addr: req.metrics_addr.clone(),
        };
        let (reg, response) = s
            .with_core(|core, now| -> Result<_, ControllerError> {
                let reg = core.register(&fields, now)?;
                let state = core.persisted();
                let response = RegisterResponse {
                    node_id: reg.member.node_id.clone(),
                    rank: reg.rank,
                    site: reg.member.site.clone(),
                    peers: reg.plan.peers.clone(),
                    scenario_epoch_unix_ms: state.scenario_epoch_unix_ms,
                    seed: core.topology().seed,
                    profile_toml: core.topology().profile_toml.clone(),
                    profile_name: core.topology().profile_name.clone(),
                    certificate_pem,
                    ca_certificate_pem: s.ca.cert_pem().to_string(),
                    plan_version: reg.plan_version,
                    heartbeat_interval_ms: millis_u32(core.config().heartbeat_interval),
                    controller_site: core.config().controller_site.clone(),
                    time_dilation: core.config().time_dilation.get(),
                };
                Ok((reg, response))
            })
            .map_err(err)?;
        metrics::counter!("spacefabric_controller_registrations_total").increment(1);
        tracing::info!(
            node = %reg.member.name, node_id = %reg.member.node_id, site = %reg.member.site,
            rank = reg.rank, reattached = reg.reattached, plan_version = reg.plan_version,
            "node registered"
        );
        s.delay.wait(down).await;
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let (up, down) = s.node_delays(&req.node_id);
        s.delay.wait(up).await;
        let result = s.with_core(|core, now| {
            core.heartbeat(&req.node_id, now)
                .map(|v| (v, core.config().heartbeat_interval))
        });
        metrics::counter!("spacefabric_controller_heartbeats_total").increment(1);
        s.delay.wait(down).await;
        let (plan_version, interval) = result.map_err(err)?;
        Ok(Response::new(HeartbeatResponse {
            plan_version,
            heartbeat_interval_ms: millis_u32(interval),
        }))
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let (up, down) = s.node_delays(&req.node_id);
        s.delay.wait(up).await;
        let result = s.with_core(|core, now| core.deregister(&req.node_id, now));
        if result.is_ok() {
            tracing::info!(node_id = %req.node_id, "node left");
        }
        s.delay.wait(down).await;
        result.map_err(err)?;
        Ok(Response::new(DeregisterResponse {}))
    }

    type WatchControlStream = EventStream<ControlEvent>;

    async fn watch_control(
        &self,
        request: Request<WatchControlRequest>,
    ) -> Result<Response<Self::WatchControlStream>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let (up, down) = s.node_delays(&req.node_id);
        s.delay.wait(up).await;
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        // Subscribing is a sign of life too: it counts as a heartbeat.
        s.with_core(|core, now| core.heartbeat(&req.node_id, now))
            .map_err(err)?;
        // Snapshot and subscription under the core lock: no event falls between them.
        {
            let core = lock(&s.core);
            let snapshot = core.control_snapshot(&req.node_id).map_err(err)?;
            let now = Instant::now();
            for event in snapshot {
                if tx.try_send((now, event)).is_err() {
                    return Err(Status::resource_exhausted("control snapshot too large"));
                }
            }
            lock(&s.watchers).insert(req.node_id.clone(), tx);
        }
        let stream = delay_line(rx, s.delay.effective(down), s.shutdown.clone());
        let stream = futures::StreamExt::map(stream, Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_progress(
        &self,
        request: Request<ProgressReport>,
    ) -> Result<Response<Ack>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let (up, down) = s.node_delays(&req.node_id);
        s.delay.wait(up).await;
        let report = NodeProgress {
            rank: 0,
            node_id: req.node_id.clone(),
            step: req.step,
            total_steps: req.total_steps,
            committed_step: req.committed_step,
            message: req.message,
            metrics: req.metrics,
        };
        let result =
            s.with_core(|core, _| core.progress(&req.node_id, &req.job_id, req.attempt, report));
        s.delay.wait(down).await;
        result.map_err(err)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_result(&self, request: Request<ResultReport>) -> Result<Response<Ack>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let (up, down) = s.node_delays(&req.node_id);
        s.delay.wait(up).await;
        let result = NodeResult {
            rank: 0,
            node_id: req.node_id.clone(),
            ok: req.ok,
            error: req.error,
            result: req.result,
            metrics: req.metrics,
        };
        let outcome = s.with_core(|core, now| {
            core.result(&req.node_id, &req.job_id, req.attempt, result, now)
        });
        s.delay.wait(down).await;
        outcome.map_err(err)?;
        Ok(Response::new(Ack {}))
    }

    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let job = s
            .with_core(|core, now| core.submit(req.spec.as_ref(), req.min_nodes, now))
            .map_err(err)?;
        metrics::counter!("spacefabric_controller_jobs_submitted_total").increment(1);
        tracing::info!(job_id = %job.job_id, state = job_state_name(job.state), "job submitted");
        Ok(Response::new(job))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let job = lock(&s.core).job(&req.job_id).map_err(err)?;
        Ok(Response::new(job))
    }

    type WatchJobStream = EventStream<JobEvent>;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        // Subscribe under the core lock: the snapshot and the watch agree.
        let mut rx = {
            let core = lock(&s.core);
            let job = core.job(&req.job_id).map_err(err)?;
            s.job_watch(job)
        };
        let mut shutdown = s.shutdown.clone();
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let job = rx.borrow_and_update().clone();
                let done = is_final(&job);
                if tx.send(Ok(JobEvent { job: Some(job) })).await.is_err() || done {
                    break;
                }
                let stopping = tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break } else { false },
                    _ = shutdown.wait_for(|s| *s) => true,
                };
                if stopping {
                    let status = Status::unavailable("the controller is shutting down");
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let job = s
            .with_core(|core, now| core.cancel(&req.job_id, now))
            .map_err(err)?;
        Ok(Response::new(job))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let core = lock(&s.core);
        let (jobs, next_page_token) = core
            .list_jobs(
                req.page_size,
                &req.page_token,
                req.omit_results,
                req.newest_first,
            )
            .map_err(err)?;
        let total_jobs = u32::try_from(core.persisted().jobs.len()).unwrap_or(u32::MAX);
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token,
            total_jobs,
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let req = request.into_inner();
        let s = &self.shared;
        s.check_token(&req.join_token)?;
        let now = s.now();
        let nodes = lock(&s.core).list_nodes(now);
        Ok(Response::new(nodes))
    }
}
