//! The state dir: the controller's members, plan, jobs and results as `state.json`, and the
//! cluster CA as PEM files. Every file is written atomically (write a temporary file, fsync
//! it, rename it over the old one, fsync the directory), so a crash leaves either the old or
//! the new version, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::{PersistedState, STATE_FORMAT};
use crate::error::ControllerError;

/// Name of the state file inside the state dir.
pub const STATE_FILE: &str = "state.json";

/// A directory the controller owns.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

fn state_err(path: &Path, message: impl std::fmt::Display) -> ControllerError {
    ControllerError::State {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl StateDir {
    /// Opens (creating it if needed) the state dir at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ControllerError> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|e| state_err(&path, format!("cannot create: {e}")))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `name` if it exists.
    pub fn read(&self, name: &str) -> Result<Option<String>, ControllerError> {
        let file = self.path.join(name);
        match fs::read_to_string(&file) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(&file, format!("cannot read: {e}"))),
        }
    }

    /// Replaces `name` with `bytes` atomically; `private` files are readable by the owner only.
    pub fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        private: bool,
    ) -> Result<(), ControllerError> {
        let file = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut out = options
            .open(&tmp)
            .map_err(|e| state_err(&tmp, format!("cannot create: {e}")))?;
        out.write_all(bytes)
            .and_then(|()| out.sync_all())
            .map_err(|e| state_err(&tmp, format!("cannot write: {e}")))?;
        drop(out);
        fs::rename(&tmp, &file).map_err(|e| state_err(&file, format!("cannot replace: {e}")))?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&self.path) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Loads `state.json` (None on a first start).
    pub fn load_state(&self) -> Result<Option<PersistedState>, ControllerError> {
        let Some(text) = self.read(STATE_FILE)? else {
            return Ok(None);
        };
        let file = self.path.join(STATE_FILE);
        let state: PersistedState = serde_json::from_str(&text)
            .map_err(|e| state_err(&file, format!("not a controller state file: {e}")))?;
        if state.format != STATE_FORMAT {
            return Err(state_err(
                &file,
                format!(
                    "format {} (this controller reads {STATE_FORMAT})",
                    state.format
                ),
            ));
        }
        state
            .check()
            .map_err(|e| state_err(&file, format!("inconsistent state: {e}")))?;
        Ok(Some(state))
    }

    /// Writes `state.json` atomically.
    pub fn save_state(&self, state: &PersistedState) -> Result<(), ControllerError> {
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| state_err(&self.path.join(STATE_FILE), e))?;
        self.write_atomic(STATE_FILE, &text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Now;
    use std::time::Duration;

    #[test]
    fn state_round_trips_and_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        assert!(store.load_state().unwrap().is_none());
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: 42,
        };
        let state = PersistedState::new("lan", now);
        store.save_state(&state).unwrap();
        assert_eq!(store.load_state().unwrap(), Some(state));
        store.write_atomic(STATE_FILE, b"{nonsense", false).unwrap();
        let err = store.load_state().unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    fn member(id: &str, name: &str, ordinal: u64) -> crate::core::Member {
        crate::core::Member {
            node_id: id.into(),
            name: name.into(),
            site: "lan".into(),
            advertise_addr: "127.0.0.1:7500".into(),
            metrics_addr: String::new(),
            state: crate::core::MemberState::Alive,
            ordinal,
            registered_unix_ms: 0,
            key: String::new(),
        }
    }

    #[test]
    fn a_state_with_duplicate_ids_or_a_wrapped_counter_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: 42,
        };
        let mut state = PersistedState::new("lan", now);
        state.next_ordinal = 2;
        state.members = vec![member("n0", "a", 0), member("n1", "b", 1)];
        store.save_state(&state).unwrap();
        assert!(store.load_state().unwrap().is_some());

        let mut duplicate = state.clone();
        duplicate.members[1].node_id = "n0".into();
        store.save_state(&duplicate).unwrap();
        let err = store.load_state().unwrap_err().to_string();
        assert!(err.contains("members[1].node_id 'n0'"), "{err}");

        let mut wrapped = state.clone();
        wrapped.next_ordinal = 1;
        store.save_state(&wrapped).unwrap();
        let err = store.load_state().unwrap_err().to_string();
        assert!(err.contains("next_ordinal"), "{err}");

        let mut same_name = state;
        same_name.members[1].name = "a".into();
        store.save_state(&same_name).unwrap();
        let err = store.load_state().unwrap_err().to_string();
        assert!(err.contains("members[1].name"), "{err}");
    }
}
