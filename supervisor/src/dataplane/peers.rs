//! The peers as the data plane holds them, and what a reload does to them.

use super::timers::PeerTimes;
use super::{canonical, lock, socket_form};
use crate::dataplane::allowed_ips::AllowedIps;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub(super) struct Peer {
    pub(super) public_key: [u8; 32],
    pub(super) preshared_key: Option<[u8; 32]>,
    pub(super) persistent_keepalive: Option<u16>,
    /// Our receiver index for this peer (boringtun shifts it left by 8 bits).
    pub(super) index: u32,
    pub(super) tunn: Mutex<Tunn>,
    pub(super) endpoint: Mutex<Option<SocketAddr>>,
    /// Bytes of WireGuard messages sent to and authenticated from this peer, handshakes
    /// and keepalives included — what `wg show transfer` counts (boringtun's own
    /// counters are plaintext bytes).
    pub(super) wire_tx: AtomicU64,
    pub(super) wire_rx: AtomicU64,
    /// What its timers count from (see `timers`).
    pub(super) times: PeerTimes,
}

impl Peer {
    pub(super) fn sent(&self, bytes: usize) {
        self.wire_tx.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(super) fn received(&self, bytes: usize) {
        self.wire_rx.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Everything a reload may replace, swapped as one unit.
pub(super) struct PeerSet {
    pub(super) private: StaticSecret,
    pub(super) public: PublicKey,
    /// Verifies the MACs of every handshake message and rate-limits them, for all
    /// peers together (cookie replies under load).
    pub(super) limiter: Arc<RateLimiter>,
    /// What each `Tunn` checks with: messages only reach a `Tunn` after `limiter`
    /// passed them, and must not be counted a second time.
    pub(super) unlimited: Arc<RateLimiter>,
    pub(super) peers: Vec<(Arc<Peer>, Vec<wgconf::IpNet>)>,
    pub(super) routes: AllowedIps,
    pub(super) by_index: HashMap<u32, usize>,
    pub(super) by_key: HashMap<[u8; 32], usize>,
}

impl PeerSet {
    pub(super) fn peer(&self, i: usize) -> &Peer {
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

impl PeerSet {
    /// No key, no peers: what a device holds before its first configuration.
    pub(super) fn empty() -> PeerSet {
        let nobody = PublicKey::from([0u8; 32]);
        PeerSet {
            private: StaticSecret::from([0u8; 32]),
            public: nobody,
            limiter: Arc::new(RateLimiter::new(&nobody, 1)),
            unlimited: Arc::new(RateLimiter::new(&nobody, u64::MAX)),
            peers: Vec::new(),
            routes: AllowedIps::new(),
            by_index: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    /// Apply a new key and peer list, like `wg syncconf`: a peer whose public key,
    /// preshared key and keepalive are unchanged keeps its session (and so every
    /// connection through it); others get a fresh one; an endpoint given in the new
    /// configuration replaces the roamed one.
    pub(super) fn reconfigured(
        &self,
        private_key: [u8; 32],
        peers: Vec<PeerConfig>,
        ipv6_socket: bool,
        handshake_limit: u64,
        next_index: &AtomicU32,
        now: u64,
    ) -> (PeerSet, ReloadSummary) {
        let mut summary = ReloadSummary::default();
        let old = self;
        let private = StaticSecret::from(private_key);
        let public = PublicKey::from(&private);
        let same_key = public.as_bytes() == old.public.as_bytes();
        let (limiter, unlimited) = if same_key {
            (old.limiter.clone(), old.unlimited.clone())
        } else {
            (
                Arc::new(RateLimiter::new(&public, handshake_limit)),
                Arc::new(RateLimiter::new(&public, u64::MAX)),
            )
        };
        let v6 = ipv6_socket;
        let mut routes = AllowedIps::new();
        let mut by_index = HashMap::new();
        let mut by_key = HashMap::new();
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
                    let existed = old
                        .peers
                        .iter()
                        .any(|(peer, _)| peer.public_key == p.public_key);
                    if existed {
                        summary.replaced += 1;
                    } else {
                        summary.added += 1;
                    }
                    new_peer(&private, &p, v6, &unlimited, next_index, now)
                }
            };
            for net in &p.allowed_ips {
                routes.insert(*net, i);
            }
            by_index.insert(peer.index, i);
            by_key.insert(peer.public_key, i);
            entries.push((peer, p.allowed_ips));
        }
        summary.removed = old.peers.len() - summary.kept - summary.replaced;
        let set = PeerSet {
            private,
            public,
            limiter,
            unlimited,
            peers: entries,
            routes,
            by_index,
            by_key,
        };
        (set, summary)
    }

    pub(super) fn stats(&self) -> Vec<PeerStats> {
        self.peers
            .iter()
            .map(|(p, allowed)| {
                let (last_handshake, _, _, _, _) = lock(&p.tunn).stats();
                let (tx, rx) = (
                    p.wire_tx.load(Ordering::Relaxed),
                    p.wire_rx.load(Ordering::Relaxed),
                );
                PeerStats {
                    public_key: p.public_key,
                    endpoint: lock(&p.endpoint).map(canonical),
                    allowed_ips: allowed.clone(),
                    persistent_keepalive: p.persistent_keepalive,
                    last_handshake,
                    tx_bytes: tx,
                    rx_bytes: rx,
                }
            })
            .collect()
    }
}

/// A peer with a fresh session: a new receiver index and a `Tunn` handshaking with
/// `private` (its cookie checks through the set's `unlimited` rate limiter).
fn new_peer(
    private: &StaticSecret,
    p: &PeerConfig,
    v6: bool,
    unlimited: &Arc<RateLimiter>,
    next_index: &AtomicU32,
    now: u64,
) -> Arc<Peer> {
    // Indices stay below 2^24: boringtun shifts them left by 8 bits.
    let index = next_index.fetch_add(1, Ordering::Relaxed) % (1 << 24);
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
            Some(unlimited.clone()),
        )),
        endpoint: Mutex::new(p.endpoint.map(|e| socket_form(e, v6))),
        wire_tx: AtomicU64::new(0),
        wire_rx: AtomicU64::new(0),
        times: PeerTimes::new(now),
    })
}
