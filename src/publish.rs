//! `-p/--publish` on `up`, `exec` and `shell`: the host listeners.
//!
//! They are opened here, in the host's network namespace, before anything starts —
//! so a port in use or a privileged port fails the command with nothing changed —
//! and handed to the session's supervisor over its control socket (SCM_RIGHTS), which
//! relays them to the namespace's loopback. Every one is close-on-exec: the CLI's own
//! copies vanish when it becomes the wrapped command, which must never hold a socket
//! outside the tunnel.
//!
//! A port of an `exec` is closed by the supervisor when it sees the command exit, a
//! moment after the shell does: a script that runs the next `exec -p` with the same
//! port at once can find it still taken. A port in use that one of this user's
//! sessions still lists for an `exec` whose process is gone is therefore waited for
//! (at most [`RELEASE_WAIT`]) instead of refused.

use crate::dirs::Dirs;
use crate::runtime::Runtime;
use crate::sessions::Live;
use anyhow::{bail, Context, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};
use supervisor::contract::control;
use supervisor::contract::publish::{Owner, Proto, PublishSpec, MAX_PORTS};
use supervisor::contract::state::control_socket_name;

/// Listen backlog for published TCP ports (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 1024;
/// How long a port that a session is releasing is waited for (it takes the
/// supervisor well under a millisecond unless the machine is very busy).
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// How often the port is tried meanwhile.
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// A host socket opened for a `-p` spec.
pub struct Listener {
    pub spec: PublishSpec,
    pub socket: OwnedFd,
}

/// clap's parser for `-p`.
pub fn parse_spec(text: &str) -> Result<PublishSpec, String> {
    text.parse()
        .map_err(|e: supervisor::contract::publish::SpecError| e.to_string())
}

/// Open every listener, or fail naming the spec that cannot be published. `dirs`
/// locates this user's sessions, for a port one of them is still releasing.
pub fn open_all(specs: &[PublishSpec], dirs: &Dirs) -> Result<Vec<Listener>> {
    if specs.len() > MAX_PORTS {
        bail!("at most {MAX_PORTS} ports can be published by one command");
    }
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i]
            .iter()
            .find(|b| b.proto == a.proto && b.host_port == a.host_port && overlap(a, b))
        {
            bail!(
                "cannot publish {a}: {b} takes the same host port; give each -p its own HOST_PORT"
            );
        }
    }
    specs
        .iter()
        .map(|spec| {
            let socket = match open(spec) {
                Err(Errno::ADDRINUSE) => open_when_released(spec, dirs),
                other => other,
            };
            Ok(Listener {
                spec: *spec,
                socket: socket.map_err(|e| bind_error(spec, e))?,
            })
        })
        .collect()
}

/// `spec`'s port is in use: if one of this user's sessions holds it for an `exec`
/// that has ended, try again until the supervisor has let it go.
fn open_when_released(spec: &PublishSpec, dirs: &Dirs) -> Result<OwnedFd, Errno> {
    let releasing = being_released(spec, dirs);
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        // Also once when nothing was found: the release may have come between the
        // first try and the question.
        match open(spec) {
            Err(Errno::ADDRINUSE) if releasing && Instant::now() < deadline => {
                std::thread::sleep(RELEASE_POLL)
            }
            other => return other,
        }
    }
}

/// Whether a session of this user lists `spec`'s host port for a process that has
/// exited (its supervisor is about to close it).
fn being_released(spec: &PublishSpec, dirs: &Dirs) -> bool {
    // No runtime directory, no sessions (and nothing to create for the question).
    if !dirs.runtime.is_dir() {
        return false;
    }
    let Ok(sessions) = Runtime::open(dirs).and_then(|r| crate::status::all(&r)) else {
        return false;
    };
    sessions.iter().flat_map(|s| &s.published).any(|p| {
        p.spec.proto == spec.proto
            && p.spec.host_port == spec.host_port
            && overlap(&p.spec, spec)
            && p.owner_pid.is_some_and(|pid| !alive(pid))
    })
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return false;
    };
    let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return false;
    };
    // A pidfd polls readable once its process has exited.
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&Timespec::default())), Ok(0))
}

fn overlap(a: &PublishSpec, b: &PublishSpec) -> bool {
    a.host_ip == b.host_ip || a.host_ip.is_unspecified() || b.host_ip.is_unspecified()
}

