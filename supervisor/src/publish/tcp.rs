//! One relayed TCP connection: the client's socket (accepted on the host listener)
//! and ours to `NS_PORT` inside the namespace, spliced both ways.
//!
//! Each direction has a pipe: `splice` moves bytes socket -> pipe -> socket in the
//! kernel, and the pipe's fixed capacity is the only buffer. When the receiver is slow
//! the pipe fills, we stop reading, the sender's socket buffer fills and TCP flow
//! control pushes back on the client: memory stays bounded whatever the load.
//!
//! The kernel's edge-triggered readiness drives it: every event on either socket
//! [`pump`](Conn::pump)s both directions until nothing moves, so no edge is lost.
//! - end of stream in one direction (a FIN) becomes `shutdown(SHUT_WR)` on the other
//!   socket once the pipe is empty, so half-closed connections work both ways;
//! - an error on either socket (a reset, a peer gone mid-stream, a refused connect)
//!   resets both: SO_LINGER 0 and close send an RST, so each peer sees what the other
//!   did rather than a clean end;
//! - when both directions have ended, the connection is closed;
//! - TCP keepalive on both sockets ([`KEEPALIVE_IDLE`]): a client that vanished
//!   without a reset (a laptop gone from the network, on a port published on every
//!   interface) would otherwise hold its six descriptors for as long as the service
//!   waits.

use super::PortInfo;
use rustix::io::Errno;
use rustix::net::{self, sockopt, AddressFamily, Shutdown, SocketFlags, SocketType};
use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes asked of one splice; the pipe (64 KiB by default) takes what fits.
const CHUNK: usize = 1 << 20;
/// Idle time before TCP keepalive probes start (the kernel's default is two hours);
/// with the default 9 probes 75 s apart, a vanished peer is noticed after ~16 min.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(300);

/// One direction: bytes read from `from` wait in the pipe for `to`.
struct Half {
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    /// Bytes in the pipe.
    queued: usize,
    /// `from` reached end of stream.
    eof: bool,
    /// `to` has been shut down for writing (after `eof` and an empty pipe).
    shut: bool,
}

impl Half {
    fn new() -> std::io::Result<Half> {
        let (pipe_r, pipe_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Half {
            pipe_r,
            pipe_w,
            queued: 0,
            eof: false,
            shut: false,
        })
    }
}

/// Which socket of a connection an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Inner,
}

/// Whether a connection lives on after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// Done (both directions ended) or failed (reset); drop it.
    Closed,
}

pub struct Conn {
    /// The published port's index in the event loop's table.
    pub port: usize,
    pub client: OwnedFd,
    pub inner: OwnedFd,
    connected: bool,
    /// Client -> inner, inner -> client.
    halves: [Half; 2],
    info: Arc<PortInfo>,
}

impl Conn {
    /// Start connecting to `to` for a freshly accepted `client` (non-blocking). A
    /// connect refused at once resets the client and returns the error.
    pub fn open(
        port: usize,
        client: OwnedFd,
        to: SocketAddr,
        info: Arc<PortInfo>,
    ) -> std::io::Result<Conn> {
        let family = match to {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let inner = net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        match net::connect(&inner, &to) {
            Ok(()) | Err(Errno::INPROGRESS) => {}
            Err(e) => {
                reset(&client);
                return Err(e.into());
            }
        }
        let halves = [Half::new()?, Half::new()?];
        for fd in [&client, &inner] {
            // Best effort: a connection without keepalive still works.
            let _ = sockopt::set_socket_keepalive(fd, true);
            let _ = sockopt::set_tcp_keepidle(fd, KEEPALIVE_IDLE);
        }
        info.opened();
        Ok(Conn {
            port,
            client,
            inner,
            connected: false,
            halves,
            info,
        })
    }

    /// Handle readiness on `side` (`error`: the kernel flagged EPOLLERR).
    pub fn on_event(&mut self, side: Side, error: bool) -> State {
        if error {
            let fd = match side {
                Side::Client => &self.client,
                Side::Inner => &self.inner,
            };
            if let Ok(Err(_)) | Err(_) = sockopt::socket_error(fd) {
                return self.fail();
            }
        }
        if !self.connected {
            if side != Side::Inner {
                // Keep the client's bytes in its socket until the inner side is up.
                return State::Open;
            }
            match sockopt::socket_error(&self.inner) {
                Ok(Ok(())) => {}
                _ => return self.fail(),
            }
            // Still in progress: getpeername fails until the handshake is done.
            if net::getpeername(&self.inner).is_err() {
                return State::Open;
            }
            self.connected = true;
        }
        self.pump()
    }

    /// Move bytes both ways until nothing moves; propagate ends and errors.
    fn pump(&mut self) -> State {
        for dir in 0..2 {
            let (from, to) = if dir == 0 {
                (&self.client, &self.inner)
            } else {
                (&self.inner, &self.client)
            };
            let half = &mut self.halves[dir];
            if move_bytes(from, to, half).is_err() {
                return self.fail();
            }
            if half.eof && half.queued == 0 && !half.shut {
                half.shut = true;
                match net::shutdown(to, Shutdown::Write) {
                    Ok(()) | Err(Errno::NOTCONN) => {}
                    Err(_) => return self.fail(),
                }
            }
        }
        if self.halves.iter().all(|h| h.shut) {
            State::Closed
        } else {
            State::Open
        }
    }

    /// Reset both sides; the caller drops the connection.
    fn fail(&mut self) -> State {
        reset(&self.client);
        reset(&self.inner);
        State::Closed
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.info.closed();
    }
}

/// Splice `from` -> pipe -> `to` until both would block (or `from` ends).
fn move_bytes(from: &OwnedFd, to: &OwnedFd, half: &mut Half) -> Result<(), Errno> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        let mut moved = false;
        if !half.eof {
            match splice(from, None, &half.pipe_w, None, CHUNK, flags) {
                Ok(0) => half.eof = true,
                Ok(n) => {
                    half.queued += n;
                    moved = true;
                }
                // Nothing to read, or the pipe is full: `to` must drain it first.
                Err(Errno::AGAIN) | Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        if half.queued > 0 {
            match splice(&half.pipe_r, None, to, None, half.queued, flags) {
                Ok(n) => {
                    half.queued -= n;
                    moved |= n > 0;
                }
                Err(Errno::AGAIN) | Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        if !moved {
            return Ok(());
        }
    }
}

/// Make the next close send an RST instead of a FIN.
fn reset(fd: &OwnedFd) {
    let _ = sockopt::set_socket_linger(fd, Some(Duration::ZERO));
}
