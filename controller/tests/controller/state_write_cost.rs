//! What one job change costs the state dir, with 25 and 1,000 jobs in history: the old way
//! (the whole state serialised and written atomically to `state.json`, as controllers before
//! the change log did) against the change log ([`StateLog::save`], compaction included).
//! Opt-in, it prints a table:
//!
//! `cargo test -p spacefabric-controller --test controller state_write_cost -- --ignored --nocapture`
//!
//! Each job carries 4 rank results of about 20 KB of state JSON (170 sweep points each) (80 KB per job: the issue saw 2 MB of
//! state after 25 jobs). A "change" is a progress report on the newest job (running, no
//! results yet). "bytes/change" is the mean over the run, snapshots (compaction) included.
//! "compaction" is one snapshot written in place; "held" is what a deferred compaction
//! (the controller's way) holds the controller's lock for: the copy of the state.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use spacefabric_controller::core::{JobRecord, Member, MemberState, Now, PersistedState};
use spacefabric_controller::state_log::StateLog;
use spacefabric_controller::store::StateDir;
use spacefabric_proto::v1::{Job, JobState, NodeProgress, NodeResult};
use spacefabric_testkit::results::sweep_result;

fn state_with_jobs(jobs: u64) -> PersistedState {
    let mut state = PersistedState::new(
        "lan",
        Now {
            mono: Duration::ZERO,
            unix_ms: 1,
        },
    );
    state.members = (0..4)
        .map(|i| Member {
            node_id: format!("n{i}"),
            name: format!("node-{i}"),
            site: "lan".into(),
            advertise_addr: format!("127.0.0.1:{}", 7500 + i),
            metrics_addr: String::new(),
            state: MemberState::Alive,
            ordinal: i,
            registered_unix_ms: 0,
            key: String::new(),
        })
        .collect();
    state.next_ordinal = 4;
    for n in 1..=jobs {
        // The newest job is the running one: no results yet.
        let results = (0..4)
            .filter(|_| n < jobs)
            .map(|rank| NodeResult {
                rank,
                node_id: format!("n{rank}"),
                ok: true,
                error: String::new(),
                result: Some(sweep_result(rank, 170)),
                metrics: Default::default(),
            })
            .collect();
        state.jobs.push(JobRecord {
            job: Job {
                job_id: format!("job-{n}"),
                state: if n == jobs {
                    JobState::Running
                } else {
                    JobState::Succeeded
                } as i32,
                attempt: 1,
                results,
                ..Job::default()
            },
            min_nodes: 1,
            participants: (0..4).map(|i| format!("n{i}")).collect(),
        });
    }
    state.next_job = jobs + 1;
    state
}

fn change(state: &mut PersistedState, i: u64) -> BTreeSet<String> {
    let Some(last) = state.jobs.last_mut() else {
        return BTreeSet::new();
    };
    last.job.progress = vec![NodeProgress {
        rank: 0,
        step: i,
        committed_step: i,
        ..NodeProgress::default()
    }];
    [last.job.job_id.clone()].into_iter().collect()
}

struct Row {
    bytes_per_change: f64,
    ms_p50: f64,
    ms_mean: f64,
    ms_max: f64,
}

fn summarise(bytes: u64, mut times: Vec<Duration>) -> Row {
    let n = times.len() as f64;
    times.sort();
    Row {
        bytes_per_change: bytes as f64 / n,
        ms_mean: times.iter().map(Duration::as_secs_f64).sum::<f64>() / n * 1e3,
        ms_p50: times[times.len() / 2].as_secs_f64() * 1e3,
        ms_max: times[times.len() - 1].as_secs_f64() * 1e3,
    }
}

fn whole_file(jobs: u64, changes: u64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let store = StateDir::open(dir.path()).unwrap();
    let mut state = state_with_jobs(jobs);
    let (mut bytes, mut times) = (0u64, Vec::new());
    for i in 0..changes {
        change(&mut state, i);
        let t = Instant::now();
        let text = serde_json::to_vec_pretty(&state).unwrap();
        store.write_atomic("state.json", &text, false).unwrap();
        times.push(t.elapsed());
        bytes += text.len() as u64;
    }
    summarise(bytes, times)
}

fn change_log(jobs: u64, changes: u64) -> (Row, u64, Duration, u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
    let mut state = state_with_jobs(jobs);
    log.save(&state, &BTreeSet::new()).unwrap();
    let (mut bytes, mut times, mut snapshots) = (0u64, Vec::new(), 0u64);
    for i in 0..changes {
        let touched = change(&mut state, i);
        let t = Instant::now();
        let report = log.save(&state, &touched).unwrap();
        times.push(t.elapsed());
        bytes += report.bytes;
        snapshots += u64::from(report.snapshot);
    }
    // One compaction (what runs when the log outgrows the snapshot), timed on its own.
    let t = Instant::now();
    let compaction = log.compact(&state).unwrap();
    let compaction_time = t.elapsed();
    // What the controller's lock holds of a deferred compaction: the copy of the state (the
    // log rotation is a rename); encoding and writing run on their own thread.
    let t = Instant::now();
    let copy = state.clone();
    let held = t.elapsed();
    drop(copy);
    (
        summarise(bytes, times),
        snapshots,
        compaction_time,
        compaction.bytes,
        held,
    )
}

#[test]
#[ignore = "measurement: prints the state write cost per job change"]
fn state_write_cost_per_job_change() {
    println!(
        "{:>6} {:>10} {:>8} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "jobs", "store", "changes", "bytes/change", "p50 ms", "mean ms", "max ms", "snapshots"
    );
    for (jobs, changes) in [(25u64, 50u64), (1000, 10)] {
        let old = whole_file(jobs, changes);
        println!(
            "{jobs:>6} {:>10} {changes:>8} {:>14.0} {:>10.2} {:>10.2} {:>10.2} {:>10}",
            "state.json", old.bytes_per_change, old.ms_p50, old.ms_mean, old.ms_max, changes
        );
        let log_changes = 2000;
        let (new, snapshots, compaction_time, compaction_bytes, held) =
            change_log(jobs, log_changes);
        println!(
            "{jobs:>6} {:>10} {log_changes:>8} {:>14.0} {:>10.2} {:>10.2} {:>10.2} {snapshots:>10}",
            "log", new.bytes_per_change, new.ms_p50, new.ms_mean, new.ms_max
        );
        println!(
            "{jobs:>6} {:>10} {:>8} {compaction_bytes:>14} {:>10.2}",
            "compaction",
            1,
            compaction_time.as_secs_f64() * 1e3
        );
        println!(
            "{jobs:>6} {:>10} {:>8} {:>14} {:>10.2}",
            "held",
            1,
            "-",
            held.as_secs_f64() * 1e3
        );
    }
}