fn open(spec: &PublishSpec) -> Result<OwnedFd, Errno> {
    let addr = spec.host_addr();
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let ty = match spec.proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let fd = net::socket_with(
        family,
        ty,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    if spec.proto == Proto::Tcp {
        // Rebinding right after an earlier session (sockets in TIME_WAIT) must work;
        // two listeners on one port are still refused.
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    net::bind(&fd, &addr)?;
    if spec.proto == Proto::Tcp {
        net::listen(&fd, BACKLOG)?;
    }
    Ok(fd)
}

/// What to tell the user when a host socket cannot be had.
fn bind_error(spec: &PublishSpec, e: Errno) -> anyhow::Error {
    let (ip, port) = (spec.host_ip, spec.host_port);
    let proto = match spec.proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    };
    match e {
        Errno::ADDRINUSE => anyhow::anyhow!(
            "cannot publish {spec}: {proto} port {port} on {ip} is already in use: pick another \
             HOST_PORT (e.g. -p {}:{}) or stop what uses it",
            port.saturating_add(1000).max(1024),
            spec.ns_port
        ),
        Errno::ACCESS | Errno::PERM => {
            let start = unprivileged_port_start();
            anyhow::anyhow!(
                "cannot publish {spec}: host port {port} is privileged (below \
                 net.ipv4.ip_unprivileged_port_start = {start}) and wg-wrap runs without \
                 privileges: use a HOST_PORT of {start} or above (e.g. -p {}:{})",
                start.max(8000) + port % 1000,
                spec.ns_port
            )
        }
        Errno::ADDRNOTAVAIL => anyhow::anyhow!(
            "cannot publish {spec}: {ip} is not an address of this host: use 127.0.0.1 \
             (the default), 0.0.0.0 for every interface, or one of this host's addresses"
        ),
        Errno::AFNOSUPPORT => anyhow::anyhow!(
            "cannot publish {spec}: IPv6 is disabled on this host: publish on an IPv4 address"
        ),
        e => {
            anyhow::Error::from(e).context(format!("cannot publish {spec}: bind {ip} port {port}"))
        }
    }
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

/// Hand `listeners` to the supervisor of `live`; they live with `owner`.
pub fn hand_over(live: &Live, listeners: &[Listener], owner: Owner) -> Result<()> {
    if listeners.is_empty() {
        return Ok(());
    }
    let name = control_socket_name(rustix::process::getuid().as_raw(), live.state.control_id);
    let ports: Vec<_> = listeners
        .iter()
        .map(|l| (l.spec, l.socket.as_fd()))
        .collect();
    let reply = control::publish(&name, owner, &ports).context(
        "hand the published ports to the supervisor (its control socket is only reachable \
         from outside the session: run this outside any wrap)",
    )?;
    if !reply.ok {
        bail!(
            "the supervisor could not publish the ports: {}",
            reply.error.unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&str]) -> Vec<PublishSpec> {
        list.iter().map(|s| parse_spec(s).unwrap()).collect()
    }

    /// Directories with no runtime directory behind them: no sessions to ask.
    fn no_sessions() -> Dirs {
        let missing = "/nonexistent/wg-wrap-publish-test";
        Dirs::from_vars(
            |k| (k == "WG_WRAP_RUNTIME_DIR" || k == "WG_WRAP_CONFIG_DIR").then(|| missing.into()),
            0,
        )
    }

    #[test]
    fn a_port_in_use_is_named_with_what_to_do() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = open_all(&specs(&[&format!("{port}:80")]), &no_sessions())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("cannot publish 127.0.0.1:{port}:80/tcp"))
                && err.contains("already in use")
                && err.contains("pick another HOST_PORT"),
            "{err}"
        );
    }

    #[test]
    fn listeners_are_close_on_exec_and_ready() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let l = open_all(
            &specs(&[&format!("{port}:80"), &format!("{port}:53/udp")]),
            &no_sessions(),
        )
        .unwrap();
        for l in &l {
            let flags = rustix::io::fcntl_getfd(&l.socket).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "{}", l.spec);
        }
        assert!(sockopt::socket_acceptconn(&l[0].socket).unwrap());
    }

    #[test]
    fn one_host_port_twice_is_refused_before_binding() {
        let err = open_all(&specs(&["8080:80", "0.0.0.0:8080:81"]), &no_sessions())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("takes the same host port"), "{err}");
    }
}
