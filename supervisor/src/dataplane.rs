//! The data plane: packets between the TUN device and the host UDP socket.
//!
//! Outbound flow (thread `tun->udp`):
//!   1. read one IP packet from the TUN;
//!   2. pick the peer by longest-prefix match of the destination on AllowedIPs;
//!   3. encrypt with that peer's `Tunn` (which queues the packet while a handshake runs);
//!   4. send the datagram to the peer's current endpoint.
//!
//! Inbound flow (thread `udp->tun`):
//!   1. receive a datagram on the host socket;
//!   2. verify its MACs and rate-limit handshakes (cookie reply under load);
//!   3. find the peer: an initiation by the sender's static key, everything else by the
//!      receiver index we handed out (`index << 8`, session in the low byte);
//!   4. decrypt; send any handshake reply and then every queued packet (boringtun's
//!      "call again with an empty datagram until Done" rule);
//!   5. write a decrypted packet to the TUN only when its source lies in that peer's
//!      AllowedIPs (cryptokey routing), and follow the peer to its new address (roaming).
//!
//! Timers (thread `timers`): every 250 ms each peer's `update_timers` may emit a
//! handshake retry, a keepalive or a rekey; the shared rate limiter is reset each second.
//!
//! The two directions only meet at a peer's mutex, held for one crypto operation; sends
//! and TUN writes happen after it is released.

use crate::routing::AllowedIps;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// Largest IP packet the TUN can hand us (its MTU is at most 65535).
const MAX_PACKET: usize = 65536;
/// WireGuard adds 32 bytes to a data packet; handshakes need at least 148.
const MAX_DATAGRAM: usize = MAX_PACKET + 32;
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Handshake initiations a second before the rate limiter answers with cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// The inner side: a TUN device (or a fake in tests). `recv` blocks for one packet.
pub trait TunIo: Send + Sync {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn send(&self, packet: &[u8]) -> io::Result<()>;
}

/// The outer side: the host UDP socket (or a fake). `recv_from` blocks for one datagram.
pub trait UdpIo: Send + Sync {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;
    /// Whether the socket is AF_INET6 (IPv4 endpoints are then v4-mapped).
    fn is_ipv6(&self) -> bool;
}

impl UdpIo for std::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        std::net::UdpSocket::send_to(self, datagram, to).map(drop)
    }
    fn is_ipv6(&self) -> bool {
        matches!(self.local_addr(), Ok(SocketAddr::V6(_)))
    }
}

/// One configured peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    pub allowed_ips: Vec<wgconf::IpNet>,
}

/// A peer's cryptographic session and where it currently is. Shared between peer sets
/// across a reload, so an unchanged peer keeps its session.
struct Peer {
    public_key: [u8; 32],
    preshared_key: Option<[u8; 32]>,
    persistent_keepalive: Option<u16>,
    /// Our receiver index for this peer (boringtun shifts it left by 8 bits).
    index: u32,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
}

/// Everything a reload may replace, swapped as one unit.
struct PeerSet {
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    peers: Vec<(Arc<Peer>, Vec<wgconf::IpNet>)>,
    routes: AllowedIps,
    by_index: HashMap<u32, usize>,
}

impl PeerSet {
    fn peer(&self, i: usize) -> &Peer {
        &self.peers[i].0
    }
}

/// Per-peer counters for `status`.
#[derive(Debug, Clone)]
pub struct PeerStats {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<wgconf::IpNet>,
    pub persistent_keepalive: Option<u16>,
    pub last_handshake: Option<Duration>,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: usize,
    pub replaced: usize,
    pub added: usize,
    pub removed: usize,
}

pub struct Device<T: TunIo, U: UdpIo> {
    tun: T,
    udp: U,
    set: RwLock<Arc<PeerSet>>,
    next_index: AtomicU32,
}

impl<T: TunIo + 'static, U: UdpIo + 'static> Device<T, U> {
    pub fn new(tun: T, udp: U, private_key: [u8; 32], peers: Vec<PeerConfig>) -> Self {
        let device = Device {
            tun,
            udp,
            set: RwLock::new(Arc::new(PeerSet {
                private: StaticSecret::from([0u8; 32]),
                public: PublicKey::from([0u8; 32]),
                rate_limiter: Arc::new(RateLimiter::new(&PublicKey::from([0u8; 32]), 1)),
                peers: Vec::new(),
                routes: AllowedIps::new(),
                by_index: HashMap::new(),
            })),
            next_index: AtomicU32::new(0),
        };
        device.reconfigure(private_key, peers);
        device
    }

