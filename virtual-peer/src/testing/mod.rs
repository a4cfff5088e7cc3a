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
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

mod http;
mod icmp;
mod tcp;

pub use http::HttpResponse;

use crate::config::ClientSide;
pub use crate::dns::{
    build_query as dns_query, parse_reply as parse_dns_reply, Answer as DnsAnswer, RCODE_NOERROR,
    RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA,
};
use crate::phy::{stack_now, QueueDevice};
use crate::udp::BatchReceiver;
use crate::wg::{Link, LinkCounters};

pub use tcp::ECHO_BUFFER;

const TIMER_TICK: Duration = Duration::from_millis(250);
/// How long a pump waits for a datagram while a caller polls for a condition.
const PUMP_WAIT: Duration = Duration::from_millis(5);
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

pub struct TestClient {
    socket: UdpSocket,
    link: Link,
    device: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    echo_replies: VecDeque<icmp::EchoReply>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    next_port: u16,
    receiver: BatchReceiver,
    loss: Loss,
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
        let mut iface = Interface::new(config, &mut device, stack_now());
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
            loss: Loss {
                one_in: 0,
                state: 0x2545_f491_4f6c_dd1d,
            },
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

    /// Drop about one in `one_in` tunnelled packets, in both directions
    /// (0: none), to exercise loss recovery. Handshakes are not affected:
    /// the loss applies to the IP packets inside the tunnel.
    pub fn set_loss(&mut self, one_in: u32) {
        self.loss.one_in = one_in;
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

    /// Move packets both ways once: run the stack, send what it emitted,
    /// wait up to `wait` for datagrams and feed them in, run the stack again.
    pub fn pump(&mut self, wait: Duration) {
        self.poll_and_flush();
        let wait = match self.iface.poll_delay(stack_now(), &self.sockets) {
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
            .poll(stack_now(), &mut self.device, &mut self.sockets);
        while let Some(packet) = self.device.pop_tx() {
            if !self.loss.drop_next() {
                self.link.send(&self.socket, &packet);
            }
        }
    }

    fn receive(&mut self, wait: Duration) {
        let TestClient {
            link,
            socket,
            receiver,
            device,
            echo_replies,
            loss,
            ..
        } = self;
        receiver.receive(socket, wait, RECV_BATCH, |from, datagram| {
            link.receive(socket, from, datagram, &mut |packet| {
                if loss.drop_next() {
                    return;
                }
                match icmp::parse_echo_reply(packet) {
                    Some(reply) => echo_replies.push_back(reply),
                    None => device.push_rx(packet),
                }
            });
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
}

/// Deterministic packet loss (xorshift64), so a failing run can be repeated.
struct Loss {
    one_in: u32,
    state: u64,
}

impl Loss {
    fn drop_next(&mut self) -> bool {
        if self.one_in == 0 {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state.is_multiple_of(u64::from(self.one_in))
    }
}
