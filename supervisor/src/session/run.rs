//! The supervisor's life, in order (see the crate docs for the theory of operation).

use crate::contract::handover::Args;
use crate::contract::profile_dir::{live_registrations, open_dir, write_atomic};
use crate::contract::state::{
    now_unix, proc_start_time, wrapped_processes, NsId, SessionState, HOLD_FILE, STATE_FILE,
};
use crate::dataplane::udp::HostSocket;
use crate::dataplane::Device;
use crate::namespace::isolation;
use crate::namespace::netlink::Rtnetlink;
use crate::namespace::netsetup;
use crate::namespace::tun_device::{create_tun, DEFAULT_MTU};
use crate::reresolve::{DnsClient, Names, Reresolve, Reresolver};
use crate::session::control::{peer_configs, Control, SessionInfo};
use crate::session::lifecycle::{self, End, Lifecycle};
use crate::sys::confine;
use rustix::fs::{self, AtFlags, Mode, OFlags};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use wgconf::Config;

/// A set-up step that failed, with its cause.
#[derive(Debug)]
pub struct SetupError {
    step: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for SetupError {}

fn at<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    step: &'static str,
) -> impl FnOnce(E) -> SetupError {
    move |e| SetupError {
        step,
        source: e.into(),
    }
}

/// Registrations and the hold, read from the profile directory for `status`, and the
/// namespace whose other processes count as wrapped too.
struct DirSession {
    dir: OwnedFd,
    netns: NsId,
}

