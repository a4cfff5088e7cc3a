//! The encrypted side's UDP socket, opened on the host before any isolation.

use anyhow::{Context, Result};
use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

/// Bind a UDP socket on the host: dual-stack `[::]:port` where IPv6 exists, else
/// `0.0.0.0:port`. Port 0 (no ListenPort) lets the kernel pick one.
pub fn open_udp(listen_port: Option<u16>) -> Result<OwnedFd> {
    let port = listen_port.unwrap_or(0);
    match net::socket_with(
        AddressFamily::INET6,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    ) {
        Ok(fd) => {
            sockopt::set_ipv6_v6only(&fd, false).context("make the UDP socket dual-stack")?;
            net::bind(&fd, &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
                .with_context(|| format!("bind UDP port {port}"))?;
            Ok(fd)
        }
        // IPv6 disabled on this host: IPv4 only.
        Err(rustix::io::Errno::AFNOSUPPORT) => {
            let fd = net::socket_with(
                AddressFamily::INET,
                SocketType::DGRAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .context("open a UDP socket")?;
            net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
                .with_context(|| format!("bind UDP port {port}"))?;
            Ok(fd)
        }
        Err(e) => Err(e).context("open a UDP socket"),
    }
}
