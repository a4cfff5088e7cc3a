//! Hostname endpoints re-resolved on the host network, like wireguard-tools'
//! `reresolve-dns.sh`: every 30 s, each peer whose Endpoint was written as a hostname
//! and that has not completed a handshake for more than 135 s (REJECT_AFTER_TIME plus
//! slack), or never has, gets its name looked up again; if the name now points
//! elsewhere, the endpoint moves there.
//!
//! The supervisor cannot use getaddrinfo: it lives in the private namespace, whose
//! resolv.conf points into the tunnel (or nowhere).  Instead the CLI, still on the
//! host, hands over
//! 1. a [`Handover`] text (in a sealed memfd, see [`crate::contract::handover`]): the
//!    host's nameservers, read from the host's `/etc/resolv.conf`, and each peer's
//!    original hostname and port;
//! 2. a second UDP socket opened in the host's network namespace.
//!
//! A query sent through that socket leaves through the host's network, never the
//! tunnel, and reaches even a resolver on the host's loopback (127.0.0.53).
//! [`DnsClient`] is a minimal stub resolver over it: A and AAAA questions with
//! recursion desired, random IDs, answers accepted only from the server asked and only
//! for the question asked; no TCP fallback (address answers fit in 512 bytes).
//! [`Reresolver`] holds the policy and is tested with a fake [`Resolver`].
//!
//! Both are handed over for every session, also without any hostname endpoint: a
//! `reload` may bring names, and it replaces the watched list ([`Names`]) and the
//! nameservers with what the CLI read at the reload.

use crate::contract::handover::Handover;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod dns_client;
pub(crate) use dns_client::DnsClient;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use dns_client::{build_query, parse_answer};

/// How often stale peers are looked at (wireguard-tools' timer runs every 30 s).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// A handshake older than this means the peer is lost (REJECT_AFTER_TIME is 180 s;
/// reresolve-dns.sh uses 135 s).
pub const STALE_AFTER: Duration = Duration::from_secs(135);

/// Re-resolution's inputs as the supervisor receives them: the [`Handover`] and the
/// host UDP socket for DNS queries.
pub struct Reresolve {
    pub handover: Handover,
    pub socket: OwnedFd,
}

impl Reresolve {
    /// Read the handover text from `handover` (the CLI's sealed memfd, read from its
    /// start) and take `socket` (a UDP socket opened in the host's namespace).
    pub fn from_fds(handover: OwnedFd, socket: OwnedFd) -> io::Result<Reresolve> {
        let mut text = String::new();
        let mut file = std::fs::File::from(handover);
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        io::Read::read_to_string(&mut file, &mut text)?;
        let handover =
            Handover::parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Reresolve { handover, socket })
    }
}
/// Looks names up.
pub trait Resolver: Send {
    /// Every IPv4 and IPv6 address of `host`; empty when it has none.
    fn resolve(&mut self, host: &str) -> io::Result<Vec<IpAddr>>;
    /// Ask these servers from now on (the host's resolv.conf as a reload read it).
    fn use_nameservers(&mut self, _nameservers: &[IpAddr]) {}
}

/// What re-resolution needs from the running tunnel.
pub trait Endpoints: Send + Sync {
    /// Time since the peer's last handshake (`Some(None)`: never), `None`: no such peer.
    fn handshake_age(&self, public_key: &[u8; 32]) -> Option<Option<Duration>>;
    /// The peer's current endpoint.
    fn endpoint(&self, public_key: &[u8; 32]) -> Option<SocketAddr>;
    fn set_endpoint(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> bool;
    /// Whether the tunnel's socket takes IPv6 destinations.
    fn ipv6(&self) -> bool;
}

/// What re-resolution works from — the hostname endpoints and the host's nameservers —
/// shared between its thread and the control server, whose `reload` replaces it (a
/// reload may add, change or drop names, and reads the host's resolv.conf again).
#[derive(Debug, Clone, Default)]
pub struct Names(Arc<Mutex<Handover>>);

impl Names {
    pub fn new(handover: Handover) -> Names {
        Names(Arc::new(Mutex::new(handover)))
    }

    /// Take `handover`'s names; its nameservers too, unless it has none (the CLI could
    /// not read the host's resolv.conf: the ones in use are the best left).
    pub fn replace(&self, handover: Handover) {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        current.endpoints = handover.endpoints;
        if !handover.nameservers.is_empty() {
            current.nameservers = handover.nameservers;
        }
    }

