//! The state dir: the directory the controller owns, and whole files written atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the directory), so a
//! crash leaves either the old or the new version, never a torn one: the cluster CA's PEM
//! files and the state snapshot. The state itself (snapshot + change log) is
//! [`crate::state_log`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ControllerError;

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
}
