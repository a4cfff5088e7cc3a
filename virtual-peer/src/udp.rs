//! Receiving datagrams in batches from a blocking `std::net::UdpSocket`.
//!
//! The first read blocks up to a deadline (a read timeout, so the caller's
//! loop always comes back to check its stop flag and timers); whatever else
//! is already queued is then drained without blocking, so one turn of an
//! event loop empties the socket instead of taking one datagram per turn.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_535;

pub struct BatchReceiver {
    buf: Box<[u8]>,
    /// The read timeout currently set on the socket, to skip redundant setsockopt calls.
    read_timeout: Option<Duration>,
}

impl BatchReceiver {
    pub fn new() -> BatchReceiver {
        BatchReceiver {
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            read_timeout: None,
        }
    }

    /// Wait up to `wait` (zero: do not wait) for a datagram, then take up to
    /// `max` datagrams in all, handing each to `handle`. Returns how many.
    pub fn receive(
        &mut self,
        socket: &UdpSocket,
        wait: Duration,
        max: usize,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> usize {
        let mut received = 0;
        if !wait.is_zero() {
            // A zero read timeout would mean "block forever" to the kernel,
            // which std refuses; zero waits take the non-blocking path only.
            if self.read_timeout != Some(wait) && socket.set_read_timeout(Some(wait)).is_ok() {
                self.read_timeout = Some(wait);
            }
            match socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    handle(from, &self.buf[..len]);
                    received += 1;
                }
                Err(e) if is_timeout(&e) => return 0,
                Err(_) => {
                    // An error reported for an earlier send (ECONNREFUSED from
                    // an ICMP error, say): nothing to do but carry on. Pause so
                    // a persistent error cannot spin the caller's loop.
                    std::thread::sleep(Duration::from_millis(1));
                    return 0;
                }
            }
        }
        // std has no MSG_DONTWAIT; toggling O_NONBLOCK costs two syscalls per batch.
        if socket.set_nonblocking(true).is_err() {
            return received;
        }
        while received < max {
            match socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    handle(from, &self.buf[..len]);
                    received += 1;
                }
                Err(_) => break,
            }
        }
        // If this failed, the next blocking read returns at once instead of
        // waiting: still correct, only busier.
        let _ = socket.set_nonblocking(false);
        received
    }
}

/// The `io::ErrorKind`s of a read that timed out or found nothing.
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn drains_queued_datagrams_and_times_out() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..10u8 {
            tx.send_to(&[i], rx.local_addr().unwrap()).unwrap();
        }
        let mut receiver = BatchReceiver::new();
        let mut got = Vec::new();
        let n = receiver.receive(&rx, Duration::from_millis(500), 4, |from, d| {
            assert_eq!(from, tx.local_addr().unwrap());
            got.push(d[0]);
        });
        assert_eq!((n, got.clone()), (4, vec![0, 1, 2, 3]));
        assert_eq!(
            receiver.receive(&rx, Duration::ZERO, 100, |_, d| got.push(d[0])),
            6
        );
        assert_eq!(got, (0..10).collect::<Vec<u8>>());

        let start = Instant::now();
        assert_eq!(
            receiver.receive(&rx, Duration::from_millis(30), 100, |_, _| panic!()),
            0
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(25) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
    }
}
