//! The outer side's socket I/O, batched.
//!
//! Datagrams leave in a [`SendBatch`]: the data plane encrypts straight into its
//! buffer, and consecutive datagrams of one size to one destination form a *run* that
//! a single `sendmmsg` entry carries as one UDP GSO send (`UDP_SEGMENT`): the kernel
//! cuts it into datagrams as late as it can — over loopback not at all, the receiving
//! socket gets the run back whole.  Datagrams arrive in a [`RecvBatch`] filled by one
//! `recvmmsg`; with `UDP_GRO` on, one message may hold several datagrams of one
//! sender, all `segment` bytes long but the last, and is cut apart here.
//!
//! Neither needs privilege: the host socket came from the CLI, and the kernel lets any
//! socket owner turn GRO on and send GSO runs (checked unprivileged through a socket
//! handed into a user namespace).  Where the kernel refuses a GSO send (EIO: the route's
//! device cannot checksum; EINVAL: a segment larger than the path MTU) the run goes
//! out datagram by datagram instead, and after an EIO GSO stays off.
//!
//! The system calls themselves (rustix has neither `recvmmsg` nor the UDP GSO/GRO
//! control messages) are in [`crate::sys::mmsg`], the only place with the unsafe
//! code they need.

use crate::sys::mmsg::{self, Outgoing as Entry, Received, MMSG_MAX, UDP_GRO, UDP_SEGMENT};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest UDP payload, and so the size of one receive slot (a GRO message is
/// never larger either).
pub const MAX_DATAGRAM: usize = 65535;
/// Segments one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` before 6.10).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes one GSO send may carry: the UDP length field, less room for IPv6 and UDP
/// headers.
pub const MAX_RUN_BYTES: usize = 65535 - 48;
/// Receive and send buffer asked for; the kernel caps it at `net.core.[rw]mem_max`
/// (208 KiB on many hosts, and an unprivileged process cannot go beyond that): a
/// rootless tunnel drains its socket fast instead of counting on a big buffer.
const SOCKET_BUFFER: usize = 4 << 20;

/// Datagrams waiting to be sent, encrypted in place into one buffer.
pub struct SendBatch {
    buf: Box<[u8]>,
    end: usize,
    runs: Vec<Run>,
}

/// Consecutive datagrams to one destination, all `segment` bytes but the last,
/// which may be shorter (and then ends the run).
#[derive(Debug, Clone, Copy)]
struct Run {
    to: SocketAddr,
    start: usize,
    len: usize,
    segment: usize,
    count: usize,
}

impl Run {
    fn can_take(&self, to: SocketAddr, len: usize) -> bool {
        self.to == to
            && len <= self.segment
            // A shorter datagram ended the run.
            && self.len == self.count * self.segment
            && self.count < MAX_SEGMENTS
            && self.len + len <= MAX_RUN_BYTES
    }
}

impl SendBatch {
    /// A batch of `bytes` bytes, allocated once.
    pub fn new(bytes: usize) -> SendBatch {
        SendBatch {
            buf: vec![0u8; bytes].into_boxed_slice(),
            end: 0,
            runs: Vec::with_capacity(MMSG_MAX),
        }
    }

    /// Free bytes for the next datagram (0 once the run table is full too).
    pub fn room(&self) -> usize {
        if self.runs.len() >= self.runs.capacity() {
            return 0;
        }
        self.buf.len() - self.end
    }

    /// Where the next datagram goes: write it at the start, then [`commit`](Self::commit).
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Take the `len` bytes written at the start of [`space`](Self::space) as a
    /// datagram to `to`.
    pub fn commit(&mut self, len: usize, to: SocketAddr) {
        debug_assert!(self.end + len <= self.buf.len() && len > 0);
        match self.runs.last_mut() {
            Some(run) if run.can_take(to, len) => {
                run.len += len;
                run.count += 1;
            }
            _ => self.runs.push(Run {
                to,
                start: self.end,
                len,
                segment: len,
                count: 1,
            }),
        }
        self.end += len;
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.end = 0;
    }

    /// Every datagram, one by one (for fakes).
    #[cfg(test)]
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.runs.iter().flat_map(move |r| {
            self.buf[r.start..r.start + r.len]
                .chunks(r.segment)
                .map(move |d| (r.to, d))
        })
    }

    /// The runs: destination, segment size, bytes.
    #[cfg(test)]
    pub fn runs(&self) -> impl Iterator<Item = (SocketAddr, usize, &[u8])> {
        self.runs
            .iter()
            .map(move |r| (r.to, r.segment, &self.buf[r.start..r.start + r.len]))
    }
}

