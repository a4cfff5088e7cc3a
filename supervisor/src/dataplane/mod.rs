//! The data plane: packets between the TUN device and the host UDP socket.
//!
//! One thread (`dataplane`) carries both directions: it polls the TUN device and the
//! host socket together, then takes a batch each way in turn until both are empty,
//! and only then sleeps. What one direction causes at once (the ACK the kernel
//! generates while a download's segment is written to the TUN) goes out in the same
//! wake-up, and nobody is woken while it works. Under load — wake-ups less than
//! 200 µs apart — it stops waiting to be woken and sleeps 200 µs between rounds for
//! as long as each round finds work, so packets gather into batches instead of each
//! costing a wake-up here and another for the program reading the TUN ([`Coalesce`]);
//! a lone packet never waits. Measured at a few hundred Mbit/s, the wake-ups, not the
//! cipher, were most of the cost (issue 15, `bench/efficiency.sh`).
//!
//! Outbound flow:
//!   1. read every frame already queued on the TUN, until the send batch is full or
//!      the TUN is empty;
//!   2. cut each frame into IP packets: a TSO superpacket into its MTU-sized segments
//!      (see [`crate::dataplane::offload`]);
//!   3. pick the peer by longest-prefix match of the destination on AllowedIPs; with no
//!      peer (or a peer with no endpoint yet) answer with ICMP unreachable, written
//!      back into the TUN (see [`crate::dataplane::icmp`]);
//!   4. encrypt with that peer's `Tunn` straight into the send batch (boringtun queues
//!      the packet and hands out an initiation while a handshake runs);
//!   5. send the batch: one `sendmmsg`, runs of equal datagrams as UDP GSO (see
//!      [`crate::dataplane::udp`]).
//!
//! Inbound flow:
//!   1. receive a batch: one `recvmmsg` of what is queued, each message one datagram or several that the
//!      kernel coalesced (UDP GRO);
//!   2. find the peer: a data packet by the receiver index we handed out (`index << 8`,
//!      session in the low byte); a handshake message first has its MACs verified and
//!      is rate-limited by the shared limiter (cookie reply under load), then an
//!      initiation is matched by the sender's static key, the rest by receiver index;
//!   3. decrypt; after a handshake message send the reply and then every queued packet
//!      (boringtun's "call again with an empty datagram until Done" rule);
//!   4. accept a decrypted packet only when its source lies in that peer's AllowedIPs
//!      (cryptokey routing) and hand it to the coalescer, which glues segments of a
//!      TCP flow into superpackets; follow the peer to the address it sent from
//!      (roaming);
//!   5. write the superpackets to the TUN.
//!
//! Timers (thread `timers`): each peer's `update_timers` may emit a handshake retry,
//! a keepalive or a rekey; the thread sleeps until the earliest moment one of them
//! could be due (see [`timers`] for how that is known). The data-plane thread also
//! runs a peer's timers whenever it takes its session for a batch (see `Device::tick`
//! for why) and records what it did, which moves the deadlines.
//!
//! The data-plane thread, the timer thread and the control server only meet at a
//! peer's mutex, held while one batch (a TUN frame on the way out, a received message
//! on the way in) is encrypted or decrypted, and never across a system call on the
//! hot path. Every buffer is allocated once, when the thread starts; nothing on the
//! hot path allocates or logs. System calls of the loop: `ppoll`, `recvmmsg`
//! (`MSG_DONTWAIT`), `sendmmsg`, `sendto`, `read`/`write` on the TUN device; the timer
//! thread sleeps in `read` on a CLOCK_BOOTTIME timerfd, which `timerfd_settime` arms
//! (also from the other threads, to wake it early).
//!
//! Files: `inbound` (the inbound flow, steps 2 to 5), `peers` (the peer set and what a
//! reload does to it), `handshake` (handshake
//! messages, endpoint changes), `timers` (WireGuard's timers, by deadline), `allowed_ips` (the longest-prefix table),
//! `icmp` (unreachable errors), `offload` (TUN superpackets cut and glued),
//! `checksum`, `udp` (batches and the host socket, whose system calls are in
//! `crate::sys::mmsg`); for tests `fake` (in-memory TUN and network) and `tests`
//! (data planes wired back to back). The TUN device itself, and [`TunIo`], are in
//! `crate::namespace::tun_device`.

