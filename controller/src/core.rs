//! The controller's core: membership, failure detection, the current plan and the jobs —
//! without I/O and without a clock.
//!
//! Every operation takes the time as a parameter ([`Now`]: a monotonic offset for deadlines,
//! unix milliseconds for timestamps users read) and leaves its consequences in an outbox of
//! [`Effect`]s (control events for nodes, job changes for watchers) that the service layer
//! delivers. [`Core::is_dirty`] tells the service when the persisted part
//! ([`PersistedState`]) changed and must be written to the state dir.
//!
//! Failure detection: a node is declared dead when no heartbeat arrived for
//! `interval × misses + one-way delay (node site → controller site)`; a Moon node's heartbeats
//! are 1.28 s old when they arrive, so its deadline is that much longer.
//!
//! Time dilation: with K > 1 ([`CoreConfig::time_dilation`]) [`Now::mono`] is emulated time
//! (the service divides the wall time by K), so every deadline here (heartbeats, jobs) lasts
//! K times longer on the wall clock without the core knowing.
//!
//! Jobs run one at a time over the whole plan. When a participant dies or leaves, the job is
//! aborted and restarted on the new plan from its last committed step (the lowest step every
//! rank reported as committed); with no live node left it waits as pending. A train job also
//! restarts (from its last commit) when a node joins, so a replacement takes part, and its
//! restarts do not wait for the job's `min_nodes` (which gates the first start).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spacefabric_proto::v1::{
    ControlEvent, Job, JobAbort, JobRestart, JobSpec, JobStart, JobState, ListNodesResponse,
    NodeInfo, NodeProgress, NodeResult, NodeState, PlanUpdate, SiteInfo, control_event, job_spec,
};

use crate::deadline::attempt_deadline;
use crate::error::{ControllerError, bounded};
use crate::plan::{MembershipPlan, PlanMember, assign_ranks, job_plan};
use crate::topology::Topology;
use crate::validate;
use spacefabric_proto::job_cost::{NodeBudget, job_cost};
use spacefabric_proto::time_dilation::TimeDilation;

type Result<T> = std::result::Result<T, ControllerError>;

/// Finished jobs kept by default.
pub const DEFAULT_JOB_HISTORY: usize = 1000;
/// Most jobs one ListJobs page holds.
pub const MAX_JOBS_PAGE: usize = 1000;

/// Version of the state-dir format: 2 = `state.json` snapshot + `state.log` change log
/// ([`crate::state_log`]; format 1 snapshots of older controllers are still read).
pub const STATE_FORMAT: u32 = 2;

/// The time, as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since the controller process started (deadlines), in emulated time:
    /// the wall time divided by the time dilation K.
    pub mono: Duration,
    /// Wall-clock unix milliseconds (timestamps shown to users).
    pub unix_ms: u64,
}

/// Settings of the core, with documented defaults in [`CoreConfig::default`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// What a job may cost one node; checked at submit and again at every start (default
    /// [`NodeBudget::default`]: 2 GiB of memory, 768 KiB of result per rank).
    pub node_budget: NodeBudget,
    /// Finished jobs kept (default 1000); the oldest are forgotten first.
    pub job_history: usize,
    /// Finished jobs older than this are forgotten (default: kept until `job_history` pushes
    /// them out).
    pub job_max_age: Option<Duration>,
    /// The site the controller runs on (delays and deadlines are measured from it).
    pub controller_site: String,
    /// How often nodes send heartbeats (default 1 s).
    pub heartbeat_interval: Duration,
    /// Heartbeats a node may miss before it is declared dead (default 3).
    pub heartbeat_misses: u32,
    /// The cluster's time dilation K (default 1), handed to every node at registration.
    /// Every duration the core sees ([`Now::mono`], intervals, deadlines) is emulated time.
    pub time_dilation: TimeDilation,
    /// host:port of every forwarder carrying the shared trunks, in shard order, put in every
    /// job plan (default empty: none).
    pub forwarders: Vec<String>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            controller_site: String::new(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_misses: 3,
            time_dilation: TimeDilation::NONE,
            node_budget: NodeBudget::default(),
            job_history: DEFAULT_JOB_HISTORY,
            job_max_age: None,
            forwarders: Vec::new(),
        }
    }
}

/// Whether a member counts in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// In the plan.
    Alive,
    /// Heartbeats stopped; out of the plan until it registers again.
    Dead,
    /// Deregistered; out of the plan until it registers again.
    Left,
}

/// A node the controller admitted once (persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable id handed out at the first registration.
    pub node_id: String,
    /// The identity key: registering again with this name gives the same id.
    pub name: String,
    /// Site in the profile.
    pub site: String,
    /// Where peers reach its QUIC endpoint.
    pub advertise_addr: String,
    /// Where its Prometheus endpoint is.
    pub metrics_addr: String,
    /// Alive, dead or left.
    pub state: MemberState,
    /// Join order (breaks rank ties inside a site).
    pub ordinal: u64,
    /// First registration, unix ms.
    pub registered_unix_ms: u64,
    /// The public key of the node's CSR (hex DER; empty when it registered without one). While
    /// the member is alive, only this key may register the name again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

/// One job and who runs its current attempt (persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job as clients see it.
    pub job: Job,
    /// Start only with at least this many live nodes.
    pub min_nodes: u32,
    /// Node ids running the current attempt, in rank order.
    pub participants: Vec<String>,
}

impl JobRecord {
    /// A train job: it restarts from its commits when nodes leave or join, and goes on below
    /// `min_nodes` once started.
    fn is_train(&self) -> bool {
        matches!(
            self.job.spec.as_ref().and_then(|s| s.kind.as_ref()),
            Some(job_spec::Kind::Train(_))
        )
    }
}

/// Everything the controller writes to its state dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Name of the profile the state was made with.
    pub profile_name: String,
    /// Scenario epoch, unix ms: fixed at the first start, kept across restarts.
    pub scenario_epoch_unix_ms: u64,
    /// Next join ordinal.
    pub next_ordinal: u64,
    /// Every node ever admitted.
    pub members: Vec<Member>,
    /// Bumped whenever the plan changes.
    pub plan_version: u64,
    /// The current plan.
    pub plan: MembershipPlan,
    /// Next job number.
    pub next_job: u64,
    /// Every job, oldest first.
    pub jobs: Vec<JobRecord>,
}

impl PersistedState {
    /// A fresh state for a first start.
    pub fn new(profile_name: &str, now: Now) -> Self {
        Self {
            format: STATE_FORMAT,
            profile_name: profile_name.to_string(),
            scenario_epoch_unix_ms: now.unix_ms,
            next_ordinal: 0,
            members: Vec::new(),
            plan_version: 0,
            plan: MembershipPlan::default(),
            next_job: 1,
            jobs: Vec::new(),
        }
    }
}

