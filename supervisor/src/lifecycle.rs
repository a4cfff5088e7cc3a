//! Reference counting: keep the session while an `up` hold or a registered process
//! exists, and tear it down when the last one goes.
//!
//! Registered processes are watched through pidfds (an exit wakes us at once); new
//! registrations and the `hold` file are noticed through inotify.  The decision to tear
//! down is made holding the profile lock, after a final rescan, so an `exec` that
//! registers under the same lock either sees no session (and starts a new one) or is
//! seen by this rescan — never joins a dying session.

use crate::profile_dir::{self, list_dir, lock_dir, open_dir, ProfileLock};
use crate::session::{parse_pid_name, proc_start_time, HOLD_FILE, PIDS_DIR};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{self, inotify, AtFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Safety net: rescan now and then even if an event was somehow missed.
const RESCAN: Duration = Duration::from_secs(5);

pub struct Lifecycle {
    dir: OwnedFd,
    pids: OwnedFd,
    inotify: OwnedFd,
    watched: Vec<(u32, OwnedFd)>,
}

impl Lifecycle {
    /// Start watching. Call before announcing readiness so no registration is missed.
    pub fn new(dir: OwnedFd) -> io::Result<Lifecycle> {
        let pids = open_dir(dir.as_fd(), PIDS_DIR, true)?;
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let mask = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::ONLYDIR;
        for fd in [&pids, &dir] {
            inotify::add_watch(&inotify, fd_path(fd), mask)?;
        }
        Ok(Lifecycle {
            dir,
            pids,
            inotify,
            watched: Vec::new(),
        })
    }

    /// Block until nothing holds the session; returns with the profile lock held, so
    /// the caller can remove the session's files before anyone else looks.
    pub fn wait_until_idle(&mut self) -> io::Result<Option<ProfileLock>> {
        loop {
            self.scan()?;
            if self.watched.is_empty() && !self.held()? {
                // Decide under the lock, after one more look.
                let Some(lock) = lock_dir(self.dir.as_fd(), Duration::from_secs(30))? else {
                    return Ok(None);
                };
                self.scan()?;
                if self.watched.is_empty() && !self.held()? {
                    return Ok(Some(lock));
                }
                drop(lock);
            }
            self.wait_for_event()?;
        }
    }

    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// Registered processes still alive (for status).
    pub fn watched_pids(&self) -> Vec<u32> {
        self.watched.iter().map(|(p, _)| *p).collect()
    }

    fn held(&self) -> io::Result<bool> {
        match fs::statat(&self.dir, HOLD_FILE, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Pick up new registrations; drop garbage and dead or recycled PIDs.
    fn scan(&mut self) -> io::Result<()> {
        let names = list_dir(self.pids.as_fd())?;
        // A removed file is an explicit unregistration (the process may live on).
        self.watched
            .retain(|(pid, _)| names.iter().any(|n| parse_pid_name(n) == Some(*pid)));
        for name in names {
            if name.starts_with(".tmp-") {
                continue; // a registration being written; its rename wakes us again
            }
            let Some(pid) = parse_pid_name(&name) else {
                self.unregister(&name);
                continue;
            };
            if self.watched.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            match self.verify(pid, &name) {
                Some(pidfd) => self.watched.push((pid, pidfd)),
                None => self.unregister(&name),
            }
        }
        Ok(())
    }

    /// A pidfd for a registered PID, if that PID is still the process that registered.
    fn verify(&self, pid: u32, name: &str) -> Option<OwnedFd> {
        let recorded: u64 = {
            let fd = fs::openat(
                &self.pids,
                name,
                fs::OFlags::RDONLY | fs::OFlags::NOFOLLOW | fs::OFlags::CLOEXEC,
                fs::Mode::empty(),
            )
            .ok()?;
            let mut text = String::new();
            std::fs::File::from(fd)
                .take(64)
                .read_to_string(&mut text)
                .ok()?;
            text.trim().parse().ok()?
        };
        // Open the pidfd first: if the start time still matches afterwards, the pidfd
        // refers to the registered process and not to a later holder of the PID.
        let pidfd = pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()?;
        (proc_start_time(pid)? == recorded).then_some(pidfd)
    }

    fn unregister(&self, name: &str) {
        let _ = fs::unlinkat(&self.pids, name, AtFlags::empty());
    }

    fn wait_for_event(&mut self) -> io::Result<()> {
        let mut fds = Vec::with_capacity(1 + self.watched.len());
        fds.push(PollFd::new(&self.inotify, PollFlags::IN));
        for (_, pidfd) in &self.watched {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let timeout = Timespec {
            tv_sec: RESCAN.as_secs() as i64,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let exited: Vec<usize> = fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in exited.into_iter().rev() {
            let (pid, _) = self.watched.remove(i);
            self.unregister(&pid.to_string());
        }
        self.drain_inotify();
        Ok(())
    }

    fn drain_inotify(&self) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// Remove the session's files; called with the lock held, right before exiting.
pub fn teardown(profiles: &OwnedFd, name: &str, dir: &OwnedFd) -> io::Result<()> {
    profile_dir::remove_profile_dir(profiles.as_fd(), name, dir.as_fd())
}

/// inotify needs a path; `/proc/self/fd/N` names the directory we hold open.
fn fd_path(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}