/// Datagrams received in one go.
pub struct RecvBatch {
    buf: Box<[u8]>,
    msgs: Vec<Message>,
    slots: usize,
}

#[derive(Debug, Clone, Copy)]
struct Message {
    from: SocketAddr,
    len: usize,
    /// Size of each datagram in the message (GRO); equals `len` for a single one.
    segment: usize,
}

impl RecvBatch {
    /// Room for `slots` messages of up to [`MAX_DATAGRAM`] bytes each.
    pub fn new(slots: usize) -> RecvBatch {
        RecvBatch {
            buf: vec![0u8; slots * MAX_DATAGRAM].into_boxed_slice(),
            msgs: Vec::with_capacity(slots),
            slots,
        }
    }

    pub fn clear(&mut self) {
        self.msgs.clear();
    }

    #[cfg(test)]
    pub fn is_full(&self) -> bool {
        self.msgs.len() == self.slots
    }

    /// Add a message by copying (fakes): `data` is one datagram, or several of
    /// `segment` bytes each but the last. Returns false when the batch is full.
    #[cfg(test)]
    pub fn push(&mut self, from: SocketAddr, data: &[u8], segment: usize) -> bool {
        let i = self.msgs.len();
        if i == self.slots || data.len() > MAX_DATAGRAM || data.is_empty() {
            return false;
        }
        self.buf[i * MAX_DATAGRAM..i * MAX_DATAGRAM + data.len()].copy_from_slice(data);
        self.msgs.push(Message {
            from,
            len: data.len(),
            segment: segment.clamp(1, data.len()),
        });
        true
    }

    /// Each message: its sender and its datagrams.
    pub fn messages(&self) -> impl Iterator<Item = (SocketAddr, std::slice::Chunks<'_, u8>)> {
        self.msgs.iter().enumerate().map(move |(i, m)| {
            let start = i * MAX_DATAGRAM;
            (m.from, self.buf[start..start + m.len].chunks(m.segment))
        })
    }
}

/// The outer side: the host UDP socket (or a fake).
pub trait UdpIo: Send + Sync {
    /// Whether the socket is AF_INET6 (IPv4 endpoints are then v4-mapped).
    fn is_ipv6(&self) -> bool;
    /// The local port peers reach us on.
    fn local_port(&self) -> u16;
    /// A descriptor that polls readable while a datagram may be queued.
    fn readable(&self) -> BorrowedFd<'_>;
    /// Fill `batch` with what is queued; `WouldBlock` if nothing is.
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()>;
    /// Send every datagram of `batch` and clear it; lost datagrams are not errors.
    fn send_batch(&self, batch: &mut SendBatch) -> io::Result<()>;
    /// Send one datagram.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;
}

impl UdpIo for HostSocket {
    fn is_ipv6(&self) -> bool {
        HostSocket::is_ipv6(self)
    }
    fn local_port(&self) -> u16 {
        HostSocket::port(self)
    }
    fn readable(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        HostSocket::receive(self, batch, false)
    }
    fn send_batch(&self, batch: &mut SendBatch) -> io::Result<()> {
        HostSocket::send_batch(self, batch)
    }
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        HostSocket::send_to(self, datagram, to)
    }
}

/// The host UDP socket handed over by the CLI, with GRO on and GSO when the kernel
/// takes it.
pub struct HostSocket {
    fd: OwnedFd,
    ipv6: bool,
    port: u16,
    gso: AtomicBool,
}

