//! The inbound flow (steps 2 to 5 in the module docs of [`crate::dataplane`]): a
//! received batch decrypted peer by peer, staged, checked against the sender's
//! AllowedIPs and handed to the coalescer that writes the TUN.

use super::{is_transient, lock, offload, Device, PeerSet, DATA_OVERHEAD, HEADROOM, MSG_DATA};
use crate::dataplane::udp::{RecvBatch, UdpIo, MAX_DATAGRAM};
use crate::namespace::tun_device::TunIo;
use boringtun::noise::{Tunn, TunnResult};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::MutexGuard;
use std::thread;
use std::time::Duration;

/// Messages taken per `recvmmsg`; each may be a 64 KiB GRO message.
pub(super) const RECV_BATCH_MESSAGES: usize = 8;
impl<T: TunIo + 'static, U: UdpIo + 'static> Device<T, U> {
    /// The inbound flow for one batch of what the host socket holds now; false if
    /// it held nothing.
    pub(super) fn inbound_batch(&self, inb: &mut Inbound) -> bool {
        let Inbound {
            batch,
            scratch,
            stage,
            writer,
        } = inb;
        if let Err(e) = self.udp.try_recv_batch(batch) {
            if is_transient(&e) {
                return e.kind() == io::ErrorKind::Interrupted;
            }
            // Errors queued by ICMP for an earlier send (unreachable, refused) are not
            // fatal; pause so a broken socket cannot spin this loop.
            thread::sleep(Duration::from_millis(1));
            return true;
        }
        let set = self.current();
        for (from, datagrams) in batch.messages() {
            self.receive_message(&set, from, datagrams, scratch, stage, writer);
        }
        // Packets the TUN refused are lost, like any dropped packet.
        let _ = writer.flush(&self.tun);
        true
    }

    /// Steps 2 to 5 of the inbound flow for one received message: one datagram, or
    /// several the kernel coalesced (UDP GRO), all from `from`.
    fn receive_message(
        &self,
        set: &PeerSet,
        from: SocketAddr,
        datagrams: std::slice::Chunks<'_, u8>,
        scratch: &mut [u8],
        stage: &mut Stage,
        writer: &mut offload::Writer,
    ) {
        let mut roam = Roam::default();
        // The datagrams of a message nearly always belong to one peer: its
        // session stays locked while they are decrypted (one lock, not one
        // per datagram), and is released before anything is written.
        let mut held: Option<(u32, usize, u64, MutexGuard<'_, Tunn>)> = None;
        for datagram in datagrams {
            if datagram.first() != Some(&MSG_DATA) || datagram.len() < DATA_OVERHEAD {
                held = None;
                self.handle_handshake(set, datagram, from, scratch);
                continue;
            }
            if !stage.has_room(datagram.len()) {
                // Only a message of many tiny datagrams gets here.
                held = None;
                self.deliver(set, stage, writer);
            }
            let idx = u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) >> 8;
            if held.as_ref().is_none_or(|(cached, ..)| *cached != idx) {
                held = None;
                let Some(&i) = set.by_index.get(&idx) else {
                    continue;
                };
                let mut tunn = lock(&set.peer(i).tunn);
                let now = self.tick(set.peer(i), &mut tunn);
                held = Some((idx, i, now, tunn));
            }
            let Some((_, i, now, tunn)) = held.as_mut() else {
                continue;
            };
            let res = tunn.decapsulate(Some(from.ip()), datagram, stage.space());
            if !matches!(res, TunnResult::Err(_)) {
                set.peer(*i).received(datagram.len());
                // Only what authenticates counts as heard from the peer, as for
                // boringtun: a forged or replayed datagram with a known index must not
                // move the timers' "received" (it would hide the silence handshake).
                self.activity(set.peer(*i), *now, true);
            }
            match res {
                TunnResult::WriteToTunnelV4(p, src) => {
                    let len = p.len();
                    stage.commit(len, *i, IpAddr::V4(src));
                    roam.saw(set, *i, from);
                }
                TunnResult::WriteToTunnelV6(p, src) => {
                    let len = p.len();
                    stage.commit(len, *i, IpAddr::V6(src));
                    roam.saw(set, *i, from);
                }
                // A keepalive: authenticated, nothing to deliver.
                TunnResult::Done => roam.saw(set, *i, from),
                // Replays, unknown sessions, bad tags: dropped.
                TunnResult::Err(_) => {}
                // Data never produces a reply; sent anyway rather than lost.
                TunnResult::WriteToNetwork(d) => {
                    set.peer(*i).sent(d.len());
                    let _ = self.udp.send_to(d, from);
                }
            }
        }
        drop(held);
        roam.finish(set, from);
        self.deliver(set, stage, writer);
    }