use crate::dataplane::udp::{RecvBatch, SendBatch, UdpIo, MAX_DATAGRAM};
use crate::namespace::tun_device::TunIo;
use boringtun::noise::{Tunn, TunnResult};
use inbound::{Inbound, Stage, RECV_BATCH_MESSAGES};
use offload::{HEADROOM, MAX_FRAME};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// Handshake initiations a second before the rate limiter answers with cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// ICMP unreachable errors a second.
const ICMP_RATE_LIMIT: u32 = 1000;
/// Bytes of encrypted datagrams gathered before one `sendmmsg` (three to four 64 KiB
/// superpackets' worth).
const SEND_BATCH_BYTES: usize = 256 << 10;
/// Wake-ups closer together than this switch on coalescing (see [`Coalesce`]).
const COALESCE_WINDOW: Duration = Duration::from_micros(200);
/// How long packets gather between rounds while coalescing.
const COALESCE_SLEEP: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 200_000,
};
/// TUN frames read before the send batch goes out even if more are queued.
const MAX_FRAMES_PER_BATCH: usize = 64;
/// A data message's fixed part: type, receiver index, counter, tag.
const DATA_OVERHEAD: usize = 32;
/// boringtun's smallest output buffer (a handshake initiation).
const MIN_OUT: usize = 148;
/// WireGuard message types (the first byte; the other three are zero).
const MSG_COOKIE_REPLY: u8 = 3;
const MSG_DATA: u8 = 4;

pub struct Device<T: TunIo, U: UdpIo> {
    tun: T,
    udp: U,
    set: RwLock<Arc<PeerSet>>,
    next_index: AtomicU32,
    handshake_limit: u64,
    clock: timers::Clock,
    timer_wake: timers::TimerWake,
}

impl<T: TunIo + 'static, U: UdpIo + 'static> Device<T, U> {
    pub fn new(tun: T, udp: U, private_key: [u8; 32], peers: Vec<PeerConfig>) -> Self {
        Self::with_handshake_limit(tun, udp, private_key, peers, HANDSHAKE_RATE_LIMIT)
    }

    /// [`new`](Self::new) with another number of handshakes a second before cookies
    /// are required (tests use a small one).
    pub fn with_handshake_limit(
        tun: T,
        udp: U,
        private_key: [u8; 32],
        peers: Vec<PeerConfig>,
        handshake_limit: u64,
    ) -> Self {
        let device = Device {
            tun,
            udp,
            set: RwLock::new(Arc::new(PeerSet::empty())),
            next_index: AtomicU32::new(0),
            handshake_limit,
            clock: timers::Clock::new(),
            timer_wake: timers::TimerWake::default(),
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
        let old = self.current();
        let (set, summary) = old.reconfigured(
            private_key,
            peers,
            self.udp.is_ipv6(),
            self.handshake_limit,
            &self.next_index,
            self.clock.now(),
        );
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        // New peers bring new deadlines (a keepalive, a handshake).
        self.timer_wake.now();
        summary
    }

    pub fn stats(&self) -> Vec<PeerStats> {
        self.current().stats()
    }

    /// Start the data-plane thread and the timer thread. They run until the process
    /// exits; if the TUN device fails, the process exits (the session then fails
    /// closed).
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        self.timer_wake.create()?;
        self.initiate_handshakes();
        let d = self.clone();
        thread::Builder::new()
            .name("dataplane".into())
            .spawn(move || {
                let e = d.run();
                eprintln!("wg-wrap supervisor: reading the TUN failed: {e}");
                std::process::exit(1);
            })?;
        let d = self.clone();
        thread::Builder::new()
            .name("timers".into())
            .spawn(move || d.timer_loop())?;
        Ok(())
    }

