//! Hostname endpoints re-resolved on the host network, like wireguard-tools'
//! `reresolve-dns.sh`: every 30 s, each peer whose Endpoint was written as a hostname
//! and that has not completed a handshake for more than 135 s (REJECT_AFTER_TIME plus
//! slack), or never has, gets its name looked up again; if the name now points
//! elsewhere, the endpoint moves there.
//!
//! The supervisor cannot use getaddrinfo: it lives in the private namespace, whose
//! resolv.conf points into the tunnel (or nowhere).  Instead the CLI, still on the
//! host, hands over
//! 1. a [`Handover`] text (in a sealed memfd): the host's nameservers, read from the
//!    host's `/etc/resolv.conf`, and each peer's original hostname and port;
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

use base64::Engine;
use rand_core::{OsRng, RngCore};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often stale peers are looked at (wireguard-tools' timer runs every 30 s).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// A handshake older than this means the peer is lost (REJECT_AFTER_TIME is 180 s;
/// reresolve-dns.sh uses 135 s).
pub const STALE_AFTER: Duration = Duration::from_secs(135);
/// How long each nameserver gets to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A peer whose Endpoint was a hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEndpoint {
    pub public_key: [u8; 32],
    pub host: String,
    pub port: u16,
}

/// What the CLI hands over, as text: one `nameserver ADDRESS` line per host
/// nameserver, one `endpoint PUBLIC_KEY_BASE64 HOST PORT` line per hostname endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    pub nameservers: Vec<IpAddr>,
    pub endpoints: Vec<NamedEndpoint>,
}

/// A line of a [`Handover`] text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverError {
    pub line: usize,
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "endpoint re-resolution handover, line {}: not understood",
            self.line
        )
    }
}

impl std::error::Error for HandoverError {}

impl Handover {
    /// What the CLI needs to hand over for `config` (call it before replacing the
    /// hostnames with addresses), with the nameservers of the host's resolv.conf.
    pub fn for_profile(config: &wgconf::Config, host_resolv_conf: &str) -> Handover {
        let endpoints = config
            .peers
            .iter()
            .filter_map(|p| match &p.endpoint {
                Some(wgconf::Endpoint::Host { host, port }) => Some(NamedEndpoint {
                    public_key: *p.public_key.as_bytes(),
                    host: host.clone(),
                    port: *port,
                }),
                _ => None,
            })
            .collect();
        Handover {
            nameservers: nameservers(host_resolv_conf),
            endpoints,
        }
    }

    pub fn render(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut text = String::new();
        for ns in &self.nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        for e in &self.endpoints {
            text.push_str(&format!(
                "endpoint {} {} {}\n",
                b64.encode(e.public_key),
                e.host,
                e.port
            ));
        }
        text
    }

    pub fn parse(text: &str) -> Result<Handover, HandoverError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut h = Handover::default();
        for (n, line) in text.lines().enumerate() {
            let err = HandoverError { line: n + 1 };
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["nameserver", addr] => h.nameservers.push(addr.parse().map_err(|_| err)?),
                ["endpoint", key, host, port] => {
                    let key = b64
                        .decode(key)
                        .ok()
                        .and_then(|k| <[u8; 32]>::try_from(k).ok());
                    let (Some(public_key), Ok(port)) = (key, port.parse()) else {
                        return Err(err);
                    };
                    h.endpoints.push(NamedEndpoint {
                        public_key,
                        host: (*host).to_owned(),
                        port,
                    });
                }
                _ => return Err(err),
            }
        }
        Ok(h)
    }
}

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

/// The `nameserver` addresses of a resolv.conf text (scope suffixes like `%eth0`
/// dropped), in order.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_ascii_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            w.next()?.split('%').next()?.parse().ok()
        })
        .collect()
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

impl<T: crate::dataplane::TunIo + 'static, U: crate::dataplane::UdpIo + 'static> Endpoints
    for crate::dataplane::Device<T, U>
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
        crate::session::control::Tunnel::ipv6_socket(self)
    }
}

