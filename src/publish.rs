//! `-p/--publish` on `up`, `exec` and `shell`: the host listeners.
//!
//! They are opened here, in the host's network namespace, before anything starts —
//! so a port in use or a privileged port fails the command with nothing changed —
//! and handed to the session's supervisor over its control socket (SCM_RIGHTS), which
//! relays them to the namespace's loopback. Every one is close-on-exec: the CLI's own
//! copies vanish when it becomes the wrapped command, which must never hold a socket
//! outside the tunnel.

use crate::sessions::Live;
use anyhow::{bail, Context, Result};
use rustix::io::Errno;
use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
use std::os::fd::{AsFd, OwnedFd};
use supervisor::contract::control;
use supervisor::contract::publish::{Owner, Proto, PublishSpec, MAX_PORTS};
use supervisor::contract::state::control_socket_name;

/// Listen backlog for published TCP ports (the kernel caps it at net.core.somaxconn).
const BACKLOG: i32 = 1024;

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

/// Open every listener, or fail naming the spec that cannot be published.
pub fn open_all(specs: &[PublishSpec]) -> Result<Vec<Listener>> {
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
            Ok(Listener {
                spec: *spec,
                socket: open(spec)?,
            })
        })
        .collect()
}

fn overlap(a: &PublishSpec, b: &PublishSpec) -> bool {
    a.host_ip == b.host_ip || a.host_ip.is_unspecified() || b.host_ip.is_unspecified()
}

fn open(spec: &PublishSpec) -> Result<OwnedFd> {
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
    )
    .map_err(|e| bind_error(spec, e))?;
    if spec.proto == Proto::Tcp {
        // Rebinding right after an earlier session (sockets in TIME_WAIT) must work;
        // two listeners on one port are still refused.
        sockopt::set_socket_reuseaddr(&fd, true)
            .with_context(|| format!("cannot publish {spec}: SO_REUSEADDR"))?;
    }
    net::bind(&fd, &addr).map_err(|e| bind_error(spec, e))?;
    if spec.proto == Proto::Tcp {
        net::listen(&fd, BACKLOG).map_err(|e| bind_error(spec, e))?;
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

    #[test]
    fn a_port_in_use_is_named_with_what_to_do() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = open_all(&specs(&[&format!("{port}:80")]))
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
        let l = open_all(&specs(&[&format!("{port}:80"), &format!("{port}:53/udp")])).unwrap();
        for l in &l {
            let flags = rustix::io::fcntl_getfd(&l.socket).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "{}", l.spec);
        }
        assert!(sockopt::socket_acceptconn(&l[0].socket).unwrap());
    }

    #[test]
    fn one_host_port_twice_is_refused_before_binding() {
        let err = open_all(&specs(&["8080:80", "0.0.0.0:8080:81"]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("takes the same host port"), "{err}");
    }
}
