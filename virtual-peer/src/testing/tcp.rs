//! TCP through the test client: request/response exchanges over one or
//! several concurrent connections, and a bounded-buffer echo.

use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use super::{TestClient, TestError, PUMP_WAIT};

/// The client's TCP buffers: as large as the peer's, so the client's window
/// is not what limits a throughput measurement.
const TCP_BUFFER: usize = 1 << 20;
/// The client's TCP buffers in [`TestClient::tcp_echo`]: small enough that
/// the data in flight each way fits the default UDP receive buffers.
pub const ECHO_BUFFER: usize = 64 * 1024;

impl TestClient {
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
            match self.tcp_connect(dst, TCP_BUFFER) {
                Ok(handle) => conns.push(Conn::new(handle)),
                Err(e) => {
                    self.tcp_release(conns.iter().map(|c| c.handle));
                    return Err(e);
                }
            }
        }
        self.run_conns(conns, exchanges, half_close, timeout, on_data)
    }

    /// Drive connected sockets until every server has closed, then release them.
    fn run_conns(
        &mut self,
        mut conns: Vec<Conn>,
        exchanges: &[(SocketAddr, &[u8])],
        half_close: bool,
        timeout: Duration,
        on_data: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<Vec<u64>, TestError> {
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
                break Err(TestError::Timeout("the TCP exchange to finish"));
            }
            self.pump(PUMP_WAIT);
        };
        self.tcp_release(conns.iter().map(|c| c.handle));
        result
    }

    /// Send `data` through a TCP echo service at `dst` and return what came
    /// back. Full duplex, with the client's buffers (so the data in flight
    /// each way) capped at [`ECHO_BUFFER`] bytes, below what the default UDP
    /// receive buffers hold: the loopback path then drops nothing.
    ///
    /// Why it matters: when both ends are smoltcp 0.14 and both time out and
    /// retransmit at once, each rewinds its send sequence, stamps the rewound
    /// number on its ACKs, and rejects the other's ACKs as out of window; the
    /// connection stalls for good. A kernel stack never rewinds SND.NXT, so a
    /// smoltcp peer talking to Linux recovers; two smoltcp stacks pushing bulk
    /// data both ways over a lossy path may not (see `survives_packet_loss`).
    pub fn tcp_echo(
        &mut self,
        dst: SocketAddr,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TestError> {
        let handle = self.tcp_connect(dst, ECHO_BUFFER)?;
        let mut echoed = Vec::with_capacity(data.len());
        let result = self.run_conns(
            vec![Conn::new(handle)],
            &[(dst, data)],
            true,
            timeout,
            &mut |_, chunk| echoed.extend_from_slice(chunk),
        );
        result.map(|_| echoed)
    }

    fn tcp_connect(&mut self, dst: SocketAddr, buffer: usize) -> Result<SocketHandle, TestError> {
        if self.source_for(dst.ip()).is_none() {
            return Err(TestError::NoSourceAddress(dst.ip()));
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; buffer]),
            tcp::SocketBuffer::new(vec![0u8; buffer]),
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
}

/// One client TCP connection in a [`TestClient::tcp_exchanges`] run.
struct Conn {
    handle: SocketHandle,
    sent: usize,
    received: u64,
    finished: bool,
}

impl Conn {
    fn new(handle: SocketHandle) -> Conn {
        Conn {
            handle,
            sent: 0,
            received: 0,
            finished: false,
        }
    }

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
        // FIN only once everything sent is acknowledged, so it travels alone
        // (see `close_when_acked` in services.rs for the smoltcp behaviour).
        if half_close && self.sent == request.len() && socket.may_send() && socket.send_queue() == 0
        {
            socket.close();
        }
        Ok(())
    }
}