    /// Step 4 of the inbound flow for the staged packets: cryptokey routing's source
    /// check, then the coalescer.
    fn deliver(&self, set: &PeerSet, stage: &mut Stage, writer: &mut offload::Writer) {
        // Packets of a flow share their source: check each source once.
        let mut checked: Option<(usize, IpAddr, bool)> = None;
        for k in 0..stage.packets.len() {
            let (at, len, i, src) = stage.packets[k];
            let allowed = match checked {
                Some((ci, csrc, ok)) if ci == i && csrc == src => ok,
                _ => {
                    let ok = set.routes.allows(i, src);
                    checked = Some((i, src, ok));
                    ok
                }
            };
            if allowed {
                let _ = writer.push(&self.tun, &mut stage.buf[at - HEADROOM..at + len], len);
            }
        }
        stage.clear();
    }
}

/// Decrypted packets of one message, each with headroom for the virtio-net header,
/// waiting for their peer's session to be unlocked before they go to the TUN.
pub(super) struct Stage {
    buf: Box<[u8]>,
    end: usize,
    /// (offset of the packet, length, peer, inner source).
    packets: Vec<(usize, usize, usize, IpAddr)>,
}

impl Stage {
    pub(super) fn new() -> Stage {
        // A message is at most MAX_DATAGRAM bytes and every datagram in it shrinks by
        // more than HEADROOM when decrypted, so one message always fits.
        Stage {
            buf: vec![0u8; MAX_DATAGRAM + 2 * HEADROOM].into_boxed_slice(),
            end: 0,
            packets: Vec::with_capacity(128),
        }
    }

    /// Whether a datagram of `len` bytes can be decrypted here (boringtun wants room
    /// for the whole ciphertext).
    fn has_room(&self, len: usize) -> bool {
        self.end + HEADROOM + len <= self.buf.len()
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.end + HEADROOM..]
    }

    fn commit(&mut self, len: usize, peer: usize, src: IpAddr) {
        let at = self.end + HEADROOM;
        self.packets.push((at, len, peer, src));
        self.end = at + len;
    }

    fn clear(&mut self) {
        self.end = 0;
        self.packets.clear();
    }
}

/// The inbound direction's buffers.
pub(super) struct Inbound {
    pub(super) batch: RecvBatch,
    pub(super) scratch: Box<[u8]>,
    pub(super) stage: Stage,
    pub(super) writer: offload::Writer,
}

/// Which peers authenticated data from a message's source, so their endpoints follow
/// it once per message rather than once per datagram.
#[derive(Default)]
struct Roam {
    peer: Option<usize>,
}

impl Roam {
    fn saw(&mut self, set: &PeerSet, i: usize, from: SocketAddr) {
        if let Some(previous) = self.peer.filter(|&p| p != i) {
            follow(set, previous, from);
        }
        self.peer = Some(i);
    }

    fn finish(self, set: &PeerSet, from: SocketAddr) {
        if let Some(i) = self.peer {
            follow(set, i, from);
        }
    }
}

fn follow(set: &PeerSet, i: usize, from: SocketAddr) {
    let mut endpoint = lock(&set.peer(i).endpoint);
    if *endpoint != Some(from) {
        *endpoint = Some(from);
    }
}
