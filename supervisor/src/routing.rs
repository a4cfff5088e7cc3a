//! Cryptokey routing: which peer owns an inner IP address.
//!
//! Outgoing packets go to the peer whose AllowedIPs contain the destination with the
//! longest prefix; incoming decrypted packets are accepted only when their source lies
//! in the sending peer's own AllowedIPs.  The table is small (one entry per AllowedIPs
//! prefix) and sorted longest-prefix-first, so the first hit is the best match.

use std::net::IpAddr;
use wgconf::IpNet;

#[derive(Debug, Clone, Default)]
pub struct AllowedIps {
    /// (network, peer index), longest prefix first.
    entries: Vec<(IpNet, usize)>,
}

impl AllowedIps {
    pub fn new() -> AllowedIps {
        AllowedIps::default()
    }

    /// Add a prefix for a peer. Like WireGuard, a prefix claimed again moves to the
    /// later peer.
    pub fn insert(&mut self, net: IpNet, peer: usize) {
        let net = net.network();
        self.entries.retain(|(n, _)| *n != net);
        let pos = self
            .entries
            .partition_point(|(n, _)| n.prefix() >= net.prefix());
        self.entries.insert(pos, (net, peer));
    }

    /// The peer whose AllowedIPs best match `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<usize> {
        self.entries
            .iter()
            .find(|(n, _)| n.contains(ip))
            .map(|(_, p)| *p)
    }

    /// Cryptokey routing's inbound check.
    pub fn allows(&self, peer: usize, src: IpAddr) -> bool {
        self.lookup(src) == Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 0);
        t.insert(net("10.1.0.0/16"), 1);
        t.insert(net("10.1.2.0/24"), 2);
        t.insert(net("::/0"), 0);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("10.1.9.3".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("8.8.8.8".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("fd00::1".parse().unwrap()), Some(0));
        assert!(t.allows(2, "10.1.2.200".parse().unwrap()));
        assert!(!t.allows(1, "10.1.2.200".parse().unwrap()));
    }

    #[test]
    fn families_do_not_mix() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 0);
        assert_eq!(t.lookup("::ffff:10.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("fd00::1".parse().unwrap()), None);
    }

    #[test]
    fn reclaimed_prefix_moves_to_later_peer() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/24"), 0);
        t.insert(net("10.0.0.7/24"), 1);
        assert_eq!(t.lookup("10.0.0.1".parse().unwrap()), Some(1));
    }
}
