//! The control side of the data plane: handshakes (demultiplexed, rate-limited,
//! answered, and the queue flushed after them), and endpoint changes from outside
//! (re-resolution). WireGuard's timers are in `timers`.

use super::peers::PeerSet;
use super::udp::UdpIo;
use super::{lock, socket_form, Device, MIN_OUT, MSG_COOKIE_REPLY};
use crate::namespace::tun_device::TunIo;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};
use std::net::SocketAddr;
use std::time::Duration;

impl<T: TunIo + 'static, U: UdpIo + 'static> Device<T, U> {
    /// How long ago the peer with `public_key` last completed a handshake (`Some(None)`:
    /// never), or `None` if there is no such peer.
    pub fn handshake_age(&self, public_key: &[u8; 32]) -> Option<Option<Duration>> {
        let set = self.current();
        let i = *set.by_key.get(public_key)?;
        let age = lock(&set.peer(i).tunn).time_since_last_handshake();
        Some(age)
    }

    /// Point the peer with `public_key` at `endpoint` (as if configured) and, if that
    /// moved it, start a handshake there at once rather than at the next retry;
    /// false if there is no such peer.
    pub fn set_endpoint(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> bool {
        let set = self.current();
        let Some(&i) = set.by_key.get(public_key) else {
            return false;
        };
        let peer = set.peer(i);
        let to = socket_form(endpoint, self.udp.is_ipv6());
        let moved = lock(&peer.endpoint).replace(to) != Some(to);
        if moved {
            let mut out = [0u8; MIN_OUT];
            let mut tunn = lock(&peer.tunn);
            let now = self.tick(peer, &mut tunn);
            if let TunnResult::WriteToNetwork(d) = tunn.format_handshake_initiation(&mut out, true)
            {
                self.emitted(peer, d, now);
                let _ = self.udp.send_to(d, to);
            }
        }
        true
    }

    /// Start handshakes at once so the first packet of a fresh session does not wait
    /// for one. Peers with no endpoint wait to be dialed.
    pub(super) fn initiate_handshakes(&self) {
        let mut out = [0u8; MIN_OUT];
        for (peer, _) in &self.current().peers {
            let Some(to) = *lock(&peer.endpoint) else {
                continue;
            };
            let mut tunn = lock(&peer.tunn);
            if tunn.time_since_last_handshake().is_some() {
                continue; // a kept peer with a live session
            }
            let now = self.tick(peer, &mut tunn);
            if let TunnResult::WriteToNetwork(d) = tunn.format_handshake_initiation(&mut out, false)
            {
                // A lost initiation is retried by the timers.
                self.emitted(peer, d, now);
                let _ = self.udp.send_to(d, to);
            }
        }
    }

    /// Which peer an incoming, MAC-verified handshake message belongs to.
    fn demux_handshake(set: &PeerSet, packet: &Packet<'_>) -> Option<usize> {
        let receiver_idx = match packet {
            Packet::HandshakeInit(init) => {
                let half = parse_handshake_anon(&set.private, &set.public, init).ok()?;
                return set.by_key.get(&half.peer_static_public).copied();
            }
            Packet::HandshakeResponse(r) => r.receiver_idx,
            Packet::PacketCookieReply(c) => c.receiver_idx,
            Packet::PacketData(d) => d.receiver_idx,
        };
        set.by_index.get(&(receiver_idx >> 8)).copied()
    }

    /// Handshake initiations, responses and cookie replies (and anything malformed).
    pub(super) fn handle_handshake(
        &self,
        set: &PeerSet,
        datagram: &[u8],
        from: SocketAddr,
        out: &mut [u8],
    ) {
        // Handshakes allowed a second: the limiter itself only resets once a second
        // has passed, so asking at every message is enough.
        set.limiter.reset_count();
        let i = match set.limiter.verify_packet(Some(from.ip()), datagram, out) {
            Ok(packet) => Self::demux_handshake(set, &packet),
            // Under load: the sender must prove its address first.
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let _ = self.udp.send_to(cookie, from);
                return;
            }
            Err(_) => return,
        };
        let Some(i) = i else { return };
        let peer = set.peer(i);
        let mut tunn = lock(&peer.tunn);
        // Stamp what this message does with the current time, not the last tick's.
        let now = self.tick(peer, &mut tunn);
        let mut res = tunn.decapsulate(Some(from.ip()), datagram, out);
        if matches!(res, TunnResult::Err(_)) {
            return;
        }
        peer.received(datagram.len());
        self.activity(peer, now, true);
        if datagram.first() != Some(&MSG_COOKIE_REPLY) {
            // An authenticated handshake: follow the peer to wherever it now is.
            *lock(&peer.endpoint) = Some(from);
        }
        // The reply (response or keepalive), then every packet queued meanwhile.
        loop {
            match res {
                TunnResult::WriteToNetwork(d) => {
                    self.emitted(peer, d, now);
                    let _ = self.udp.send_to(d, from);
                }
                TunnResult::Done | TunnResult::Err(_) => return,
                // Handshakes and the queue flush never decrypt data.
                TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => return,
            }
            res = tunn.decapsulate(None, &[], out);
        }
    }
}