    /// Both directions in one thread: wait for the TUN device or the host socket,
    /// then take turns at a batch each way until both are empty. A packet that one
    /// direction causes at once — the TCP ACK the kernel generates while a download's
    /// segment is written to the TUN, say — is picked up in the same wake-up, and
    /// while the thread works the kernel has nobody to wake. Returns only when the
    /// TUN device fails.
    fn run(&self) -> io::Error {
        let mut out = Outbound {
            frame: vec![0u8; MAX_FRAME].into_boxed_slice(),
            scratch: vec![0u8; MAX_FRAME].into_boxed_slice(),
            batch: SendBatch::new(SEND_BATCH_BYTES),
            icmp: vec![0u8; HEADROOM + icmp::MAX_LEN].into_boxed_slice(),
            icmp_limit: icmp::RateLimit::new(ICMP_RATE_LIMIT),
            offload: self.tun.offload(),
            route: None,
        };
        let mut inb = Inbound {
            batch: RecvBatch::new(RECV_BATCH_MESSAGES),
            scratch: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            stage: Stage::new(),
            writer: offload::Writer::new(self.tun.offload()),
        };
        let mut coalesce = Coalesce::default();
        loop {
            let mut worked = false;
            loop {
                let received = self.inbound_batch(&mut inb);
                let sent = match self.outbound_batch(&mut out) {
                    Ok(sent) => sent,
                    Err(e) => return e,
                };
                if !received && !sent {
                    break;
                }
                worked = true;
            }
            if coalesce.keep_on(worked) {
                // Under load: let packets gather instead of waking for each.
                let _ = poll(&mut [], Some(&COALESCE_SLEEP));
                continue;
            }
            let (tun, udp) = (self.tun.readable(), self.udp.readable());
            let mut fds = [
                PollFd::new(&tun, PollFlags::IN),
                PollFd::new(&udp, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return e.into(),
            }
            coalesce.woke();
        }
    }

    /// The outbound flow for the frames queued on the TUN device now, up to one send
    /// batch; false if there were none.
    fn outbound_batch(&self, out: &mut Outbound) -> io::Result<bool> {
        let mut n = match self.tun.try_recv(&mut out.frame) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let set = self.current();
        // Routes and endpoints may change between batches (a reload, roaming).
        out.route = None;
        let mut frames = 0;
        loop {
            self.encrypt_frame(&set, out, n);
            frames += 1;
            if frames == MAX_FRAMES_PER_BATCH || out.batch.room() < MAX_FRAME {
                break;
            }
            n = match self.tun.try_recv(&mut out.frame) {
                Ok(n) => n,
                Err(e) if is_transient(&e) => break,
                Err(e) => {
                    let _ = self.udp.send_batch(&mut out.batch);
                    return Err(e);
                }
            };
        }
        // Lost datagrams are like lost packets: TCP and the timers recover.
        let _ = self.udp.send_batch(&mut out.batch);
        Ok(true)
    }

    /// Steps 2-4 of the outbound flow for one frame of `n` bytes.
    fn encrypt_frame(&self, set: &PeerSet, out: &mut Outbound, n: usize) {
        let Outbound {
            frame,
            scratch,
            batch,
            icmp,
            icmp_limit,
            offload,
            route,
        } = out;
        // All segments of a superpacket, and usually the frames of a batch, share a
        // destination: route it once per batch (`route`), and keep the peer's session
        // locked while a frame's segments are encrypted (one lock per frame, not per
        // segment; released before any send).
        let mut held: Option<(usize, u64, MutexGuard<'_, Tunn>)> = None;
        let mut each = |packet: &[u8]| {
            let Some(dst) = Tunn::dst_address(packet) else {
                return;
            };
            let target = match *route {
                Some((cached, target)) if cached == dst => target,
                _ => {
                    let target = set.routes.lookup(dst).and_then(|i| {
                        let endpoint = *lock(&set.peer(i).endpoint);
                        endpoint.map(|e| (i, e))
                    });
                    *route = Some((dst, target));
                    target
                }
            };
            let Some((i, to)) = target else {
                if icmp_limit.allow() {
                    if let Some(len) = icmp::unreachable(packet, &mut icmp[HEADROOM..]) {
                        let _ = offload::write_packet(&self.tun, icmp, len);
                    }
                }
                return;
            };
            let need = (packet.len() + DATA_OVERHEAD).max(MIN_OUT);
            if batch.room() < need {
                held = None;
                let _ = self.udp.send_batch(batch);
                if batch.room() < need {
                    return; // larger than any datagram
                }
            }
            if held.as_ref().is_none_or(|(p, _, _)| *p != i) {
                held = None;
                let mut tunn = lock(&set.peer(i).tunn);
                let now = self.tick(set.peer(i), &mut tunn);
                self.activity(set.peer(i), now, false);
                held = Some((i, now, tunn));
            }
            let Some((_, now, tunn)) = held.as_mut() else {
                return;
            };
            let space = &mut batch.space()[..need];
            let res = tunn.encapsulate(packet, space);
            match res {
                // Data, or a handshake initiation (the packet waits in boringtun's queue).
                TunnResult::WriteToNetwork(d) => {
                    let len = d.len();
                    if d[0] != MSG_DATA {
                        self.emitted(set.peer(i), d, *now);
                    } else {
                        set.peer(i).sent(len);
                    }
                    batch.commit(len, to);
                }
                // Queued behind a handshake already under way.
                TunnResult::Done => {}
                TunnResult::Err(_) => {}
                // Encapsulation never produces packets for the tunnel.
                TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
            }
        };
        // A frame that cannot be cut apart is dropped, like a corrupt packet.
        let _ = offload::split(&mut frame[..n], *offload, scratch, &mut each);
    }
}

/// Whether the data plane gathers packets for [`COALESCE_SLEEP`] between rounds
/// instead of waiting to be woken: the moment wake-ups come closer together than
/// that, and for as long as each round finds something to do. Every wake-up costs a
/// context switch here and, through the TUN write, another for the program reading;
/// at a few hundred Mbit/s they came one or two packets apart and cost more than the
/// cipher. A lone packet (a ping, a keystroke) never waits.
#[derive(Default)]
struct Coalesce {
    last_wake: Option<Instant>,
    on: bool,
}

impl Coalesce {
    /// After a round: whether to sleep and gather rather than wait for a wake-up.
    fn keep_on(&mut self, worked: bool) -> bool {
        self.on &= worked;
        self.on
    }

    /// A wake-up from the poll.
    fn woke(&mut self) {
        let now = Instant::now();
        self.on = self
            .last_wake
            .is_some_and(|last| now.duration_since(last) < COALESCE_WINDOW);
        self.last_wake = Some(now);
    }
}

/// The outbound direction's buffers.
struct Outbound {
    frame: Box<[u8]>,
    scratch: Box<[u8]>,
    batch: SendBatch,
    icmp: Box<[u8]>,
    icmp_limit: icmp::RateLimit,
    offload: bool,
    /// The last destination of this batch and its peer and endpoint, if it has one.
    route: Option<(IpAddr, Option<(usize, SocketAddr)>)>,
}

/// Errors a read loop just retries.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// What the control server needs from the running tunnel.
pub trait Tunnel: Send + Sync {
    fn stats(&self) -> Vec<PeerStats>;
    fn reconfigure(&self, private_key: [u8; 32], peers: Vec<PeerConfig>) -> ReloadSummary;
    /// Whether the UDP socket is IPv6 (endpoints are then v4-mapped).
    fn ipv6_socket(&self) -> bool;
    /// The host UDP socket's port.
    fn listen_port(&self) -> u16;
}

impl<T: TunIo + 'static, U: UdpIo + 'static> Tunnel for Device<T, U> {
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
    fn listen_port(&self) -> u16 {
        self.udp.local_port()
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

pub mod allowed_ips;
pub mod checksum;
mod handshake;
pub mod icmp;
mod inbound;
pub mod offload;
mod peers;
mod timers;
pub mod udp;
use peers::PeerSet;
pub use peers::{PeerConfig, PeerStats, ReloadSummary};

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