/// Where to send queries for `nameservers` from a socket of the given family.
fn server_addrs(nameservers: &[IpAddr], v6_socket: bool) -> Vec<SocketAddr> {
    nameservers
        .iter()
        .filter(|a| v6_socket || a.is_ipv4())
        .map(|a| crate::dataplane::socket_form(SocketAddr::new(*a, 53), v6_socket))
        .collect()
}

/// A stub resolver asking the host's nameservers through a host socket.
pub struct DnsClient {
    socket: UdpSocket,
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl DnsClient {
    /// `socket`: a UDP socket from the host's network namespace (any local port).
    pub fn new(socket: OwnedFd, nameservers: &[IpAddr]) -> io::Result<DnsClient> {
        let socket = UdpSocket::from(socket);
        let v6 = socket.local_addr()?.is_ipv6();
        Ok(DnsClient {
            servers: server_addrs(nameservers, v6),
            socket,
            timeout: QUERY_TIMEOUT,
        })
    }

    /// Ask `server` for A and AAAA at once; `None` if it did not answer both.
    fn ask(&self, server: SocketAddr, host: &str) -> io::Result<Option<Vec<IpAddr>>> {
        let ids = [OsRng.next_u32() as u16, OsRng.next_u32() as u16];
        let qtypes = [TYPE_A, TYPE_AAAA];
        for (id, qtype) in ids.iter().zip(qtypes) {
            let query = build_query(*id, host, qtype).ok_or(io::ErrorKind::InvalidInput)?;
            self.socket.send_to(&query, server)?;
        }
        let deadline = Instant::now() + self.timeout;
        let mut answers: [Option<Vec<IpAddr>>; 2] = [None, None];
        let mut buf = [0u8; 1500];
        while answers.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if crate::dataplane::canonical(from) != crate::dataplane::canonical(server) {
                continue;
            }
            for (k, (id, qtype)) in ids.iter().zip(qtypes).enumerate() {
                if answers[k].is_none() {
                    if let Some(addrs) = parse_answer(&buf[..n], *id, host, qtype) {
                        answers[k] = Some(addrs);
                    }
                }
            }
        }
        Ok(Some(answers.into_iter().flatten().flatten().collect()))
    }
}

impl Resolver for DnsClient {
    fn resolve(&mut self, host: &str) -> io::Result<Vec<IpAddr>> {
        let mut last = io::Error::new(io::ErrorKind::TimedOut, "no nameserver answered");
        for &server in &self.servers {
            match self.ask(server, host) {
                Ok(Some(addrs)) => return Ok(addrs),
                Ok(None) => {}
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn use_nameservers(&mut self, nameservers: &[IpAddr]) {
        if let Ok(local) = self.socket.local_addr() {
            self.servers = server_addrs(nameservers, local.is_ipv6());
        }
    }
}

/// A DNS query for `name` (recursion desired), or `None` for a name that cannot be
/// encoded.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(name, &mut q)?;
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(q)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(())
}

/// The addresses of type `qtype` in the answer to query `id` for `name`; `None` if
/// `msg` is not that answer or reports a failure (NXDOMAIN is an empty answer).
pub fn parse_answer(msg: &[u8], id: u16, name: &str, qtype: u16) -> Option<Vec<IpAddr>> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    // The question must be ours, name compared case-insensitively.
    let mut want = Vec::new();
    encode_name(name, &mut want)?;
    if qd != 1 {
        return None;
    }
    let q_end = 12 + want.len();
    if !msg.get(12..q_end)?.eq_ignore_ascii_case(&want)
        || msg.get(q_end..q_end + 4)? != [qtype.to_be_bytes(), CLASS_IN.to_be_bytes()].concat()
    {
        return None;
    }
    match rcode {
        0 => {}
        3 => return Some(Vec::new()),
        _ => return None,
    }
    let mut at = q_end + 4;
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let rr = msg.get(at..at + 10)?;
        let (rtype, class) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[2], rr[3]]),
        );
        let len = usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        let data = msg.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        // CNAME records lead to the name the address records that follow are for.
        match (rtype, class, len) {
            (TYPE_A, CLASS_IN, 4) if qtype == TYPE_A => {
                addrs.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?));
            }
            (TYPE_AAAA, CLASS_IN, 16) if qtype == TYPE_AAAA => {
                addrs.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?));
            }
            _ => {}
        }
    }
    Some(addrs)
}

