//! The controller's state on disk, written incrementally: `state.json` is a snapshot of the
//! whole [`PersistedState`], `state.log` holds the changes made since, one JSON line per
//! committed change (appended and fsynced). A change rewrites only what it touched — the
//! header (counters and plan), a member, a job — so its cost no longer grows with the job
//! history. When the log outgrows the snapshot (and [`COMPACT_MIN_BYTES`]) it is folded into
//! a new snapshot (written atomically) and truncated.
//!
//! Compaction need not hold the controller: [`StateLog::save_deferred`] rotates the log
//! (`state.log` becomes [`PREVIOUS_LOG_FILE`], new changes go to a fresh `state.log`) and
//! hands back a [`Compaction`] — a copy of the state — that writes the snapshot and deletes
//! the previous log on another thread. A crash at any point loads: snapshot, then the previous
//! log, then the current one.
//!
//! Why a log and not an embedded database: the state is one document read whole at start and
//! changed a few entries at a time; a JSON-lines log keeps the files readable with `jq`, adds
//! no dependency and needs only `append + fsync` for durability.
//!
//! Crash safety: a line is committed once its fsync returns. A torn last line (a crash
//! mid-append) is ignored with a warning and cut off; an unreadable line followed by good
//! ones is corruption, an error naming the file and line. Every change is a whole-entry
//! upsert or removal (last writer wins), so replaying a log onto a snapshot that already
//! contains it — a crash between writing a snapshot and truncating the log — gives the same
//! state. The state's meaning is checked after replay ([`PersistedState::check`]). State dirs
//! of older controllers (a `state.json` of format 1, no log) load unchanged.

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::{JobRecord, Member, PersistedState, STATE_FORMAT};
use crate::error::ControllerError;
use crate::plan::MembershipPlan;
use crate::store::StateDir;

/// The snapshot inside the state dir (the whole state as of the last compaction).
pub const SNAPSHOT_FILE: &str = "state.json";
/// The change log inside the state dir.
pub const LOG_FILE: &str = "state.log";
/// Snapshot format of controllers before the log (whole `state.json` per change); still read.
pub const LEGACY_STATE_FORMAT: u32 = 1;
/// The log is folded into a new snapshot once it is larger than the snapshot and than this.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// The log of the generation a running [`Compaction`] is folding into the snapshot.
pub const PREVIOUS_LOG_FILE: &str = "state.log.1";

/// The scalar part of the state and the plan (small; written whole when any of it changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    profile_name: String,
    scenario_epoch_unix_ms: u64,
    next_ordinal: u64,
    plan_version: u64,
    plan: MembershipPlan,
    next_job: u64,
}

impl Header {
    fn of(state: &PersistedState) -> Self {
        Self {
            profile_name: state.profile_name.clone(),
            scenario_epoch_unix_ms: state.scenario_epoch_unix_ms,
            next_ordinal: state.next_ordinal,
            plan_version: state.plan_version,
            plan: state.plan.clone(),
            next_job: state.next_job,
        }
    }
}