impl PersistedState {
    /// Checks what the state means, not just its syntax: node ids, names and job ids unique,
    /// the counters above every number they handed out, the plan and the jobs naming only
    /// known members. The error names the entry (`members[3].node_id`).
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut ids = HashMap::new();
        let mut names = HashMap::new();
        for (i, m) in self.members.iter().enumerate() {
            if let Some(first) = ids.insert(m.node_id.as_str(), i) {
                return Err(format!(
                    "members[{i}].node_id '{}' is also members[{first}].node_id",
                    bounded(&m.node_id)
                ));
            }
            if let Some(first) = names.insert(m.name.as_str(), i) {
                return Err(format!(
                    "members[{i}].name '{}' is also members[{first}].name",
                    bounded(&m.name)
                ));
            }
            if m.ordinal >= self.next_ordinal {
                return Err(format!(
                    "members[{i}].ordinal {} is not below next_ordinal {}: a new node would get a used id",
                    m.ordinal, self.next_ordinal
                ));
            }
            if m.node_id != format!("n{}", m.ordinal) {
                return Err(format!(
                    "members[{i}].node_id '{}' does not match its ordinal {}",
                    bounded(&m.node_id),
                    m.ordinal
                ));
            }
        }
        for (i, p) in self.plan.peers.iter().enumerate() {
            if !ids.contains_key(p.node_id.as_str()) {
                return Err(format!(
                    "plan.peers[{i}].node_id '{}' is not a member",
                    bounded(&p.node_id)
                ));
            }
        }
        let mut jobs = HashMap::new();
        for (i, r) in self.jobs.iter().enumerate() {
            let Some(n) = job_number(&r.job.job_id) else {
                return Err(format!(
                    "jobs[{i}].job.job_id '{}' is not job-<number>",
                    bounded(&r.job.job_id)
                ));
            };
            if let Some(first) = jobs.insert(n, i) {
                return Err(format!(
                    "jobs[{i}].job.job_id '{}' is also jobs[{first}]",
                    r.job.job_id
                ));
            }
            if n >= self.next_job {
                return Err(format!(
                    "jobs[{i}].job.job_id '{}' is not below next_job {}: a new job would reuse it",
                    r.job.job_id, self.next_job
                ));
            }
            if let Some(p) = r
                .participants
                .iter()
                .find(|p| !ids.contains_key(p.as_str()))
            {
                return Err(format!(
                    "jobs[{i}].participants: '{}' is not a member",
                    bounded(p)
                ));
            }
        }
        Ok(())
    }
}

/// A consequence of an operation that the service layer delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this event on the node's WatchControl stream.
    Control {
        /// Recipient.
        node_id: String,
        /// The event.
        event: ControlEvent,
    },
    /// The job changed: publish it to its watchers.
    JobChanged(Job),
}

/// What a registration returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The member after registration.
    pub member: Member,
    /// Its rank in the current plan.
    pub rank: u32,
    /// The current plan and its version.
    pub plan: MembershipPlan,
    /// Version of `plan`.
    pub plan_version: u64,
    /// True when the name was known (same identity handed out again).
    pub reattached: bool,
}

/// Registration fields the core looks at (already authenticated).
#[derive(Debug, Clone, Default)]
pub struct RegisterFields {
    /// Node name.
    pub node_name: String,
    /// Preferred site, or empty.
    pub preferred_site: String,
    /// QUIC address for peers.
    pub advertise_addr: String,
    /// Prometheus address.
    pub metrics_addr: String,
    /// Public key of the CSR sent with the registration (hex DER), or empty.
    pub key: String,
}

#[derive(Debug, Clone, Copy)]
struct Liveness {
    /// Last heartbeat or registration.
    last_heard: Option<Duration>,
    /// Start of the deadline when nothing was heard (controller start or state load).
    since: Duration,
}

/// Membership, plan and jobs.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    topology: Topology,
    state: PersistedState,
    liveness: HashMap<String, Liveness>,
    outbox: Vec<Effect>,
    dirty: bool,
    /// Jobs changed since the last [`Core::mark_clean`] (ids; the state log writes only these).
    touched_jobs: BTreeSet<String>,
    /// When the current attempt of each running job started (monotonic; not persisted: a
    /// restarted controller gives running jobs a fresh deadline).
    attempt_started: HashMap<String, Duration>,
    /// When the failure detector last ran (to tell a stall of the controller itself).
    last_expire: Option<Duration>,
}

/// The number of a job id (`job-17` → 17).
fn job_number(job_id: &str) -> Option<u64> {
    job_id.strip_prefix("job-")?.parse().ok()
}

fn is_terminal(state: i32) -> bool {
    JobState::try_from(state).is_ok_and(JobState::is_terminal)
}