/// The offset after a (possibly compressed) name starting at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn handover_round_trips_and_reads_resolv_conf() {
        let text = "# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch x\nnameserver bogus\n";
        let h = Handover {
            nameservers: nameservers(text),
            endpoints: vec![named(7, "vpn.example.com")],
        };
        assert_eq!(
            h.nameservers,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(Handover::parse(&h.render()).unwrap(), h);
        assert_eq!(
            Handover::parse("nameserver 1.2.3.4\nbogus line\n"),
            Err(HandoverError { line: 2 })
        );
        let config = wgconf::parse(
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.9.0.2/24\n\
             [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.0.0.0/8\nEndpoint = vpn.example.com:443\n\
             [Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.1.0.0/16\nEndpoint = 192.0.2.1:51820\n",
        )
        .unwrap()
        .config;
        let h = Handover::for_profile(&config, "nameserver 10.0.0.53\n");
        assert_eq!(h.endpoints.len(), 1);
        assert_eq!(
            (h.endpoints[0].host.as_str(), h.endpoints[0].port),
            ("vpn.example.com", 443)
        );
        assert_eq!(h.nameservers, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
    }

    /// A reply to `query` with the given records (type, data), and a CNAME first.
    fn reply(query: &[u8], rcode: u8, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | rcode;
        r[7] = (records.len() + 1) as u8;
        // CNAME: name pointer to the question, rdata "x" + pointer.
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 12]);
        for (t, data) in records {
            r.extend_from_slice(&[1, b'x', 0xc0, 12]);
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(data);
        }
        r
    }

    #[test]
    fn answers_are_parsed_and_checked() {
        let q = build_query(0x1234, "VPN.example.com.", TYPE_A).unwrap();
        let r = reply(
            &q,
            0,
            &[
                (TYPE_A, vec![192, 0, 2, 1]),
                (TYPE_AAAA, vec![0; 16]),
                (TYPE_A, vec![192, 0, 2, 2]),
            ],
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "vpn.example.com", TYPE_A),
            Some(vec![
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap()
            ])
        );
        assert_eq!(
            parse_answer(&r, 0x1235, "vpn.example.com", TYPE_A),
            None,
            "wrong id"
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "other.example.com", TYPE_A),
            None,
            "wrong name"
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "vpn.example.com", TYPE_AAAA),
            None,
            "wrong type"
        );
        assert_eq!(
            parse_answer(&reply(&q, 3, &[]), 0x1234, "vpn.example.com", TYPE_A),
            Some(vec![])
        );
        assert_eq!(
            parse_answer(&reply(&q, 2, &[]), 0x1234, "vpn.example.com", TYPE_A),
            None
        );
        assert_eq!(
            parse_answer(&r[..r.len() - 2], 0x1234, "vpn.example.com", TYPE_A),
            None,
            "truncated"
        );
        assert_eq!(build_query(1, "a..b", TYPE_A), None);
    }

    /// The client against a tiny DNS server on loopback: the first server never
    /// answers, the second does.
    #[test]
    fn dns_client_asks_the_next_server_when_one_is_silent() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let q = &buf[..n];
                let qtype = u16::from_be_bytes([q[n - 4], q[n - 3]]);
                let data = if qtype == TYPE_A {
                    vec![192, 0, 2, 44]
                } else {
                    "2001:db8::44"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets()
                        .to_vec()
                };
                server
                    .send_to(&reply(q, 0, &[(qtype, data)]), from)
                    .unwrap();
            }
        });
        let socket = OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        let mut client = DnsClient::new(socket, &[]).unwrap();
        client.timeout = Duration::from_millis(300);
        client.servers = vec![silent.local_addr().unwrap(), server_addr];
        let mut got = client.resolve("vpn.example.com").unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                "192.0.2.44".parse::<IpAddr>().unwrap(),
                "2001:db8::44".parse().unwrap()
            ]
        );
    }
}
