//! The peer's services as smoltcp sockets: HTTP on TCP 80, echo on TCP and
//! UDP 7, DNS on UDP 53. (ICMP echo needs no socket: smoltcp's
//! `auto-icmp-echo-reply` answers it for IPv4 and IPv6.)
//!
//! One smoltcp TCP socket carries one connection, so each TCP service keeps
//! a pool of sockets listening on its port; a socket whose connection ended
//! (CLOSED, or TIME-WAIT, which smoltcp lets `listen` reuse at once) listens
//! again on the next `run`.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Duration;

use crate::dns::{self, NameTable};
use crate::http::HttpConn;

pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;
pub const DNS_PORT: u16 = 53;

/// Concurrent connections per TCP service; one more gets a RST.
const HTTP_SOCKETS: usize = 8;
const ECHO_SOCKETS: usize = 4;
/// Send buffers are large so a 1 MiB window keeps a fast client busy between
/// polls; smoltcp derives its window-scale option from the receive buffer size.
const TCP_TX_BUFFER: usize = 1 << 20;
const ECHO_RX_BUFFER: usize = 1 << 20;
/// An HTTP request is a line and a few headers; a large window would be wasted.
const HTTP_RX_BUFFER: usize = 16 * 1024;
const UDP_PACKETS: usize = 64;
const UDP_BUFFER: usize = 128 * 1024;
/// Largest UDP payload the stack can carry without fragmentation support.
const UDP_SCRATCH: usize = 64 * 1024;
/// Probe idle connections, and give up on peers that stop answering, so a
/// crashed client cannot hold a pool slot forever.
const TCP_KEEPALIVE: Duration = Duration::from_secs(10);
const TCP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Services {
    http: Vec<(SocketHandle, HttpConn)>,
    echo: Vec<SocketHandle>,
    udp_echo: SocketHandle,
    dns: SocketHandle,
    names: NameTable,
    scratch: Vec<u8>,
}

impl Services {
    /// Create every socket in `sockets`, listening already: the first poll
    /// may carry a SYN (it can arrive in the same batch as the handshake).
    pub fn new(sockets: &mut SocketSet<'static>, names: NameTable) -> Services {
        let http = (0..HTTP_SOCKETS)
            .map(|_| {
                (
                    sockets.add(tcp_socket(HTTP_RX_BUFFER, true, HTTP_PORT)),
                    HttpConn::new(),
                )
            })
            .collect();
        // Echo answers each write as it comes, so Nagle would only add delay.
        let echo = (0..ECHO_SOCKETS)
            .map(|_| sockets.add(tcp_socket(ECHO_RX_BUFFER, false, ECHO_PORT)))
            .collect();
        let udp_echo = sockets.add(udp_socket(ECHO_PORT));
        let dns = sockets.add(udp_socket(DNS_PORT));
        Services {
            http,
            echo,
            udp_echo,
            dns,
            names,
            scratch: vec![0u8; UDP_SCRATCH],
        }
    }

    /// Move data between the sockets and the services. Call between two
    /// `Interface::poll`s: the first delivers input, the second sends what
    /// was written here.
    pub fn run(&mut self, sockets: &mut SocketSet<'_>) {
        for (handle, conn) in &mut self.http {
            serve_http(sockets.get_mut::<tcp::Socket>(*handle), conn);
        }
        for handle in &self.echo {
            serve_tcp_echo(sockets.get_mut::<tcp::Socket>(*handle), &mut self.scratch);
        }
        serve_datagrams(
            sockets.get_mut::<udp::Socket>(self.udp_echo),
            &mut self.scratch,
            |query| Some(query.to_vec()),
        );
        let names = &self.names;
        serve_datagrams(
            sockets.get_mut::<udp::Socket>(self.dns),
            &mut self.scratch,
            |query| dns::respond(names, query),
        );
    }
}

fn tcp_socket(rx_len: usize, nagle: bool, port: u16) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; rx_len]),
        tcp::SocketBuffer::new(vec![0u8; TCP_TX_BUFFER]),
    );
    socket.set_nagle_enabled(nagle);
    socket.set_keep_alive(Some(TCP_KEEPALIVE));
    socket.set_timeout(Some(TCP_TIMEOUT));
    relisten(&mut socket, port);
    socket
}