    fn current(&self) -> Arc<PeerSet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Apply a new key and peer list, like `wg syncconf`: a peer whose public key,
    /// preshared key and keepalive are unchanged keeps its session (and so every
    /// connection through it); others get a fresh one; an endpoint given in the new
    /// configuration replaces the roamed one.
    pub fn reconfigure(&self, private_key: [u8; 32], peers: Vec<PeerConfig>) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let old = self.current();
        let private = StaticSecret::from(private_key);
        let public = PublicKey::from(&private);
        let same_key = public.as_bytes() == old.public.as_bytes();
        let rate_limiter = if same_key {
            old.rate_limiter.clone()
        } else {
            Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT))
        };
        let v6 = self.udp.is_ipv6();
        let mut routes = AllowedIps::new();
        let mut by_index = HashMap::new();
        let mut entries = Vec::with_capacity(peers.len());
        for (i, p) in peers.into_iter().enumerate() {
            let reusable = old.peers.iter().map(|(peer, _)| peer).find(|peer| {
                same_key
                    && peer.public_key == p.public_key
                    && peer.preshared_key == p.preshared_key
                    && peer.persistent_keepalive == p.persistent_keepalive
            });
            let peer = match reusable {
                Some(peer) => {
                    summary.kept += 1;
                    if let Some(e) = p.endpoint {
                        *lock(&peer.endpoint) = Some(socket_form(e, v6));
                    }
                    peer.clone()
                }
                None => {
                    let existed = old.peers.iter().any(|(peer, _)| peer.public_key == p.public_key);
                    if existed {
                        summary.replaced += 1;
                    } else {
                        summary.added += 1;
                    }
                    // Indices stay below 2^24: boringtun shifts them left by 8 bits.
                    let index = self.next_index.fetch_add(1, Ordering::Relaxed) % (1 << 24);
                    Arc::new(Peer {
                        public_key: p.public_key,
                        preshared_key: p.preshared_key,
                        persistent_keepalive: p.persistent_keepalive,
                        index,
                        tunn: Mutex::new(Tunn::new(
                            private.clone(),
                            PublicKey::from(p.public_key),
                            p.preshared_key,
                            p.persistent_keepalive,
                            index,
                            Some(rate_limiter.clone()),
                        )),
                        endpoint: Mutex::new(p.endpoint.map(|e| socket_form(e, v6))),
                    })
                }
            };
            for net in &p.allowed_ips {
                routes.insert(*net, i);
            }
            by_index.insert(peer.index, i);
            entries.push((peer, p.allowed_ips));
        }
        summary.removed = old.peers.len() - summary.kept - summary.replaced;
        let set = Arc::new(PeerSet {
            private,
            public,
            rate_limiter,
            peers: entries,
            routes,
            by_index,
        });
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = set;
        summary
    }

    /// Start the three data-plane threads. They run until the process exits.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        self.initiate_handshakes();
        let d = self.clone();
        thread::Builder::new()
            .name("tun->udp".into())
            .spawn(move || d.outbound_loop())?;
        let d = self.clone();
        thread::Builder::new()
            .name("udp->tun".into())
            .spawn(move || d.inbound_loop())?;
        let d = self.clone();
        thread::Builder::new()
            .name("timers".into())
            .spawn(move || d.timer_loop())?;
        Ok(())
    }

    pub fn stats(&self) -> Vec<PeerStats> {
        let set = self.current();
        set.peers
            .iter()
            .map(|(p, allowed)| {
                let (last_handshake, tx, rx, _, _) = lock(&p.tunn).stats();
                PeerStats {
                    public_key: p.public_key,
                    endpoint: lock(&p.endpoint).map(canonical),
                    allowed_ips: allowed.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                    last_handshake,
                    tx_bytes: tx as u64,
                    rx_bytes: rx as u64,
                }
            })
            .collect()
    }

    /// Start handshakes at once so the first packet of a fresh session does not wait
    /// for one.
    fn initiate_handshakes(&self) {
        let mut out = vec![0u8; 256];
        for (peer, _) in &self.current().peers {
            let mut tunn = lock(&peer.tunn);
            if tunn.time_since_last_handshake().is_some() {
                continue; // a kept peer with a live session
            }
            let res = tunn.format_handshake_initiation(&mut out, false);
            drop(tunn);
            self.send_result(peer, res);
        }
    }

    fn send_to_peer(&self, peer: &Peer, datagram: &[u8]) {
        let endpoint = *lock(&peer.endpoint);
        if let Some(to) = endpoint {
            // A failed send is like a lost packet: WireGuard's timers retry.
            let _ = self.udp.send_to(datagram, to);
        }
    }

    /// Send what an encapsulate/timer call produced.
    fn send_result(&self, peer: &Peer, res: TunnResult<'_>) {
        match res {
            TunnResult::WriteToNetwork(datagram) => self.send_to_peer(peer, datagram),
            TunnResult::Done => {}
            // Expired connections and handshakes that cannot start yet are normal.
            TunnResult::Err(_) => {}
            // Encapsulation and timers never produce packets for the tunnel.
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }

    fn outbound_loop(&self) {
        let mut buf = vec![0u8; MAX_PACKET];
        let mut out = vec![0u8; MAX_DATAGRAM];
        loop {
            let n = match self.tun.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("wg-wrap supervisor: reading the TUN failed: {e}");
                    std::process::exit(1);
                }
            };
            let packet = &buf[..n];
            let Some(dst) = Tunn::dst_address(packet) else {
                continue;
            };
            let set = self.current();
            let Some(index) = set.routes.lookup(dst) else {
                continue;
            };
            let peer = set.peer(index);
            let res = lock(&peer.tunn).encapsulate(packet, &mut out);
            self.send_result(peer, res);
        }
    }

    /// Which peer an incoming, MAC-verified packet belongs to.
    fn demux(set: &PeerSet, packet: &Packet<'_>) -> Option<usize> {
        let receiver_idx = match packet {
            Packet::HandshakeInit(init) => {
                let half = parse_handshake_anon(&set.private, &set.public, init).ok()?;
                return set
                    .peers
                    .iter()
                    .position(|(p, _)| p.public_key == half.peer_static_public);
            }
            Packet::HandshakeResponse(r) => r.receiver_idx,
            Packet::PacketCookieReply(c) => c.receiver_idx,
            Packet::PacketData(d) => d.receiver_idx,
        };
        set.by_index.get(&(receiver_idx >> 8)).copied()
    }

    fn inbound_loop(&self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from a previous send surface here; they are not fatal.
                Err(_) => continue,
            };
            let datagram = &buf[..n];
            let set = self.current();
            let index = match set
                .rate_limiter
                .verify_packet(Some(from.ip()), datagram, &mut out)
            {
                Ok(packet) => Self::demux(&set, &packet),
                Err(TunnResult::WriteToNetwork(cookie)) => {
                    let _ = self.udp.send_to(cookie, from);
                    continue;
                }
                Err(_) => continue,
            };
            let Some(index) = index else { continue };
            self.handle_datagram(&set, index, datagram, from, &mut out);
        }
    }

    fn handle_datagram(
        &self,
        set: &PeerSet,
        index: usize,
        datagram: &[u8],
        from: SocketAddr,
        out: &mut [u8],
    ) {
        let peer = set.peer(index);
        let mut first = true;
        loop {
            let res = if first {
                lock(&peer.tunn).decapsulate(Some(from.ip()), datagram, out)
            } else {
                lock(&peer.tunn).decapsulate(None, &[], out)
            };
            if first && !matches!(res, TunnResult::Err(_)) {
                // Authenticated: follow the peer to wherever it now sends from.
                *lock(&peer.endpoint) = Some(from);
            }
            first = false;
            match res {
                TunnResult::Done => return,
                TunnResult::Err(_) => return,
                TunnResult::WriteToNetwork(datagram) => {
                    let _ = self.udp.send_to(datagram, from);
                }
                TunnResult::WriteToTunnelV4(packet, src) => {
                    self.deliver(set, index, packet, IpAddr::V4(src));
                    return;
                }
                TunnResult::WriteToTunnelV6(packet, src) => {
                    self.deliver(set, index, packet, IpAddr::V6(src));
                    return;
                }
            }
        }
    }

    fn deliver(&self, set: &PeerSet, index: usize, packet: &[u8], src: IpAddr) {
        // Keepalives decrypt to an empty packet: nothing to deliver.
        if packet.is_empty() || !set.routes.allows(index, src) {
            return;
        }
        let _ = self.tun.send(packet);
    }

    fn timer_loop(&self) {
        let mut out = vec![0u8; MAX_DATAGRAM];
        let mut last_reset = Instant::now();
        loop {
            thread::sleep(TIMER_TICK);
            let set = self.current();
            for (peer, _) in &set.peers {
                let res = lock(&peer.tunn).update_timers(&mut out);
                if let TunnResult::Err(WireGuardError::ConnectionExpired) = res {
                    continue;
                }
                self.send_result(peer, res);
            }
            if last_reset.elapsed() >= Duration::from_secs(1) {
                set.rate_limiter.reset_count();
                last_reset = Instant::now();
            }
        }
    }
}

