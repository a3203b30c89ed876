//! Rendering of the `status` command: the controller's nodes (rank, site, state, last
//! heartbeat age), sites (light delay from the controller, nodes alive) and jobs, as text
//! tables.

use std::fmt::Write;

use spacefabric_proto::v1::{Job, JobState, ListNodesResponse, NodeState, job_spec};

fn node_state(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::Alive) => "alive",
        Ok(NodeState::Dead) => "dead",
        Ok(NodeState::Left) => "left",
        Ok(NodeState::Unknown) => "unknown",
        _ => "?",
    }
}

/// A job state's name.
pub fn job_state(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Pending) => "pending",
        Ok(JobState::Running) => "running",
        Ok(JobState::Succeeded) => "succeeded",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        _ => "?",
    }
}

fn job_kind(job: &Job) -> &'static str {
    match job.spec.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(job_spec::Kind::AllReduce(_)) => "allreduce",
        Some(job_spec::Kind::Train(_)) => "train",
        Some(job_spec::Kind::Ping(_)) => "ping",
        None => "?",
    }
}

fn age(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s", ms as f64 / 1e3),
        None => "-".into(),
    }
}

/// The status report as text.
pub fn render(url: &str, nodes: &ListNodesResponse, jobs: &[Job]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "controller {url}  profile {}  site {}  plan v{}{}",
        nodes.profile_name,
        nodes.controller_site,
        nodes.plan_version,
        if nodes.time_dilation > 1 {
            format!(
                "  time dilation K = {} (times below are emulated)",
                nodes.time_dilation
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>8} {:>8}",
        "SITE", "ONE-WAY", "ALIVE", "NODES"
    );
    for site in &nodes.sites {
        let _ = writeln!(
            out,
            "{:<12} {:>9.1} ms {:>8} {:>8}",
            site.name, site.one_way_ms, site.alive, site.total
        );
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<6} {:>5} {:<10} {:<8} {:>8} {:>9} {:<22}",
        "NODE", "ID", "RANK", "SITE", "STATE", "LAST HB", "DEADLINE", "ADDRESS"
    );
    let mut sorted: Vec<_> = nodes.nodes.iter().collect();
    sorted.sort_by_key(|n| (n.rank.unwrap_or(u32::MAX), n.name.clone()));
    for n in sorted {
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:>5} {:<10} {:<8} {:>8} {:>8.1}s {:<22}",
            n.name,
            n.node_id,
            n.rank.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            n.site,
            node_state(n.state),
            age(n.last_heartbeat_age_ms),
            n.heartbeat_deadline_ms as f64 / 1e3,
            n.advertise_addr
        );
    }
    if nodes.nodes.is_empty() {
        let _ = writeln!(out, "(no nodes registered)");
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<10} {:<10} {:>7} {:>6} {:>10} {:<}",
        "JOB", "KIND", "STATE", "ATTEMPT", "NODES", "RESULTS", "NOTE"
    );
    for job in jobs {
        let world = job.plan.as_ref().map(|p| p.world_size).unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<10} {:>7} {:>6} {:>10} {}",
            job.job_id,
            job_kind(job),
            job_state(job.state),
            job.attempt,
            world,
            format!("{}/{}", job.results.len(), world),
            job.error
        );
    }
    if jobs.is_empty() {
        let _ = writeln!(out, "(no jobs)");
    }
    out
}
