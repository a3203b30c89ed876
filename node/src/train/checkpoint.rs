//! Committed training state: the step, the synchronised parameters and the optimiser state,
//! taken at every outer step (DiLoCo, hierarchical) or every K steps (sync, sharded).
//!
//! A [`Checkpoint`] encodes to a small self-describing binary blob (magic, version, then
//! length-prefixed little-endian vectors) so the agent can persist it or serve it to a peer
//! that replaces a dead node; decoding checks every length and says what is wrong. A
//! [`CommitSink`] receives each commit: [`MemoryCommits`] keeps the latest per rank,
//! [`DirCommits`] keeps a job's last few commits as `step-<S>.ckpt` files, written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::TrainError;
use super::optim::OptimizerState;

const MAGIC: &[u8; 4] = b"SFCK";
const VERSION: u32 = 1;

/// A commit that cannot be decoded, stored or used for a resume: what and where.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The blob ends inside a field.
    #[error("truncated at byte {at} reading {what} ({wanted} bytes wanted, {left} left)")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// The field.
        what: &'static str,
        /// Bytes the field needs.
        wanted: usize,
        /// Bytes left in the blob.
        left: usize,
    },
    /// A vector's length prefix is beyond what this machine can hold.
    #[error("{what}: length {len} too large")]
    Length {
        /// The field.
        what: &'static str,
        /// The length read.
        len: u64,
    },
    /// The blob does not start with the checkpoint magic.
    #[error("not a checkpoint (bad magic)")]
    Magic,
    /// A format version this build does not read.
    #[error("version {version}, this build reads {VERSION}")]
    Version {
        /// The version read.
        version: u32,
    },
    /// The outer-optimiser flag is neither 0 nor 1.
    #[error("outer flag {flag}, expected 0 or 1")]
    OuterFlag {
        /// The flag read.
        flag: u8,
    },
    /// Bytes after the last field.
    #[error("{count} trailing bytes")]
    Trailing {
        /// How many.
        count: usize,
    },
    /// The in-memory commit store's lock was poisoned by a panic.
    #[error("commit store lock poisoned")]
    Poisoned,
    /// A commit file on disk does not decode.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why it does not decode.
        source: Box<Self>,
    },
    /// The commit on disk is of another step than the one the job resumes from.
    #[error("recovery: the local commit is of step {found}, the job resumes from {step}")]
    LocalStep {
        /// The step of the local commit.
        found: u64,
        /// The step the job resumes from.
        step: u64,
    },
    /// No rank holds the commit the job resumes from.
    #[error("no rank of the job holds the commit of step {step}: it cannot resume")]
    NobodyHolds {
        /// The step the job resumes from.
        step: u64,
    },
    /// No rank was assigned to send this rank the commit.
    #[error("recovery: no donor for rank {rank} (step {step})")]
    NoDonor {
        /// This rank.
        rank: usize,
        /// The step the job resumes from.
        step: u64,
    },
    /// The commit a peer sent does not decode.
    #[error("commit sent by rank {donor}: {source}")]
    FromDonor {
        /// The sending rank.
        donor: usize,
        /// Why it does not decode.
        source: Box<Self>,
    },
    /// A peer sent the commit of another step.
    #[error("rank {donor} sent the commit of step {found}, expected {step}")]
    DonorStep {
        /// The sending rank.
        donor: usize,
        /// The step it sent.
        found: u64,
        /// The step the job resumes from.
        step: u64,
    },
}

/// One rank's committed state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Steps completed (the next step to run).
    pub step: u64,
    /// The synchronised model (DiLoCo: the global parameters).
    pub params: Vec<f32>,
    /// Inner optimiser state (sharded: this rank's shard only).
    pub inner: OptimizerState,
    /// Outer optimiser state (DiLoCo and hierarchical).
    pub outer: Option<OptimizerState>,
}

fn put_vec(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_state(out: &mut Vec<u8>, s: &OptimizerState) {
    out.extend_from_slice(&s.t.to_le_bytes());
    put_vec(out, &s.first);
    put_vec(out, &s.second);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], CheckpointError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(CheckpointError::Truncated {
                at: self.at,
                what,
                wanted: n,
                left: self.bytes.len() - self.at,
            });
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CheckpointError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn vec(&mut self, what: &'static str) -> Result<Vec<f32>, CheckpointError> {
        let len = self.u64(what)?;
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_mul(4))
            .ok_or(CheckpointError::Length { what, len })?;
        let raw = self.take(bytes, what)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn state(&mut self, what: &'static str) -> Result<OptimizerState, CheckpointError> {
        Ok(OptimizerState {
            t: self.u64(what)?,
            first: self.vec(what)?,
            second: self.vec(what)?,
        })
    }
}

impl Checkpoint {
    /// The binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 4 * self.params.len() * 3);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.step.to_le_bytes());
        put_vec(&mut out, &self.params);
        put_state(&mut out, &self.inner);
        match &self.outer {
            Some(s) => {
                out.push(1);
                put_state(&mut out, s);
            }
            None => out.push(0),
        }
        out
    }

    /// Decodes [`Checkpoint::to_bytes`]; any malformed input is an error naming the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(CheckpointError::Magic);
        }
        let v = r.take(4, "version")?;
        let version = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        if version != VERSION {
            return Err(CheckpointError::Version { version });
        }
        let step = r.u64("step")?;
        let params = r.vec("params")?;
        let inner = r.state("inner optimizer")?;
        let outer = match r.take(1, "outer flag")?[0] {
            0 => None,
            1 => Some(r.state("outer optimizer")?),
            flag => return Err(CheckpointError::OuterFlag { flag }),
        };
        if r.at != bytes.len() {
            return Err(CheckpointError::Trailing {
                count: bytes.len() - r.at,
            });
        }
        Ok(Self {
            step,
            params,
            inner,
            outer,
        })
    }
}

