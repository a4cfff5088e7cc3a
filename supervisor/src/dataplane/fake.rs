//! In-memory stand-ins for the TUN device and the host socket, so real data planes
//! can talk to each other in a unit test (after wireguard-go's `tuntest` and
//! `bindtest`): a [`FakeTun`] whose "kernel side" the test drives, and [`FakeUdp`]
//! sockets on a [`FakeNet`] that delivers datagrams between them, can drop some, and
//! lets a socket change its address (roaming).

use crate::dataplane::udp::{RecvBatch, SendBatch, UdpIo, MAX_DATAGRAM};
use crate::namespace::tun_device::TunIo;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A blocking FIFO, whose consumer may also poll a descriptor for new items (like
/// the data plane polls the TUN device and the host socket).
struct Queue<X> {
    items: Mutex<VecDeque<X>>,
    ready: Condvar,
    /// A byte is written to `signal` after items are queued; `readable` polls
    /// readable until the consumer drains it (before taking the items).
    signal: UnixStream,
    readable: UnixStream,
}

impl<X> Queue<X> {
    fn new() -> Queue<X> {
        let (signal, readable) = UnixStream::pair().unwrap();
        signal.set_nonblocking(true).unwrap();
        readable.set_nonblocking(true).unwrap();
        Queue {
            items: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            signal,
            readable,
        }
    }

    /// Take every item queued now, or fail with `WouldBlock`, after draining the
    /// signal (so an item queued meanwhile leaves it readable).
    fn try_take<R>(&self, take: impl FnOnce(&mut VecDeque<X>) -> R) -> io::Result<R> {
        let mut sink = [0u8; 64];
        while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
        let mut items = self.items.lock().unwrap();
        if items.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(take(&mut items))
    }

    fn push(&self, x: X) {
        self.push_all(std::iter::once(x));
    }

    /// Queue several items at once (a receiver waking up sees them all).
    fn push_all(&self, xs: impl IntoIterator<Item = X>) {
        self.items.lock().unwrap().extend(xs);
        self.ready.notify_all();
        // A full signal buffer is readable already.
        let _ = (&self.signal).write(&[1]);
    }

    /// Wait (forever if `timeout` is None) for the first item, then let `take` pull
    /// what it wants from the queue.
    fn wait<R>(
        &self,
        timeout: Option<Duration>,
        take: impl FnOnce(&mut VecDeque<X>) -> R,
    ) -> Option<R> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut items = self.items.lock().unwrap();
        while items.is_empty() {
            match deadline {
                None => items = self.ready.wait(items).unwrap(),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    items = self.ready.wait_timeout(items, left).unwrap().0;
                }
            }
        }
        Some(take(&mut items))
    }
}

/// A TUN device: the test injects frames the data plane reads and collects the
/// frames it writes.
#[derive(Clone)]
pub struct FakeTun(Arc<TunInner>);

struct TunInner {
    offload: bool,
    to_device: Queue<Vec<u8>>,
    from_device: Queue<Vec<u8>>,
}

impl FakeTun {
    pub fn new(offload: bool) -> FakeTun {
        FakeTun(Arc::new(TunInner {
            offload,
            to_device: Queue::new(),
            from_device: Queue::new(),
        }))
    }

    /// A frame for the data plane to read (what a program in the tunnel sent).
    pub fn inject(&self, frame: &[u8]) {
        self.0.to_device.push(frame.to_vec());
    }

    /// The next frame the data plane wrote, if one comes within `timeout`.
    pub fn written(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.0
            .from_device
            .wait(Some(timeout), |q| q.pop_front().unwrap())
    }
}

impl TunIo for FakeTun {
    fn offload(&self) -> bool {
        self.0.offload
    }
    fn readable(&self) -> BorrowedFd<'_> {
        self.0.to_device.readable.as_fd()
    }
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = self.0.to_device.try_take(|q| q.pop_front().unwrap())?;
        buf[..frame.len()].copy_from_slice(&frame);
        Ok(frame.len())
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.0.from_device.push(frame.to_vec());
        Ok(())
    }
}

type DropRule = Box<dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send>;
/// A datagram as it arrives: sender, bytes.
type Arrival = (SocketAddr, Vec<u8>);
/// A socket's receive queue.
type Inbox = Arc<Queue<Arrival>>;

/// The network the fake sockets share.
#[derive(Clone, Default)]
pub struct FakeNet(Arc<Mutex<NetInner>>);

#[derive(Default)]
struct NetInner {
    sockets: HashMap<SocketAddr, Inbox>,
    drop_rule: Option<DropRule>,
    /// Datagrams delivered, by (from, to).
    counts: HashMap<(SocketAddr, SocketAddr), u64>,
}