impl HostSocket {
    /// Tune the socket (bigger buffers as far as allowed, GRO) and wrap it.
    pub fn new(fd: OwnedFd) -> io::Result<HostSocket> {
        let local = std::net::UdpSocket::from(fd.try_clone()?).local_addr()?;
        // Best effort: capped (or refused) by the host's limits, which is fine.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SOCKET_BUFFER);
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&fd, SOCKET_BUFFER);
        // Kernels before 5.0 know no UDP_GRO: then every message is one datagram.
        let _ = mmsg::setsockopt_int(fd.as_fd(), libc::SOL_UDP, UDP_GRO, 1);
        // Kernels before 4.18 know no UDP_SEGMENT: then runs go datagram by datagram.
        let gso = mmsg::getsockopt_int(fd.as_fd(), libc::SOL_UDP, UDP_SEGMENT).is_ok();
        Ok(HostSocket {
            fd,
            ipv6: local.is_ipv6(),
            port: local.port(),
            gso: AtomicBool::new(gso),
        })
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// The local port (ListenPort, or the one the kernel picked).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Block until at least one datagram is queued, then take as many messages as
    /// `batch` holds without waiting again.
    #[cfg(test)]
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        self.receive(batch, true)
    }

    /// Take as many messages as `batch` holds; with `wait`, first block until one is
    /// queued, else fail with `WouldBlock` when none is.
    fn receive(&self, batch: &mut RecvBatch, wait: bool) -> io::Result<()> {
        batch.clear();
        let mut received = [Received::default(); MMSG_MAX];
        let got = mmsg::recvmmsg(
            self.fd.as_fd(),
            &mut batch.buf[..batch.slots * MAX_DATAGRAM],
            MAX_DATAGRAM,
            &mut received[..batch.slots.min(MMSG_MAX)],
            wait,
        )?;
        for (i, message) in received[..got].iter().enumerate() {
            let Received {
                from,
                len,
                truncated,
                segment,
            } = *message;
            if truncated || len == 0 {
                continue;
            }
            let Some(from) = from else {
                continue;
            };
            let segment = segment.unwrap_or(len);
            // Messages are kept in slot order so slot i stays message i.
            batch.msgs.push(Message {
                from,
                len,
                segment: segment.clamp(1, len),
            });
            if batch.msgs.len() != i + 1 {
                // A skipped message left a gap: move this one down into its place.
                let to = (batch.msgs.len() - 1) * MAX_DATAGRAM;
                batch
                    .buf
                    .copy_within(i * MAX_DATAGRAM..i * MAX_DATAGRAM + len, to);
            }
        }
        Ok(())
    }

    /// Send every datagram in `batch` (the batch is cleared). A datagram the kernel
    /// refuses is dropped, like a lost packet: WireGuard's timers and TCP recover.
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<()> {
        let gso = self.gso.load(Ordering::Relaxed);
        // One entry per run with GSO, else one per datagram.
        let ipv6 = self.ipv6;
        let mut entries = batch.runs.iter().flat_map(|r| {
            let pieces = if gso { 1 } else { r.count };
            (0..pieces).map(move |p| {
                // The socket's own address form: v4-mapped on an IPv6 socket.
                let to = crate::dataplane::socket_form(r.to, ipv6);
                if gso {
                    Entry {
                        to,
                        start: r.start,
                        len: r.len,
                        segment: r.segment,
                    }
                } else {
                    let start = r.start + p * r.segment;
                    let len = r.segment.min(r.start + r.len - start);
                    Entry {
                        to,
                        start,
                        len,
                        segment: len,
                    }
                }
            })
        });
        let mut pending = [Entry::default(); MMSG_MAX];
        let mut n = 0;
        loop {
            while n < MMSG_MAX {
                match entries.next() {
                    Some(e) => {
                        pending[n] = e;
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                break;
            }
            let done = match self.sendmmsg(&batch.buf, &pending[..n]) {
                Ok(sent) => sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    let first = pending[0];
                    let errno = e.raw_os_error();
                    if first.len > first.segment && matches!(errno, Some(libc::EIO | libc::EINVAL))
                    {
                        if errno == Some(libc::EIO) {
                            self.gso.store(false, Ordering::Relaxed);
                        }
                        let run = &batch.buf[first.start..first.start + first.len];
                        for d in run.chunks(first.segment) {
                            let _ = self.send_to(d, first.to);
                        }
                    }
                    // Anything else (unreachable, no buffer…): this entry is lost.
                    1
                }
            };
            pending.copy_within(done..n, 0);
            n -= done;
        }
        batch.clear();
        Ok(())
    }

    /// One `sendmmsg` of `entries`; returns how many went out.
    fn sendmmsg(&self, buf: &[u8], entries: &[Entry]) -> io::Result<usize> {
        mmsg::sendmmsg(self.fd.as_fd(), buf, entries)
    }

    /// Send one datagram (handshakes, cookies, keepalives from the timers).
    pub fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        mmsg::sendto(
            self.fd.as_fd(),
            datagram,
            crate::dataplane::socket_form(to, self.ipv6),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn runs_group_equal_datagrams_to_one_destination() {
        let mut b = SendBatch::new(1 << 16);
        let a = addr("10.0.0.1:1");
        let c = addr("10.0.0.2:1");
        for (len, to) in [
            (100, a),
            (100, a),
            (60, a),
            (100, a),
            (100, c),
            (100, c),
            (120, c),
        ] {
            b.space()[..len].fill(len as u8);
            b.commit(len, to);
        }
        let runs: Vec<(SocketAddr, usize, usize)> = b
            .runs()
            .map(|(to, seg, bytes)| (to, seg, bytes.len()))
            .collect();
        // The short 60 ends the first run; a longer datagram starts a new one.
        assert_eq!(
            runs,
            vec![(a, 100, 260), (a, 100, 100), (c, 100, 200), (c, 120, 120)]
        );
        let sizes: Vec<usize> = b.datagrams().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, vec![100, 100, 60, 100, 100, 100, 120]);
        assert!(b
            .datagrams()
            .all(|(_, d)| d.iter().all(|&x| x as usize == d.len())));
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn runs_respect_segment_and_byte_limits() {
        let mut b = SendBatch::new(1 << 20);
        let a = addr("[::1]:1");
        for _ in 0..(MAX_SEGMENTS + 1) {
            b.commit(100, a);
        }
        assert_eq!(b.runs().count(), 2);
        b.clear();
        for _ in 0..50 {
            b.commit(1452, a);
        }
        let runs: Vec<usize> = b.runs().map(|(_, _, bytes)| bytes.len()).collect();
        assert!(runs.iter().all(|&l| l <= MAX_RUN_BYTES), "{runs:?}");
        assert_eq!(runs.iter().sum::<usize>(), 50 * 1452);
    }

    fn host_socket(bind: &str) -> (HostSocket, SocketAddr) {
        let s = UdpSocket::bind(bind).unwrap();
        let local = s.local_addr().unwrap();
        (HostSocket::new(OwnedFd::from(s)).unwrap(), local)
    }

    /// A GSO send over loopback arrives whole (GRO) or datagram by datagram; either
    /// way the receive batch hands back exactly the datagrams sent, in order.
    #[test]
    fn gso_runs_cross_loopback_intact() {
        for (bind, v6) in [("127.0.0.1:0", false), ("[::1]:0", true)] {
            let Ok(probe) = UdpSocket::bind(bind) else {
                continue; // no IPv6 on this host
            };
            drop(probe);
            let (tx, _) = host_socket(bind);
            let (rx, rx_addr) = host_socket(bind);
            assert_eq!(tx.is_ipv6(), v6);
            let mut batch = SendBatch::new(1 << 18);
            let mut sent = Vec::new();
            for i in 0..100u32 {
                let len = if i == 99 { 700 } else { 1452 };
                let d: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
                batch.space()[..len].copy_from_slice(&d);
                batch.commit(len, rx_addr);
                sent.push(d);
            }
            tx.send_batch(&mut batch).unwrap();
            assert!(batch.is_empty());
            let mut got = Vec::new();
            let mut rb = RecvBatch::new(8);
            while got.len() < sent.len() {
                rx.recv_batch(&mut rb).unwrap();
                for (from, datagrams) in rb.messages() {
                    assert_eq!(from.port(), {
                        let l = std::net::UdpSocket::from(tx.fd.try_clone().unwrap());
                        l.local_addr().unwrap().port()
                    });
                    got.extend(datagrams.map(<[u8]>::to_vec));
                }
            }
            assert_eq!(got, sent, "{bind}");
        }
    }

    #[test]
    fn single_sends_and_batch_push() {
        let (tx, _) = host_socket("127.0.0.1:0");
        let (rx, rx_addr) = host_socket("127.0.0.1:0");
        tx.send_to(b"hello", rx_addr).unwrap();
        let mut rb = RecvBatch::new(2);
        rx.recv_batch(&mut rb).unwrap();
        let got: Vec<Vec<u8>> = rb
            .messages()
            .flat_map(|(_, d)| d.map(<[u8]>::to_vec))
            .collect();
        assert_eq!(got, vec![b"hello".to_vec()]);

        let mut rb = RecvBatch::new(1);
        assert!(rb.push(rx_addr, b"aabbc", 2));
        assert!(rb.is_full());
        assert!(!rb.push(rx_addr, b"x", 1));
        let got: Vec<&[u8]> = rb.messages().flat_map(|(_, d)| d).collect();
        assert_eq!(got, vec![&b"aa"[..], b"bb", b"c"]);
    }
}