/// One change, as written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum ChangeOut<'a> {
    Header(&'a Header),
    Member(&'a Member),
    ForgetMember(&'a str),
    Job(&'a JobRecord),
    ForgetJob(&'a str),
}

/// One change, as read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChangeIn {
    Header(Header),
    Member(Member),
    ForgetMember(String),
    Job(Box<JobRecord>),
    ForgetJob(String),
}

#[derive(Debug, Serialize)]
struct LineOut<'a> {
    changes: Vec<ChangeOut<'a>>,
}

#[derive(Debug, Deserialize)]
struct LineIn {
    changes: Vec<ChangeIn>,
}

impl ChangeIn {
    fn apply(self, state: &mut PersistedState) {
        match self {
            Self::Header(h) => {
                state.profile_name = h.profile_name;
                state.scenario_epoch_unix_ms = h.scenario_epoch_unix_ms;
                state.next_ordinal = h.next_ordinal;
                state.plan_version = h.plan_version;
                state.plan = h.plan;
                state.next_job = h.next_job;
            }
            Self::Member(m) => match state.members.iter_mut().find(|x| x.node_id == m.node_id) {
                Some(slot) => *slot = m,
                None => state.members.push(m),
            },
            Self::ForgetMember(id) => state.members.retain(|m| m.node_id != id),
            Self::Job(r) => match state.jobs.iter_mut().find(|x| x.job.job_id == r.job.job_id) {
                Some(slot) => *slot = *r,
                None => state.jobs.push(*r),
            },
            Self::ForgetJob(id) => state.jobs.retain(|r| r.job.job_id != id),
        }
    }
}

/// What is on disk (snapshot + log), to tell what a new state changed.
#[derive(Debug)]
struct Written {
    header: Header,
    members: Vec<Member>,
    job_ids: Vec<String>,
}

impl Written {
    fn of(state: &PersistedState) -> Self {
        Self {
            header: Header::of(state),
            members: state.members.clone(),
            job_ids: state.jobs.iter().map(|r| r.job.job_id.clone()).collect(),
        }
    }
}

/// What one [`StateLog::save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveReport {
    /// Bytes written (a log line, or a whole snapshot).
    pub bytes: u64,
    /// True when a snapshot was written (first save, compaction, recovery after an error).
    pub snapshot: bool,
}

fn state_err(path: &Path, message: impl std::fmt::Display) -> ControllerError {
    ControllerError::State {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The state dir's snapshot and change log.
#[derive(Debug)]
pub struct StateLog {
    dir: StateDir,
    log: File,
    log_bytes: u64,
    snapshot_bytes: u64,
    /// `None` until the first save, and after a failed append (the next save writes a snapshot
    /// and truncates the log, so a partial line never stays in front of good ones).
    written: Option<Written>,
    /// A [`Compaction`] handed out and not yet finished.
    compacting: bool,
}

/// A snapshot to write off the controller's lock: the state as of a log rotation. Run it
/// ([`Compaction::run`]), then report the outcome with [`StateLog::compaction_finished`].
#[derive(Debug)]
pub struct Compaction {
    dir: StateDir,
    state: PersistedState,
}

impl Compaction {
    /// Writes the snapshot (atomically) and deletes the previous log it folds in; returns the
    /// snapshot's size. On an error the previous log stays, and the next compaction is done
    /// in place.
    pub fn run(self) -> Result<u64, ControllerError> {
        let bytes = write_snapshot(&self.dir, &self.state)?;
        // Free the copy before the next compaction's copy is made.
        drop(self.state);
        remove_previous_log(&self.dir)?;
        Ok(bytes)
    }
}

/// Successful results without a payload: written by a controller whose results were JSON text
/// (`NodeResult.result_json`, now reserved), whose payload serde skips on reading. Every
/// runner of this version sends a payload with a successful result.
pub fn legacy_results(state: &PersistedState) -> usize {
    state
        .jobs
        .iter()
        .flat_map(|j| &j.job.results)
        .filter(|r| r.ok && r.result.is_none())
        .count()
}

/// Writes `state` as the snapshot, atomically, streaming its JSON to the file; returns its size.
fn write_snapshot(dir: &StateDir, state: &PersistedState) -> Result<u64, ControllerError> {
    dir.write_atomic_with(SNAPSHOT_FILE, false, |out| {
        serde_json::to_writer(out, state).map_err(std::io::Error::from)
    })
}

/// Deletes [`PREVIOUS_LOG_FILE`] (if there) durably.
fn remove_previous_log(dir: &StateDir) -> Result<(), ControllerError> {
    let prev = dir.path().join(PREVIOUS_LOG_FILE);
    match std::fs::remove_file(&prev) {
        Ok(()) => {
            if let Ok(d) = File::open(dir.path()) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(state_err(&prev, format!("cannot delete: {e}"))),
    }
}

impl StateLog {
    /// Opens the state in `dir`: the snapshot (None on a first start) with the log replayed
    /// onto it and its meaning checked. A torn last line is cut off with a warning.
    pub fn open(dir: StateDir) -> Result<(Self, Option<PersistedState>), ControllerError> {
        let snapshot_path = dir.path().join(SNAPSHOT_FILE);
        let log_path = dir.path().join(LOG_FILE);
        let snapshot = dir.read(SNAPSHOT_FILE)?;
        let snapshot_bytes = snapshot.as_ref().map_or(0, |t| t.len() as u64);
        let mut state = match &snapshot {
            None => None,
            Some(text) => {
                let state: PersistedState = serde_json::from_str(text).map_err(|e| {
                    state_err(&snapshot_path, format!("not a controller state file: {e}"))
                })?;
                if state.format != STATE_FORMAT && state.format != LEGACY_STATE_FORMAT {
                    return Err(state_err(
                        &snapshot_path,
                        format!(
                            "format {} (this controller reads {LEGACY_STATE_FORMAT} and {STATE_FORMAT})",
                            state.format
                        ),
                    ));
                }
                Some(state)
            }
        };
        // A compaction that did not finish: its generation's changes come first.
        let prev_path = dir.path().join(PREVIOUS_LOG_FILE);
        let had_previous = match std::fs::read(&prev_path) {
            Ok(bytes) => {
                let good = replay(&bytes, &mut state, &prev_path)?;
                if good < bytes.len() {
                    tracing::warn!(
                        file = %prev_path.display(),
                        ignored_bytes = bytes.len() - good,
                        "the last line of the previous state log is torn; it is ignored"
                    );
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(state_err(&prev_path, format!("cannot read: {e}"))),
        };
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| state_err(&log_path, format!("cannot open: {e}")))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)
            .map_err(|e| state_err(&log_path, format!("cannot read: {e}")))?;
        let good = replay(&bytes, &mut state, &log_path)?;
        if good < bytes.len() {
            tracing::warn!(
                file = %log_path.display(),
                ignored_bytes = bytes.len() - good,
                "the last line of the state log is torn (a crash while writing it); it is ignored"
            );
            log.set_len(good as u64)
                .and_then(|()| log.sync_all())
                .map_err(|e| state_err(&log_path, format!("cannot cut the torn line: {e}")))?;
        }
        if let Some(state) = &state {
            state.check().map_err(|e| {
                state_err(
                    &snapshot_path,
                    format!("inconsistent state (with {LOG_FILE} replayed): {e}"),
                )
            })?;
            let untyped = legacy_results(state);
            if untyped > 0 {
                tracing::warn!(
                    dir = %dir.path().display(),
                    results = untyped,
                    "results written by a controller before typed results (result_json): \
                     their payloads are not read; rank, ok, error and metrics are kept"
                );
            }
        }
        // The log file may have just been created: make its directory entry durable.
        if let Ok(d) = File::open(dir.path()) {
            let _ = d.sync_all();
        }
        // A state dir of an older controller is rewritten as a snapshot of this format at the
        // first save, so an older controller refuses it instead of ignoring the log.
        let written = state
            .as_ref()
            .filter(|s| s.format == STATE_FORMAT)
            .map(Written::of);
        if let Some(s) = state.as_mut() {
            s.format = STATE_FORMAT;
        }
        let mut this = Self {
            dir,
            log,
            log_bytes: good as u64,
            snapshot_bytes,
            written,
            compacting: false,
        };
        if had_previous {
            // Fold both generations into a snapshot now, so the next rotation starts clean.
            match &state {
                Some(s) => {
                    this.compact(s)?;
                }
                None => remove_previous_log(&this.dir)?,
            }
        }
        Ok((this, state))
    }

    /// Writes what changed in `state` since the last save: one fsynced log line with the
    /// header if it changed, the members that changed, the jobs in `touched_jobs` and the
    /// removal of jobs that disappeared. The first save, and a save after a failed one, write a
    /// snapshot instead; a log larger than the snapshot is compacted, here and now.
    pub fn save(
        &mut self,
        state: &PersistedState,
        touched_jobs: &BTreeSet<String>,
    ) -> Result<SaveReport, ControllerError> {
        let (report, compaction) = self.save_deferred(state, touched_jobs)?;
        let Some(compaction) = compaction else {
            return Ok(report);
        };
        let result = compaction.run();
        let bytes = *result.as_ref().unwrap_or(&0);
        self.compaction_finished(result)?;
        Ok(SaveReport {
            bytes: report.bytes.saturating_add(bytes),
            snapshot: true,
        })
    }

    /// [`StateLog::save`], except that a log grown past the snapshot is rotated and its
    /// compaction returned, to be run off the caller's lock (at most one at a time).
    pub fn save_deferred(
        &mut self,
        state: &PersistedState,
        touched_jobs: &BTreeSet<String>,
    ) -> Result<(SaveReport, Option<Compaction>), ControllerError> {
        let Some(written) = &self.written else {
            // First save, or after a failed append: a whole snapshot (not while a compaction
            // writes one; the change stays unsaved and the next save tries again).
            return Ok((self.compact(state)?, None));
        };
        let header = Header::of(state);
        let mut changes = Vec::new();
        if header != written.header {
            changes.push(ChangeOut::Header(&header));
        }
        for m in &state.members {
            if written.members.iter().find(|w| w.node_id == m.node_id) != Some(m) {
                changes.push(ChangeOut::Member(m));
            }
        }
        for w in &written.members {
            if !state.members.iter().any(|m| m.node_id == w.node_id) {
                changes.push(ChangeOut::ForgetMember(&w.node_id));
            }
        }
        let current: HashSet<&str> = state.jobs.iter().map(|r| r.job.job_id.as_str()).collect();
        for id in &written.job_ids {
            if !current.contains(id.as_str()) {
                changes.push(ChangeOut::ForgetJob(id));
            }
        }
        if !touched_jobs.is_empty() {
            for r in &state.jobs {
                if touched_jobs.contains(&r.job.job_id) {
                    changes.push(ChangeOut::Job(r));
                }
            }
        }
        if changes.is_empty() {
            return Ok((SaveReport::default(), None));
        }
        let log_path = self.dir.path().join(LOG_FILE);
        let mut line = serde_json::to_vec(&LineOut { changes })
            .map_err(|e| state_err(&log_path, format!("cannot encode a change: {e}")))?;
        line.push(b'\n');
        let appended = self
            .log
            .write_all(&line)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = appended {
            // A partial line may be on disk: the next save rewrites the snapshot.
            self.written = None;
            return Err(state_err(&log_path, format!("cannot append: {e}")));
        }
        self.log_bytes = self.log_bytes.saturating_add(line.len() as u64);
        let report = SaveReport {
            bytes: line.len() as u64,
            snapshot: false,
        };
        self.written = Some(Written {
            header,
            members: state.members.clone(),
            job_ids: state.jobs.iter().map(|r| r.job.job_id.clone()).collect(),
        });
        if self.compacting || self.log_bytes <= self.snapshot_bytes.max(COMPACT_MIN_BYTES) {
            return Ok((report, None));
        }
        if self.dir.path().join(PREVIOUS_LOG_FILE).exists() {
            // The last compaction failed: fold everything in place (rare).
            let compacted = self.compact(state)?;
            return Ok((
                SaveReport {
                    bytes: report.bytes.saturating_add(compacted.bytes),
                    snapshot: true,
                },
                None,
            ));
        }
        self.rotate()?;
        self.compacting = true;
        Ok((
            report,
            Some(Compaction {
                dir: self.dir.clone(),
                state: state.clone(),
            }),
        ))
    }

    /// Moves the log aside as [`PREVIOUS_LOG_FILE`] and starts an empty one.
    fn rotate(&mut self) -> Result<(), ControllerError> {
        let log_path = self.dir.path().join(LOG_FILE);
        let prev_path = self.dir.path().join(PREVIOUS_LOG_FILE);
        std::fs::rename(&log_path, &prev_path)
            .map_err(|e| state_err(&log_path, format!("cannot rotate: {e}")))?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| state_err(&log_path, format!("cannot open: {e}")))?;
        if let Ok(d) = File::open(self.dir.path()) {
            let _ = d.sync_all();
        }
        self.log_bytes = 0;
        Ok(())
    }

    /// Takes the outcome of the [`Compaction`] handed out last.
    pub fn compaction_finished(
        &mut self,
        result: Result<u64, ControllerError>,
    ) -> Result<(), ControllerError> {
        self.compacting = false;
        let bytes = result?;
        self.snapshot_bytes = bytes;
        Ok(())
    }

    /// Writes `state` as the snapshot (atomically) and empties the log.
    pub fn compact(&mut self, state: &PersistedState) -> Result<SaveReport, ControllerError> {
        let snapshot_path = self.dir.path().join(SNAPSHOT_FILE);
        if self.compacting {
            return Err(state_err(
                &snapshot_path,
                "a compaction is writing the snapshot; try again when it has finished",
            ));
        }
        let bytes = write_snapshot(&self.dir, state)?;
        // A crash here replays the old logs onto the new snapshot: harmless (see the module
        // docs), every change is an idempotent upsert.
        remove_previous_log(&self.dir)?;
        let log_path = self.dir.path().join(LOG_FILE);
        self.log
            .set_len(0)
            .and_then(|()| self.log.sync_all())
            .map_err(|e| state_err(&log_path, format!("cannot truncate: {e}")))?;
        self.log_bytes = 0;
        self.snapshot_bytes = bytes;
        self.written = Some(Written::of(state));
        Ok(SaveReport {
            bytes,
            snapshot: true,
        })
    }

    /// Bytes in the log now.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }
}

/// Replays the log's complete lines onto `state`; returns how many bytes were good. Only the
/// last line may be unreadable (torn); one before a good line is an error naming its number.
fn replay(
    bytes: &[u8],
    state: &mut Option<PersistedState>,
    path: &Path,
) -> Result<usize, ControllerError> {
    let mut good = 0usize;
    let mut pending_error: Option<(usize, String)> = None;
    for (index, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        if let Some((bad, message)) = pending_error {
            if raw.iter().all(u8::is_ascii_whitespace) {
                pending_error = Some((bad, message));
                continue;
            }
            return Err(state_err(
                path,
                format!("line {bad}: not a state change ({message}), and good lines follow it"),
            ));
        }
        let complete = raw.last() == Some(&b'\n');
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        if complete && text.iter().all(u8::is_ascii_whitespace) {
            good += raw.len();
            continue;
        }
        match serde_json::from_slice::<LineIn>(text) {
            Ok(line) if complete => {
                let Some(s) = state.as_mut() else {
                    return Err(state_err(
                        path,
                        format!(
                            "line {number}: changes without a {SNAPSHOT_FILE} to apply them to"
                        ),
                    ));
                };
                for change in line.changes {
                    change.apply(s);
                }
                good += raw.len();
            }
            // A parseable last line without its newline was not acknowledged: torn.
            Ok(_) => pending_error = Some((number, "no end of line".into())),
            Err(e) => pending_error = Some((number, e.to_string())),
        }
    }
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{MemberState, Now};
    use spacefabric_proto::v1::{Job, JobState, NodeResult};
    use std::time::Duration;

    fn now() -> Now {
        Now {
            mono: Duration::ZERO,
            unix_ms: 42,
        }
    }

    fn member(ordinal: u64) -> Member {
        Member {
            node_id: format!("n{ordinal}"),
            name: format!("node-{ordinal}"),
            site: "lan".into(),
            advertise_addr: "127.0.0.1:7500".into(),
            metrics_addr: String::new(),
            state: MemberState::Alive,
            ordinal,
            registered_unix_ms: 0,
            key: String::new(),
        }
    }

    fn job(n: u64, state: JobState) -> JobRecord {
        JobRecord {
            job: Job {
                job_id: format!("job-{n}"),
                state: state as i32,
                ..Job::default()
            },
            min_nodes: 1,
            participants: Vec::new(),
        }
    }

    fn touched(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// A state with two members and `jobs` jobs, saved once (snapshot) and then changed job by
    /// job through the log.
    fn build(dir: &Path, jobs: u64) -> (StateLog, PersistedState) {
        let (mut log, loaded) = StateLog::open(StateDir::open(dir).unwrap()).unwrap();
        assert!(loaded.is_none());
        let mut state = PersistedState::new("lan", now());
        state.members = vec![member(0), member(1)];
        state.next_ordinal = 2;
        assert!(log.save(&state, &BTreeSet::new()).unwrap().snapshot);
        for n in 1..=jobs {
            state.next_job = n + 1;
            state.jobs.push(job(n, JobState::Running));
            let id = format!("job-{n}");
            let report = log.save(&state, &touched(&[&id])).unwrap();
            assert!(!report.snapshot);
            state.jobs.last_mut().unwrap().job.state = JobState::Succeeded as i32;
            log.save(&state, &touched(&[&id])).unwrap();
        }
        (log, state)
    }

    fn reopen(dir: &Path) -> PersistedState {
        StateLog::open(StateDir::open(dir).unwrap())
            .unwrap()
            .1
            .unwrap()
    }

    #[test]
    fn a_change_appends_one_line_and_the_state_replays() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 5);
        assert_eq!(reopen(dir.path()), state);
        // A change of one job writes that job only, not the other four.
        state.jobs[2].job.attempt = 7;
        let before = log.log_bytes();
        let report = log.save(&state, &touched(&["job-3"])).unwrap();
        assert_eq!(log.log_bytes() - before, report.bytes);
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.contains("job-3") && !last.contains("job-2"), "{last}");
        // Nothing changed: nothing written.
        assert_eq!(
            log.save(&state, &BTreeSet::new()).unwrap(),
            SaveReport::default()
        );
        // Pruned history and a member change replay too.
        state.jobs.remove(0);
        state.members[1].state = MemberState::Dead;
        state.plan_version = 3;
        log.save(&state, &BTreeSet::new()).unwrap();
        assert_eq!(reopen(dir.path()), state);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_nothing_before_it_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 3);
        let committed = state.clone();
        state.jobs[0].job.attempt = 9;
        log.save(&state, &touched(&["job-1"])).unwrap();
        drop(log);
        // Cut the last line in the middle, as a crash during its write would.
        let path = dir.path().join(LOG_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let cut = bytes.len() - 20;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let loaded = reopen(dir.path());
        assert_eq!(loaded, committed, "every committed change is kept");
        // The torn bytes were cut off: the next append lands on a clean line.
        let (mut log, loaded) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
        let mut state = loaded.unwrap();
        state.jobs[1].job.attempt = 4;
        log.save(&state, &touched(&["job-2"])).unwrap();
        assert_eq!(reopen(dir.path()), state);
        // Garbage (NUL bytes of an unwritten block) at the end is torn too.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 64]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(reopen(dir.path()), state);
    }

    #[test]
    fn a_bad_line_before_good_ones_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = build(dir.path(), 3);
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1] = "{\"changes\": [garbage";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = StateLog::open(StateDir::open(dir.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.log") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_meaning_is_checked_after_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 2);
        // A wrapped counter arriving through the log is refused on load.
        state.next_ordinal = 1;
        log.save(&state, &BTreeSet::new()).unwrap();
        let err = StateLog::open(StateDir::open(dir.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("next_ordinal") && err.contains("state.log"),
            "{err}"
        );
    }

    #[test]
    fn garbage_or_a_duplicate_id_in_the_snapshot_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        store
            .write_atomic(SNAPSHOT_FILE, b"{nonsense", false)
            .unwrap();
        let err = StateLog::open(store.clone()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");

        let mut state = PersistedState::new("lan", now());
        state.next_ordinal = 2;
        state.members = vec![member(0), member(1)];
        let mut duplicate = state.clone();
        duplicate.members[1].node_id = "n0".into();
        let mut wrapped = state.clone();
        wrapped.next_ordinal = 1;
        let mut same_name = state.clone();
        same_name.members[1].name = "node-0".into();
        for (bad, expect) in [
            (duplicate, "members[1].node_id 'n0'"),
            (wrapped, "next_ordinal"),
            (same_name, "members[1].name"),
        ] {
            store
                .write_atomic(SNAPSHOT_FILE, &serde_json::to_vec(&bad).unwrap(), false)
                .unwrap();
            let err = StateLog::open(store.clone()).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
        store
            .write_atomic(SNAPSHOT_FILE, &serde_json::to_vec(&state).unwrap(), false)
            .unwrap();
        assert_eq!(StateLog::open(store).unwrap().1, Some(state));
    }

    #[test]
    fn compaction_folds_the_log_and_a_crash_before_truncation_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, state) = build(dir.path(), 4);
        let old_log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert!(!old_log.is_empty());
        let report = log.compact(&state).unwrap();
        assert!(report.snapshot);
        assert_eq!(log.log_bytes(), 0);
        assert_eq!(reopen(dir.path()), state);
        // A crash after the snapshot but before the truncation: the old log replays onto the
        // new snapshot and changes nothing.
        std::fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        assert_eq!(reopen(dir.path()), state);
    }

    #[test]
    fn a_large_log_is_compacted_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 1);
        let mut compacted = false;
        for i in 0..20_000u64 {
            state.jobs[0].job.attempt = i as u32;
            state.jobs[0].job.error = "x".repeat(100);
            compacted |= log.save(&state, &touched(&["job-1"])).unwrap().snapshot;
            if compacted {
                break;
            }
        }
        assert!(compacted, "the log never compacted");
        assert!(log.log_bytes() <= COMPACT_MIN_BYTES);
        assert_eq!(reopen(dir.path()), state);
    }

    /// Changes job-1 until a save hands out a compaction (the log rotated).
    fn grow_until_rotated(log: &mut StateLog, state: &mut PersistedState) -> Compaction {
        for i in 0..20_000u64 {
            state.jobs[0].job.attempt = i as u32;
            state.jobs[0].job.error = "x".repeat(100);
            let (report, compaction) = log.save_deferred(state, &touched(&["job-1"])).unwrap();
            assert!(
                !report.snapshot,
                "a deferred save writes no snapshot itself"
            );
            if let Some(c) = compaction {
                return c;
            }
        }
        panic!("the log never rotated");
    }

    #[test]
    fn a_deferred_compaction_loses_nothing_whenever_the_controller_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 2);
        let snapshot_before = std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap();
        let compaction = grow_until_rotated(&mut log, &mut state);
        // Rotated: the previous generation is aside, the snapshot untouched, the log fresh.
        assert!(dir.path().join(PREVIOUS_LOG_FILE).exists());
        assert_eq!(
            std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap(),
            snapshot_before
        );
        assert_eq!(log.log_bytes(), 0);
        // Changes go on while the snapshot is written elsewhere, and no second one starts.
        state.jobs[1].job.attempt = 41;
        let (_, again) = log.save_deferred(&state, &touched(&["job-2"])).unwrap();
        assert!(again.is_none(), "one compaction at a time");
        // Stopped before the snapshot was written: previous log + current log replay.
        let copy = tempfile::tempdir().unwrap();
        for f in [SNAPSHOT_FILE, LOG_FILE, PREVIOUS_LOG_FILE] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        assert_eq!(reopen(copy.path()), state);
        // Opening folded both generations into a snapshot.
        assert!(!copy.path().join(PREVIOUS_LOG_FILE).exists());
        assert_eq!(reopen(copy.path()), state);
        // The compaction runs (on its thread in the controller) and is reported.
        let bytes = compaction.run().unwrap();
        assert!(!dir.path().join(PREVIOUS_LOG_FILE).exists());
        log.compaction_finished(Ok(bytes)).unwrap();
        state.jobs[1].job.attempt = 42;
        log.save(&state, &touched(&["job-2"])).unwrap();
        assert_eq!(reopen(dir.path()), state);
    }

    #[test]
    fn a_failed_deferred_compaction_is_redone_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut state) = build(dir.path(), 1);
        let _lost = grow_until_rotated(&mut log, &mut state);
        log.compaction_finished(Err(state_err(dir.path(), "disk full")))
            .unwrap_err();
        // The previous log stayed; the next compaction folds everything in place.
        let compaction = grow_until_rotated_or_compacted(&mut log, &mut state);
        assert!(compaction.is_none(), "redone in place, not deferred");
        assert!(!dir.path().join(PREVIOUS_LOG_FILE).exists());
        assert_eq!(reopen(dir.path()), state);
    }

    /// Like [`grow_until_rotated`], but stops at an in-place compaction too (`None`).
    fn grow_until_rotated_or_compacted(
        log: &mut StateLog,
        state: &mut PersistedState,
    ) -> Option<Compaction> {
        for i in 0..20_000u64 {
            state.jobs[0].job.attempt = 1_000_000 + i as u32;
            let (report, compaction) = log.save_deferred(state, &touched(&["job-1"])).unwrap();
            if compaction.is_some() {
                return compaction;
            }
            if report.snapshot {
                return None;
            }
        }
        panic!("the log never compacted");
    }

    #[test]
    fn a_state_json_of_the_previous_format_loads() {
        let dir = tempfile::tempdir().unwrap();
        // What the controller before the log wrote: the whole state, pretty, format 1.
        let mut old = PersistedState::new("lan", now());
        old.format = LEGACY_STATE_FORMAT;
        old.members = vec![member(0)];
        old.next_ordinal = 1;
        old.next_job = 3;
        old.jobs = vec![job(1, JobState::Succeeded), job(2, JobState::Running)];
        std::fs::write(
            dir.path().join(SNAPSHOT_FILE),
            serde_json::to_vec_pretty(&old).unwrap(),
        )
        .unwrap();
        let (mut log, loaded) = StateLog::open(StateDir::open(dir.path()).unwrap()).unwrap();
        let mut state = loaded.unwrap();
        assert_eq!(state.format, STATE_FORMAT);
        assert_eq!(state.jobs, old.jobs);
        assert_eq!(state.members, old.members);
        // The first save rewrites the snapshot in the current format, then the log goes on.
        state.jobs[1].job.state = JobState::Succeeded as i32;
        assert!(log.save(&state, &touched(&["job-2"])).unwrap().snapshot);
        let on_disk: PersistedState =
            serde_json::from_slice(&std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap())
                .unwrap();
        assert_eq!(on_disk.format, STATE_FORMAT);
        state.jobs[0].job.attempt = 2;
        assert!(!log.save(&state, &touched(&["job-1"])).unwrap().snapshot);
        assert_eq!(reopen(dir.path()), state);
        // A format from the future is refused, naming both.
        let mut future = old;
        future.format = 99;
        std::fs::write(
            dir.path().join(SNAPSHOT_FILE),
            serde_json::to_vec(&future).unwrap(),
        )
        .unwrap();
        let err = StateLog::open(StateDir::open(dir.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("format 99"), "{err}");
    }

    #[test]
    fn results_written_as_result_json_load_without_their_payload() {
        let dir = tempfile::tempdir().unwrap();
        // A snapshot of a controller before typed results: NodeResult had `result_json`.
        let mut old = PersistedState::new("lan", now());
        old.members = vec![member(0)];
        old.next_ordinal = 1;
        old.next_job = 2;
        old.jobs = vec![job(1, JobState::Succeeded)];
        old.jobs[0].job.results = vec![NodeResult {
            rank: 0,
            node_id: "n0".into(),
            ok: true,
            metrics: [("steps".to_string(), 600.0)].into(),
            ..NodeResult::default()
        }];
        let mut value = serde_json::to_value(&old).unwrap();
        let result = &mut value["jobs"][0]["job"]["results"][0];
        result.as_object_mut().unwrap().remove("result");
        result["result_json"] = serde_json::json!("{\"steps\":600}");
        std::fs::write(
            dir.path().join(SNAPSHOT_FILE),
            serde_json::to_vec(&value).unwrap(),
        )
        .unwrap();
        let loaded = reopen(dir.path());
        assert_eq!(loaded.jobs, old.jobs);
        assert_eq!(legacy_results(&loaded), 1);
        assert_eq!(loaded.jobs[0].job.results[0].metrics["steps"], 600.0);
    }
}
