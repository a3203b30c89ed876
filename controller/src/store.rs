//! The state dir: the directory the controller owns, and whole files written atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the directory), so a
//! crash leaves either the old or the new version, never a torn one: the cluster CA's PEM
//! files and the state snapshot. The state itself (snapshot + change log) is
//! [`crate::state_log`].

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
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
        self.write_atomic_with(name, private, |out| out.write_all(bytes))
            .map(|_| ())
    }

    /// Replaces `name` atomically with what `write` streams into it (through a small buffer,
    /// so a large snapshot is never held in memory as one encoded block); returns the bytes
    /// written. `private` files are readable by the owner only.
    pub fn write_atomic_with(
        &self,
        name: &str,
        private: bool,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<u64, ControllerError> {
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
        let out = options
            .open(&tmp)
            .map_err(|e| state_err(&tmp, format!("cannot create: {e}")))?;
        let mut counted = CountingWriter {
            inner: BufWriter::with_capacity(WRITE_BUFFER_BYTES, out),
            bytes: 0,
        };
        write(&mut counted)
            .and_then(|()| counted.inner.flush())
            .map_err(|e| state_err(&tmp, format!("cannot write: {e}")))?;
        let bytes = counted.bytes;
        let out = counted
            .inner
            .into_inner()
            .map_err(|e| state_err(&tmp, format!("cannot write: {}", e.error())))?;
        out.sync_all()
            .map_err(|e| state_err(&tmp, format!("cannot write: {e}")))?;
        drop(out);
        fs::rename(&tmp, &file).map_err(|e| state_err(&file, format!("cannot replace: {e}")))?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&self.path) {
            let _ = dir.sync_all();
        }
        Ok(bytes)
    }
}

/// The buffer between an encoder and a file written by [`StateDir::write_atomic_with`].
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// A writer that counts what passes through it.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes = self.bytes.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
