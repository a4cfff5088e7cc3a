//! Session bookkeeping from the CLI's side: finding a live session (and proving it is
//! the one the state file describes), cleaning up after a dead one, registering
//! processes and starting a supervisor.
//!
//! Every function that reads or changes a profile's state expects the caller to hold
//! the profile lock (`supervisor::contract::profile_dir::lock_profile`).

use crate::hostsock;
use crate::launcher::Launcher;
use crate::spawn;
use anyhow::{bail, Context, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{self, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use supervisor::contract::profile_dir::{
    clear_dir, open_dir, read_small, write_atomic, ProfileLock,
};
use supervisor::contract::state::{
    control_socket_name, netns_of, proc_start_time, SessionState, HOLD_FILE, LOG_FILE, PIDS_DIR,
    STATE_FILE,
};

/// How long a supervisor may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A session whose supervisor is proven alive: same PID, same start time, same netns.
pub struct Live {
    pub state: SessionState,
    /// Refers to the supervisor process itself, whatever happens to its PID later.
    pub pidfd: OwnedFd,
}

/// The live session of a locked profile directory, or `None` (after removing any
/// stale state) when there is none.
pub fn find_live(dir: BorrowedFd<'_>) -> Result<Option<Live>> {
    if let Some(live) = probe(dir) {
        return Ok(Some(live));
    }
    clean_stale(dir)?;
    Ok(None)
}

/// The live session described by `state`, if its supervisor is provably alive.
pub fn probe(dir: BorrowedFd<'_>) -> Option<Live> {
    let state = SessionState::parse(&read_small(dir, STATE_FILE)?).ok()?;
    let pid = state.supervisor_pid;
    // pidfd first, checks second: a PID recycled after the checks cannot matter, the
    // pidfd still names the process we checked (or a dead one, and setns then fails).
    let pidfd = pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()?;
    // From inside a wrap (a nested wg-wrap), the supervisor's namespace link is not
    // readable (it keeps a capability we lack); being in that very namespace is
    // proof enough then.
    let netns = netns_of(pid)
        .or_else(|| netns_of(std::process::id()).filter(|ours| *ours == state.netns))?;
    if proc_start_time(pid)? != state.supervisor_start_time || netns != state.netns {
        return None;
    }
    Some(Live { state, pidfd })
}

/// Forget a dead session: its state, hold and registrations.
fn clean_stale(dir: BorrowedFd<'_>) -> Result<()> {
    let pids = open_dir(dir, PIDS_DIR, true).context("open pids/")?;
    clear_dir(pids.as_fd()).context("clear pids/")?;
    for name in [STATE_FILE, HOLD_FILE, SOURCE_FILE] {
        match fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("remove stale {name}")),
        }
    }
    Ok(())
}

/// Register a process as a user of the session (before it enters the namespace).
pub fn register(dir: BorrowedFd<'_>, pid: u32) -> Result<()> {
    let start = proc_start_time(pid).context("read the process start time")?;
    let pids = open_dir(dir, PIDS_DIR, true).context("open pids/")?;
    Ok(write_atomic(
        pids.as_fd(),
        &pid.to_string(),
        format!("{start}\n").as_bytes(),
    )?)
}

pub fn unregister(dir: BorrowedFd<'_>, pid: u32) {
    if let Ok(pids) = open_dir(dir, PIDS_DIR, false) {
        let _ = fs::unlinkat(&pids, pid.to_string().as_str(), AtFlags::empty());
    }
}

pub fn set_hold(dir: BorrowedFd<'_>, held: bool) -> Result<()> {
    if held {
        Ok(write_atomic(dir, HOLD_FILE, b"")?)
    } else {
        match fs::unlinkat(dir, HOLD_FILE, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).context("remove the hold"),
        }
    }
}

/// The profile file a session was started from, beside `state`: its canonical path
/// (as UTF-8, lossily). Sessions are named after their file, and two files can share
/// a name; a command that names its profile by a path must not join, or stop, the
/// session another file started (its traffic would leave through the other tunnel).
const SOURCE_FILE: &str = "source";

/// Note the profile file of the session about to start (under the profile lock).
pub fn record_source(dir: BorrowedFd<'_>, profile: &crate::profile::ProfileRef) -> Result<()> {
    let path = canonical(&profile.path);
    write_atomic(dir, SOURCE_FILE, path.as_bytes()).context("record the session's profile file")
}