    pub fn snapshot(&self) -> Handover {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The re-resolution policy.
pub struct Reresolver<R: Resolver> {
    resolver: R,
    names: Names,
    /// The nameservers `resolver` was last told to use.
    nameservers: Vec<IpAddr>,
}

impl<R: Resolver + 'static> Reresolver<R> {
    /// `resolver` already asks `names`' nameservers.
    pub fn new(resolver: R, names: Names) -> Self {
        let nameservers = names.snapshot().nameservers;
        Reresolver {
            resolver,
            names,
            nameservers,
        }
    }

    /// One round: look up every stale peer's name again and move its endpoint if the
    /// name no longer includes it. Returns the peers moved.
    pub fn check(&mut self, tunnel: &dyn Endpoints) -> Vec<[u8; 32]> {
        let mut moved = Vec::new();
        // A copy: lookups take seconds and a reload must not wait for them.
        let current = self.names.snapshot();
        if current.nameservers != self.nameservers {
            self.resolver.use_nameservers(&current.nameservers);
            self.nameservers = current.nameservers;
        }
        for e in &current.endpoints {
            let stale = match tunnel.handshake_age(&e.public_key) {
                None => false, // removed by a reload
                Some(None) => true,
                Some(Some(age)) => age > STALE_AFTER,
            };
            if !stale {
                continue;
            }
            // A failed lookup leaves the endpoint alone: try again next round.
            let Ok(addrs) = self.resolver.resolve(&e.host) else {
                continue;
            };
            let current = tunnel
                .endpoint(&e.public_key)
                .map(crate::dataplane::canonical);
            if current.is_some_and(|c| c.port() == e.port && addrs.contains(&c.ip())) {
                continue;
            }
            // Prefer the family the endpoint had (the CLI's first getaddrinfo answer);
            // an IPv4-only socket cannot use IPv6 at all.
            let family_v6 = current.map(|c| c.is_ipv6());
            let usable = |a: &&IpAddr| a.is_ipv4() || tunnel.ipv6();
            let pick = addrs
                .iter()
                .filter(usable)
                .find(|a| Some(a.is_ipv6()) == family_v6)
                .or_else(|| addrs.iter().find(usable));
            if let Some(addr) = pick {
                if tunnel.set_endpoint(&e.public_key, SocketAddr::new(*addr, e.port)) {
                    moved.push(e.public_key);
                }
            }
        }
        moved
    }

    /// Run [`check`](Self::check) every [`CHECK_INTERVAL`] in a background thread
    /// (also with no names yet: a reload may bring some).
    pub fn spawn(mut self, tunnel: Arc<dyn Endpoints>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("reresolve".into())
            .spawn(move || loop {
                std::thread::sleep(CHECK_INTERVAL);
                self.check(&*tunnel);
            })?;
        Ok(())
    }
}

impl<
        T: crate::namespace::tun_device::TunIo + 'static,
        U: crate::dataplane::udp::UdpIo + 'static,
    > Endpoints for crate::dataplane::Device<T, U>
{
    fn handshake_age(&self, public_key: &[u8; 32]) -> Option<Option<Duration>> {
        crate::dataplane::Device::handshake_age(self, public_key)
    }
    fn endpoint(&self, public_key: &[u8; 32]) -> Option<SocketAddr> {
        self.stats()
            .into_iter()
            .find(|s| &s.public_key == public_key)
            .and_then(|s| s.endpoint)
    }
    fn set_endpoint(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> bool {
        crate::dataplane::Device::set_endpoint(self, public_key, endpoint)
    }
    fn ipv6(&self) -> bool {
        crate::dataplane::Tunnel::ipv6_socket(self)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::handover::NamedEndpoint;
    use std::collections::HashMap;
    use std::sync::Mutex;
    struct FakeResolver {
        answers: HashMap<String, Vec<IpAddr>>,
        asked: Arc<Mutex<Vec<String>>>,
        /// Set: each question is recorded as "SERVER HOST".
        server: Option<IpAddr>,
    }

    impl Resolver for FakeResolver {
        fn resolve(&mut self, host: &str) -> io::Result<Vec<IpAddr>> {
            let question = match self.server {
                Some(server) => format!("{server} {host}"),
                None => host.to_owned(),
            };
            self.asked.lock().unwrap().push(question);
            self.answers
                .get(host)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no answer"))
        }

        fn use_nameservers(&mut self, nameservers: &[IpAddr]) {
            self.server = nameservers.first().copied();
        }
    }

    /// Per peer: time since its last handshake, endpoint.
    type PeerState = (Option<Duration>, Option<SocketAddr>);

    #[derive(Default)]
    struct FakeTunnel {
        peers: Mutex<HashMap<[u8; 32], PeerState>>,
    }

    impl Endpoints for FakeTunnel {
        fn handshake_age(&self, k: &[u8; 32]) -> Option<Option<Duration>> {
            self.peers.lock().unwrap().get(k).map(|p| p.0)
        }
        fn endpoint(&self, k: &[u8; 32]) -> Option<SocketAddr> {
            self.peers.lock().unwrap().get(k).and_then(|p| p.1)
        }
        fn set_endpoint(&self, k: &[u8; 32], e: SocketAddr) -> bool {
            match self.peers.lock().unwrap().get_mut(k) {
                Some(p) => {
                    p.1 = Some(e);
                    true
                }
                None => false,
            }
        }
        fn ipv6(&self) -> bool {
            true
        }
    }

    fn named(k: u8, host: &str) -> NamedEndpoint {
        NamedEndpoint {
            public_key: [k; 32],
            host: host.into(),
            port: 51820,
        }
    }

    #[test]
    fn only_stale_peers_are_looked_up_and_moved() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let resolver = FakeResolver {
            answers: HashMap::from([
                ("fresh.example".into(), vec![ip("192.0.2.99")]),
                (
                    "moved.example".into(),
                    vec![ip("2001:db8::7"), ip("192.0.2.7")],
                ),
                (
                    "same.example".into(),
                    vec![ip("192.0.2.8"), ip("192.0.2.80")],
                ),
                ("never.example".into(), vec![ip("2001:db8::9")]),
            ]),
            asked: asked.clone(),
            server: None,
        };
        let tunnel = FakeTunnel::default();
        let ep = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        tunnel.peers.lock().unwrap().extend([
            (
                [1; 32],
                (Some(Duration::from_secs(10)), ep("192.0.2.1:51820")),
            ),
            (
                [2; 32],
                (
                    Some(Duration::from_secs(200)),
                    ep("[::ffff:192.0.2.2]:51820"),
                ),
            ),
            (
                [3; 32],
                (Some(Duration::from_secs(200)), ep("192.0.2.80:51820")),
            ),
            ([4; 32], (None, None)),
        ]);
        let mut r = Reresolver::new(
            resolver,
            Names::new(Handover {
                nameservers: vec![],
                endpoints: vec![
                    named(1, "fresh.example"),
                    named(2, "moved.example"),
                    named(3, "same.example"),
                    named(4, "never.example"),
                    named(5, "removed.example"),
                    named(6, "unanswered.example"),
                ],
            }),
        );
        let moved = r.check(&tunnel);
        assert_eq!(moved, vec![[2; 32], [4; 32]]);
        assert_eq!(
            *asked.lock().unwrap(),
            vec!["moved.example", "same.example", "never.example"]
        );
        let peers = tunnel.peers.lock().unwrap();
        // The IPv4 endpoint stays IPv4 although the name lists IPv6 first.
        assert_eq!(peers[&[2; 32]].1, ep("192.0.2.7:51820"));
        assert_eq!(peers[&[3; 32]].1, ep("192.0.2.80:51820"));
        assert_eq!(peers[&[4; 32]].1, ep("[2001:db8::9]:51820"));
        assert_eq!(peers[&[1; 32]].1, ep("192.0.2.1:51820"));
    }

    #[test]
    fn names_replaced_by_a_reload_are_the_ones_looked_up() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let resolver = FakeResolver {
            answers: HashMap::from([("new.example".into(), vec!["192.0.2.5".parse().unwrap()])]),
            asked: asked.clone(),
            server: Some("192.0.2.53".parse().unwrap()),
        };
        let tunnel = FakeTunnel::default();
        tunnel
            .peers
            .lock()
            .unwrap()
            .extend([([1; 32], (None, None)), ([2; 32], (None, None))]);
        let names = Names::new(Handover {
            nameservers: vec!["192.0.2.53".parse().unwrap()],
            endpoints: vec![named(1, "old.example")],
        });
        let mut r = Reresolver::new(resolver, names.clone());
        assert_eq!(r.check(&tunnel), Vec::<[u8; 32]>::new());
        // The reload drops peer 1's name (now an address) and adds peer 2's.
        names.replace(Handover {
            nameservers: vec!["192.0.2.54".parse().unwrap()],
            endpoints: vec![named(2, "new.example")],
        });
        assert_eq!(r.check(&tunnel), vec![[2; 32]]);
        assert_eq!(
            *asked.lock().unwrap(),
            vec!["192.0.2.53 old.example", "192.0.2.54 new.example"]
        );
        // A reload that could not read the host's resolv.conf keeps the servers.
        names.replace(Handover::default());
        assert_eq!(
            names.snapshot().nameservers,
            vec!["192.0.2.54".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            tunnel.peers.lock().unwrap()[&[2; 32]].1,
            Some("192.0.2.5:51820".parse().unwrap())
        );
    }
}
