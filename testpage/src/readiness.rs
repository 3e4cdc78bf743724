//! The readiness file: present while this pod should receive traffic.
//!
//! The file is the one source of truth for readiness, shared with whatever else is in the pod:
//! an exec probe can test it, and a preStop hook (`probe drain`) or `kubectl exec` can delete it
//! to take the pod out of the endpoints before SIGTERM arrives.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A failure to write the readiness file, naming it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write READY_FILE {path:?}: {source}")]
pub struct ReadyFileError {
    /// The file that could not be written.
    pub path: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: io::Error,
}

/// The readiness file, or nothing when `READY_FILE` is empty.
#[derive(Debug, Clone)]
pub struct ReadyFile {
    path: Option<PathBuf>,
}

impl ReadyFile {
    /// A handle on `path`; `None` disables the file (readiness then follows the state alone).
    pub fn new(path: Option<PathBuf>) -> Self {
        ReadyFile { path }
    }

    /// The file's path, when enabled.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Removes a file left by an earlier run of a restarted container, so that the pod is not
    /// reported ready before this process has bound its port.
    pub fn remove_stale(&self) -> Result<(), ReadyFileError> {
        self.remove().map(drop)
    }

    /// Writes the file atomically (a temporary file renamed over it), so that a probe never
    /// reads a half-written one. It holds the pid and the bound address. No fsync: the file only
    /// matters while this process runs, and a stale one is removed at the next start.
    pub fn create(&self, addr: SocketAddr) -> Result<(), ReadyFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail = |source| ReadyFileError {
            path: path.clone(),
            source,
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| writeln!(f, "pid={}\naddr={addr}", std::process::id()));
        let result = written.and_then(|()| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(fail)
    }

    /// Deletes the file. Returns whether it was there, i.e. whether nothing else (a preStop
    /// hook) had withdrawn readiness already. A disabled file counts as present.
    pub fn remove(&self) -> Result<bool, ReadyFileError> {
        let Some(path) = &self.path else {
            return Ok(true);
        };
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ReadyFileError {
                path: path.clone(),
                source,
            }),
        }
    }

    /// Whether the file exists; a disabled file always counts as present.
    pub fn exists(&self) -> bool {
        self.path.as_deref().is_none_or(Path::exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_remove_and_report_presence() {
        let dir = std::env::temp_dir().join(format!("ready-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = ReadyFile::new(Some(dir.join("ready")));
        file.remove_stale().unwrap();
        assert!(!file.exists());
        file.create("127.0.0.1:80".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.join("ready")).unwrap();
        assert!(text.contains("addr=127.0.0.1:80"), "{text}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(file.remove().unwrap());
        assert!(!file.remove().unwrap());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn disabled_file_is_always_present() {
        let file = ReadyFile::new(None);
        file.create("127.0.0.1:80".parse().unwrap()).unwrap();
        assert!(file.exists());
        assert!(file.remove().unwrap());
    }

    #[test]
    fn unwritable_directory_names_the_file() {
        let file = ReadyFile::new(Some("/proc/no-such-dir/ready".into()));
        let err = file.create("127.0.0.1:80".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("READY_FILE"), "{err}");
    }
}