impl<T: TunIo + 'static, U: UdpIo + 'static> crate::control::Tunnel for Device<T, U> {
    fn stats(&self) -> Vec<PeerStats> {
        Device::stats(self)
    }
    fn reconfigure(&self, private_key: [u8; 32], peers: Vec<PeerConfig>) -> ReloadSummary {
        let summary = Device::reconfigure(self, private_key, peers);
        // New peers should not wait for traffic to start their handshake.
        self.initiate_handshakes();
        summary
    }
    fn ipv6_socket(&self) -> bool {
        self.udp.is_ipv6()
    }
}

/// Lock a mutex, tolerating poisoning: a panicked data-plane thread aborts the
/// process anyway (panic = abort is not set for the CLI, but nothing here unwinds
/// through a half-updated Tunn).
fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The address form the socket uses: v4-mapped on a dual-stack IPv6 socket.
pub fn socket_form(addr: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if ipv6_socket => {
            SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port())
        }
        other => other,
    }
}

/// The address as a human expects it (v4-mapped shown as plain IPv4).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let v4: SocketAddr = "127.0.0.1:51820".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:51820".parse().unwrap();
        assert_eq!(socket_form(v4, true), mapped);
        assert_eq!(socket_form(v4, false), v4);
        assert_eq!(canonical(mapped), v4);
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(socket_form(v6, true), v6);
    }
}