impl SessionInfo for DirSession {
    fn held(&self) -> bool {
        fs::statat(&self.dir, HOLD_FILE, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }
    /// What keeps the session up, as `down` lists it: registered processes and what
    /// they left running in the namespace (see [`wrapped_processes`]).
    fn wrapped_pids(&self) -> Vec<u32> {
        wrapped_processes(
            live_registrations(self.dir.as_fd()),
            self.netns,
            std::process::id(),
        )
    }
}

/// Run the supervisor, re-resolving hostname endpoints when `reresolve` is given (the
/// CLI's handover, see [`crate::reresolve`]); returns the process exit code.
pub fn run_with(args: Args, reresolve: Option<Reresolve>) -> i32 {
    let mut ready = args.ready.map(std::fs::File::from);
    let mut report = |line: &str| match ready.as_mut() {
        Some(pipe) => {
            let _ = writeln!(pipe, "{line}");
        }
        None => eprintln!("wg-wrap supervisor: {line}"),
    };
    let started = (|| -> Result<(Lifecycle, Vec<String>), SetupError> {
        let dir = open_dir(args.profiles.as_fd(), &args.profile, false)
            .map_err(at("open the profile directory"))?;
        let (control, warnings) = setup(&args.config, args.udp, &dir, &args.profile, reresolve)?;
        control
            .publisher
            .add(args.published, None)
            .map_err(at("publish the ports"))?;
        let lifecycle = Lifecycle::new(dir).map_err(at("watch the session"))?;
        control
            .serve(UnixListener::from(args.control))
            .map_err(at("serve the control socket"))?;
        // Every thread runs now: from here on, only the steady state's system calls.
        confine::confine().map_err(at(
            "confine the supervisor with seccomp (the kernel needs CONFIG_SECCOMP_FILTER)",
        ))?;
        write_state(lifecycle.dir(), args.control_id).map_err(at("write the session state"))?;
        Ok((lifecycle, warnings))
    })();
    let (mut lifecycle, warnings) = match started {
        Ok(started) => started,
        Err(e) => {
            report(&format!("error: {e}"));
            return 1;
        }
    };
    // Logged before "ready": `up -v --wait` shows the log while it waits, and may be
    // done as soon as it reads "ready" and sees a handshake.
    eprintln!("wg-wrap supervisor: session {} is up", args.profile);
    report("ready");
    // One line each after "ready", shown once by the `up`/`exec` that started us.
    for warning in warnings {
        report(&format!("warning: {}", warning.replace('\n', " ")));
    }
    drop(ready);
    drop(args.lock);
    let notifier = args.notify.map(super::notify::Notifier::new);
    notify(&notifier, |n| n.ready(&args.profile));

    let end = lifecycle.run();
    notify(&notifier, super::notify::Notifier::stopping);
    let lock = match end {
        Ok(End::Idle(lock)) => Some(lock),
        Ok(End::Stopped(lock)) => {
            eprintln!("wg-wrap supervisor: stopped by signal");
            lock
        }
        Ok(End::Gone) => None,
        Err(e) => {
            eprintln!("wg-wrap supervisor: watching the session failed: {e}");
            return 1;
        }
    };
    if let Some(_lock) = lock {
        // Exiting with the lock held: nobody can observe a half-removed session.
        if let Err(e) = lifecycle::teardown(&args.profiles, &args.profile, lifecycle.dir()) {
            eprintln!("wg-wrap supervisor: removing the session files failed: {e}");
            return 1;
        }
    }
    0
}

/// Tell systemd (if it asked); a lost notification is logged, never fatal.
fn notify(
    notifier: &Option<super::notify::Notifier>,
    send: impl FnOnce(&super::notify::Notifier) -> io::Result<()>,
) {
    if let Some(e) = notifier.as_ref().and_then(|n| send(n).err()) {
        eprintln!("wg-wrap supervisor: notifying systemd ($NOTIFY_SOCKET) failed: {e}");
    }
}

/// Steps 1-6 of the theory of operation; returns the control server for the session
/// and the warnings to report after "ready".
fn setup(
    config_fd: &OwnedFd,
    udp: OwnedFd,
    dir: &OwnedFd,
    name: &str,
    reresolve: Option<Reresolve>,
) -> Result<(Arc<Control>, Vec<String>), SetupError> {
    // Before anything else: wrapped programs must not reach the host socket through us.
    isolation::forbid_ptrace().map_err(at("protect the supervisor"))?;
    // Don't pin the caller's working directory's mount.
    std::env::set_current_dir("/").map_err(at("chdir /"))?;
    let config = read_config(config_fd)?;

    let mtu = config.interface.mtu.unwrap_or(DEFAULT_MTU);
    let tun = create_tun(mtu).map_err(at(
        "create the TUN device (is /dev/net/tun usable by this user?)",
    ))?;
    let tun_index = tun.if_index().map_err(at("find the TUN device"))?;
    let mut netlink = Rtnetlink::open().map_err(at("open rtnetlink"))?;
    netsetup::configure(
        &mut netlink,
        tun_index,
        &config,
        rustix::process::getgid().as_raw(),
    )
    .map_err(at("configure the network namespace"))?;

    let warnings =
        isolation::protect_name_resolution(dir, &config).map_err(at("protect name resolution"))?;
    // Mounts are done; CAP_NET_ADMIN stays for `reload`'s routes. Before any thread
    // starts: capabilities are per thread.
    confine::keep_only_net_admin().map_err(at("drop CAP_SYS_ADMIN"))?;

    let udp = HostSocket::new(udp).map_err(at("set up the UDP socket"))?;
    let v6 = udp.is_ipv6();
    let device = Arc::new(Device::new(
        tun,
        udp,
        *config.interface.private_key.as_bytes(),
        peer_configs(&config, v6),
    ));
    device.start().map_err(at("start the data plane"))?;
    let names = match reresolve {
        Some(r) => {
            let client = DnsClient::new(r.socket, &r.handover.nameservers)
                .map_err(at("set up endpoint re-resolution"))?;
            let names = Names::new(r.handover);
            Reresolver::new(client, names.clone())
                .spawn(device.clone())
                .map_err(at("start endpoint re-resolution"))?;
            Some(names)
        }
        None => None,
    };
    let session_dir = dir.try_clone().map_err(at("open the profile directory"))?;
    let control = Arc::new(Control {
        name: name.to_owned(),
        supervisor_pid: std::process::id(),
        started_unix: now_unix(),
        tun_index,
        tunnel: device,
        session: Arc::new(DirSession {
            dir: session_dir,
            netns: own_netns().map_err(at("identify the network namespace"))?,
        }),
        net: Mutex::new(Box::new(netlink)),
        config: Mutex::new(config),
        names,
        publisher: crate::publish::Publisher::new().map_err(at("set up port publishing"))?,
    });
    Ok((control, warnings))
}

fn read_config(fd: &OwnedFd) -> Result<Config, SetupError> {
    let mut text = String::new();
    let file = fs::openat(
        fs::CWD,
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(at("open the handed-over profile"))?;
    std::fs::File::from(file)
        .read_to_string(&mut text)
        .map_err(at("read the handed-over profile"))?;
    let parsed = wgconf::parse(&text).map_err(|e| SetupError {
        step: "parse the handed-over profile",
        source: e.to_string().into(),
    })?;
    Ok(parsed.config)
}

/// The network namespace this process is in (the session's).
fn own_netns() -> io::Result<NsId> {
    let ns = fs::statat(fs::CWD, "/proc/self/ns/net", AtFlags::empty())?;
    Ok(NsId {
        dev: ns.st_dev,
        ino: ns.st_ino,
    })
}

fn write_state(dir: &OwnedFd, control_id: u64) -> io::Result<()> {
    let pid = std::process::id();
    let state = SessionState {
        supervisor_pid: pid,
        supervisor_start_time: proc_start_time(pid)
            .ok_or_else(|| io::Error::other("cannot read our own start time"))?,
        netns: own_netns()?,
        started_unix: now_unix(),
        control_id,
    };
    write_atomic(dir.as_fd(), STATE_FILE, state.render().as_bytes())
}
