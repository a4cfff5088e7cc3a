//! Safe access to a profile's runtime directory, shared by the CLI and the supervisor.
//!
//! Everything is opened relative to directory fds with `O_NOFOLLOW`, so a symlink
//! planted in the runtime directory is never followed.  The profile lock is a flock on
//! `profiles/<name>/lock`; because teardown removes the whole directory (lock file
//! included), a lock is only valid once we have checked, while holding it, that both
//! the lock file and the directory are still the ones linked under their names.

use crate::contract::state::{LOCK_FILE, PIDS_DIR};
use rustix::fs::{self, AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

/// Open (optionally creating, mode 0700) a directory below `parent`, never following a
/// symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &str, create: bool) -> io::Result<OwnedFd> {
    match fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOENT) if create => {}
        other => return Ok(other?),
    }
    match fs::mkdirat(parent, name, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// A held profile lock; released when dropped.
pub struct ProfileLock {
    fd: OwnedFd,
}

impl ProfileLock {
    /// The locked descriptor, to hand the lock to a process we start.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The profile directory together with its lock.
pub struct LockedProfile {
    pub dir: OwnedFd,
    pub lock: ProfileLock,
}

fn same_inode(a: &fs::Stat, b: &fs::Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Take the lock of an already-open profile directory (the supervisor's way in).
/// Returns `None` if the directory has been torn down meanwhile.
pub fn lock_dir(dir: BorrowedFd<'_>, timeout: Duration) -> io::Result<Option<ProfileLock>> {
    let deadline = Instant::now() + timeout;
    let fd = match fs::openat(
        dir,
        LOCK_FILE,
        OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    loop {
        match fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(2))
            }
            Err(Errno::WOULDBLOCK) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for the profile lock",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    match fs::statat(dir, LOCK_FILE, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if same_inode(&st, &fs::fstat(&fd)?) => Ok(Some(ProfileLock { fd })),
        Ok(_) | Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open (creating if needed) `profiles/<name>/` and take its lock, retrying when a
/// concurrent teardown removed the directory under us.
pub fn lock_profile(
    profiles: BorrowedFd<'_>,
    name: &str,
    timeout: Duration,
) -> io::Result<LockedProfile> {
    let deadline = Instant::now() + timeout;
    loop {
        let dir = open_dir(profiles, name, true)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Some(lock) = lock_dir(dir.as_fd(), remaining)? {
            // The directory itself must still be the one linked under `name`.
            match fs::statat(profiles, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if same_inode(&st, &fs::fstat(&dir)?) => {
                    return Ok(LockedProfile { dir, lock });
                }
                Ok(_) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the profile lock",
            ));
        }
    }
}

/// Remove every entry of a directory (one level; used for `pids/`).
pub fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in list_dir(dir)? {
        match fs::unlinkat(dir, name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Names in a directory, without `.` and `..`; names that are not UTF-8 are returned
/// lossily (they are garbage to us anyway and get removed by exact bytes below).
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let fd = fs::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for entry in fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        match std::str::from_utf8(name) {
            Ok(s) => names.push(s.to_owned()),
            Err(_) => {
                // Remove it right away: it can only be garbage.
                let _ = fs::unlinkat(dir, entry.file_name(), AtFlags::empty());
            }
        }
    }
    Ok(names)
}

/// Registered processes that are still alive: the `pids/` entries whose recorded
/// start time matches the live process (a recycled PID does not count).
pub fn live_registrations(dir: BorrowedFd<'_>) -> Vec<u32> {
    let Ok(pids) = open_dir(dir, PIDS_DIR, false) else {
        return Vec::new();
    };
    list_dir(pids.as_fd())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| crate::contract::state::parse_pid_name(n))
        .filter(|pid| {
            let recorded = recorded_start_time(pids.as_fd(), &pid.to_string());
            recorded.is_some() && recorded == crate::contract::state::proc_start_time(*pid)
        })
        .collect()
}

/// The start time a registration `pids/<name>` recorded (see
/// [`crate::contract::state`]); `None` if it is missing or unreadable.
pub fn recorded_start_time(pids: BorrowedFd<'_>, name: &str) -> Option<u64> {
    read_small(pids, name)?.trim().parse().ok()
}

/// A small file below `dir` (at most 4 KiB), never following a symlink.
pub fn read_small(dir: BorrowedFd<'_>, name: &str) -> Option<String> {
    use std::io::Read;
    let fd = fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Write `name` below `dir` with mode 0600, atomically: a temporary `.tmp-<name>`
/// (which readers of `pids/` skip), then a rename, so nobody sees half a file.
/// The error names the step and the file.
pub fn write_atomic(dir: BorrowedFd<'_>, name: &str, content: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let step = |what: &'static str| {
        move |e: io::Error| io::Error::new(e.kind(), format!("{what} {name}: {e}"))
    };
    let tmp = format!(".tmp-{name}");
    let fd = fs::openat(
        dir,
        tmp.as_str(),
        OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .map_err(|e| step("create")(e.into()))?;
    std::fs::File::from(fd)
        .write_all(content)
        .map_err(step("write"))?;
    fs::renameat(dir, tmp.as_str(), dir, name).map_err(|e| step("rename")(e.into()))
}

/// Remove a whole profile directory (teardown or stale cleanup), lock file last.
pub fn remove_profile_dir(
    profiles: BorrowedFd<'_>,
    name: &str,
    dir: BorrowedFd<'_>,
) -> io::Result<()> {
    if let Ok(pids) = open_dir(dir, PIDS_DIR, false) {
        clear_dir(pids.as_fd())?;
    }
    for entry in list_dir(dir)? {
        if entry == LOCK_FILE {
            continue;
        }
        let flags = if entry == PIDS_DIR {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match fs::unlinkat(dir, entry.as_str(), flags) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match fs::unlinkat(dir, LOCK_FILE, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match fs::unlinkat(profiles, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn tempdir() -> (std::path::PathBuf, OwnedFd) {
        let path = std::env::temp_dir().join(format!(
            "wg-wrap-pd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        let fd = fs::open(&path, DIR_FLAGS, Mode::empty()).unwrap();
        (path, fd)
    }

    #[test]
    fn lock_excludes_and_survives_teardown() {
        let (path, profiles) = tempdir();
        let held = lock_profile(profiles.as_fd(), "p", Duration::from_secs(1)).unwrap();
        // A second locker times out while the first holds it.
        let err = lock_profile(profiles.as_fd(), "p", Duration::from_millis(50))
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Teardown removes the directory while holding the lock ...
        remove_profile_dir(profiles.as_fd(), "p", held.dir.as_fd()).unwrap();
        drop(held);
        assert!(!path.join("p").exists());
        // ... and the next locker gets a fresh directory.
        let again = lock_profile(profiles.as_fd(), "p", Duration::from_secs(1)).unwrap();
        assert!(path.join("p/lock").is_file());
        drop(again);
        std::fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn symlinked_profile_dir_is_refused() {
        let (path, profiles) = tempdir();
        std::os::unix::fs::symlink("/tmp", path.join("evil")).unwrap();
        assert!(lock_profile(profiles.as_fd(), "evil", Duration::from_millis(50)).is_err());
        std::fs::remove_dir_all(&path).unwrap();
    }
}
