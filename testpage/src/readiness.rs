//! The readiness file: present while this pod should receive traffic.
//!
//! The file is the one source of truth for readiness, shared with whatever else is in the pod:
//! an exec probe can test it, and a preStop hook (`probe drain`) or `kubectl exec` can delete it
//! to take the pod out of the endpoints before SIGTERM arrives.
//!
//! testpage only ever removes or replaces a file it wrote: a regular file whose first line is
//! `pid=<n>`. Whatever else sits at the path (a device, a FIFO, someone's file, the file of
//! another running testpage) is left alone and reported, because the file is written by renaming
//! over its path and a mistyped `READY_FILE=/dev/null` run as root would otherwise replace
//! the device.
//!
//! While it runs, testpage keeps its file open with an exclusive advisory lock (`flock`). The
//! lock tells a live file from a stale one across PID namespaces (two containers sharing a
//! volume are both PID 1), and the open handle keeps the file's inode from being reused, so
//! "the file at the path is the one this process wrote" is a plain comparison of inodes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the ready file is written unless `READY_FILE` says otherwise; `probe drain` removes it
/// from the same place.
pub const DEFAULT_PATH: &str = "/tmp/ready";

/// Why the readiness file could not be written, removed or taken over.
#[derive(Debug, thiserror::Error)]
pub enum ReadyFileError {
    /// The file system refused.
    #[error("cannot write READY_FILE {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// Something other than a regular file is at the path.
    #[error("READY_FILE {path:?} is not a regular file; choose another path")]
    NotARegularFile {
        /// The file.
        path: PathBuf,
    },
    /// A regular file that testpage did not write is at the path.
    #[error("READY_FILE {path:?} was not written by testpage (no pid= line); remove it or choose another path")]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// A file in testpage's format that no running testpage holds: a copy, or a leftover.
    #[error("READY_FILE {path:?} is not held by a running testpage (a copy, or left by one that exited): left alone")]
    NotHeld {
        /// The file.
        path: PathBuf,
    },
    /// Another running testpage owns the file.
    #[error("READY_FILE {path:?} belongs to testpage process {pid}, which is running; give each instance its own file")]
    InUse {
        /// The file.
        path: PathBuf,
        /// The other process.
        pid: u32,
    },
}

/// Identity of the file this process wrote: device and inode.
type FileId = (u64, u64);

/// The file this process wrote, held open and locked while it stands at the path.
#[derive(Debug)]
struct Written {
    id: FileId,
    _locked: fs::File,
}

/// The readiness file, or nothing when `READY_FILE` is empty.
#[derive(Debug)]
pub(crate) struct ReadyFile {
    path: Option<PathBuf>,
    written: Mutex<Option<Written>>,
}