/// For a profile named by a path: refuse a live session that another file started.
/// A name means the session of that name, wherever it came from; a session whose
/// source was not recorded (started by an older wg-wrap) cannot be told apart.
pub fn check_source(dir: BorrowedFd<'_>, profile: &crate::profile::ProfileRef) -> Result<()> {
    if !profile.from_path {
        return Ok(());
    }
    let Some(recorded) = read_small(dir, SOURCE_FILE) else {
        return Ok(());
    };
    let wanted = canonical(&profile.path);
    if recorded != wanted {
        let name = &profile.name;
        bail!(
            "profile {name} is running from {recorded}, not from {wanted}: a session is named \
             after its file, so `wg-wrap down {name}` first to use this one, or give this \
             file another name"
        );
    }
    Ok(())
}

fn canonical(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// Wait for a process (by pidfd) to exit.
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// A profile ready for a supervisor: endpoints resolved on the host, plus the host
/// names (and host nameservers) to re-resolve from when handshakes stop completing.
pub struct Prepared {
    pub config: wgconf::Config,
    pub reresolve: supervisor::contract::handover::Handover,
}

/// Descriptors a starting supervisor inherits; they must outlive the spawn.
struct Handover {
    exe: OwnedFd,
    config: OwnedFd,
    udp: OwnedFd,
    control: OwnedFd,
    control_id: u64,
    /// The re-resolution handover (memfd) and a host UDP socket for its DNS queries.
    /// Handed over even when no endpoint is a host name: a `reload` may add one.
    reresolve: (OwnedFd, OwnedFd),
}

/// The session's control socket: abstract, so it lives in *this* (the host's)
/// network namespace, where wrapped programs cannot reach it.
fn control_socket() -> Result<(OwnedFd, u64)> {
    use std::os::linux::net::SocketAddrExt;
    let mut id = [0u8; 8];
    rustix::rand::getrandom(&mut id, rustix::rand::GetRandomFlags::empty())
        .context("pick a control socket name")?;
    let id = u64::from_ne_bytes(id);
    let name = control_socket_name(rustix::process::getuid().as_raw(), id);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .context("name the control socket")?;
    let listener =
        std::os::unix::net::UnixListener::bind_addr(&addr).context("bind the control socket")?;
    Ok((OwnedFd::from(listener), id))
}

impl Handover {
    fn new(prepared: &Prepared) -> Result<Handover> {
        let config = &prepared.config;
        let (control, control_id) = control_socket()?;
        let reresolve = (
            spawn::sealed_memfd("wg-wrap-reresolve", prepared.reresolve.render().as_bytes())
                .context("hand the endpoint names over")?,
            hostsock::open_udp(None).context("open a host socket for DNS")?,
        );
        Ok(Handover {
            reresolve,
            exe: fs::open(
                "/proc/self/exe",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .context("open our own executable")?,
            config: spawn::sealed_memfd("wg-wrap-profile", wgconf::render(config).as_bytes())
                .context("hand the profile over")?,
            udp: hostsock::open_udp(config.interface.listen_port)?,
            control,
            control_id,
        })
    }

    /// `launcher create [--detach] <exe> -- wg-wrap __supervise …`, with `extra`
    /// (`--ready-fd N` or `--lock-fd N`) and `extra_fd` inherited as well.
    fn command(
        &self,
        launcher: &Launcher,
        profiles: BorrowedFd<'_>,
        name: &str,
        detach: bool,
        extra: (&str, BorrowedFd<'_>),
        published: &[crate::publish::Listener],
    ) -> Command {
        let fd = |f: &dyn AsRawFd| f.as_raw_fd().to_string();
        let mut cmd = launcher.command();
        cmd.arg("create");
        if detach {
            cmd.arg("--detach");
        }
        cmd.arg(fd(&self.exe))
            .arg("--")
            .arg("wg-wrap")
            .arg("__supervise")
            .args(["--config-fd", &fd(&self.config)])
            .args(["--udp-fd", &fd(&self.udp)])
            .args(["--profiles-fd", &fd(&profiles)])
            .args(["--control-fd", &fd(&self.control)])
            .args(["--control-id", &self.control_id.to_string()])
            .args([extra.0, &fd(&extra.1)])
            .args(["--profile", name]);
        let mut fds = vec![
            self.exe.as_raw_fd(),
            self.config.as_raw_fd(),
            self.udp.as_raw_fd(),
            profiles.as_raw_fd(),
            self.control.as_raw_fd(),
            extra.1.as_raw_fd(),
        ];
        let (names, dns) = &self.reresolve;
        cmd.args(["--reresolve-fd", &fd(names)])
            .args(["--dns-socket-fd", &fd(dns)]);
        fds.extend([names.as_raw_fd(), dns.as_raw_fd()]);
        for l in published {
            cmd.args(["--publish-fd", &format!("{}={}", fd(&l.socket), l.spec)]);
            fds.push(l.socket.as_raw_fd());
        }
        spawn::inherit_fds(&mut cmd, &fds);
        cmd
    }
}

/// Start a detached supervisor for `config` in the locked profile directory `dir`
/// and wait until it reports ready.
pub fn start(
    profiles: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &str,
    prepared: &Prepared,
) -> Result<Live> {
    let launcher = Launcher::locate()?;
    let handover = Handover::new(prepared)?;
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("create the readiness pipe")?;
    let log = fs::openat(
        dir,
        LOG_FILE,
        OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .context("create the supervisor log")?;
    let log = std::fs::File::from(log);

    let mut cmd = handover.command(
        &launcher,
        profiles,
        name,
        true,
        ("--ready-fd", ready_w.as_fd()),
        &[],
    );
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    spawn::detach(&mut cmd);
    let mut child = cmd.spawn().context("start the launcher")?;
    // The launcher forks the supervisor away and exits at once.
    let status = spawn::wait_timeout(&mut child, READY_TIMEOUT)?;
    drop(ready_w);
    drop(cmd);
    if !status.success() {
        let tail = log_tail(dir);
        bail!(
            "the launcher failed ({status}){tail}{}",
            crate::check::hint::for_launcher_output(&tail)
        );
    }
    let answer = read_ready(ready_r, READY_TIMEOUT)?;
    // Issue 6 (leak protection): "ready" may be followed by "warning: …" lines.
    let (answer, warnings) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    warnings.lines().for_each(|w| eprintln!("wg-wrap: {w}"));
    match answer.trim_end() {
        "ready" => {}
        "" => bail!("the supervisor exited before it was ready{}", log_tail(dir)),
        other => {
            let error = other.strip_prefix("error: ").unwrap_or(other);
            bail!(
                "the supervisor could not start the tunnel: {error}{}",
                crate::check::hint::for_supervisor_error(error)
            )
        }
    }
    probe(dir).with_context(|| {
        format!(
            "the supervisor reported ready but its state is missing{}",
            log_tail(dir)
        )
    })
}

/// Become the supervisor (for `up --foreground`): the lock passes to it and is
/// released once the session is usable; `published` listeners are inherited and live
/// with the session. Only returns on error.
pub fn exec_foreground(
    profiles: BorrowedFd<'_>,
    lock: &ProfileLock,
    name: &str,
    prepared: &Prepared,
    published: &[crate::publish::Listener],
) -> anyhow::Error {
    let launcher = match Launcher::locate() {
        Ok(l) => l,
        Err(e) => return e,
    };
    let handover = match Handover::new(prepared) {
        Ok(h) => h,
        Err(e) => return e,
    };
    // Under systemd (Type=notify): connect here, on the host, before isolation.
    let notify = match std::env::var_os(supervisor::contract::handover::NOTIFY_SOCKET_ENV) {
        Some(addr) => match supervisor::contract::handover::connect_notify_socket(&addr) {
            Ok(fd) => Some(fd),
            Err(e) => {
                return anyhow::Error::from(e).context(format!(
                    "connect to systemd's {}={}",
                    supervisor::contract::handover::NOTIFY_SOCKET_ENV,
                    addr.to_string_lossy()
                ))
            }
        },
        None => None,
    };
    // `launcher`, `handover` and `notify` hold the descriptors open until the exec.
    let mut cmd = handover.command(
        &launcher,
        profiles,
        name,
        false,
        ("--lock-fd", lock.as_fd()),
        published,
    );
    if let Some(fd) = &notify {
        cmd.args(["--notify-fd", &fd.as_raw_fd().to_string()]);
        spawn::inherit_fds(&mut cmd, &[fd.as_raw_fd()]);
    }
    // Nothing inside the session is systemd's to hear from.
    cmd.env_remove(supervisor::contract::handover::NOTIFY_SOCKET_ENV);
    spawn::exec(cmd)
}

fn read_ready(fd: OwnedFd, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("the supervisor did not report ready within {timeout:?}");
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e).context("wait for the supervisor"),
        }
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&text).into_owned()),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("read the supervisor's answer"),
        }
    }
}

/// The end of the supervisor log, to show with a start failure.
fn log_tail(dir: BorrowedFd<'_>) -> String {
    let text = read_small(dir, LOG_FILE).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("\n{text}")
    }
}
