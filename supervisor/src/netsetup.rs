//! Configure the private network namespace: `lo`, the tunnel's addresses, its
//! routes, and unprivileged ping.
//!
//! The order matters and is unit-tested against a recording fake: `lo` first (local
//! services and the resolver's loopback work before anything else), then addresses,
//! then the link up, then one route per distinct AllowedIPs prefix, then the ping
//! sysctl.  No route is ever added to anything but the tunnel, so the namespace has no
//! path out except through WireGuard: with no matching route a connect fails with
//! "network unreachable" at once instead of leaking.

use std::fmt;
use std::io;
use wgconf::{Config, IpNet};

/// `lo` is always interface 1 in a fresh network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// The kernel operations needed to set up the namespace.
pub trait NetOps {
    /// Bring a link up.
    fn set_link_up(&mut self, index: u32) -> io::Result<()>;
    /// Add an address (with its prefix) to a link, without duplicate address detection.
    fn add_address(&mut self, index: u32, addr: IpNet) -> io::Result<()>;
    /// Route a prefix to a link (replacing any route for the same prefix).
    fn add_route(&mut self, index: u32, dest: IpNet) -> io::Result<()>;
    /// Remove the route for a prefix from a link (used by `reload`).
    fn del_route(&mut self, index: u32, dest: IpNet) -> io::Result<()>;
    /// Allow unprivileged ICMP echo sockets for this group (`net.ipv4.ping_group_range`).
    fn allow_ping_for_group(&mut self, gid: u32) -> io::Result<()>;
}

#[derive(Debug)]
pub struct NetSetupError {
    pub step: String,
    pub source: io::Error,
}

impl fmt::Display for NetSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for NetSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The distinct routes the tunnel needs: every peer's AllowedIPs, host bits cleared.
pub fn tunnel_routes(config: &Config) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for net in config.peers.iter().flat_map(|p| p.allowed_ips.iter()) {
        let net = net.network();
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// Apply the whole configuration through `ops`.
pub fn configure(
    ops: &mut dyn NetOps,
    tun_index: u32,
    config: &Config,
    gid: u32,
) -> Result<(), NetSetupError> {
    let step = |step: String| move |source| NetSetupError { step, source };
    ops.set_link_up(LOOPBACK_INDEX)
        .map_err(step("bring lo up".into()))?;
    for addr in &config.interface.addresses {
        ops.add_address(tun_index, *addr)
            .map_err(step(format!("add address {addr}")))?;
    }
    ops.set_link_up(tun_index)
        .map_err(step("bring the tunnel up".into()))?;
    for route in tunnel_routes(config) {
        ops.add_route(tun_index, route)
            .map_err(step(format!("add route {route}")))?;
    }
    ops.allow_ping_for_group(gid)
        .map_err(step("set net.ipv4.ping_group_range".into()))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    /// Records every call; optionally fails the n-th one.
    #[derive(Default)]
    pub struct RecordingOps {
        pub calls: Vec<String>,
        pub fail_at: Option<usize>,
    }

    impl RecordingOps {
        fn record(&mut self, call: String) -> io::Result<()> {
            self.calls.push(call);
            if self.fail_at == Some(self.calls.len() - 1) {
                return Err(io::Error::from_raw_os_error(1));
            }
            Ok(())
        }
    }

    impl NetOps for RecordingOps {
        fn set_link_up(&mut self, index: u32) -> io::Result<()> {
            self.record(format!("up {index}"))
        }
        fn add_address(&mut self, index: u32, addr: IpNet) -> io::Result<()> {
            self.record(format!("addr {index} {addr}"))
        }
        fn add_route(&mut self, index: u32, dest: IpNet) -> io::Result<()> {
            self.record(format!("route {index} {dest}"))
        }
        fn del_route(&mut self, index: u32, dest: IpNet) -> io::Result<()> {
            self.record(format!("unroute {index} {dest}"))
        }
        fn allow_ping_for_group(&mut self, gid: u32) -> io::Result<()> {
            self.record(format!("ping {gid}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::RecordingOps;
    use super::*;

    const CONF: &str = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.77.0.2/24, fd77::2/64\n\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.77.0.0/24, 10.99.1.7/16\n\n[Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.99.0.0/16, 0.0.0.0/0\n";

    #[test]
    fn order_and_dedup() {
        let config = wgconf::parse(CONF).unwrap().config;
        let mut ops = RecordingOps::default();
        configure(&mut ops, 7, &config, 1000).unwrap();
        assert_eq!(
            ops.calls,
            [
                "up 1",
                "addr 7 10.77.0.2/24",
                "addr 7 fd77::2/64",
                "up 7",
                "route 7 10.77.0.0/24",
                "route 7 10.99.0.0/16",
                "route 7 0.0.0.0/0",
                "ping 1000"
            ]
        );
    }

    #[test]
    fn failure_names_the_step_and_stops() {
        let config = wgconf::parse(CONF).unwrap().config;
        let mut ops = RecordingOps {
            fail_at: Some(4),
            ..Default::default()
        };
        let err = configure(&mut ops, 7, &config, 1000).unwrap_err();
        assert_eq!(err.step, "add route 10.77.0.0/24");
        assert_eq!(ops.calls.len(), 5);
    }
}