impl Core {
    /// A core over `topology`, resuming from `persisted` when given. Members that were alive
    /// get a fresh deadline from `now` to re-attach.
    pub fn new(
        config: CoreConfig,
        topology: Topology,
        persisted: Option<PersistedState>,
        now: Now,
    ) -> Self {
        let resumed = persisted.is_some();
        let state = persisted.unwrap_or_else(|| PersistedState::new(&topology.profile_name, now));
        let liveness = state
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| {
                (
                    m.node_id.clone(),
                    Liveness {
                        last_heard: None,
                        since: now.mono,
                    },
                )
            })
            .collect();
        let attempt_started = state
            .jobs
            .iter()
            .filter(|r| r.job.state == JobState::Running as i32)
            .map(|r| (r.job.job_id.clone(), now.mono))
            .collect();
        Self {
            config,
            topology,
            state,
            liveness,
            outbox: Vec::new(),
            dirty: !resumed,
            touched_jobs: BTreeSet::new(),
            attempt_started,
            last_expire: None,
        }
    }

    /// The topology the core plans over.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The persisted part, for writing to the state dir.
    pub fn persisted(&self) -> &PersistedState {
        &self.state
    }

    /// True when the persisted part changed since the last [`Core::mark_clean`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Ids of the jobs changed (or added) since the last [`Core::mark_clean`]: what an
    /// incremental store must write besides members and the plan. Jobs that disappeared
    /// (pruned history) are not listed; the store sees them missing.
    pub fn touched_jobs(&self) -> &BTreeSet<String> {
        &self.touched_jobs
    }

    /// The persisted part was written.
    pub fn mark_clean(&mut self) {
        self.dirty = false;
        self.touched_jobs.clear();
    }

    /// Takes the pending effects.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.outbox)
    }

    /// The current plan and its version.
    pub fn plan(&self) -> (&MembershipPlan, u64) {
        (&self.state.plan, self.state.plan_version)
    }

    /// A member by id.
    pub fn member(&self, node_id: &str) -> Option<&Member> {
        self.state.members.iter().find(|m| m.node_id == node_id)
    }

    /// Deadline for heartbeats from a node on `site`:
    /// `interval × misses + one-way delay (site → controller site)`.
    /// Saturates instead of overflowing on absurd settings.
    pub fn heartbeat_deadline(&self, site: &str) -> Duration {
        self.config
            .heartbeat_interval
            .checked_mul(self.config.heartbeat_misses)
            .and_then(|d| d.checked_add(self.topology.one_way(site, &self.config.controller_site)))
            .unwrap_or(Duration::MAX)
    }

    /// Admits a node, or re-attaches it when its name is known (same id). Re-plans if the
    /// membership changed.
    pub fn register(&mut self, fields: &RegisterFields, now: Now) -> Result<Registration> {
        validate::node_name(&fields.node_name)?;
        validate::advertise_addr(&fields.advertise_addr)?;
        validate::preferred_site(&fields.preferred_site, &self.topology)?;
        if fields.metrics_addr.len() > 256 {
            return Err(ControllerError::invalid(
                "metrics_addr",
                "longer than 256 characters",
            ));
        }
        let existing = self
            .state
            .members
            .iter()
            .position(|m| m.name == fields.node_name);
        let reattached = existing.is_some();
        if let Some(i) = existing {
            let member = &self.state.members[i];
            // A live node's name is bound to its key: a join-token holder with another key
            // cannot take it over (a replacement gets the name once the old node is dead).
            if member.state == MemberState::Alive
                && !member.key.is_empty()
                && member.key != fields.key
            {
                return Err(ControllerError::NameTaken(bounded(&fields.node_name)));
            }
        }
        let index = match existing {
            Some(i) => {
                let member = &mut self.state.members[i];
                if !fields.key.is_empty() {
                    member.key = fields.key.clone();
                }
                if !fields.preferred_site.is_empty() {
                    member.site = fields.preferred_site.clone();
                }
                member.advertise_addr = fields.advertise_addr.clone();
                member.metrics_addr = fields.metrics_addr.clone();
                member.state = MemberState::Alive;
                i
            }
            None => {
                let site = if fields.preferred_site.is_empty() {
                    self.least_loaded_site()
                } else {
                    fields.preferred_site.clone()
                };
                let ordinal = self.state.next_ordinal;
                self.state.next_ordinal += 1;
                self.state.members.push(Member {
                    node_id: format!("n{ordinal}"),
                    name: fields.node_name.clone(),
                    site,
                    advertise_addr: fields.advertise_addr.clone(),
                    metrics_addr: fields.metrics_addr.clone(),
                    state: MemberState::Alive,
                    ordinal,
                    registered_unix_ms: now.unix_ms,
                    key: fields.key.clone(),
                });
                self.state.members.len() - 1
            }
        };
        let member = self.state.members[index].clone();
        self.liveness.insert(
            member.node_id.clone(),
            Liveness {
                last_heard: Some(now.mono),
                since: now.mono,
            },
        );
        self.dirty = true;
        let reason = if reattached {
            format!("{} re-attached", member.name)
        } else {
            format!("{} joined", member.name)
        };
        self.replan(&reason, now);
        let rank =
            self.state
                .plan
                .rank_of(&member.node_id)
                .ok_or_else(|| ControllerError::State {
                    path: "plan".into(),
                    message: format!("{} missing from the plan after registering", member.name),
                })?;
        Ok(Registration {
            member,
            rank,
            plan: self.state.plan.clone(),
            plan_version: self.state.plan_version,
            reattached,
        })
    }

    fn least_loaded_site(&self) -> String {
        let alive_on = |site: &str| {
            self.state
                .members
                .iter()
                .filter(|m| m.state == MemberState::Alive && m.site == site)
                .count()
        };
        self.topology
            .sites
            .iter()
            .min_by_key(|s| alive_on(s))
            .cloned()
            .unwrap_or_default()
    }

    fn alive_member(&self, node_id: &str) -> Result<&Member> {
        match self.member(node_id) {
            None => Err(ControllerError::UnknownNode(bounded(node_id))),
            Some(m) if m.state != MemberState::Alive => {
                Err(ControllerError::NodeNotMember(bounded(node_id)))
            }
            Some(m) => Ok(m),
        }
    }

    /// Records a heartbeat; returns the current plan version.
    pub fn heartbeat(&mut self, node_id: &str, now: Now) -> Result<u64> {
        self.alive_member(node_id)?;
        let entry = self
            .liveness
            .entry(node_id.to_string())
            .or_insert(Liveness {
                last_heard: None,
                since: now.mono,
            });
        entry.last_heard = Some(now.mono);
        Ok(self.state.plan_version)
    }

    /// A node leaves cleanly: out of the plan at once.
    pub fn deregister(&mut self, node_id: &str, now: Now) -> Result<()> {
        self.alive_member(node_id)?;
        let name = self.set_state(node_id, MemberState::Left);
        self.replan(&format!("{name} left"), now);
        Ok(())
    }

    fn set_state(&mut self, node_id: &str, state: MemberState) -> String {
        self.liveness.remove(node_id);
        self.dirty = true;
        match self.state.members.iter_mut().find(|m| m.node_id == node_id) {
            Some(m) => {
                m.state = state;
                m.name.clone()
            }
            None => node_id.to_string(),
        }
    }

    /// Declares dead every live node whose heartbeat deadline passed; re-plans if any did.
    /// Fails every running job whose attempt outlived its deadline. Returns the names of the
    /// nodes declared dead.
    ///
    /// The detector runs several times per heartbeat interval; a longer gap since its last
    /// run means the controller itself stalled (paused, swapped, starved), and heartbeats
    /// could not be heard meanwhile: the gap beyond one interval is forgiven rather than
    /// declaring every node dead at once.
    pub fn expire(&mut self, now: Now) -> Vec<String> {
        if let Some(last) = self.last_expire {
            let gap = now.mono.saturating_sub(last);
            let stall = gap.saturating_sub(self.config.heartbeat_interval);
            if !stall.is_zero() {
                for live in self.liveness.values_mut() {
                    match &mut live.last_heard {
                        Some(heard) => *heard = heard.saturating_add(stall).min(now.mono),
                        None => live.since = live.since.saturating_add(stall).min(now.mono),
                    }
                }
            }
        }
        self.last_expire = Some(now.mono);
        self.expire_jobs(now);
        let mut dead = Vec::new();
        for member in &self.state.members {
            if member.state != MemberState::Alive {
                continue;
            }
            let heard = self
                .liveness
                .get(&member.node_id)
                .map(|l| l.last_heard.unwrap_or(l.since))
                .unwrap_or(now.mono);
            if now.mono.saturating_sub(heard) > self.heartbeat_deadline(&member.site) {
                dead.push((member.node_id.clone(), member.name.clone()));
            }
        }
        if dead.is_empty() {
            return Vec::new();
        }
        for (id, _) in &dead {
            self.set_state(id, MemberState::Dead);
        }
        let names: Vec<String> = dead.into_iter().map(|(_, name)| name).collect();
        self.replan(&format!("heartbeats stopped: {}", names.join(", ")), now);
        names
    }

    fn replan(&mut self, reason: &str, now: Now) {
        let members: Vec<PlanMember> = self
            .state
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| PlanMember {
                node_id: m.node_id.clone(),
                name: m.name.clone(),
                site: m.site.clone(),
                addr: m.advertise_addr.clone(),
                ordinal: m.ordinal,
            })
            .collect();
        let plan = assign_ranks(&members, &self.topology);
        if plan == self.state.plan {
            return;
        }
        self.state.plan = plan;
        self.state.plan_version += 1;
        self.dirty = true;
        for peer in &self.state.plan.peers {
            let event = self.plan_event(peer.rank, reason);
            self.outbox.push(Effect::Control {
                node_id: peer.node_id.clone(),
                event,
            });
        }
        self.on_plan_changed(reason, now);
    }

    fn plan_event(&self, rank: u32, reason: &str) -> ControlEvent {
        ControlEvent {
            event: Some(control_event::Event::Plan(PlanUpdate {
                version: self.state.plan_version,
                peers: self.state.plan.peers.clone(),
                sites: self.state.plan.sites.clone(),
                your_rank: rank,
                reason: reason.to_string(),
            })),
        }
    }

    /// Restarts the running job if one of its participants left the plan or moved.
    fn on_plan_changed(&mut self, reason: &str, now: Now) {
        let plan = &self.state.plan;
        let affected: Vec<usize> = self
            .state
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.job.state == JobState::Running as i32)
            .filter(|(_, r)| {
                let old_peers = r
                    .job
                    .plan
                    .as_ref()
                    .map(|p| p.peers.as_slice())
                    .unwrap_or(&[]);
                let lost = old_peers.iter().any(|old| {
                    !plan
                        .peers
                        .iter()
                        .any(|p| p.node_id == old.node_id && p.addr == old.addr)
                });
                // A train job grows to take in a node that joined (a replacement), from its
                // last commit; other kinds keep the plan they started on.
                let joined = plan
                    .peers
                    .iter()
                    .any(|p| !old_peers.iter().any(|old| old.node_id == p.node_id));
                lost || (r.is_train() && joined)
            })
            .map(|(i, _)| i)
            .collect();
        for index in affected {
            self.restart_job(index, &format!("plan changed: {reason}"), now);
        }
        self.try_start(now);
    }

    /// Aborts the current attempt of job `index` and starts the next from the last committed
    /// step (or leaves it pending if too few nodes are alive).
    fn restart_job(&mut self, index: usize, reason: &str, now: Now) {
        let record = &mut self.state.jobs[index];
        self.touched_jobs.insert(record.job.job_id.clone());
        let committed = if record.participants.is_empty() {
            record.job.resume_from_step
        } else {
            record
                .participants
                .iter()
                .map(|id| {
                    record
                        .job
                        .progress
                        .iter()
                        .find(|p| &p.node_id == id)
                        .map(|p| p.committed_step)
                        .unwrap_or(record.job.resume_from_step)
                })
                .min()
                .unwrap_or(0)
        };
        let abort = ControlEvent {
            event: Some(control_event::Event::JobAbort(JobAbort {
                job_id: record.job.job_id.clone(),
                reason: reason.to_string(),
                attempt: record.job.attempt,
            })),
        };
        for id in &record.participants {
            self.outbox.push(Effect::Control {
                node_id: id.clone(),
                event: abort.clone(),
            });
        }
        record.job.resume_from_step = committed;
        record.job.restarts.push(JobRestart {
            attempt: record.job.attempt + 1,
            reason: reason.to_string(),
            unix_ms: now.unix_ms,
            resume_from_step: committed,
        });
        record.job.state = JobState::Pending as i32;
        record.job.progress.clear();
        record.job.results.clear();
        record.participants.clear();
        record.job.error = format!("restarting: {reason}");
        self.attempt_started.remove(&record.job.job_id);
        self.dirty = true;
        self.outbox.push(Effect::JobChanged(record.job.clone()));
        self.try_start(now);
    }

    /// Starts the oldest pending job if no job runs and enough nodes are alive. A job that
    /// does not fit the node budget on the plan it would run on fails here, with the fields
    /// named, and the next pending job is tried: one bad job never blocks the queue.
    fn try_start(&mut self, now: Now) {
        self.prune_history(now);
        loop {
            if self
                .state
                .jobs
                .iter()
                .any(|r| r.job.state == JobState::Running as i32)
            {
                return;
            }
            let world = self.state.plan.world_size();
            // `min_nodes` gates a job's first start. A train job that already ran goes on with
            // whoever is left (that is what its commits are for); other kinds wait for
            // `min_nodes` again, so their results always cover the cluster that was asked for.
            let Some(index) = self.state.jobs.iter().position(|r| {
                let needed = if r.is_train() && r.job.attempt > 0 {
                    1
                } else {
                    r.min_nodes.max(1) as usize
                };
                r.job.state == JobState::Pending as i32 && world >= needed
            }) else {
                return;
            };
            let plan_version = self.state.plan_version;
            let Some(spec) = self.state.jobs[index].job.spec.clone() else {
                self.fail_job(index, "the job has no spec".into(), now);
                continue;
            };
            let mut plan = job_plan(&self.state.plan, plan_version, &spec);
            plan.forwarder_addrs.clone_from(&self.config.forwarders);
            if let Err(e) = job_cost(&spec, plan.world_size).check(&self.config.node_budget) {
                let reason = format!(
                    "refused at start on {} ranks: {}: {e}",
                    plan.world_size,
                    e.fields()
                );
                self.fail_job(index, reason, now);
                continue;
            }
            let deadline = attempt_deadline(&spec, &plan, &self.topology);
            let record = &mut self.state.jobs[index];
            self.touched_jobs.insert(record.job.job_id.clone());
            record.job.attempt += 1;
            record.job.state = JobState::Running as i32;
            record.job.error.clear();
            record.job.deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            record.participants = plan.peers.iter().map(|p| p.node_id.clone()).collect();
            record.job.plan = Some(plan);
            let start = Self::start_event(record);
            for id in &record.participants {
                self.outbox.push(Effect::Control {
                    node_id: id.clone(),
                    event: start.clone(),
                });
            }
            self.outbox.push(Effect::JobChanged(record.job.clone()));
            self.attempt_started
                .insert(record.job.job_id.clone(), now.mono);
            self.dirty = true;
            return;
        }
    }

    /// Ends job `index` as failed with `reason`: its participants get an abort, its watchers
    /// the final state. Does not start the next job (callers do).
    fn fail_job(&mut self, index: usize, reason: String, now: Now) {
        let record = &mut self.state.jobs[index];
        self.touched_jobs.insert(record.job.job_id.clone());
        let abort = ControlEvent {
            event: Some(control_event::Event::JobAbort(JobAbort {
                job_id: record.job.job_id.clone(),
                reason: reason.clone(),
                attempt: record.job.attempt,
            })),
        };
        for id in &record.participants {
            self.outbox.push(Effect::Control {
                node_id: id.clone(),
                event: abort.clone(),
            });
        }
        record.job.state = JobState::Failed as i32;
        record.job.error = reason;
        record.job.finished_unix_ms = now.unix_ms;
        self.attempt_started.remove(&record.job.job_id);
        self.outbox.push(Effect::JobChanged(record.job.clone()));
        self.dirty = true;
    }

    /// Fails every running job whose current attempt outlived its deadline, naming the ranks
    /// that did not report.
    fn expire_jobs(&mut self, now: Now) {
        let overdue: Vec<usize> = self
            .state
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.job.state == JobState::Running as i32)
            .filter(|(_, r)| {
                let started = self
                    .attempt_started
                    .get(&r.job.job_id)
                    .copied()
                    .unwrap_or(now.mono);
                now.mono.saturating_sub(started) > Duration::from_millis(r.job.deadline_ms)
            })
            .map(|(i, _)| i)
            .collect();
        if overdue.is_empty() {
            return;
        }
        for index in overdue {
            let record = &self.state.jobs[index];
            let silent: Vec<String> = record
                .participants
                .iter()
                .enumerate()
                .filter(|(_, id)| !record.job.results.iter().any(|r| &r.node_id == *id))
                .map(|(rank, id)| {
                    let name = self.member(id).map(|m| m.name.as_str()).unwrap_or("?");
                    format!("{rank} ({name})")
                })
                .collect();
            let reason = format!(
                "deadline of {:.1} s passed (attempt {}); no result from rank {}",
                record.job.deadline_ms as f64 / 1e3,
                record.job.attempt,
                silent.join(", ")
            );
            self.fail_job(index, reason, now);
        }
        self.try_start(now);
    }

    /// Forgets the oldest finished jobs beyond `job_history`, and those older than
    /// `job_max_age`.
    fn prune_history(&mut self, now: Now) {
        let max_age_ms = self
            .config
            .job_max_age
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX));
        let finished = self
            .state
            .jobs
            .iter()
            .filter(|r| is_terminal(r.job.state))
            .count();
        let mut excess = finished.saturating_sub(self.config.job_history);
        let before = self.state.jobs.len();
        self.state.jobs.retain(|r| {
            if !is_terminal(r.job.state) {
                return true;
            }
            if excess > 0 {
                excess -= 1;
                return false;
            }
            max_age_ms.is_none_or(|age| now.unix_ms.saturating_sub(r.job.finished_unix_ms) <= age)
        });
        if self.state.jobs.len() != before {
            self.dirty = true;
        }
    }

    fn start_event(record: &JobRecord) -> ControlEvent {
        ControlEvent {
            event: Some(control_event::Event::JobStart(JobStart {
                job_id: record.job.job_id.clone(),
                spec: record.job.spec.clone(),
                plan: record.job.plan.clone(),
                resume_from_step: record.job.resume_from_step,
                attempt: record.job.attempt,
            })),
        }
    }

    /// What a node must know when it (re)subscribes to its control stream: the plan, and the
    /// running jobs it takes part in.
    pub fn control_snapshot(&self, node_id: &str) -> Result<Vec<ControlEvent>> {
        self.alive_member(node_id)?;
        let mut events = Vec::new();
        if let Some(rank) = self.state.plan.rank_of(node_id) {
            events.push(self.plan_event(rank, "current plan"));
        }
        for record in &self.state.jobs {
            if record.job.state == JobState::Running as i32
                && record.participants.iter().any(|p| p == node_id)
            {
                events.push(Self::start_event(record));
            }
        }
        Ok(events)
    }

    /// Accepts a job (validated; the field is named on error) and starts it when possible.
    pub fn submit(&mut self, spec: Option<&JobSpec>, min_nodes: u32, now: Now) -> Result<Job> {
        let world = self.state.plan.world_size().max(min_nodes as usize).max(1);
        let world = u32::try_from(world).unwrap_or(u32::MAX);
        let spec = validate::admit(spec, world, &self.config.node_budget)?.clone();
        let job_id = format!("job-{}", self.state.next_job);
        self.state.next_job =
            self.state
                .next_job
                .checked_add(1)
                .ok_or_else(|| ControllerError::State {
                    path: "next_job".into(),
                    message: "job numbers exhausted".into(),
                })?;
        let job = Job {
            job_id: job_id.clone(),
            spec: Some(spec),
            state: JobState::Pending as i32,
            submitted_unix_ms: now.unix_ms,
            ..Job::default()
        };
        self.state.jobs.push(JobRecord {
            job,
            min_nodes,
            participants: Vec::new(),
        });
        self.touched_jobs.insert(job_id.clone());
        self.dirty = true;
        self.try_start(now);
        self.job(&job_id)
    }

    /// A job by id.
    pub fn job(&self, job_id: &str) -> Result<Job> {
        self.record(job_id).map(|r| r.job.clone())
    }

    fn record(&self, job_id: &str) -> Result<&JobRecord> {
        self.state
            .jobs
            .iter()
            .find(|r| r.job.job_id == job_id)
            .ok_or_else(|| ControllerError::UnknownJob(bounded(job_id)))
    }

    fn record_index(&self, job_id: &str) -> Result<usize> {
        self.state
            .jobs
            .iter()
            .position(|r| r.job.job_id == job_id)
            .ok_or_else(|| ControllerError::UnknownJob(bounded(job_id)))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        self.state.jobs.iter().map(|r| r.job.clone()).collect()
    }

    /// One page of jobs: at most `page_size` (0 = 100, at most [`MAX_JOBS_PAGE`]) after the
    /// job named by `page_token` (empty = from the start), oldest or newest first, with or
    /// without results and progress. Returns the page and the next page's token (empty on the
    /// last page).
    pub fn list_jobs(
        &self,
        page_size: u32,
        page_token: &str,
        omit_results: bool,
        newest_first: bool,
    ) -> Result<(Vec<Job>, String)> {
        let size = match page_size {
            0 => 100,
            n => (n as usize).min(MAX_JOBS_PAGE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(job_number(page_token).ok_or_else(|| {
                ControllerError::invalid(
                    "page_token",
                    format!(
                        "'{}' is not a job id from a previous page",
                        bounded(page_token)
                    ),
                )
            })?)
        };
        let past = |r: &&JobRecord| {
            let n = job_number(&r.job.job_id).unwrap_or(0);
            match after {
                None => true,
                Some(a) if newest_first => n < a,
                Some(a) => n > a,
            }
        };
        let ordered: Box<dyn Iterator<Item = &JobRecord>> = if newest_first {
            Box::new(self.state.jobs.iter().rev())
        } else {
            Box::new(self.state.jobs.iter())
        };
        let mut page: Vec<Job> = ordered
            .filter(past)
            .take(size + 1)
            .map(|r| r.job.clone())
            .collect();
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(|j| j.job_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        if omit_results {
            for job in &mut page {
                job.results.clear();
                job.progress.clear();
            }
        }
        Ok((page, next))
    }

    /// Cancels a job that has not ended (an ended job is returned unchanged).
    pub fn cancel(&mut self, job_id: &str, now: Now) -> Result<Job> {
        let index = self.record_index(job_id)?;
        let record = &mut self.state.jobs[index];
        self.touched_jobs.insert(record.job.job_id.clone());
        if is_terminal(record.job.state) {
            return Ok(record.job.clone());
        }
        let abort = ControlEvent {
            event: Some(control_event::Event::JobAbort(JobAbort {
                job_id: job_id.to_string(),
                reason: "cancelled".into(),
                attempt: record.job.attempt,
            })),
        };
        for id in &record.participants {
            self.outbox.push(Effect::Control {
                node_id: id.clone(),
                event: abort.clone(),
            });
        }
        record.job.state = JobState::Cancelled as i32;
        record.job.finished_unix_ms = now.unix_ms;
        self.attempt_started.remove(job_id);
        let job = record.job.clone();
        self.outbox.push(Effect::JobChanged(job.clone()));
        self.dirty = true;
        self.try_start(now);
        Ok(job)
    }

    /// The running record of `job_id` if `node_id` takes part in its attempt `attempt`;
    /// `Ok(None)` for a stale report (an older attempt or an ended job).
    fn participant(
        &self,
        node_id: &str,
        job_id: &str,
        attempt: u32,
    ) -> Result<Option<(usize, u32)>> {
        if self.member(node_id).is_none() {
            return Err(ControllerError::UnknownNode(bounded(node_id)));
        }
        let index = self.record_index(job_id)?;
        let record = &self.state.jobs[index];
        if record.job.state != JobState::Running as i32 || record.job.attempt != attempt {
            return Ok(None);
        }
        let Some(rank) = record.participants.iter().position(|p| p == node_id) else {
            // A member that is not in this attempt: not a stale report but a wrong one.
            return Err(ControllerError::NotParticipant {
                node_id: bounded(node_id),
                job_id: bounded(job_id),
            });
        };
        Ok(Some((index, rank as u32)))
    }

    /// A node's progress on a job. Returns false when the report was stale and ignored.
    pub fn progress(
        &mut self,
        node_id: &str,
        job_id: &str,
        attempt: u32,
        report: NodeProgress,
    ) -> Result<bool> {
        let Some((index, rank)) = self.participant(node_id, job_id, attempt)? else {
            return Ok(false);
        };
        let record = &mut self.state.jobs[index];
        self.touched_jobs.insert(record.job.job_id.clone());
        let entry = NodeProgress {
            rank,
            node_id: node_id.to_string(),
            ..report
        };
        match record
            .job
            .progress
            .iter_mut()
            .find(|p| p.node_id == node_id)
        {
            Some(old) => {
                if entry.committed_step != old.committed_step {
                    self.dirty = true;
                }
                *old = entry;
            }
            None => {
                self.dirty = true;
                record.job.progress.push(entry);
                record.job.progress.sort_by_key(|p| p.rank);
            }
        }
        self.outbox.push(Effect::JobChanged(record.job.clone()));
        Ok(true)
    }

    /// A node's final result; the job ends when every participant reported. Returns false when
    /// the report was stale and ignored.
    pub fn result(
        &mut self,
        node_id: &str,
        job_id: &str,
        attempt: u32,
        result: NodeResult,
        now: Now,
    ) -> Result<bool> {
        let Some((index, rank)) = self.participant(node_id, job_id, attempt)? else {
            return Ok(false);
        };
        let name = self
            .member(node_id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let record = &mut self.state.jobs[index];
        self.touched_jobs.insert(record.job.job_id.clone());
        let entry = NodeResult {
            rank,
            node_id: node_id.to_string(),
            ..result
        };
        let failure = (!entry.ok).then(|| format!("rank {rank} ({name}): {}", entry.error));
        match record.job.results.iter_mut().find(|r| r.node_id == node_id) {
            Some(old) => *old = entry,
            None => {
                record.job.results.push(entry);
                record.job.results.sort_by_key(|r| r.rank);
            }
        }
        if let Some(reason) = failure {
            // One failed rank fails the job at once: the others are aborted rather than left
            // waiting for a peer that is gone.
            self.fail_job(index, reason, now);
            self.try_start(now);
            return Ok(true);
        }
        if record.job.results.len() == record.participants.len() {
            record.job.state = JobState::Succeeded as i32;
            record.job.error.clear();
            record.job.finished_unix_ms = now.unix_ms;
            self.attempt_started.remove(&record.job.job_id);
        }
        self.dirty = true;
        self.outbox.push(Effect::JobChanged(record.job.clone()));
        self.try_start(now);
        Ok(true)
    }

    /// Nodes, sites and the plan, for `status`.
    pub fn list_nodes(&self, now: Now) -> ListNodesResponse {
        let controller_site = &self.config.controller_site;
        let nodes = self
            .state
            .members
            .iter()
            .map(|m| {
                let live = self.liveness.get(&m.node_id);
                let state = match m.state {
                    MemberState::Alive if live.is_some_and(|l| l.last_heard.is_none()) => {
                        NodeState::Unknown
                    }
                    MemberState::Alive => NodeState::Alive,
                    MemberState::Dead => NodeState::Dead,
                    MemberState::Left => NodeState::Left,
                };
                NodeInfo {
                    node_id: m.node_id.clone(),
                    name: m.name.clone(),
                    site: m.site.clone(),
                    state: state as i32,
                    rank: self.state.plan.rank_of(&m.node_id),
                    advertise_addr: m.advertise_addr.clone(),
                    metrics_addr: m.metrics_addr.clone(),
                    last_heartbeat_age_ms: live
                        .and_then(|l| l.last_heard)
                        .map(|t| now.mono.saturating_sub(t).as_millis() as u64),
                    heartbeat_deadline_ms: u64::try_from(
                        self.heartbeat_deadline(&m.site).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                    registered_unix_ms: m.registered_unix_ms,
                }
            })
            .collect();
        let sites = self
            .topology
            .sites
            .iter()
            .map(|s| {
                let on_site = self.state.members.iter().filter(|m| &m.site == s);
                SiteInfo {
                    name: s.clone(),
                    one_way_ms: self.topology.one_way(controller_site, s).as_secs_f64() * 1e3,
                    alive: on_site
                        .clone()
                        .filter(|m| m.state == MemberState::Alive)
                        .count() as u32,
                    total: on_site.count() as u32,
                }
            })
            .collect();
        ListNodesResponse {
            nodes,
            sites,
            plan_version: self.state.plan_version,
            profile_name: self.topology.profile_name.clone(),
            controller_site: controller_site.clone(),
            scenario_epoch_unix_ms: self.state.scenario_epoch_unix_ms,
            time_dilation: self.config.time_dilation.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacefabric_proto::v1::{PingJob, job_spec};

    fn topology() -> Topology {
        Topology::new(
            "earth-moon",
            "",
            7,
            vec!["earth".into(), "moon".into()],
            |a, b| {
                if a == b {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(1280)
                }
            },
        )
    }

    fn core() -> Core {
        let config = CoreConfig {
            controller_site: "earth".into(),
            ..CoreConfig::default()
        };
        Core::new(config, topology(), None, at(0))
    }

    fn at(ms: u64) -> Now {
        Now {
            mono: Duration::from_millis(ms),
            unix_ms: 1_000_000 + ms,
        }
    }

    fn reg(core: &mut Core, name: &str, site: &str, t: u64) -> Registration {
        core.register(
            &RegisterFields {
                node_name: name.into(),
                preferred_site: site.into(),
                advertise_addr: format!("127.0.0.1:{}", 7500 + name.len()),
                metrics_addr: String::new(),
                key: String::new(),
            },
            at(t),
        )
        .unwrap()
    }

    fn ping(iterations: u32) -> JobSpec {
        JobSpec {
            deadline_ms: 0,
            name: "ping".into(),
            kind: Some(job_spec::Kind::Ping(PingJob { iterations })),
        }
    }

    /// Drives the core through registrations, deaths, a restarted job, progress, results, a
    /// failure, a cancel and pruned history; after every step the state log (written with
    /// [`Core::touched_jobs`] only) reloads to exactly the core's state.
    #[test]
    fn the_state_log_sees_every_change_of_the_core() {
        use crate::state_log::StateLog;
        use crate::store::StateDir;
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
        let config = CoreConfig {
            controller_site: "earth".into(),
            job_history: 2,
            ..CoreConfig::default()
        };
        let mut core = Core::new(config, topology(), None, at(0));
        let mut step = 0;
        let mut check = |core: &mut Core| {
            step += 1;
            log.save(core.persisted(), core.touched_jobs()).unwrap();
            core.mark_clean();
            let (_, loaded) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
            assert_eq!(loaded.as_ref(), Some(core.persisted()), "after step {step}");
        };
        check(&mut core);
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| reg(&mut core, n, "earth", 0).member.node_id)
            .collect();
        check(&mut core);
        let job = core.submit(Some(&ping(10)), 3, at(0)).unwrap();
        check(&mut core);
        for id in &ids {
            let report = NodeProgress {
                step: 5,
                committed_step: 4,
                ..NodeProgress::default()
            };
            core.progress(id, &job.job_id, 1, report).unwrap();
            check(&mut core);
        }
        for id in &ids[..2] {
            core.heartbeat(id, at(2_000)).unwrap();
        }
        core.expire(at(3_500));
        check(&mut core);
        reg(&mut core, "c", "earth", 3_600);
        check(&mut core);
        for id in &ids {
            let ok = NodeResult {
                ok: true,
                ..NodeResult::default()
            };
            core.result(id, &job.job_id, 2, ok, at(4_000)).unwrap();
            check(&mut core);
        }
        for n in 0..3u64 {
            let job = core.submit(Some(&ping(1)), 1, at(5_000 + n)).unwrap();
            check(&mut core);
            if n == 1 {
                core.cancel(&job.job_id, at(5_100)).unwrap();
            } else {
                let failed = NodeResult {
                    ok: false,
                    error: "boom".into(),
                    ..NodeResult::default()
                };
                core.result(&ids[0], &job.job_id, 1, failed, at(5_200))
                    .unwrap();
            }
            check(&mut core);
        }
        core.deregister(&ids[1], at(6_000)).unwrap();
        check(&mut core);
        assert!(core.persisted().jobs.len() <= 2, "history was pruned");
    }

    #[test]
    fn registering_twice_keeps_the_identity() {
        let mut core = core();
        let a = reg(&mut core, "a", "earth", 0);
        let b = reg(&mut core, "a", "earth", 10);
        assert_eq!(a.member.node_id, b.member.node_id);
        assert!(b.reattached);
        assert_eq!(core.persisted().members.len(), 1);
        assert_eq!(core.plan().0.world_size(), 1);
    }

    #[test]
    fn the_moon_deadline_includes_the_light_delay() {
        let mut core = core();
        reg(&mut core, "e", "earth", 0);
        reg(&mut core, "m", "moon", 0);
        // 3 s + 1 ms for earth, 3 s + 1.28 s for the moon.
        assert_eq!(core.expire(at(3_002)), vec!["e".to_string()]);
        assert!(core.expire(at(4_000)).is_empty());
        assert_eq!(core.expire(at(4_281)), vec!["m".to_string()]);
        assert_eq!(core.plan().0.world_size(), 0);
    }

    #[test]
    fn a_dead_participant_restarts_the_job_from_the_committed_step() {
        let mut core = core();
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| reg(&mut core, n, "earth", 0).member.node_id)
            .collect();
        let job = core.submit(Some(&ping(10)), 3, at(0)).unwrap();
        assert_eq!(job.state, JobState::Running as i32);
        core.take_effects();
        for (i, id) in ids.iter().enumerate() {
            let report = NodeProgress {
                step: 5,
                committed_step: 4 + i as u64,
                ..NodeProgress::default()
            };
            assert!(core.progress(id, &job.job_id, 1, report).unwrap());
        }
        for id in &ids[..2] {
            core.heartbeat(id, at(2_000)).unwrap();
        }
        assert_eq!(core.expire(at(3_500)), vec!["c".to_string()]);
        let job = core.job(&job.job_id).unwrap();
        // min_nodes 3 with two alive: pending, resuming from step 4.
        assert_eq!(job.state, JobState::Pending as i32);
        assert_eq!(job.resume_from_step, 4);
        let effects = core.take_effects();
        let aborts = effects
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Effect::Control {
                        event: ControlEvent {
                            event: Some(control_event::Event::JobAbort(_))
                        },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(aborts, 3);
        let plans = effects
            .iter()
            .filter(|e| matches!(e, Effect::Control { event: ControlEvent { event: Some(control_event::Event::Plan(p)) }, .. } if p.peers.len() == 2))
            .count();
        assert_eq!(plans, 2);
        // c comes back: the job starts again as attempt 2 from step 4.
        reg(&mut core, "c", "earth", 3_600);
        let job = core.job(&job.job_id).unwrap();
        assert_eq!(job.state, JobState::Running as i32);
        assert_eq!(job.attempt, 2);
        // stale reports of attempt 1 are ignored
        assert!(
            !core
                .progress(&ids[0], &job.job_id, 1, NodeProgress::default())
                .unwrap()
        );
        for id in &ids {
            assert!(
                core.result(
                    id,
                    &job.job_id,
                    2,
                    NodeResult {
                        ok: true,
                        ..NodeResult::default()
                    },
                    at(4_000)
                )
                .unwrap()
            );
        }
        assert_eq!(
            core.job(&job.job_id).unwrap().state,
            JobState::Succeeded as i32
        );
    }

    fn train(steps: u64) -> JobSpec {
        JobSpec {
            deadline_ms: 0,
            name: "t".into(),
            kind: Some(job_spec::Kind::Train(spacefabric_proto::v1::TrainJob {
                strategy: spacefabric_proto::v1::Strategy::Sync as i32,
                steps,
                ..Default::default()
            })),
        }
    }

    fn commit_all(core: &mut Core, ids: &[String], job: &Job, step: u64) {
        for id in ids {
            let report = NodeProgress {
                step,
                committed_step: step,
                ..NodeProgress::default()
            };
            assert!(core.progress(id, &job.job_id, job.attempt, report).unwrap());
        }
    }

    #[test]
    fn a_train_job_shrinks_on_a_death_and_grows_for_a_replacement() {
        let mut core2 = core();
        let mut core = core();
        let ids: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|n| reg(&mut core, n, "earth", 0).member.node_id)
            .collect();
        let job = core.submit(Some(&train(100)), 3, at(0)).unwrap();
        assert_eq!(job.attempt, 1);
        commit_all(&mut core, &ids, &job, 30);
        for id in &ids[..2] {
            core.heartbeat(id, at(2_000)).unwrap();
        }
        assert_eq!(core.expire(at(3_500)), vec!["c".to_string()]);
        // min_nodes 3 gated the first start only: attempt 2 runs at once on a and b from the
        // commit.
        let job = core.job(&job.job_id).unwrap();
        assert_eq!(job.state, JobState::Running as i32);
        assert_eq!(job.attempt, 2);
        assert_eq!(job.resume_from_step, 30);
        assert_eq!(job.plan.as_ref().unwrap().world_size, 2);
        commit_all(&mut core, &ids[..2], &job, 40);
        // A replacement joins: the job grows to three from step 40.
        reg(&mut core, "d", "earth", 3_600);
        let job = core.job(&job.job_id).unwrap();
        assert_eq!(job.attempt, 3);
        assert_eq!(job.resume_from_step, 40);
        let restarts: Vec<(u32, u64)> = job
            .restarts
            .iter()
            .map(|r| (r.attempt, r.resume_from_step))
            .collect();
        assert_eq!(restarts, vec![(2, 30), (3, 40)]);
        assert!(
            job.restarts[0].reason.contains('c'),
            "{:?}",
            job.restarts[0]
        );
        assert_eq!(job.plan.as_ref().unwrap().world_size, 3);
        // A ping job keeps the plan it started on when a node joins.
        reg(&mut core2, "a", "earth", 0);
        let ping_job = core2.submit(Some(&ping(10)), 1, at(0)).unwrap();
        reg(&mut core2, "b", "earth", 10);
        assert_eq!(core2.job(&ping_job.job_id).unwrap().attempt, 1);
    }

    #[test]
    fn unknown_job_and_node_are_errors() {
        let mut core = core();
        assert!(matches!(
            core.job("job-9"),
            Err(ControllerError::UnknownJob(_))
        ));
        assert!(matches!(
            core.heartbeat("n9", at(0)),
            Err(ControllerError::UnknownNode(_))
        ));
        assert!(matches!(
            core.cancel("job-9", at(0)),
            Err(ControllerError::UnknownJob(_))
        ));
    }

    #[test]
    fn state_survives_a_json_round_trip_and_members_get_a_fresh_deadline() {
        let mut core = core();
        reg(&mut core, "a", "moon", 0);
        core.submit(Some(&ping(3)), 0, at(0)).unwrap();
        let text = serde_json::to_string(core.persisted()).unwrap();
        let state: PersistedState = serde_json::from_str(&text).unwrap();
        assert_eq!(&state, core.persisted());
        let config = core.config().clone();
        let mut again = Core::new(config, topology(), Some(state), at(100_000));
        assert!(again.expire(at(100_000 + 4_000)).is_empty());
        let nodes = again.list_nodes(at(100_001));
        assert_eq!(nodes.nodes[0].state, NodeState::Unknown as i32);
        let snapshot = again.control_snapshot("n0").unwrap();
        assert_eq!(snapshot.len(), 2, "plan + running job");
    }

    fn ok_result() -> NodeResult {
        NodeResult {
            ok: true,
            ..NodeResult::default()
        }
    }

    #[test]
    fn poison_specs_are_refused_at_submit_naming_the_fields() {
        let mut core = core();
        reg(&mut core, "a", "earth", 0);
        let teacher = JobSpec {
            kind: Some(job_spec::Kind::Train(spacefabric_proto::v1::TrainJob {
                strategy: spacefabric_proto::v1::Strategy::Sync as i32,
                steps: 10,
                teacher_width: 65_536,
                teacher_depth: 64,
                ..Default::default()
            })),
            ..train(10)
        };
        let err = core
            .submit(Some(&teacher), 0, at(0))
            .unwrap_err()
            .to_string();
        println!("teacher poison: {err}");
        assert!(err.contains("spec.train.teacher_width"), "{err}");
        assert!(err.contains("node budget"), "{err}");
        let eval = JobSpec {
            kind: Some(job_spec::Kind::Train(spacefabric_proto::v1::TrainJob {
                strategy: spacefabric_proto::v1::Strategy::Sync as i32,
                steps: 10,
                eval_samples: 1 << 20,
                input_dim: 2048,
                ..Default::default()
            })),
            ..train(10)
        };
        let err = core.submit(Some(&eval), 0, at(0)).unwrap_err().to_string();
        println!("eval poison: {err}");
        assert!(err.contains("eval_samples"), "{err}");
        assert!(core.jobs().is_empty(), "nothing was queued");
    }

    #[test]
    fn a_failed_rank_fails_the_job_at_once_and_the_next_job_starts() {
        let mut core = core();
        let ids: Vec<String> = ["a", "b"]
            .iter()
            .map(|n| reg(&mut core, n, "earth", 0).member.node_id)
            .collect();
        let first = core.submit(Some(&ping(3)), 2, at(0)).unwrap();
        let second = core.submit(Some(&ping(3)), 2, at(0)).unwrap();
        core.take_effects();
        let failed = NodeResult {
            ok: false,
            error: "result refused by the controller: OutOfRange".into(),
            ..NodeResult::default()
        };
        assert!(
            core.result(&ids[1], &first.job_id, 1, failed, at(10))
                .unwrap()
        );
        let job = core.job(&first.job_id).unwrap();
        assert_eq!(job.state, JobState::Failed as i32);
        assert!(job.error.contains("rank 1 (b)"), "{}", job.error);
        assert!(job.error.contains("OutOfRange"), "{}", job.error);
        // rank 0 is told to stop; the queue moved on.
        let effects = core.take_effects();
        assert!(effects.iter().any(|e| matches!(e, Effect::Control { node_id, event: ControlEvent { event: Some(control_event::Event::JobAbort(_)) } } if node_id == &ids[0])));
        assert_eq!(
            core.job(&second.job_id).unwrap().state,
            JobState::Running as i32
        );
    }

    #[test]
    fn a_silent_rank_fails_the_job_by_its_deadline_naming_the_rank() {
        let mut core = core();
        let ids: Vec<String> = ["a", "b"]
            .iter()
            .map(|n| reg(&mut core, n, "earth", 0).member.node_id)
            .collect();
        let mut spec = ping(3);
        spec.deadline_ms = 5_000;
        let job = core.submit(Some(&spec), 2, at(0)).unwrap();
        assert_eq!(job.deadline_ms, 5_000);
        let next = core.submit(Some(&ping(3)), 2, at(0)).unwrap();
        assert!(
            core.result(&ids[0], &job.job_id, 1, ok_result(), at(100))
                .unwrap()
        );
        for t in (500..=5_000).step_by(500) {
            for id in &ids {
                core.heartbeat(id, at(t)).unwrap();
            }
            assert!(core.expire(at(t)).is_empty());
            assert_eq!(
                core.job(&job.job_id).unwrap().state,
                JobState::Running as i32
            );
        }
        for id in &ids {
            core.heartbeat(id, at(5_400)).unwrap();
        }
        core.expire(at(5_400));
        let failed = core.job(&job.job_id).unwrap();
        assert_eq!(failed.state, JobState::Failed as i32);
        assert!(failed.error.contains("deadline"), "{}", failed.error);
        assert!(failed.error.contains("rank 1 (b)"), "{}", failed.error);
        assert_eq!(
            core.job(&next.job_id).unwrap().state,
            JobState::Running as i32
        );
        // The default deadline is derived: some minutes on a 1 ms site.
        let derived = core.job(&next.job_id).unwrap().deadline_ms;
        assert!((120_000..1_000_000).contains(&derived), "{derived}");
    }

    #[test]
    fn reports_from_non_members_and_non_participants_are_refused() {
        let mut core = core();
        let a = reg(&mut core, "a", "earth", 0).member.node_id;
        let job = core.submit(Some(&ping(3)), 1, at(0)).unwrap();
        let b = reg(&mut core, "b", "earth", 10).member.node_id;
        assert!(matches!(
            core.result("n99", &job.job_id, 1, ok_result(), at(20)),
            Err(ControllerError::UnknownNode(_))
        ));
        assert!(matches!(
            core.progress("n99", &job.job_id, 1, NodeProgress::default()),
            Err(ControllerError::UnknownNode(_))
        ));
        assert!(matches!(
            core.result(&b, &job.job_id, 1, ok_result(), at(20)),
            Err(ControllerError::NotParticipant { .. })
        ));
        assert!(
            core.result(&a, &job.job_id, 1, ok_result(), at(20))
                .unwrap()
        );
        assert_eq!(
            core.job(&job.job_id).unwrap().state,
            JobState::Succeeded as i32
        );
    }

    #[test]
    fn history_is_pruned_by_count_and_age_and_paged() {
        let config = CoreConfig {
            controller_site: "earth".into(),
            job_history: 5,
            job_max_age: Some(Duration::from_secs(60)),
            ..CoreConfig::default()
        };
        let mut core = Core::new(config, topology(), None, at(0));
        let a = reg(&mut core, "a", "earth", 0).member.node_id;
        for i in 0..12u64 {
            let job = core.submit(Some(&ping(1)), 1, at(i)).unwrap();
            assert!(core.result(&a, &job.job_id, 1, ok_result(), at(i)).unwrap());
        }
        core.submit(Some(&ping(1)), 1, at(20)).unwrap(); // runs
        let ids: Vec<String> = core.jobs().into_iter().map(|j| j.job_id).collect();
        assert_eq!(
            ids,
            ["job-8", "job-9", "job-10", "job-11", "job-12", "job-13"]
        );
        let (page, next) = core.list_jobs(4, "", true, true).unwrap();
        let got: Vec<&str> = page.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(got, ["job-13", "job-12", "job-11", "job-10"]);
        assert!(page.iter().all(|j| j.results.is_empty()));
        let (page, next) = core.list_jobs(4, &next, false, true).unwrap();
        let got: Vec<&str> = page.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(got, ["job-9", "job-8"]);
        assert!(next.is_empty());
        assert!(!page[0].results.is_empty());
        assert!(core.list_jobs(4, "nonsense", false, false).is_err());
        // An hour later the finished jobs age out; the running one stays.
        core.submit(Some(&ping(1)), 1, at(3_600_000)).unwrap();
        let ids: Vec<String> = core.jobs().into_iter().map(|j| j.job_id).collect();
        assert_eq!(ids, ["job-13", "job-14"]);
    }

    #[test]
    fn a_stall_of_the_controller_is_not_every_node_dying() {
        let mut core = core();
        reg(&mut core, "a", "earth", 0);
        reg(&mut core, "b", "earth", 0);
        assert!(core.expire(at(250)).is_empty());
        // The detector did not run for 20 s (the controller was frozen): no heartbeat could be
        // heard, so nobody is declared dead on waking up...
        assert!(core.expire(at(20_250)).is_empty());
        // ...but a node that stays silent after the stall is, one deadline later.
        // (the stall beyond one interval is forgiven: 3 s of deadline end at 22 s)
        for t in (20_500..=21_750).step_by(250) {
            assert!(core.expire(at(t)).is_empty(), "at {t}");
        }
        core.heartbeat("n0", at(21_750)).unwrap();
        let mut dead = Vec::new();
        for t in (22_000..=24_500).step_by(250) {
            dead.extend(core.expire(at(t)));
        }
        assert_eq!(dead, vec!["b".to_string()]);
    }

    #[test]
    fn a_live_nodes_name_cannot_be_taken_over_with_another_key() {
        let mut core = core();
        let fields = |key: &str, port: u16| RegisterFields {
            node_name: "a".into(),
            preferred_site: "earth".into(),
            advertise_addr: format!("127.0.0.1:{port}"),
            metrics_addr: String::new(),
            key: key.into(),
        };
        let first = core.register(&fields("k1", 7500), at(0)).unwrap();
        // The same key re-attaches (a restarted controller, a new connection).
        assert!(
            core.register(&fields("k1", 7500), at(10))
                .unwrap()
                .reattached
        );
        // Another key, from another address, while the node lives: refused, nothing changes.
        let err = core.register(&fields("k2", 9999), at(20)).unwrap_err();
        assert!(matches!(err, ControllerError::NameTaken(_)), "{err}");
        assert_eq!(core.persisted().members[0].advertise_addr, "127.0.0.1:7500");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::AlreadyExists,
            "not fatal for an agent: it retries until the old node is declared dead"
        );
        // Once the old node is dead, a replacement with a new key gets the name (and the id).
        assert_eq!(core.expire(at(3_100)), vec!["a".to_string()]);
        let again = core.register(&fields("k2", 9999), at(3_200)).unwrap();
        assert_eq!(again.member.node_id, first.member.node_id);
        assert_eq!(core.persisted().members[0].key, "k2");
    }
}
