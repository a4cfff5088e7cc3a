//! One WireGuard session over one UDP socket: boringtun's `Tunn` plus the
//! remote endpoint it talks to and the outer-traffic counters.
//!
//! Inbound flow (`receive`):
//!  1. `decapsulate` the datagram, passing its source for the cookie MAC.
//!  2. A cookie reply (we are under load) goes back to the datagram's source
//!     and changes nothing else: the sender is not yet authenticated.
//!  3. Anything authenticated (a handshake, a data packet, a keepalive)
//!     moves the endpoint to the datagram's source when roaming is on.
//!  4. A handshake answer is sent, then `decapsulate(None, &[])` is repeated
//!     until `Done`, flushing packets boringtun queued during the handshake.
//!  5. Decrypted IP packets go to the caller's `deliver`.
//!
//! Outbound flow (`send`): `encapsulate`, then send to the endpoint; with no
//! endpoint yet (nobody has authenticated) the packet is dropped.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use rand_core::{OsRng, RngCore};

use crate::udp::MAX_DATAGRAM;

/// boringtun's output buffer: the largest datagram plus WireGuard's
/// overhead, far above its "src.len() + 32 and >= 148" rule.
const OUT_BUF_LEN: usize = MAX_DATAGRAM + 64;

// WireGuard message types: the first byte of every message (the type is a
// little-endian u32 whose upper three bytes are zero).
const MSG_HANDSHAKE_INIT: u8 = 1;
const MSG_HANDSHAKE_RESPONSE: u8 = 2;
const MSG_COOKIE_REPLY: u8 = 3;
const MSG_DATA: u8 = 4;

/// Outer-traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub handshakes: u64,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    /// Datagrams boringtun refused (bad MAC, replay, unknown session…).
    pub rejected: u64,
    /// Datagrams we could not send (no endpoint yet, or the socket said no).
    pub send_failures: u64,
}

/// Where datagrams go, and what was sent: split from `Tunn` and its buffer
/// so a `TunnResult` borrowing the buffer can be sent while it is alive.
struct Path {
    endpoint: Option<SocketAddr>,
    counters: LinkCounters,
}

impl Path {
    fn send(&mut self, socket: &UdpSocket, datagram: &[u8]) {
        match self.endpoint {
            Some(to) => self.send_to(socket, to, datagram),
            None => self.counters.send_failures += 1,
        }
    }

    fn send_to(&mut self, socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) {
        match socket.send_to(datagram, to) {
            Ok(_) => {
                self.counters.tx_datagrams += 1;
                self.counters.tx_bytes += datagram.len() as u64;
            }
            // A full socket buffer or an ICMP error for an earlier datagram:
            // WireGuard is unreliable by design, the inner protocols retransmit.
            Err(_) => self.counters.send_failures += 1,
        }
    }
}

pub struct Link {
    tunn: Tunn,
    path: Path,
    /// Follow the source address of every authenticated datagram.
    roaming: bool,
    out: Box<[u8]>,
}