impl FakeNet {
    pub fn new() -> FakeNet {
        FakeNet::default()
    }

    /// A socket bound to `addr` (an AF_INET6 one if `addr` is IPv6).
    pub fn socket(&self, addr: &str) -> FakeUdp {
        let addr: SocketAddr = addr.parse().unwrap();
        let queue = Arc::new(Queue::new());
        self.0.lock().unwrap().sockets.insert(addr, queue.clone());
        FakeUdp {
            net: self.clone(),
            addr: Arc::new(Mutex::new(addr)),
            queue,
            ipv6: addr.is_ipv6(),
        }
    }

    /// Drop every datagram for which `rule(from, to, datagram)` is true.
    pub fn drop_when(&self, rule: impl Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send + 'static) {
        self.0.lock().unwrap().drop_rule = Some(Box::new(rule));
    }

    /// Datagrams delivered so far from `from` to `to`.
    pub fn delivered(&self, from: SocketAddr, to: SocketAddr) -> u64 {
        self.0
            .lock()
            .unwrap()
            .counts
            .get(&(from, to))
            .copied()
            .unwrap_or(0)
    }

    /// Deliver datagrams sent from `from` in one go: each receiver gets its share as
    /// one arrival, as a batch sent with one sendmmsg arrives.
    fn deliver<'a>(
        &self,
        from: SocketAddr,
        datagrams: impl Iterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        let mut net = self.0.lock().unwrap();
        let mut arrivals: Vec<(Inbox, Vec<Arrival>)> = Vec::new();
        for (to, datagram) in datagrams {
            let to = super::canonical(to);
            if net
                .drop_rule
                .as_ref()
                .is_some_and(|rule| rule(from, to, datagram))
            {
                continue;
            }
            let Some(queue) = net.sockets.get(&to).cloned() else {
                continue;
            };
            *net.counts.entry((from, to)).or_default() += 1;
            match arrivals.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &queue)) {
                Some((_, items)) => items.push((from, datagram.to_vec())),
                None => arrivals.push((queue, vec![(from, datagram.to_vec())])),
            }
        }
        drop(net);
        for (queue, items) in arrivals {
            queue.push_all(items);
        }
    }
}

/// A UDP socket on a [`FakeNet`].
#[derive(Clone)]
pub struct FakeUdp {
    net: FakeNet,
    addr: Arc<Mutex<SocketAddr>>,
    queue: Inbox,
    ipv6: bool,
}

impl FakeUdp {
    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap()
    }

    /// Move to another address (the host's address changed): datagrams sent from now
    /// on come from `addr`, and only datagrams to `addr` arrive.
    pub fn rebind(&self, addr: &str) {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut net = self.net.0.lock().unwrap();
        let old = std::mem::replace(&mut *self.addr.lock().unwrap(), addr);
        net.sockets.remove(&old);
        net.sockets.insert(addr, self.queue.clone());
    }

    /// The next datagram for this socket (for tests driving a socket by hand).
    pub fn recv(&self, timeout: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        self.queue.wait(Some(timeout), |q| q.pop_front().unwrap())
    }
}

impl UdpIo for FakeUdp {
    fn is_ipv6(&self) -> bool {
        self.ipv6
    }
    fn local_port(&self) -> u16 {
        self.addr().port()
    }

    fn readable(&self) -> BorrowedFd<'_> {
        self.queue.readable.as_fd()
    }

    /// Like the kernel with UDP GRO: consecutive datagrams of one sender and one
    /// size (the last may be shorter) come as one message.
    fn try_recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.clear();
        let ipv6 = self.ipv6;
        self.queue.try_take(|q| {
            let mut message = Vec::new();
            while !batch.is_full() {
                let Some((from, d)) = q.pop_front() else {
                    break;
                };
                let from = super::socket_form(from, ipv6);
                message.clear();
                message.extend_from_slice(&d);
                let segment = d.len();
                while let Some((next_from, next)) = q.front() {
                    let same = super::socket_form(*next_from, ipv6) == from;
                    if !same || next.len() > segment || message.len() + next.len() > MAX_DATAGRAM {
                        break;
                    }
                    let short = next.len() < segment;
                    message.extend_from_slice(next);
                    q.pop_front();
                    if short {
                        break;
                    }
                }
                batch.push(from, &message, segment);
            }
        })
    }

    fn send_batch(&self, batch: &mut SendBatch) -> io::Result<()> {
        self.net.deliver(self.addr(), batch.datagrams());
        batch.clear();
        Ok(())
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.net
            .deliver(self.addr(), std::iter::once((to, datagram)));
        Ok(())
    }
}