fn udp_socket(port: u16) -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        )
    };
    let mut socket = udp::Socket::new(buffer(), buffer());
    // Binding a fresh socket to a non-zero port cannot fail.
    let _ = socket.bind(port);
    socket
}

// close_when_acked: why the services call `close()` only when the send
// queue is empty. smoltcp 0.14 puts the FIN on the last data segment, and two
// of its behaviours then lose it for good: a receiver drops a retransmitted
// segment whose data it already has *together with its FIN* (the window test
// ignores the FIN's sequence number), and a sender whose data is all
// acknowledged turns its retransmission timer off on the third duplicate
// ACK, so the FIN is never sent again. Seen as a client holding a complete
// response that never ends (tcp.rs: `segment_in_window`, and the
// FastRetransmit arm of `dispatch`). A FIN sent on its own after the last
// ACK costs one round trip and is retransmitted like any segment.

/// Re-arm a socket whose connection is over. Returns true if it did (the
/// socket has no connection to serve this round).
fn relisten(socket: &mut tcp::Socket<'_>, port: u16) -> bool {
    if socket.is_open() {
        return false;
    }
    // Cannot fail: the port is non-zero and the socket is not open.
    let _ = socket.listen(port);
    true
}

fn serve_http(socket: &mut tcp::Socket<'_>, conn: &mut HttpConn) {
    if relisten(socket, HTTP_PORT) {
        *conn = HttpConn::new();
        return;
    }
    // Read everything available (at most two contiguous pieces of the ring);
    // bytes after the request head are read and ignored.
    while socket.can_recv() {
        let read = socket.recv(|buf| {
            conn.receive(buf);
            (buf.len(), buf.len())
        });
        if !matches!(read, Ok(n) if n > 0) {
            break;
        }
    }
    if conn.responding() {
        while socket.can_send() && !conn.done() {
            let sent = socket.send(|buf| {
                let n = conn.fill(buf);
                (n, n)
            });
            if !matches!(sent, Ok(n) if n > 0) {
                break;
            }
        }
        if conn.done() && socket.send_queue() == 0 {
            // Close only once the whole response is acknowledged, so the FIN
            // travels alone: see `close_when_acked`.
            socket.close();
        }
    } else if socket.state() == tcp::State::CloseWait {
        // The client finished sending without completing a request.
        socket.close();
    }
}

fn serve_tcp_echo(socket: &mut tcp::Socket<'_>, scratch: &mut [u8]) {
    if relisten(socket, ECHO_PORT) {
        return;
    }
    // Never take more than the send buffer can hold, so nothing read is lost
    // and a slow reader throttles the writer through the TCP window.
    while socket.can_recv() && socket.can_send() {
        let room = socket.send_capacity() - socket.send_queue();
        let want = room.min(scratch.len());
        let got = match socket.recv_slice(&mut scratch[..want]) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        // `room` bytes are free, so all of them fit.
        let _ = socket.send_slice(&scratch[..got]);
    }
    if socket.state() == tcp::State::CloseWait && !socket.can_recv() && socket.send_queue() == 0 {
        // The client is done and everything it sent has been echoed and
        // acknowledged: the FIN travels alone (see `close_when_acked`).
        socket.close();
    }
}

/// Answer each datagram with `reply(payload)` (None: no answer), from the
/// address it was sent to. A full send buffer drops the answer, as a
/// congested network would.
fn serve_datagrams(
    socket: &mut udp::Socket<'_>,
    scratch: &mut [u8],
    mut reply: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) {
    while socket.can_send() {
        let (len, meta) = match socket.recv() {
            Ok((payload, meta)) if payload.len() <= scratch.len() => {
                scratch[..payload.len()].copy_from_slice(payload);
                (payload.len(), meta)
            }
            // Oversized (cannot happen with a 64 KiB scratch): skip it.
            Ok(_) => continue,
            Err(_) => break,
        };
        if let Some(answer) = reply(&scratch[..len]) {
            // The received metadata names the client as endpoint and our
            // address as local_address: exactly the reply's addressing.
            let _ = socket.send_slice(&answer, meta);
        }
    }
}
