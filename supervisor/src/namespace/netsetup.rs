//! Configure the private network namespace: `lo`, the tunnel's addresses, its
//! routes, and unprivileged ping.
//!
//! The order matters and is unit-tested against a recording fake: `lo` first (local
//! services and the resolver's loopback work before anything else), then IPv6 off on
//! the tunnel if the profile has no IPv6 address, then addresses, then the link up,
//! then one route per distinct AllowedIPs prefix, then the ping sysctl.  No route is
//! ever added to anything but the tunnel, so the namespace has no path out except
//! through WireGuard: with no matching route a connect fails with "network
//! unreachable" at once instead of leaking.
//!
//! IPv6 on an IPv4-only profile: the tunnel device gets `disable_ipv6`, before it is
//! up, so the kernel never gives it a link-local address, never sends router
//! solicitations or MLD reports into it, and refuses link-local and multicast sends
//! on it; IPv6 AllowedIPs of such a profile get no route (the kernel refuses routes
//! through a device with IPv6 off, and without an address of ours they could not
//! carry a connection anyway).  Every IPv6 connect then fails at once with
//! ENETUNREACH — also for the common `AllowedIPs = 0.0.0.0/0, ::/0` written to keep
//! IPv6 from leaking around a VPN.  `::1` on `lo` stays.

use std::fmt;
use std::io;
use std::net::IpAddr;
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
    /// Turn IPv6 off on a link (`net.ipv6.conf.<link>.disable_ipv6 = 1`); succeeds
    /// without doing anything when the kernel has no IPv6 at all.
    fn disable_ipv6(&mut self, index: u32) -> io::Result<()>;
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

/// Whether the tunnel carries IPv6: only if the profile gives it an IPv6 address.
pub fn ipv6_enabled(config: &Config) -> bool {
    config.interface.addresses.iter().any(|a| !a.is_ipv4())
}

/// The distinct routes the tunnel needs: every peer's AllowedIPs, host bits cleared;
/// IPv6 prefixes only when [`ipv6_enabled`].
pub fn tunnel_routes(config: &Config) -> Vec<IpNet> {
    let ipv6 = ipv6_enabled(config);
    let mut out: Vec<IpNet> = Vec::new();
    for net in config.peers.iter().flat_map(|p| p.allowed_ips.iter()) {
        let net = net.network();
        if (net.is_ipv4() || ipv6) && !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// Whether packets to `ip` leave through the tunnel: a route of the tunnel covers it
/// and the kernel would not keep it local (loopback) or on-link (link-local,
/// multicast, unspecified) instead.
pub fn routed_through_tunnel(config: &Config, ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                || v6.to_ipv4_mapped().is_some()
        }
    };
    !special && tunnel_routes(config).iter().any(|net| net.contains(ip))
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
    if !ipv6_enabled(config) {
        ops.disable_ipv6(tun_index).map_err(step(
            "turn IPv6 off on the tunnel (the profile has no IPv6 address)".into(),
        ))?;
    }
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
        fn disable_ipv6(&mut self, index: u32) -> io::Result<()> {
            self.record(format!("no-ipv6 {index}"))
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

    const V4_ONLY: &str = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.77.0.2/24\n\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.77.0.0/24, fd77::/64, ::/0\n";

    #[test]
    fn ipv4_only_profile_turns_ipv6_off_before_the_link_is_up_and_routes_no_ipv6() {
        let config = wgconf::parse(V4_ONLY).unwrap().config;
        let mut ops = RecordingOps::default();
        configure(&mut ops, 7, &config, 1000).unwrap();
        assert_eq!(
            ops.calls,
            [
                "up 1",
                "no-ipv6 7",
                "addr 7 10.77.0.2/24",
                "up 7",
                "route 7 10.77.0.0/24",
                "ping 1000"
            ]
        );
    }

    #[test]
    fn routed_through_tunnel_excludes_local_and_unrouted_addresses() {
        let dual = wgconf::parse(CONF).unwrap().config;
        let v4 = wgconf::parse(V4_ONLY).unwrap().config;
        let yes = |c: &Config, ip: &str| routed_through_tunnel(c, ip.parse().unwrap());
        // 0.0.0.0/0 covers them, but the kernel keeps these local or on-link.
        for ip in [
            "127.0.0.53",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.251",
        ] {
            assert!(!yes(&dual, ip), "{ip}");
        }
        assert!(yes(&dual, "192.168.1.1"));
        assert!(yes(&dual, "10.77.0.1"));
        assert!(!yes(&dual, "fd77::1"), "no IPv6 AllowedIPs in CONF");
        assert!(yes(&v4, "10.77.0.1"));
        assert!(!yes(&v4, "192.168.1.1"));
        // IPv6 AllowedIPs of an IPv4-only profile are not routed.
        for ip in ["fd77::1", "2001:db8::53", "::1", "fe80::1"] {
            assert!(!yes(&v4, ip), "{ip}");
        }
    }
}