/// Where a rank's commits go.
pub trait CommitSink: Send + Sync {
    /// Records `ckpt` as the latest committed state of `rank`.
    fn commit(&self, rank: usize, ckpt: &Checkpoint) -> Result<(), TrainError>;
}

/// Keeps the latest commit of every rank in memory (in-process clusters, tests).
#[derive(Debug, Default)]
pub struct MemoryCommits {
    latest: Mutex<BTreeMap<usize, Checkpoint>>,
}

impl MemoryCommits {
    /// The latest commit of `rank`.
    pub fn latest(&self, rank: usize) -> Option<Checkpoint> {
        self.latest.lock().ok().and_then(|m| m.get(&rank).cloned())
    }
}

impl CommitSink for MemoryCommits {
    fn commit(&self, rank: usize, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let mut map = self.latest.lock().map_err(|_| CheckpointError::Poisoned)?;
        map.insert(rank, ckpt.clone());
        Ok(())
    }
}

/// Keeps a job's last few commits on disk as `<dir>/step-<S>.ckpt` (temp file + rename, so a
/// reader never sees half a checkpoint). The files do not depend on the rank that wrote them —
/// the committed state is the synchronised model, the same on every rank — so a node finds its
/// commit again after a re-plan gave it another rank. The controller resumes a job from the
/// lowest step every rank reported as committed, which can be a commit or two behind a rank's
/// newest: [`DirCommits::KEEP`] of them stay.
#[derive(Debug, Clone)]
pub struct DirCommits {
    dir: PathBuf,
}

impl DirCommits {
    /// Commits kept per job.
    pub const KEEP: usize = 4;

    /// Commits go into `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Path of the commit of `step`.
    pub fn path(&self, step: u64) -> PathBuf {
        self.dir.join(format!("step-{step}.ckpt"))
    }

    /// Reads the commit of `step`, if this node has it.
    pub fn load(&self, step: u64) -> Result<Option<Checkpoint>, TrainError> {
        let path = self.path(step);
        match std::fs::read(&path) {
            Ok(bytes) => Checkpoint::from_bytes(&bytes).map(Some).map_err(|e| {
                CheckpointError::File {
                    path: path.clone(),
                    source: Box::new(e),
                }
                .into()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TrainError::Io { path, source }),
        }
    }

    /// Steps of the commits on disk, ascending.
    pub fn steps(&self) -> Result<Vec<u64>, TrainError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| TrainError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut steps: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("step-")?
                    .strip_suffix(".ckpt")?
                    .parse()
                    .ok()
            })
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    /// Removes every commit (a job that starts from scratch).
    pub fn clear(&self) -> Result<(), TrainError> {
        for step in self.steps()? {
            let path = self.path(step);
            std::fs::remove_file(&path).map_err(|source| TrainError::Io { path, source })?;
        }
        Ok(())
    }
}

impl CommitSink for DirCommits {
    fn commit(&self, _rank: usize, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let path = self.path(ckpt.step);
        let tmp = self.dir.join(format!("step-{}.ckpt.tmp", ckpt.step));
        std::fs::write(&tmp, ckpt.to_bytes()).map_err(|source| TrainError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| TrainError::Io { path, source })?;
        let steps = self.steps()?;
        for &old in steps.iter().take(steps.len().saturating_sub(Self::KEEP)) {
            let path = self.path(old);
            std::fs::remove_file(&path).map_err(|source| TrainError::Io { path, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            step: 42,
            params: vec![1.0, -2.5, 3.25],
            inner: OptimizerState {
                t: 42,
                first: vec![0.1, 0.2, 0.3],
                second: vec![0.01, 0.02, 0.03],
            },
            outer: Some(OptimizerState {
                t: 4,
                first: vec![9.0, 8.0, 7.0],
                second: vec![],
            }),
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let ck = sample();
        let bytes = ck.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), ck);
        for cut in [0, 3, 8, 20, bytes.len() - 1] {
            assert!(Checkpoint::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            Checkpoint::from_bytes(&bad),
            Err(CheckpointError::Magic)
        ));
        assert_eq!(
            Checkpoint::from_bytes(&bytes[..10])
                .unwrap_err()
                .to_string(),
            "truncated at byte 8 reading step (8 bytes wanted, 2 left)"
        );
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            Checkpoint::from_bytes(&long),
            Err(CheckpointError::Trailing { count: 1 })
        ));
        // A huge declared length is an error, not an allocation.
        let mut huge = b"SFCK".to_vec();
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.extend_from_slice(&7u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Checkpoint::from_bytes(&huge).is_err());
    }

    #[test]
    fn dir_commits_keep_the_last_few_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirCommits::new(dir.path()).unwrap();
        assert_eq!(store.load(3).unwrap(), None);
        let mut ck = sample();
        for step in (10..=70).step_by(10) {
            ck.step = step;
            store.commit(5, &ck).unwrap();
        }
        assert_eq!(store.steps().unwrap(), vec![40, 50, 60, 70]);
        assert_eq!(store.load(50).unwrap().unwrap().step, 50);
        assert_eq!(store.load(30).unwrap(), None);
        std::fs::write(store.path(60), b"garbage").unwrap();
        assert!(store.load(60).is_err());
        store.clear().unwrap();
        assert!(store.steps().unwrap().is_empty());
    }
}
