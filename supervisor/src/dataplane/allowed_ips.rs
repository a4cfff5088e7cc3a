//! Cryptokey routing: which peer owns an inner IP address.
//!
//! Outgoing packets go to the peer whose AllowedIPs contain the destination with the
//! longest prefix; incoming decrypted packets are accepted only when their source lies
//! in the sending peer's own AllowedIPs.  The table is `ip_network_table`'s tree
//! bitmap (the one boringtun's own device uses): a lookup costs a handful of node
//! visits whatever the number of prefixes, where a sorted list costs one comparison
//! per prefix.

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use std::net::IpAddr;
use wgconf::IpNet;

#[derive(Default)]
pub struct AllowedIps {
    table: IpNetworkTable<usize>,
}

impl std::fmt::Debug for AllowedIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (v4, v6) = self.table.len();
        write!(f, "AllowedIps({v4} IPv4 + {v6} IPv6 prefixes)")
    }
}

impl AllowedIps {
    pub fn new() -> AllowedIps {
        AllowedIps {
            table: IpNetworkTable::new(),
        }
    }

    /// Add a prefix for a peer. Like WireGuard, a prefix claimed again moves to the
    /// later peer.
    pub fn insert(&mut self, net: IpNet, peer: usize) {
        // Host bits are cleared first, so this cannot fail for a valid IpNet.
        if let Ok(network) = IpNetwork::new_truncate(net.addr(), net.prefix()) {
            self.table.insert(network, peer);
        }
    }

    /// The peer whose AllowedIPs best match `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<usize> {
        self.table.longest_match(ip).map(|(_, peer)| *peer)
    }

    /// Cryptokey routing's inbound check.
    pub fn allows(&self, peer: usize, src: IpAddr) -> bool {
        self.lookup(src) == Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

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

    /// A deterministic xorshift generator: the random test is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The obviously-correct reference: scan every prefix, keep the longest match; a
    /// prefix inserted again belongs to its last peer.
    fn naive_lookup(entries: &[(IpNet, usize)], ip: IpAddr) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for (net, peer) in entries {
            if net.contains(ip) {
                let later_or_longer = match best {
                    None => true,
                    Some((len, _)) => net.prefix() >= len,
                };
                if later_or_longer {
                    best = Some((net.prefix(), *peer));
                }
            }
        }
        best.map(|(_, peer)| peer)
    }

    /// Addresses drawn from a few small pools, so random prefixes overlap a lot and
    /// lookups hit nested prefixes, shared parents and misses alike.
    fn random_addr(rng: &mut Rng, v6: bool) -> IpAddr {
        if v6 {
            let base: u128 = [
                0xfd00_u128 << 112,
                0xfd00_0000_0001_u128 << 80,
                0x2001_0db8_u128 << 96,
            ][rng.below(3) as usize];
            IpAddr::V6(Ipv6Addr::from(
                base | (rng.next() as u128 & 0xffff_ffff) << rng.below(64),
            ))
        } else {
            let base: u32 = [0x0a00_0000, 0x0a01_0000, 0xc0a8_0000][rng.below(3) as usize];
            IpAddr::V4(Ipv4Addr::from(base | (rng.next() as u32 & 0x0001_ffff)))
        }
    }

    #[test]
    fn random_tables_agree_with_a_naive_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let mut table = AllowedIps::new();
            // (network with host bits cleared, peer), in insertion order.
            let mut entries: Vec<(IpNet, usize)> = Vec::new();
            for _ in 0..(1 + rng.below(64)) {
                let v6 = rng.below(2) == 1;
                let prefix = if v6 { rng.below(129) } else { rng.below(33) } as u8;
                let net = IpNet::new(random_addr(&mut rng, v6), prefix)
                    .unwrap()
                    .network();
                let peer = rng.below(8) as usize;
                table.insert(net, peer);
                entries.retain(|(n, _)| *n != net);
                entries.push((net, peer));
            }
            for _ in 0..500 {
                let v6 = rng.below(2) == 1;
                let ip = random_addr(&mut rng, v6);
                assert_eq!(
                    table.lookup(ip),
                    naive_lookup(&entries, ip),
                    "round {round}: lookup {ip} in {entries:?}"
                );
                let peer = rng.below(8) as usize;
                assert_eq!(
                    table.allows(peer, ip),
                    naive_lookup(&entries, ip) == Some(peer)
                );
            }
        }
    }
}
