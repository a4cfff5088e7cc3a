//! A userspace WireGuard peer, in process: the far end of wg-wrap's tunnel
//! for its end-to-end tests and its built-in demo.
//!
//! # Theory of operation
//!
//! [`VirtualPeer::start`] takes a bound UDP socket and a [`PeerConfig`] and
//! runs one thread with one event loop (`peer.rs`):
//!
//!  1. **UDP** — wait for datagrams with a read timeout (so the stop flag is
//!     seen within 50 ms), then drain everything already queued.
//!  2. **WireGuard** (`wg.rs`) — boringtun's `Tunn` answers the client's
//!     handshake and decrypts. The peer has no endpoint of its own for the
//!     client: it learns it from the first authenticated datagram and follows
//!     the source of each later one (roaming).
//!  3. **Filter** — decrypted packets not addressed to one of our tunnel
//!     addresses are dropped; the rest enter a queue device (`phy.rs`).
//!  4. **IP stack** — smoltcp (`Medium::Ip`) processes them: it answers ICMP
//!     and ICMPv6 echo itself and feeds TCP/UDP sockets.
//!  5. **Services** (`services.rs`) — HTTP/1.1 on TCP 80 (`http.rs`: `GET /`
//!     greets, `GET /bytes/N` streams N pattern bytes), echo on TCP and UDP 7,
//!     DNS on UDP 53 (`dns.rs`: A/AAAA from a fixed table, NXDOMAIN otherwise).
//!  6. **Back out** — smoltcp is polled again after the services wrote, and
//!     everything it emitted is encrypted and sent to the client's endpoint.
//!  7. **Timers** — every 250 ms boringtun's timers run (keepalives, rekeys).
//!
//! The [`testing`] module (feature `testing`, always on in this crate's own
//! tests) holds an in-memory WireGuard client with its own smoltcp stack,
//! to talk to a peer over loopback UDP without privileges or namespaces.

#![deny(unsafe_code)]

mod config;
mod dns;
mod http;
mod keys;
mod peer;
mod phy;
mod services;
mod udp;
mod wg;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod loopback_tests;

pub use config::{network_of, ClientSide, ConfigError, PeerConfig, DEMO_DNS_NAME};
pub use http::{pattern_byte, VIRTUAL_PEER_GREETING};
pub use keys::{generate_keypair, public_key, to_base64 as key_to_base64};
pub use peer::{Stats, VirtualPeer};
pub use phy::TUNNEL_MTU;
pub use services::{DNS_PORT, ECHO_PORT, HTTP_PORT};
