//! An in-memory WireGuard client for tests: its own boringtun `Tunn` and
//! smoltcp stack, talking to a [`VirtualPeer`](crate::VirtualPeer) (or any
//! WireGuard peer) over one UDP socket. Needs no privileges, no TUN device
//! and no namespaces; everything is driven from the calling thread.
//!
//! ```no_run
//! # use std::{net::UdpSocket, time::Duration};
//! # use virtual_peer::{PeerConfig, VirtualPeer, testing::TestClient};
//! let (config, client_side) = PeerConfig::demo();
//! let peer = VirtualPeer::start(config, UdpSocket::bind("127.0.0.1:0")?)?;
//! let mut client = TestClient::new(&client_side, peer.local_addr())?;
//! client.handshake(Duration::from_secs(5))?;
//! let page = client.http_get("10.77.0.1".parse()?, "/", Duration::from_secs(5))?;
//! assert_eq!(page.status, 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use rand_core::{OsRng, RngCore};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpCidr,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

use crate::config::ClientSide;
pub use crate::dns::{
    build_query as dns_query, parse_reply as parse_dns_reply, Answer as DnsAnswer, RCODE_NOERROR,
    RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA,
};
use crate::phy::QueueDevice;
use crate::udp::BatchReceiver;
use crate::wg::{Link, LinkCounters};

const TIMER_TICK: Duration = Duration::from_millis(250);
/// The client's TCP buffers: as large as the peer's, so the client's window
/// is not what limits a throughput measurement.
const TCP_BUFFER: usize = 1 << 20;
/// How long a pump waits for a datagram while a caller polls for a condition.
const PUMP_WAIT: Duration = Duration::from_millis(5);
const ICMP_IDENT: u16 = 0x7767;
/// Datagrams taken from the socket per pump.
const RECV_BATCH: usize = 256;

/// Why a test exchange failed.
#[derive(Debug)]
pub enum TestError {
    /// Socket setup or I/O on the outer UDP socket.
    Io(io::Error),
    /// Nothing (or not enough) arrived in time; names what was awaited.
    Timeout(&'static str),
    /// The TCP connection was refused or reset by the other side.
    ConnectionReset,
    /// The client has no tunnel address of the needed family.
    NoSourceAddress(IpAddr),
    /// The reply was not what the protocol allows; names what was wrong.
    BadReply(&'static str),
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestError::Io(e) => write!(f, "I/O error: {e}"),
            TestError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            TestError::ConnectionReset => f.write_str("connection refused or reset"),
            TestError::NoSourceAddress(dst) => {
                write!(f, "no client address of the right family to reach {dst}")
            }
            TestError::BadReply(what) => write!(f, "bad reply: {what}"),
        }
    }
}

impl std::error::Error for TestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TestError {
    fn from(e: io::Error) -> TestError {
        TestError::Io(e)
    }
}

/// An HTTP response; `body` is empty when it was streamed to a callback.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Body bytes received (streamed or not).
    pub body_len: u64,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct EchoReply {
    from: IpAddr,
    ident: u16,
    seq: u16,
    data: Vec<u8>,
}

pub struct TestClient {
    socket: UdpSocket,
    link: Link,
    device: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo_replies: VecDeque<EchoReply>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    next_port: u16,
    receiver: BatchReceiver,
    next_tick: StdInstant,
}