impl Link {
    /// `endpoint`: where to send before anything was heard (None for a
    /// responder that learns it). `roaming`: move the endpoint to where
    /// authenticated datagrams come from.
    pub fn new(
        private_key: &[u8; 32],
        peer_public_key: &[u8; 32],
        preshared_key: Option<[u8; 32]>,
        persistent_keepalive: Option<u16>,
        endpoint: Option<SocketAddr>,
        roaming: bool,
    ) -> Link {
        // boringtun shifts the index left by 8 to make room for session
        // numbers, so it must stay below 2^24.
        let index = OsRng.next_u32() >> 8;
        let tunn = Tunn::new(
            StaticSecret::from(*private_key),
            PublicKey::from(*peer_public_key),
            preshared_key,
            persistent_keepalive,
            index,
            None,
        );
        Link {
            tunn,
            path: Path {
                endpoint,
                counters: LinkCounters::default(),
            },
            roaming,
            out: vec![0u8; OUT_BUF_LEN].into_boxed_slice(),
        }
    }

    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.path.endpoint
    }

    pub fn counters(&self) -> LinkCounters {
        self.path.counters
    }

    /// Whether a session is established (a handshake completed and has not expired).
    #[cfg(any(test, feature = "testing"))]
    pub fn has_session(&self) -> bool {
        self.tunn.time_since_last_handshake().is_some()
    }

    /// Start a handshake now (the initiator side; the peer only answers).
    #[cfg(any(test, feature = "testing"))]
    pub fn initiate(&mut self, socket: &UdpSocket) {
        match self.tunn.format_handshake_initiation(&mut self.out, false) {
            TunnResult::WriteToNetwork(packet) => self.path.send(socket, packet),
            // Already in progress: the timers retransmit it.
            TunnResult::Done => {}
            TunnResult::Err(_) => self.path.counters.rejected += 1,
            // `format_handshake_initiation` never decrypts anything.
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }

    /// Handle one datagram from `from`; decrypted IP packets go to `deliver`.
    pub fn receive(
        &mut self,
        socket: &UdpSocket,
        from: SocketAddr,
        datagram: &[u8],
        deliver: &mut dyn FnMut(&[u8]),
    ) {
        self.path.counters.rx_datagrams += 1;
        self.path.counters.rx_bytes += datagram.len() as u64;
        let Some(&msg_type) = datagram.first() else {
            // boringtun reads an empty datagram as "flush your queue", not as input.
            self.path.counters.rejected += 1;
            return;
        };
        let mut flush_queue = false;
        match self
            .tunn
            .decapsulate(Some(from.ip()), datagram, &mut self.out)
        {
            TunnResult::Done => {
                // A keepalive (authenticated data with no payload) or an
                // accepted cookie reply; only the former proves who sent it.
                if msg_type == MSG_DATA {
                    self.path.roam(self.roaming, from);
                }
            }
            TunnResult::Err(_) => self.path.counters.rejected += 1,
            TunnResult::WriteToNetwork(packet) => {
                if packet.first() == Some(&MSG_COOKIE_REPLY) {
                    // Rate limiting: answer the claimed source, trust nothing yet.
                    self.path.send_to(socket, from, packet);
                } else {
                    // Our handshake response to their initiation, or our
                    // keepalive confirming their response: the handshake is done.
                    if matches!(msg_type, MSG_HANDSHAKE_INIT | MSG_HANDSHAKE_RESPONSE) {
                        self.path.counters.handshakes += 1;
                    }
                    self.path.roam(self.roaming, from);
                    self.path.send(socket, packet);
                    flush_queue = true;
                }
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                // The inner source is not checked: the one client may use any
                // address (it is a test peer). The caller filters on the
                // destination.
                self.path.roam(self.roaming, from);
                deliver(packet);
            }
        }
        if flush_queue {
            self.flush_queued(socket, deliver);
        }
    }

    /// boringtun's rule: after `WriteToNetwork`, call `decapsulate` with an
    /// empty datagram until `Done` to send what it queued during the handshake.
    fn flush_queued(&mut self, socket: &UdpSocket, deliver: &mut dyn FnMut(&[u8])) {
        loop {
            match self.tunn.decapsulate(None, &[], &mut self.out) {
                TunnResult::WriteToNetwork(packet) => self.path.send(socket, packet),
                TunnResult::Done => break,
                TunnResult::Err(_) => {
                    self.path.counters.rejected += 1;
                    break;
                }
                // Not produced by the queue flush; delivered rather than lost if it ever is.
                TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                    deliver(packet)
                }
            }
        }
    }

    /// Encrypt one IP packet and send it. Without a session boringtun queues
    /// it and hands back a handshake initiation instead.
    pub fn send(&mut self, socket: &UdpSocket, packet: &[u8]) {
        match self.tunn.encapsulate(packet, &mut self.out) {
            TunnResult::WriteToNetwork(datagram) => self.path.send(socket, datagram),
            TunnResult::Done => {}
            TunnResult::Err(_) => self.path.counters.send_failures += 1,
            // `encapsulate` never decrypts anything.
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }

    /// Drive WireGuard's timers (rekey, keepalive, handshake retries); call about every 250 ms.
    pub fn tick(&mut self, socket: &UdpSocket) {
        match self.tunn.update_timers(&mut self.out) {
            TunnResult::WriteToNetwork(datagram) => self.path.send(socket, datagram),
            TunnResult::Done => {}
            // ConnectionExpired is routine (no traffic for a while, or a
            // handshake nobody answered); boringtun has already reset itself.
            TunnResult::Err(_) => {}
            // Timers never decrypt anything.
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
    }
}

impl Path {
    fn roam(&mut self, roaming: bool, from: SocketAddr) {
        if roaming || self.endpoint.is_none() {
            self.endpoint = Some(from);
        }
    }
}

/// The destination address of an IP packet, if it is long enough to have one.
pub fn ip_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => <[u8; 4]>::try_from(packet.get(16..20)?)
            .ok()
            .map(IpAddr::from),
        6 => <[u8; 16]>::try_from(packet.get(24..40)?)
            .ok()
            .map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_keypair;

    fn pair() -> (Link, Link, UdpSocket, UdpSocket) {
        let (a_priv, a_pub) = generate_keypair();
        let (b_priv, b_pub) = generate_keypair();
        let a_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a_sock, &b_sock] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let initiator = Link::new(
            &a_priv,
            &b_pub,
            None,
            None,
            Some(b_sock.local_addr().unwrap()),
            false,
        );
        let responder = Link::new(&b_priv, &a_pub, None, None, None, true);
        (initiator, responder, a_sock, b_sock)
    }

    fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        buf.truncate(n);
        (buf, from)
    }

    /// A packet sent before the handshake is queued by boringtun and must
    /// come out of the initiator's queue flush once the response arrives.
    #[test]
    fn handshake_learns_endpoint_and_flushes_queue() {
        let (mut a, mut b, a_sock, b_sock) = pair();
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&28u16.to_be_bytes());
        packet[12..16].copy_from_slice(&[10, 0, 0, 2]);
        packet[16..20].copy_from_slice(&[10, 0, 0, 1]);
        a.send(&a_sock, &packet); // no session: queued, initiation sent

        let (init, from) = recv(&b_sock);
        let mut got = Vec::new();
        b.receive(&b_sock, from, &init, &mut |p| got.push(p.to_vec()));
        assert_eq!(b.endpoint(), Some(a_sock.local_addr().unwrap()));
        assert_eq!(b.counters().handshakes, 1);

        let (response, from) = recv(&a_sock);
        a.receive(&a_sock, from, &response, &mut |p| got.push(p.to_vec()));
        // The responder's session becomes current with the first data packet.
        assert!(a.has_session());
        assert_eq!(a.counters().handshakes, 1);

        // The initiator sent a keepalive, then the queued packet.
        for _ in 0..2 {
            let (datagram, from) = recv(&b_sock);
            b.receive(&b_sock, from, &datagram, &mut |p| got.push(p.to_vec()));
        }
        assert_eq!(got, vec![packet.clone()]);
        assert!(b.has_session());
        assert_eq!(ip_destination(&packet), Some(IpAddr::from([10, 0, 0, 1])));
    }

    #[test]
    fn garbage_is_rejected_and_does_not_set_endpoint() {
        let (_, mut b, a_sock, b_sock) = pair();
        let from = a_sock.local_addr().unwrap();
        for garbage in [&[][..], &[1, 0, 0, 0][..], &[4u8; 64][..], &[1u8; 148][..]] {
            b.receive(&b_sock, from, garbage, &mut |_| {
                panic!("nothing to deliver")
            });
        }
        assert_eq!(b.endpoint(), None);
        assert_eq!(b.counters().rejected, 4);
        // Nothing to send to yet: dropped, counted.
        b.send(&b_sock, &[0x45; 20]);
        assert_eq!(b.counters().tx_datagrams, 0);
    }

    #[test]
    fn ip_destination_parses_both_families() {
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        v6[39] = 1;
        assert_eq!(ip_destination(&v6), Some("::1".parse().unwrap()));
        assert_eq!(ip_destination(&v6[..39]), None);
        assert_eq!(ip_destination(&[0x45; 19]), None);
        assert_eq!(ip_destination(&[]), None);
    }
}
