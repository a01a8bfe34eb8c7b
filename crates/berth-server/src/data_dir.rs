//! The data directory: created on first use, locked for the life of the process so that two
//! Berths never share one database.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It could not be created or opened.
    #[error("cannot use data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "data directory {path} is in use by another Berth (pid {holder}); stop it, or pass a different --data-dir"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        holder: String,
    },
}

/// A locked data directory; the lock is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Create `path` if needed and take its exclusive lock.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let path = path.canonicalize().map_err(io)?;
        let lock_path = path.join("berth.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(&lock_path)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            return Err(DataDirError::Locked { path, holder });
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir { path, _lock: file })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The control-plane database.
    pub fn database_path(&self) -> PathBuf {
        self.path.join("berth.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use by another Berth"), "{err}");
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }
}
