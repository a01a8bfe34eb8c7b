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
    /// Create `path` if needed and take its exclusive lock. A directory Berth creates is
    /// private to its user (mode 0700): the store holds Secrets Manager values as given.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io)?;
        }
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

    /// The secret that seals pagination tokens (`token-key`: 64 hex digits, mode 0600):
    /// generated on first use and kept, so that tokens stay valid across restarts.
    pub fn token_key(&self) -> Result<[u8; 32], DataDirError> {
        let path = self.path.join(TOKEN_KEY_FILE);
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(text.trim()).ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not 64 hex digits; delete the file to generate a new key (outstanding pagination tokens then become invalid)",
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
                // Written aside and renamed, so that a crash never leaves half a key.
                let tmp = self.path.join(format!("{TOKEN_KEY_FILE}.tmp"));
                let tmp_io = |source| DataDirError::Io {
                    path: tmp.clone(),
                    source,
                };
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(tmp_io)?;
                    f.write_all(text.as_bytes()).map_err(tmp_io)?;
                    f.sync_all().map_err(tmp_io)?;
                }
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// The file in the data directory that holds the pagination token key.
const TOKEN_KEY_FILE: &str = "token-key";

fn parse_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
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

    #[test]
    fn a_data_directory_berth_creates_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        DataDir::open(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn the_token_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path()).unwrap();
        let k = d.token_key().unwrap();
        assert_eq!(d.token_key().unwrap(), k, "kept");
        let meta = std::fs::metadata(dir.path().join(TOKEN_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(DataDir::open(other.path()).unwrap().token_key().unwrap(), k);
        std::fs::write(dir.path().join(TOKEN_KEY_FILE), "short").unwrap();
        let e = d.token_key().unwrap_err().to_string();
        assert!(e.contains("delete the file"), "{e}");
    }
}