impl TestClient {
    /// A client with `side`'s keys and addresses, sending to `peer` from a
    /// fresh UDP socket on the loopback address of `peer`'s family.
    pub fn new(side: &ClientSide, peer: SocketAddr) -> io::Result<TestClient> {
        let bind: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_write_timeout(Some(Duration::from_millis(100)))?;
        let link = Link::new(
            &side.private_key,
            &side.peer_public_key,
            side.preshared_key,
            None,
            Some(peer),
            false,
        );

        let mut device = QueueDevice::new();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = OsRng.next_u64();
        let mut iface = Interface::new(config, &mut device, Instant::now());
        iface.update_ip_addrs(|addrs| {
            if let Some((a, p)) = side.address_v4 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(a), p));
            }
            if let Some((a, p)) = side.address_v6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(a), p));
            }
        });
        // Everything goes into the tunnel; with Medium::Ip the gateway is a placeholder.
        if let Some((a, _)) = side.address_v4 {
            let _ = iface.routes_mut().add_default_ipv4_route(a);
        }
        if let Some((a, _)) = side.address_v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(a);
        }
        Ok(TestClient {
            socket,
            link,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            echo_replies: VecDeque::new(),
            v4: side.address_v4.map(|(a, _)| a),
            v6: side.address_v6.map(|(a, _)| a),
            next_port: 49152 + (OsRng.next_u32() % 8192) as u16,
            receiver: BatchReceiver::new(),
            next_tick: StdInstant::now() + TIMER_TICK,
        })
    }

    /// The client's outer UDP address (what the peer should report as its endpoint).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Move to a fresh UDP socket (a new source port), keeping the
    /// WireGuard session: what a roaming client looks like to the peer.
    pub fn rebind(&mut self) -> io::Result<()> {
        let socket = UdpSocket::bind(SocketAddr::new(self.socket.local_addr()?.ip(), 0))?;
        socket.set_write_timeout(Some(Duration::from_millis(100)))?;
        self.socket = socket;
        self.receiver = BatchReceiver::new();
        Ok(())
    }

    /// The client side's outer-traffic counters.
    pub fn counters(&self) -> LinkCounters {
        self.link.counters()
    }

    /// Complete a WireGuard handshake with the peer.
    pub fn handshake(&mut self, timeout: Duration) -> Result<(), TestError> {
        self.link.initiate(&self.socket);
        self.pump_until(timeout, "the handshake response", |c| {
            c.link.has_session().then_some(())
        })
    }

    /// Send an ICMP (v4) or ICMPv6 echo request and return the echoed payload.
    pub fn ping(
        &mut self,
        dst: IpAddr,
        seq: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TestError> {
        let packet = self.echo_request(dst, seq, payload)?;
        self.send_ip(&packet);
        self.pump_until(timeout, "the echo reply", |c| {
            let at = c
                .echo_replies
                .iter()
                .position(|r| r.from == dst && r.ident == ICMP_IDENT && r.seq == seq)?;
            c.echo_replies.remove(at).map(|r| r.data)
        })
    }

    /// Encrypt and send a hand-made IP packet.
    pub fn send_ip(&mut self, packet: &[u8]) {
        self.link.send(&self.socket, packet);
    }

    /// Send one UDP datagram to `dst` through the tunnel and return the first reply.
    pub fn udp_exchange(
        &mut self,
        dst: SocketAddr,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TestError> {
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0u8; 128 * 1024]);
        let mut socket = udp::Socket::new(buffer(), buffer());
        let port = self.ephemeral_port();
        socket
            .bind(port)
            .map_err(|_| TestError::BadReply("cannot bind a UDP socket"))?;
        socket
            .send_slice(payload, dst)
            .map_err(|_| TestError::BadReply("datagram does not fit the UDP socket"))?;
        let handle = self.sockets.add(socket);
        let result = self.pump_until(timeout, "a UDP reply", |c| {
            let socket = c.sockets.get_mut::<udp::Socket>(handle);
            let (data, meta) = socket.recv().ok()?;
            (SocketAddr::from(meta.endpoint) == dst).then(|| data.to_vec())
        });
        self.sockets.remove(handle);
        result
    }

    /// Ask the DNS server at `server` for `name`/`qtype`.
    pub fn dns_lookup(
        &mut self,
        server: IpAddr,
        name: &str,
        qtype: u16,
        timeout: Duration,
    ) -> Result<DnsAnswer, TestError> {
        let id = OsRng.next_u32() as u16;
        let reply = self.udp_exchange(
            SocketAddr::new(server, crate::DNS_PORT),
            &dns_query(id, name, qtype),
            timeout,
        )?;
        let answer = parse_dns_reply(&reply).ok_or(TestError::BadReply("unparsable DNS reply"))?;
        if answer.id != id {
            return Err(TestError::BadReply("DNS reply with the wrong id"));
        }
        Ok(answer)
    }

    /// `GET path` from `http://dst/`, collecting the body.
    pub fn http_get(
        &mut self,
        dst: IpAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TestError> {
        let mut responses = self.http_get_many(&[(dst, path)], timeout)?;
        Ok(responses.remove(0))
    }

    /// Several GETs over concurrent connections, collecting the bodies.
    pub fn http_get_many(
        &mut self,
        gets: &[(IpAddr, &str)],
        timeout: Duration,
    ) -> Result<Vec<HttpResponse>, TestError> {
        let mut readers: Vec<HttpReader> = gets.iter().map(|_| HttpReader::default()).collect();
        let mut bodies: Vec<Vec<u8>> = gets.iter().map(|_| Vec::new()).collect();
        let requests: Vec<(SocketAddr, Vec<u8>)> = gets
            .iter()
            .map(|&(dst, path)| {
                (
                    SocketAddr::new(dst, crate::HTTP_PORT),
                    get_request(dst, path),
                )
            })
            .collect();
        let exchanges: Vec<(SocketAddr, &[u8])> =
            requests.iter().map(|(a, r)| (*a, r.as_slice())).collect();
        self.tcp_exchanges(&exchanges, false, timeout, &mut |i, chunk| {
            readers[i].feed(chunk, &mut |body| bodies[i].extend_from_slice(body))
        })?;
        readers
            .into_iter()
            .zip(bodies)
            .map(|(reader, body)| {
                Ok(HttpResponse {
                    body,
                    ..reader.finish()?
                })
            })
            .collect()
    }

    /// `GET path` from `http://dst/`, handing body bytes to `on_body` as they
    /// arrive (for bodies too large to hold).
    pub fn http_get_streaming(
        &mut self,
        dst: IpAddr,
        path: &str,
        timeout: Duration,
        on_body: &mut dyn FnMut(&[u8]),
    ) -> Result<HttpResponse, TestError> {
        let mut reader = HttpReader::default();
        let request = get_request(dst, path);
        self.tcp_exchange(
            SocketAddr::new(dst, crate::HTTP_PORT),
            &request,
            false,
            timeout,
            &mut |chunk| reader.feed(chunk, on_body),
        )?;
        reader.finish()
    }

    /// Connect to `dst`, send `request`, and hand everything received to
    /// `on_data` until the server closes. With `half_close`, send a FIN after
    /// the request (an echo server then finishes). Sending and receiving
    /// interleave, so `request` may be larger than all buffers together.
    /// Returns the number of bytes received.
    pub fn tcp_exchange(
        &mut self,
        dst: SocketAddr,
        request: &[u8],
        half_close: bool,
        timeout: Duration,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, TestError> {
        let received =
            self.tcp_exchanges(&[(dst, request)], half_close, timeout, &mut |_, d| {
                on_data(d)
            })?;
        Ok(received[0])
    }

    /// [`tcp_exchange`](Self::tcp_exchange) over several concurrent
    /// connections; `on_data` gets the index of the connection with each chunk.
    pub fn tcp_exchanges(
        &mut self,
        exchanges: &[(SocketAddr, &[u8])],
        half_close: bool,
        timeout: Duration,
        on_data: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<Vec<u64>, TestError> {
        let mut conns = Vec::with_capacity(exchanges.len());
        for &(dst, _) in exchanges {
            match self.tcp_connect(dst) {
                Ok(handle) => conns.push(Conn {
                    handle,
                    sent: 0,
                    received: 0,
                    finished: false,
                }),
                Err(e) => {
                    self.tcp_release(conns.iter().map(|c| c.handle));
                    return Err(e);
                }
            }
        }
        let deadline = StdInstant::now() + timeout;
        let result = loop {
            let mut failed = None;
            for (i, (conn, &(_, request))) in conns.iter_mut().zip(exchanges).enumerate() {
                if !conn.finished {
                    let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
                    if let Err(e) = conn.step(socket, request, half_close, &mut |d| on_data(i, d)) {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if conns.iter().all(|c| c.finished) {
                break Ok(conns.iter().map(|c| c.received).collect());
            }
            if StdInstant::now() >= deadline {
                for c in &conns {
                    let so = self.sockets.get::<tcp::Socket>(c.handle);
                    eprintln!(
                        "DEBUG {:?} sent {} recv {} fin {} rq {} sq {} ep {:?}",
                        so.state(),
                        c.sent,
                        c.received,
                        c.finished,
                        so.recv_queue(),
                        so.send_queue(),
                        so.local_endpoint()
                    );
                }
                eprintln!("DEBUG counters {:?}", self.link.counters());
                break Err(TestError::Timeout("the TCP exchange to finish"));
            }
            self.pump(PUMP_WAIT);
        };
        self.tcp_release(conns.iter().map(|c| c.handle));
        result
    }

    fn tcp_connect(&mut self, dst: SocketAddr) -> Result<SocketHandle, TestError> {
        if self.source_for(dst.ip()).is_none() {
            return Err(TestError::NoSourceAddress(dst.ip()));
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        let port = self.ephemeral_port();
        socket
            .connect(self.iface.context(), dst, port)
            .map_err(|_| TestError::BadReply("cannot start a TCP connection"))?;
        Ok(self.sockets.add(socket))
    }

    /// Close our side of each connection and give the FIN/ACK exchange a
    /// moment, so the server's sockets are free for the next connections.
    fn tcp_release(&mut self, handles: impl Iterator<Item = SocketHandle> + Clone) {
        for handle in handles.clone() {
            self.sockets.get_mut::<tcp::Socket>(handle).close();
        }
        let all = handles.clone();
        let _ = self.pump_until(Duration::from_millis(500), "the close", |c| {
            all.clone()
                .all(|h| {
                    matches!(
                        c.sockets.get::<tcp::Socket>(h).state(),
                        tcp::State::Closed | tcp::State::TimeWait
                    )
                })
                .then_some(())
        });
        for handle in handles {
            self.sockets.remove(handle);
        }
    }

    /// Move packets both ways once: run the stack, send what it emitted,
    /// wait up to `wait` for datagrams and feed them in, run the stack again.
    pub fn pump(&mut self, wait: Duration) {
        self.poll_and_flush();
        let wait = match self.iface.poll_delay(Instant::now(), &self.sockets) {
            Some(d) => wait.min(Duration::from_micros(d.total_micros())),
            None => wait,
        };
        self.receive(wait);
        self.poll_and_flush();
        if StdInstant::now() >= self.next_tick {
            self.link.tick(&self.socket);
            self.next_tick = StdInstant::now() + TIMER_TICK;
        }
    }

    /// Pump until `check` yields a value or `timeout` passes.
    fn pump_until<T>(
        &mut self,
        timeout: Duration,
        what: &'static str,
        mut check: impl FnMut(&mut TestClient) -> Option<T>,
    ) -> Result<T, TestError> {
        let deadline = StdInstant::now() + timeout;
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            if StdInstant::now() >= deadline {
                return Err(TestError::Timeout(what));
            }
            self.pump(PUMP_WAIT);
        }
    }

    fn poll_and_flush(&mut self) {
        self.iface
            .poll(Instant::now(), &mut self.device, &mut self.sockets);
        while let Some(packet) = self.device.pop_tx() {
            self.link.send(&self.socket, &packet);
        }
    }

    fn receive(&mut self, wait: Duration) {
        let TestClient {
            link,
            socket,
            receiver,
            device,
            echo_replies,
            ..
        } = self;
        receiver.receive(socket, wait, RECV_BATCH, |from, datagram| {
            link.receive(
                socket,
                from,
                datagram,
                &mut |packet| match parse_echo_reply(packet) {
                    Some(reply) => echo_replies.push_back(reply),
                    None => device.push_rx(packet),
                },
            );
        });
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if port >= 65000 { 49152 } else { port + 1 };
        port
    }

    fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    fn echo_request(&self, dst: IpAddr, seq: u16, data: &[u8]) -> Result<Vec<u8>, TestError> {
        let caps = ChecksumCapabilities::default();
        match (dst, self.source_for(dst)) {
            (IpAddr::V4(dst), Some(IpAddr::V4(src))) => {
                let icmp = Icmpv4Repr::EchoRequest {
                    ident: ICMP_IDENT,
                    seq_no: seq,
                    data,
                };
                let ip = Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Icmp,
                    payload_len: icmp.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
                ip.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), &caps);
                icmp.emit(
                    &mut Icmpv4Packet::new_unchecked(&mut packet[ip.buffer_len()..]),
                    &caps,
                );
                Ok(packet)
            }
            (IpAddr::V6(dst), Some(IpAddr::V6(src))) => {
                let icmp = Icmpv6Repr::EchoRequest {
                    ident: ICMP_IDENT,
                    seq_no: seq,
                    data,
                };
                let ip = Ipv6Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: icmp.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
                ip.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
                icmp.emit(
                    &src,
                    &dst,
                    &mut Icmpv6Packet::new_unchecked(&mut packet[ip.buffer_len()..]),
                    &caps,
                );
                Ok(packet)
            }
            _ => Err(TestError::NoSourceAddress(dst)),
        }
    }
}

/// One client TCP connection in a [`TestClient::tcp_exchanges`] run.
struct Conn {
    handle: SocketHandle,
    sent: usize,
    received: u64,
    finished: bool,
}

impl Conn {
    /// Read what arrived, send more of `request`; `finished` once the
    /// server's FIN arrived and everything before it was read.
    fn step(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        request: &[u8],
        half_close: bool,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<(), TestError> {
        while socket.can_recv() {
            match socket.recv(|buf| {
                on_data(buf);
                (buf.len(), buf.len())
            }) {
                Ok(n) if n > 0 => self.received += n as u64,
                _ => break,
            }
        }
        match socket.state() {
            // Refused (RST to our SYN) or reset mid-stream.
            tcp::State::Closed => return Err(TestError::ConnectionReset),
            tcp::State::SynSent => return Ok(()),
            _ if !socket.may_recv() => {
                self.finished = true;
                return Ok(());
            }
            _ => {}
        }
        if self.sent < request.len() && socket.can_send() {
            self.sent += socket.send_slice(&request[self.sent..]).unwrap_or(0);
        }
        if half_close && self.sent == request.len() && socket.may_send() {
            socket.close();
        }
        Ok(())
    }
}

/// Splits an HTTP response stream into head and body.
#[derive(Default)]
struct HttpReader {
    head: Vec<u8>,
    head_done: bool,
    body_len: u64,
}

impl HttpReader {
    fn feed(&mut self, chunk: &[u8], on_body: &mut dyn FnMut(&[u8])) {
        let body = if self.head_done {
            chunk
        } else {
            let old = self.head.len();
            self.head.extend_from_slice(chunk);
            // Search from a little before the new bytes: the blank line may straddle chunks.
            let from = old.saturating_sub(3);
            let Some(pos) = self.head[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let end = from + pos + 4;
            self.head.truncate(end);
            self.head_done = true;
            &chunk[end - old..]
        };
        self.body_len += body.len() as u64;
        on_body(body);
    }

    fn finish(self) -> Result<HttpResponse, TestError> {
        if !self.head_done {
            return Err(TestError::BadReply(
                "connection closed before the response head ended",
            ));
        }
        let mut response = parse_head(&self.head)?;
        response.body_len = self.body_len;
        Ok(response)
    }
}

fn get_request(dst: IpAddr, path: &str) -> Vec<u8> {
    let host = match dst {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An ICMP/ICMPv6 echo reply, with its checksum verified; `None` for anything else.
fn parse_echo_reply(packet: &[u8]) -> Option<EchoReply> {
    let caps = ChecksumCapabilities::default();
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
            if ip_repr.next_header != IpProtocol::Icmp {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &caps).ok()? {
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some(EchoReply {
                    from: IpAddr::V4(ip_repr.src_addr),
                    ident,
                    seq: seq_no,
                    data: data.to_vec(),
                }),
                _ => None,
            }
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let ip_repr = Ipv6Repr::parse(&ip).ok()?;
            if ip_repr.next_header != IpProtocol::Icmpv6 {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
            match Icmpv6Repr::parse(&ip_repr.src_addr, &ip_repr.dst_addr, &icmp, &caps).ok()? {
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some(EchoReply {
                    from: IpAddr::V6(ip_repr.src_addr),
                    ident,
                    seq: seq_no,
                    data: data.to_vec(),
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Parse a response head (status line and headers, ending in a blank line).
fn parse_head(head: &[u8]) -> Result<HttpResponse, TestError> {
    let text =
        std::str::from_utf8(head).map_err(|_| TestError::BadReply("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(TestError::BadReply("malformed status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(TestError::BadReply("not an HTTP/1.x response"));
    }
    let status = code
        .parse()
        .map_err(|_| TestError::BadReply("malformed status code"))?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: Vec::new(),
        body_len: 0,
    })
}
