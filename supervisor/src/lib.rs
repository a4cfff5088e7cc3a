//! The tunnel side of wg-wrap: everything that runs inside a session's private user,
//! mount and network namespace.
//!
//! # Theory of operation
//! The CLI opens the host UDP socket, the runtime `profiles/` directory, a readiness
//! pipe, a memfd holding the profile, and for re-resolution of hostname endpoints a
//! memfd with the names and a second host UDP socket (all listed in
//! [`contract::handover`]), then starts the launcher, which creates the namespaces and
//! executes `wg-wrap __supervise` with CAP_NET_ADMIN and CAP_SYS_ADMIN (of the new user
//! namespace only) in its ambient set. That calls [`supervise`], and the supervisor
//! (`session/run.rs` holds the sequence) then:
//! 0. makes itself non-dumpable, so wrapped programs (same uid, same user namespace)
//!    cannot take the host socket out of it (`namespace/isolation.rs`);
//! 1. reads and parses the profile handed over (never the user's file: editing it does
//!    not disturb a running session);
//! 2. creates the TUN device `wg0` with the profile's MTU, 1420 by default
//!    (`namespace/tun_device.rs`);
//! 3. over rtnetlink: brings `lo` up, turns IPv6 off on `wg0` if the profile has no
//!    IPv6 address, adds the addresses, brings `wg0` up, routes every AllowedIPs
//!    prefix to `wg0` — and nothing else, so there is no way out but the tunnel — and
//!    allows unprivileged ping for the user's group (`namespace/netsetup.rs`,
//!    `namespace/netlink.rs`);
//! 4. in the private mount namespace, replaces `/etc/resolv.conf` and the `hosts:`
//!    line of `/etc/nsswitch.conf`, and hides the host resolvers' unix sockets
//!    (`namespace/isolation.rs`, `namespace/resolv_conf.rs`); any failure there fails
//!    the start;
//! 5. drops every capability but CAP_NET_ADMIN, which `reload` needs for routes
//!    (`sys/confine.rs`);
//! 6. starts the data plane threads (`dataplane/`: the loop, timers, peers and handshakes,
//!    AllowedIPs, ICMP errors, TUN offloads, checksums, batched UDP) and hostname
//!    re-resolution over the second host socket (`reresolve/`: the policy thread and
//!    its DNS client);
//! 7. starts the control server (`session/control.rs`; the protocol is
//!    [`contract::control`]) and watching registrations; sets `no_new_privs` and
//!    installs, on every thread, a seccomp allow-list of the steady state's system
//!    calls, anything else killing the process (`sys/confine.rs`); writes `state`
//!    ([`contract::state`]) and reports "ready", followed by one "warning: …" line per
//!    thing the user should know (no `DNS=`, root caller), and under systemd
//!    (`up --foreground`) `READY=1` (`session/notify.rs`);
//! 8. relays published ports (`publish/`) once the CLI hands listeners over the
//!    control socket (`up -p`, `exec -p`; SCM_RIGHTS, [`contract::publish`]): the host
//!    listeners stay in the host's network namespace where the CLI opened them, and a
//!    thread (idle in `epoll_wait` until then) accepts there, connects to `127.0.0.1:NS_PORT`
//!    (or `[::1]`) in ours and splices both ways (UDP: a flow per client); an `exec`'s
//!    ports end with its process (a pidfd), an `up`'s with the session. Connections
//!    and flows together hold at most three quarters of the descriptor limit: beyond
//!    that clients wait in the backlog, so whoever reaches a port cannot starve the
//!    session's other threads;
//! 9. waits until neither an `up` hold nor a registered process remains
//!    (`session/lifecycle.rs`), removes the session's files under the profile lock and
//!    exits. The namespace, TUN included, disappears with its last process.
//!
//! If the supervisor dies, the TUN device dies with its only descriptor and takes its
//! routes along: wrapped programs keep a namespace with nothing but `lo`, and no
//! capability to change that. The session fails closed.
//!
//! # Layout
//! One folder per stage; the modules depend on each other in one direction only
//! (`.ci/check-module-cycles` keeps it so):
//!
//! | module | what | uses |
//! |---|---|---|
//! | [`contract`] | what the CLI and a supervisor agree on; the only public module | `sys` |
//! | `sys/` | raw descriptors, libc socket calls, capabilities and seccomp: the only `unsafe` code | — |
//! | `namespace/` | the namespace's network, files and TUN device | `contract` |
//! | `dataplane/` | packets between the TUN device and the host socket | `namespace` (the TUN device), `sys` |
//! | `reresolve/` | hostname endpoints looked up again on the host network | `contract`, `dataplane`, `namespace` |
//! | `publish/` | published ports: host listeners relayed into the namespace | `contract`, `sys` |
//! | `session/` | the start-up sequence, the control server, reference counting | all of the above |

#![deny(unsafe_code)]

pub mod contract;
#[cfg(target_os = "linux")]
pub(crate) mod dataplane;
/// Thin entry points and invariant checks for the fuzz targets (supervisor/FUZZING.md).
#[cfg(all(target_os = "linux", any(test, feature = "fuzzing")))]
pub mod fuzz_api;
pub(crate) mod namespace;
#[cfg(target_os = "linux")]
pub(crate) mod publish;
#[cfg(target_os = "linux")]
pub(crate) mod reresolve;
#[cfg(target_os = "linux")]
pub(crate) mod session;
#[cfg(target_os = "linux")]
// The one module whose job is unsafe code (see its docs).
#[allow(unsafe_code)]
pub(crate) mod sys;

/// `wg-wrap __supervise`: run a session from the descriptors the CLI handed over;
/// `reresolve`: the re-resolution handover memfd and the host socket for DNS queries.
/// Returns the exit status, or the error reading the handover.
#[cfg(target_os = "linux")]
pub fn supervise(
    args: contract::handover::Args,
    reresolve: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
) -> std::io::Result<i32> {
    let reresolve = reresolve
        .map(|(names, socket)| reresolve::Reresolve::from_fds(names, socket))
        .transpose()?;
    Ok(session::run::run_with(args, reresolve))
}

// `wg-wrap check` previews a session before there is one: the namespace probe it runs
// in a child the launcher created (its step report on stdout is the contract with the
// CLI's src/check/probe.rs), and the resolv.conf decision a session would make.
#[cfg(target_os = "linux")]
pub use namespace::isolation::{plan_resolv_conf, ResolvPlan};
#[cfg(target_os = "linux")]
pub use namespace::probe::run as probe;