impl ReadyFile {
    /// A handle on `path`; `None` disables the file (readiness then follows the state alone).
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        ReadyFile {
            path,
            written: Mutex::new(None),
        }
    }

    /// The file's path, when enabled.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn io_error(&self, source: io::Error) -> ReadyFileError {
        ReadyFileError::Io {
            path: self.path.clone().unwrap_or_default(),
            source,
        }
    }

    /// Removes a file left by an earlier run of a restarted container, so that the pod is not
    /// reported ready before this process has bound its port. Refuses, without touching it,
    /// anything this program did not write and the file of another running testpage.
    pub(crate) fn remove_stale(&self) -> Result<(), ReadyFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // The directory must exist now, not only when the pod turns ready.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            if !dir.is_dir() {
                let missing = io::Error::new(io::ErrorKind::NotFound, "no such directory");
                return Err(self.io_error(missing));
            }
        }
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_error(e)),
            Ok(meta) if !meta.is_file() => {
                return Err(ReadyFileError::NotARegularFile { path: path.clone() })
            }
            Ok(_) => {}
        }
        let text = read_head(path).map_err(|e| self.io_error(e))?;
        let Some(pid) = owner(&text) else {
            return Err(ReadyFileError::NotOurs { path: path.clone() });
        };
        // A running testpage holds the lock on its file, whatever PID namespace it is in.
        let file = fs::File::open(path).map_err(|e| self.io_error(e))?;
        match file.try_lock() {
            Ok(()) => drop(file),
            Err(fs::TryLockError::WouldBlock) => {
                return Err(ReadyFileError::InUse {
                    path: path.clone(),
                    pid,
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(self.io_error(e)),
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io_error(e)),
            _ => Ok(()),
        }
    }

    /// Writes the file atomically (a new temporary file renamed over it), so that a probe never
    /// reads a half-written one. It holds the pid and the bound address. No fsync: the file only
    /// matters while this process runs, and a stale one is removed at the next start.
    pub(crate) fn create(&self, addr: SocketAddr) -> Result<(), ReadyFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut written = self.lock();
        let ours = written.as_ref().map(|w| w.id);
        // Only an absent file or the one this process wrote may be replaced.
        match fs::symlink_metadata(path) {
            Ok(meta) if Some(id(&meta)) == ours => {}
            Ok(meta) if !meta.is_file() => {
                return Err(ReadyFileError::NotARegularFile { path: path.clone() })
            }
            Ok(_) => return Err(ReadyFileError::NotOurs { path: path.clone() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error(e)),
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let _ = fs::remove_file(&tmp);
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| {
                writeln!(f, "pid={}\naddr={addr}", std::process::id())?;
                f.try_lock().map_err(io::Error::from)?;
                let id = id(&f.metadata()?);
                Ok(Written { id, _locked: f })
            })
            .and_then(|file| fs::rename(&tmp, path).map(|()| file));
        match result {
            Ok(file) => {
                *written = Some(file);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(self.io_error(e))
            }
        }
    }

    /// Deletes the file if it is the one this process wrote. Returns whether it was there.
    pub(crate) fn remove(&self) -> Result<bool, ReadyFileError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut written = self.lock();
        if !is_ours(path, written.as_ref()) {
            return Ok(false);
        }
        // Unlinked before the handle (and its lock) goes, so no one sees it unlocked.
        let result = fs::remove_file(path);
        *written = None;
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// Whether the file this process wrote is still there; a disabled file always counts as
    /// present. A file that someone else put at the path does not count.
    pub(crate) fn exists(&self) -> bool {
        match &self.path {
            None => true,
            Some(path) => is_ours(path, self.lock().as_ref()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Written>> {
        // A panic elsewhere cannot leave the identity half-written: it is set or cleared whole.
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Withdraws readiness from outside the process (`probe drain`, a preStop hook): removes the
/// file at `path` if testpage wrote it (a regular file whose first line is `pid=`), and returns
/// whether it was there. Anything else at the path is left alone and reported.
pub fn withdraw(path: &Path) -> Result<bool, ReadyFileError> {
    let fail = |source| ReadyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fail(e)),
        Ok(meta) if !meta.is_file() => {
            return Err(ReadyFileError::NotARegularFile {
                path: path.to_owned(),
            })
        }
        Ok(_) => {}
    }
    if owner(&read_head(path).map_err(fail)?).is_none() {
        return Err(ReadyFileError::NotOurs {
            path: path.to_owned(),
        });
    }
    // Only the file a running testpage holds (locked) is its readiness: a copy of it, or one
    // left by a testpage that has exited, withdraws nothing and is left alone.
    let file = fs::File::open(path).map_err(fail)?;
    match file.try_lock() {
        Err(fs::TryLockError::WouldBlock) => {}
        Ok(()) => {
            return Err(ReadyFileError::NotHeld {
                path: path.to_owned(),
            })
        }
        Err(fs::TryLockError::Error(e)) => return Err(fail(e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fail(e)),
    }
}

/// Whether the file at `path` is the one this process wrote (and still holds open, so its
/// inode cannot have been given to another file).
fn is_ours(path: &Path, written: Option<&Written>) -> bool {
    written.is_some_and(|w| fs::symlink_metadata(path).is_ok_and(|m| id(&m) == w.id))
}

fn id(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The first bytes of a file: enough for its `pid=` line, whatever the file's size.
fn read_head(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    fs::File::open(path)?.take(64).read_to_end(&mut head)?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The pid on the first line of a file this program wrote.
fn owner(text: &str) -> Option<u32> {
    text.lines()
        .next()?
        .strip_prefix("pid=")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "127.0.0.1:80";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ready-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn create_remove_and_report_presence() {
        let dir = scratch("create");
        let file = ReadyFile::new(Some(dir.join("ready")));
        file.remove_stale().unwrap();
        assert!(!file.exists());
        file.create(ADDR.parse().unwrap()).unwrap();
        assert!(file.exists());
        let text = fs::read_to_string(dir.join("ready")).unwrap();
        assert!(text.contains("addr=127.0.0.1:80"), "{text}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        file.create(ADDR.parse().unwrap()).unwrap();
        assert!(file.remove().unwrap());
        assert!(!file.remove().unwrap());
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn disabled_file_is_always_present() {
        let file = ReadyFile::new(None);
        file.create(ADDR.parse().unwrap()).unwrap();
        assert!(file.exists());
        assert!(!file.remove().unwrap());
    }

    #[test]
    fn unwritable_directory_names_the_file() {
        let file = ReadyFile::new(Some("/proc/no-such-dir/ready".into()));
        let err = file.create(ADDR.parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("READY_FILE"), "{err}");
    }

    #[test]
    fn leaves_alone_what_it_did_not_write() {
        // A device node, a directory and a stranger's file are neither removed nor replaced.
        for path in ["/dev/null", "/tmp"] {
            let file = ReadyFile::new(Some(path.into()));
            assert!(matches!(
                file.remove_stale(),
                Err(ReadyFileError::NotARegularFile { .. })
            ));
            assert!(file.create(ADDR.parse().unwrap()).is_err());
            assert!(!file.remove().unwrap());
        }
        assert!(Path::new("/dev/null").exists());
        let dir = scratch("foreign");
        let path = dir.join("ready");
        fs::write(&path, "precious\n").unwrap();
        let file = ReadyFile::new(Some(path.clone()));
        assert!(matches!(
            file.remove_stale(),
            Err(ReadyFileError::NotOurs { .. })
        ));
        assert!(file.create(ADDR.parse().unwrap()).is_err());
        assert!(!file.exists(), "a stranger's file is not readiness");
        assert!(!file.remove().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_held_by_a_running_instance_is_in_use_whatever_its_pid() {
        let dir = scratch("held");
        let path = dir.join("ready");
        let first = ReadyFile::new(Some(path.clone()));
        first.create(ADDR.parse().unwrap()).unwrap();
        // Another container sharing the volume may be PID 1 too: the lock tells, not the pid.
        let second = ReadyFile::new(Some(path.clone()));
        assert!(matches!(
            second.remove_stale(),
            Err(ReadyFileError::InUse { .. })
        ));
        assert!(first.exists());
        // A stranger's file put at the path after ours was removed is not ours, even if the
        // file system gave it the same inode number.
        assert!(first.remove().unwrap());
        fs::write(&path, "stranger\n").unwrap();
        assert!(!first.exists());
        assert!(!first.remove().unwrap());
        assert!(path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn withdraw_removes_only_the_file_a_running_instance_holds() {
        let dir = scratch("withdraw");
        let path = dir.join("ready");
        let live = ReadyFile::new(Some(path.clone()));
        live.create(ADDR.parse().unwrap()).unwrap();
        // A copy of the live file, elsewhere: same text, nobody holds it.
        let copy = dir.join("copy");
        fs::copy(&path, &copy).unwrap();
        assert!(matches!(
            withdraw(&copy),
            Err(ReadyFileError::NotHeld { .. })
        ));
        assert!(copy.exists());
        assert!(withdraw(&path).unwrap());
        assert!(!path.exists());
        assert!(!withdraw(&path).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_file_of_a_dead_process_is_removed() {
        let dir = scratch("stale");
        let path = dir.join("ready");
        // pid 0 is never a process.
        fs::write(&path, "pid=0\naddr=127.0.0.1:1\n").unwrap();
        ReadyFile::new(Some(path.clone())).remove_stale().unwrap();
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
