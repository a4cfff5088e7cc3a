//! Reference counting: keep the session while an `up` hold or a registered process
//! exists, and tear it down when the last one goes.
//!
//! Registered processes are watched through pidfds (an exit wakes us at once); new
//! registrations and the `hold` file are noticed through inotify.  The decision to tear
//! down is made holding the profile lock, after a final rescan, so an `exec` that
//! registers under the same lock either sees no session (and starts a new one) or is
//! seen by this rescan — never joins a dying session.
//!
//! A wrapped command may fork and exit (daemons, browsers re-executing themselves):
//! when the last registered process is gone, every process still inside our network
//! namespace is adopted and watched the same way. SIGTERM, SIGINT and SIGHUP mean
//! "stop now" (`down --now`, systemd stopping `up --foreground`): every process in the
//! namespace gets SIGTERM, then SIGKILL after a grace period, and the session ends.

use crate::contract::profile_dir::{self, list_dir, lock_dir, open_dir, ProfileLock};
use crate::contract::state::{
    netns_of, parse_pid_name, proc_start_time, processes_in_netns, NsId, HOLD_FILE, PIDS_DIR,
    STOP_GRACE,
};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{self, inotify, AtFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use rustix::process::{pidfd_send_signal, Signal};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Safety net: rescan now and then even if an event was somehow missed.
const RESCAN: Duration = Duration::from_secs(5);

/// A process that keeps the session alive.
struct Watched {
    pid: u32,
    pidfd: OwnedFd,
    /// Registered in `pids/` (removing the file unregisters it); otherwise adopted
    /// from the namespace.
    registered: bool,
}

/// Why the session ends.
pub enum End {
    /// Nothing holds it any more; the profile lock is held.
    Idle(ProfileLock),
    /// A stop signal arrived; wrapped processes have been ended. The lock is held
    /// unless the directory is already gone.
    Stopped(Option<ProfileLock>),
    /// The profile directory was removed under us.
    Gone,
}

pub struct Lifecycle {
    dir: OwnedFd,
    pids: OwnedFd,
    inotify: OwnedFd,
    /// Becomes readable when a stop signal arrives.
    signals: std::os::unix::net::UnixStream,
    netns: NsId,
    watched: Vec<Watched>,
}

impl Lifecycle {
    /// Start watching. Call before announcing readiness so no registration is missed.
    pub fn new(dir: OwnedFd) -> io::Result<Lifecycle> {
        let pids = open_dir(dir.as_fd(), PIDS_DIR, true)?;
        let inotify =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let mask = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::ONLYDIR;
        for fd in [&pids, &dir] {
            inotify::add_watch(&inotify, fd_path(fd), mask)?;
        }
        let (signals, notify) = std::os::unix::net::UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        notify.set_nonblocking(true)?;
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        let netns = netns_of(std::process::id())
            .ok_or_else(|| io::Error::other("cannot read our own network namespace"))?;
        Ok(Lifecycle {
            dir,
            pids,
            inotify,
            signals,
            netns,
            watched: Vec::new(),
        })
    }

    /// Block until nothing holds the session or a stop signal arrives; returns with
    /// the profile lock held, so the caller can remove the session's files before
    /// anyone else looks.
    pub fn run(&mut self) -> io::Result<End> {
        loop {
            self.scan()?;
            if self.is_idle()? {
                // Decide under the lock, after one more look.
                let Some(lock) = lock_dir(self.dir.as_fd(), Duration::from_secs(30))? else {
                    return Ok(End::Gone);
                };
                self.scan()?;
                if self.is_idle()? {
                    return Ok(End::Idle(lock));
                }
                drop(lock);
            }
            if self.wait_for_event()? {
                self.stop_everything();
                return Ok(End::Stopped(lock_dir(
                    self.dir.as_fd(),
                    Duration::from_secs(30),
                )?));
            }
        }
    }

    /// Nothing registered, no hold, and — after adopting them — no process left in
    /// the namespace.
    fn is_idle(&mut self) -> io::Result<bool> {
        if !self.watched.is_empty() || self.held()? {
            return Ok(false);
        }
        self.adopt_namespace_processes();
        Ok(self.watched.is_empty())
    }

    fn adopt_namespace_processes(&mut self) {
        for pid in processes_in_netns(self.netns, std::process::id()) {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            // Open first, check second: the pidfd then surely names a process that
            // was in our namespace.
            let Ok(pidfd) = pidfd_open(p, PidfdFlags::empty()) else {
                continue;
            };
            if netns_of(pid) == Some(self.netns) {
                self.watched.push(Watched {
                    pid,
                    pidfd,
                    registered: false,
                });
            }
        }
    }

    /// SIGTERM everything in the namespace, SIGKILL what is left after the grace
    /// period.
    fn stop_everything(&mut self) {
        self.adopt_namespace_processes();
        for w in &self.watched {
            let _ = pidfd_send_signal(&w.pidfd, Signal::TERM);
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while !self.watched.is_empty() && std::time::Instant::now() < deadline {
            self.reap_exited(Duration::from_millis(50));
        }
        for w in &self.watched {
            let _ = pidfd_send_signal(&w.pidfd, Signal::KILL);
        }
        self.watched.clear();
        // Anything that slipped in meanwhile (a fork during the grace period).
        for pid in processes_in_netns(self.netns, std::process::id()) {
            if let Some(p) = Pid::from_raw(pid as i32) {
                if let Ok(fd) = pidfd_open(p, PidfdFlags::empty()) {
                    let _ = pidfd_send_signal(&fd, Signal::KILL);
                }
            }
        }
    }

    /// Drop watched processes that have exited (waiting up to `timeout`).
    fn reap_exited(&mut self, timeout: Duration) {
        let mut fds: Vec<PollFd<'_>> = self
            .watched
            .iter()
            .map(|w| PollFd::new(&w.pidfd, PollFlags::IN))
            .collect();
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        let _ = poll(&mut fds, Some(&ts));
        let exited: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 0;
        self.watched.retain(|w| {
            let keep = !exited[i];
            i += 1;
            if !keep && w.registered {
                let _ = fs::unlinkat(&self.pids, w.pid.to_string().as_str(), AtFlags::empty());
            }
            keep
        });
    }

    pub fn dir(&self) -> &OwnedFd {
        &self.dir
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
        let names = match list_dir(self.pids.as_fd()) {
            Ok(names) => names,
            // Out of descriptors for now (port publishing is held to a budget, but
            // the limit is shared): look again at the next event or rescan rather
            // than end the session.
            Err(e) if crate::sys::is_exhaustion(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        // A removed file is an explicit unregistration (the process may live on).
        self.watched
            .retain(|w| !w.registered || names.iter().any(|n| parse_pid_name(n) == Some(w.pid)));
        for name in names {
            if name.starts_with(".tmp-") {
                continue; // a registration being written; its rename wakes us again
            }
            let Some(pid) = parse_pid_name(&name) else {
                self.unregister(&name);
                continue;
            };
            if let Some(w) = self.watched.iter_mut().find(|w| w.pid == pid) {
                w.registered = true;
                continue;
            }
            match self.verify(pid, &name) {
                Ok(Some(pidfd)) => self.watched.push(Watched {
                    pid,
                    pidfd,
                    registered: true,
                }),
                Ok(None) => self.unregister(&name),
                // No pidfd to be had now: keep the registration for the next look.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// A pidfd for a registered PID, if that PID is still the process that registered;
    /// an error when no descriptor could be had to find out.
    fn verify(&self, pid: u32, name: &str) -> Result<Option<OwnedFd>, Errno> {
        let Some(recorded) = profile_dir::recorded_start_time(self.pids.as_fd(), name) else {
            return Ok(None);
        };
        let Some(pid_t) = Pid::from_raw(pid as i32) else {
            return Ok(None);
        };
        // Open the pidfd first: if the start time still matches afterwards, the pidfd
        // refers to the registered process and not to a later holder of the PID.
        let pidfd = match pidfd_open(pid_t, PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOMEM)) => return Err(e),
            Err(_) => return Ok(None),
        };
        Ok((proc_start_time(pid) == Some(recorded)).then_some(pidfd))
    }

    fn unregister(&self, name: &str) {
        let _ = fs::unlinkat(&self.pids, name, AtFlags::empty());
    }

    /// Wait for a registration change, an exit or a signal; true on a stop signal.
    fn wait_for_event(&mut self) -> io::Result<bool> {
        let mut fds = Vec::with_capacity(2 + self.watched.len());
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        fds.push(PollFd::new(&self.inotify, PollFlags::IN));
        for w in &self.watched {
            fds.push(PollFd::new(&w.pidfd, PollFlags::IN));
        }
        let timeout = Timespec {
            tv_sec: RESCAN.as_secs() as i64,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let stop = !fds[0].revents().is_empty();
        let any_exit = fds[2..].iter().any(|fd| !fd.revents().is_empty());
        drop(fds);
        if stop {
            return Ok(true);
        }
        if any_exit {
            self.reap_exited(Duration::ZERO);
        }
        self.drain_inotify();
        Ok(false)
    }

    fn drain_inotify(&self) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// Remove the session's files; called with the lock held, right before exiting.
///
/// Only while `state` still names this process: if a command judged us dead (say our
/// state was damaged) and started a new session in the same directory, its files are
/// not ours to remove.
pub fn teardown(profiles: &OwnedFd, name: &str, dir: &OwnedFd) -> io::Result<()> {
    let ours = profile_dir::read_small(dir.as_fd(), crate::contract::state::STATE_FILE)
        .and_then(|t| crate::contract::state::SessionState::parse(&t).ok())
        .is_some_and(|s| s.supervisor_pid == std::process::id());
    if !ours {
        return Ok(());
    }
    profile_dir::remove_profile_dir(profiles.as_fd(), name, dir.as_fd())
}

/// inotify needs a path; `/proc/self/fd/N` names the directory we hold open.
fn fd_path(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}
