//! The tunnel side of wg-wrap: everything that runs inside a session's private user,
//! mount and network namespace.
//!
//! # Theory of operation
//! The CLI opens the host UDP socket, the runtime `profiles/` directory, a readiness
//! pipe, a memfd holding the profile, and for re-resolution of hostname endpoints a
//! memfd with the names and a second host UDP socket, then starts the launcher, which creates the
//! namespaces and executes `wg-wrap __supervise` with CAP_NET_ADMIN and CAP_SYS_ADMIN
//! (of the new user namespace only) in its ambient set.  The supervisor then:
//! 0. makes itself non-dumpable, so wrapped programs (same uid, same user namespace)
//!    cannot take the host socket out of it (see [`isolation`]);
//! 1. reads and parses the profile handed over (never the user's file: editing it does
//!    not disturb a running session);
//! 2. creates the TUN device `wg0` with the profile's MTU (1420 by default);
//! 3. over rtnetlink: brings `lo` up, turns IPv6 off on `wg0` if the profile has no
//!    IPv6 address, adds the addresses, brings `wg0` up, routes every AllowedIPs
//!    prefix to `wg0` — and nothing else, so there is no way out but the tunnel — and
//!    allows unprivileged ping for the user's group (see [`netsetup`]);
//! 4. in the private mount namespace, replaces `/etc/resolv.conf` and the `hosts:`
//!    line of `/etc/nsswitch.conf`, and hides the host resolvers' unix sockets (see
//!    [`isolation`]); any failure there fails the start;
//! 5. drops CAP_SYS_ADMIN;
//! 6. starts the data plane threads (see [`dataplane`]) and hostname re-resolution
//!    over a second host socket (see [`resolve`]);
//! 7. starts watching registrations, writes `state` and reports "ready", followed by
//!    one "warning: …" line per thing the user should know (no `DNS=`, root caller),
//!    and under systemd (`up --foreground`) `READY=1` (see [`notify`]);
//! 8. waits until neither an `up` hold nor a registered process remains (see
//!    [`lifecycle`]), removes the session's files under the profile lock and exits.
//!    The namespace, TUN included, disappears with its last process.
//!
//! If the supervisor dies, the TUN device dies with its only descriptor and takes its
//! routes along: wrapped processes keep a namespace with nothing but `lo`, and no
//! capability to change that. The session fails closed.

#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod control;
pub mod dns;
#[cfg(target_os = "linux")]
pub mod isolation;
pub mod netsetup;
pub mod routing;
pub mod session;

#[cfg(target_os = "linux")]
pub mod dataplane;
#[cfg(target_os = "linux")]
pub mod lifecycle;
#[cfg(target_os = "linux")]
mod netlink;
#[cfg(target_os = "linux")]
pub mod notify;
#[cfg(target_os = "linux")]
pub mod profile_dir;
#[cfg(target_os = "linux")]
pub mod run;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod sys;

// The data plane's parts (see [`dataplane`]).
#[cfg(target_os = "linux")]
pub mod icmp;
#[cfg(target_os = "linux")]
pub mod resolve;
#[cfg(target_os = "linux")]
pub mod tun;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod udp;
