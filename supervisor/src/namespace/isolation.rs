//! Mount-namespace hardening: name resolution that cannot leave through a host
//! resolver, and a supervisor no wrapped program can reach into.
//!
//! The network namespace keeps every packet a wrapped program sends away from
//! anything but the tunnel. Unix sockets are not network-namespaced, though: glibc's
//! `nss-resolve` asks systemd-resolved over `/run/systemd/resolve/io.systemd.Resolve`,
//! and glibc asks nscd over `/var/run/nscd/socket` before any NSS module; both answer
//! from the host's network. So inside the session's private mount namespace (made
//! recursively private by the launcher: nothing propagates back to the host), while
//! the supervisor still holds CAP_SYS_ADMIN of its user namespace,
//! [`protect_name_resolution`]:
//! 1. reads the host's `/etc/resolv.conf` (without `DNS=` only) and
//!    `/etc/nsswitch.conf`, following symlinks as every program does;
//! 2. decides the private `resolv.conf` ([`plan_resolv_conf`]): the profile's `DNS=`
//!    servers and search domains; without `DNS=`, the host's file if every server in
//!    it is routed through the tunnel, else a file with no server at all, so lookups
//!    fail instead of leaking (with a warning for `up`/`exec` either way);
//! 3. writes it and a private `nsswitch.conf` (the host's, with `hosts:` rewritten to
//!    `files dns`, see [`private_nsswitch`]) into the session's runtime directory,
//!    read-only, and re-opens both by path in this mount namespace, checking they are
//!    the files written (a bind mount's source must belong to the namespace; a
//!    wrapped program, being the same user and seeing that directory, could still
//!    rewrite them there, which gains it nothing: the sockets stay hidden and the
//!    loopback inside is the namespace's own);
//! 4. mounts an empty, read-only tmpfs over each resolver socket directory that
//!    exists, after symlinks (so `/var/run -> /run` gives one mount):
//!    [`RESOLVER_SOCKET_DIRS`];
//! 5. mounts the two files over `/etc/resolv.conf` and `/etc/nsswitch.conf` with
//!    `move_mount(2)` *without* following a symlink there: the mount sits on the
//!    directory entry itself, so a symlinked resolv.conf (systemd-resolved's
//!    `../run/systemd/resolve/stub-resolv.conf`) is replaced as a whole, even when
//!    its target is missing — as it is once step 4 has hidden its directory. Binding
//!    over the symlink's target instead would need that target to exist, and creating
//!    it would mean mounting over a host directory we cannot know the rest of;
//! 6. makes both mounts read-only (keeping the flags the kernel locked on the
//!    runtime directory's mount, or the remount fails) and checks that the paths now
//!    open our files.
//!
//! Nothing of the host changes. Any failure fails the session start: a partially
//! protected session is worse than none.
//!
//! The mounts belong to the supervisor's user namespace. A wrapped program joins it
//! without capabilities (its uid inside is not 0), so it can neither unmount nor
//! remount them; one that makes a user namespace of its own gets a copy of the mounts
//! in which the kernel locks them together (MNT_LOCKED). A caller that is root is root
//! inside too, but the launcher starts its commands with SECBIT_NOROOT and no
//! capabilities, so they cannot undo any of this either.
//!
//! [`forbid_ptrace`] makes the supervisor non-dumpable. Wrapped programs run as the
//! same uid in the same user namespace; ptrace or `pidfd_getfd(2)` on the supervisor
//! would hand them the host UDP socket, to send anything anywhere from the host's
//! network. The kernel already refuses them while the supervisor keeps a capability
//! they lack (commoncap: a tracer in the same user namespace needs a superset of the
//! target's permitted set), which it does today (CAP_NET_ADMIN); non-dumpable makes
//! that hold whatever it keeps, and keeps the private key out of core dumps, as
//! ssh-agent does for its keys. Processes outside the session (in the parent user
//! namespace) are out of the wrapped programs' reach for the same commoncap reason.

use crate::contract::handover::host_nameservers;
use crate::contract::state::RESOLV_FILE;
use crate::namespace::netsetup::routed_through_tunnel;
use crate::namespace::resolv_conf::render_resolv_conf;
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{
    mount, mount_remount, move_mount, open_tree, MountFlags, MoveMountFlags, OpenTreeFlags,
};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use wgconf::Config;

/// The private nsswitch.conf's name in the session's runtime directory.
pub const NSSWITCH_FILE: &str = "nsswitch.conf";
/// Directories whose unix sockets reach a host resolver: systemd-resolved's (varlink,
/// used by nss-resolve and resolvectl) and nscd's (glibc's built-in client uses the
/// compiled-in `/var/run/nscd/socket`).
pub const RESOLVER_SOCKET_DIRS: [&str; 3] = ["/run/systemd/resolve", "/run/nscd", "/var/run/nscd"];
/// The `hosts:` line of the private nsswitch.conf: `/etc/hosts`, then the servers of
/// the private resolv.conf. No mdns (Avahi's socket), resolve, myhostname, wins...
pub const HOSTS_LINE: &str = "hosts:          files dns";

const RESOLV_CONF: &str = "/etc/resolv.conf";
const NSSWITCH_CONF: &str = "/etc/nsswitch.conf";
/// Host files larger than this are not configuration files we want to copy.
const MAX_HOST_FILE: u64 = 1 << 16;

/// A hardening step that failed, with its cause.
#[derive(Debug)]
pub enum IsolationError {
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    ForbidPtrace(io::Error),
    /// A host configuration file exists but could not be read.
    ReadHost {
        path: &'static str,
        source: io::Error,
    },
    /// A private file could not be written to, or re-opened from, the runtime directory.
    Stage {
        name: &'static str,
        source: io::Error,
    },
    /// A resolver socket directory could not be hidden.
    Hide { dir: PathBuf, source: io::Error },
    /// A private file could not be mounted over its path in `/etc`.
    Place {
        target: &'static str,
        source: io::Error,
    },
    /// The profile sets `DNS=`, but there is no `/etc/resolv.conf` to mount over.
    NoResolvConf,
}

impl fmt::Display for IsolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsolationError::ForbidPtrace(e) => write!(f, "make the supervisor non-dumpable: {e}"),
            IsolationError::ReadHost { path, source } => {
                write!(f, "read the host's {path}: {source}")
            }
            IsolationError::Stage { name, source } => {
                write!(
                    f,
                    "write the private {name} into the runtime directory: {source}"
                )
            }
            IsolationError::Hide { dir, source } => write!(
                f,
                "hide the resolver sockets in {} under an empty tmpfs: {source}",
                dir.display()
            ),
            IsolationError::Place { target, source } => {
                write!(f, "mount the private copy over {target}: {source}")
            }
            IsolationError::NoResolvConf => write!(
                f,
                "{RESOLV_CONF} does not exist, so the profile's DNS servers cannot be put in place"
            ),
        }
    }
}

impl std::error::Error for IsolationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IsolationError::ForbidPtrace(source)
            | IsolationError::ReadHost { source, .. }
            | IsolationError::Stage { source, .. }
            | IsolationError::Hide { source, .. }
            | IsolationError::Place { source, .. } => Some(source),
            IsolationError::NoResolvConf => None,
        }
    }
}

/// Make the supervisor non-dumpable, so that no process without CAP_SYS_PTRACE in our
/// user namespace (every wrapped program) may ptrace it or `pidfd_getfd` its host
/// socket, and no core dump holds its key. The CLI on the host, which owns the user
/// namespace and so has that capability in it, still may: it joins through a pidfd
/// and reads `/proc/<pid>/ns/net`, both of which need ptrace-mode access.
pub fn forbid_ptrace() -> Result<(), IsolationError> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| IsolationError::ForbidPtrace(e.into()))
}

/// Steps 1-6 of the module docs. Returns the warnings to show at `up`/`exec`.
pub fn protect_name_resolution(
    dir: &OwnedFd,
    config: &Config,
) -> Result<Vec<String>, IsolationError> {
    let host_resolv = if config.interface.dns.is_empty() {
        read_host(RESOLV_CONF)?
    } else {
        None
    };
    let host_nsswitch = read_host(NSSWITCH_CONF)?;
    let plan = plan_resolv_conf(config, host_resolv.as_deref());

    let resolv = stage(dir, RESOLV_FILE, &plan.text)?;
    let nsswitch = match &host_nsswitch {
        Some(text) => Some(stage(dir, NSSWITCH_FILE, &private_nsswitch(text))?),
        // glibc's built-in default for hosts is `dns [!UNAVAIL=return] files`: no
        // socket-based module, nothing to replace.
        None => None,
    };

    for dir in existing_dirs(&RESOLVER_SOCKET_DIRS)? {
        hide(&dir)?;
    }

    match fs::statat(fs::CWD, RESOLV_CONF, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => place(&resolv, RESOLV_CONF)?,
        // Without a file glibc and musl ask 127.0.0.1, which here is the namespace's
        // own loopback: nothing leaks, but a profile's DNS= would be ignored.
        Err(Errno::NOENT) if config.interface.dns.is_empty() => {}
        Err(Errno::NOENT) => return Err(IsolationError::NoResolvConf),
        Err(e) => {
            return Err(IsolationError::Place {
                target: RESOLV_CONF,
                source: e.into(),
            })
        }
    }
    if let Some(nsswitch) = &nsswitch {
        place(nsswitch, NSSWITCH_CONF)?;
    }
    Ok(plan.warning.into_iter().collect())
}

/// What the private resolv.conf says, and what to tell the user about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvPlan {
    pub text: String,
    pub warning: Option<String>,
}

/// Decide the private resolv.conf from the profile and the host's file (`None` if
/// it has none).
///
/// With `DNS=`: exactly the profile's servers and search domains. Without: the host's
/// file as it is, if it names at least one server and every server is routed through
/// the tunnel (not loopback — `127.0.0.53` inside the namespace is the namespace's
/// own — nor link-local, nor outside AllowedIPs); otherwise a file with no server, so
/// that lookups fail at once rather than go to a resolver the user did not choose.
/// Either way without `DNS=` the user is told how to set it.
pub fn plan_resolv_conf(config: &Config, host: Option<&str>) -> ResolvPlan {
    let iface = &config.interface;
    if !iface.dns.is_empty() {
        return ResolvPlan {
            text: render_resolv_conf(&iface.dns, &iface.dns_search),
            warning: None,
        };
    }
    let servers = host.map(host_nameservers).unwrap_or_default();
    let shown = if servers.is_empty() {
        "none configured".to_owned()
    } else {
        servers
            .iter()
            .map(|s| match s {
                Ok(ip) => ip.to_string(),
                Err(raw) => raw.escape_debug().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all_routed = !servers.is_empty()
        && servers
            .iter()
            .all(|s| matches!(s, Ok(ip) if routed_through_tunnel(config, *ip)));
    match host {
        Some(text) if all_routed => ResolvPlan {
            text: format!(
                "# wg-wrap: the host's resolv.conf, kept because every nameserver in it is \
                 routed through the tunnel.\n{text}{}",
                // The last search line wins: the profile's domains, if it has some.
                if iface.dns_search.is_empty() {
                    String::new()
                } else {
                    format!("\nsearch {}\n", iface.dns_search.join(" "))
                }
            ),
            warning: Some(format!(
                "the profile sets no DNS server, so the tunnel uses the host's resolvers ({shown}), which \
                 are routed through it; add `DNS = <server>` to the profile's [Interface] \
                 section to choose them yourself"
            )),
        },
        _ => ResolvPlan {
            text: "# Generated by wg-wrap: the profile sets no DNS= and the host's resolvers are \
                   not\n# reachable through the tunnel, so there is no nameserver here: lookups \
                   fail\n# instead of leaking. Set DNS = ... in the profile's [Interface] \
                   section.\n"
                .to_owned(),
            warning: Some(format!(
                "the profile sets no DNS server and the host's resolvers ({shown}) are not reachable \
                 through the tunnel, so name resolution inside it is off (lookups fail instead \
                 of leaking); add `DNS = <server inside the tunnel>` to the profile's \
                 [Interface] section"
            )),
        },
    }
}

/// The host's nsswitch.conf with every `hosts:` line replaced by [`HOSTS_LINE`] (one
/// is added if there was none); every other database keeps the host's sources.
pub fn private_nsswitch(host: &str) -> String {
    let mut out = String::from(
        "# wg-wrap: the host's nsswitch.conf, with hosts: rewritten so lookups use only\n\
         # /etc/hosts and this tunnel's resolv.conf.\n",
    );
    let mut seen = false;
    for line in host.lines() {
        if is_hosts_line(line) {
            seen = true;
            out.push_str(HOSTS_LINE);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !seen {
        out.push_str(HOSTS_LINE);
        out.push('\n');
    }
    out
}

/// glibc's parser: leading blanks, the database name, optional blanks, a colon.
fn is_hosts_line(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("hosts")
        .is_some_and(|rest| rest.trim_start().starts_with(':'))
}

/// A host file's text, or `None` if it (or its symlink's target) does not exist.
fn read_host(path: &'static str) -> Result<Option<String>, IsolationError> {
    let err = |source| IsolationError::ReadHost { path, source };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_HOST_FILE)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
}

/// Write `text` as `name` in the runtime directory `dir` (opened in the host's mount
/// namespace) and return an `O_PATH` descriptor for the same file opened by path in
/// ours: a bind mount's source must belong to the namespace it is mounted in.
fn stage(dir: &OwnedFd, name: &'static str, text: &str) -> Result<OwnedFd, IsolationError> {
    let err = |source: io::Error| IsolationError::Stage { name, source };
    // Read-only for everyone: a previous session's copy cannot be opened for writing,
    // so replace it rather than truncate it.
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(err(e.into())),
    }
    let written = fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::RGRP | Mode::ROTH,
    )
    .map_err(|e| err(e.into()))?;
    let written = std::fs::File::from(written);
    (&written).write_all(text.as_bytes()).map_err(err)?;

    let dir_path = fs::readlinkat(
        fs::CWD,
        format!("/proc/self/fd/{}", dir.as_raw_fd()),
        Vec::new(),
    )
    .map_err(|e| err(e.into()))?;
    let mut path = dir_path.into_bytes();
    path.push(b'/');
    path.extend_from_slice(name.as_bytes());
    let here = fs::openat(
        fs::CWD,
        path.as_slice(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let a = fs::fstat(&here).map_err(|e| err(e.into()))?;
    let b = fs::fstat(&written).map_err(|e| err(e.into()))?;
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(err(io::Error::other(
            "the runtime directory changed under us",
        )));
    }
    Ok(here)
}

/// The distinct directories among `paths`, after symlinks, that exist.
fn existing_dirs(paths: &[&str]) -> Result<Vec<PathBuf>, IsolationError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in paths {
        let err = |source| IsolationError::Hide {
            dir: PathBuf::from(path),
            source,
        };
        let real = match std::fs::canonicalize(path) {
            Ok(real) => real,
            // What we cannot walk to, wrapped programs (the same user) cannot either.
            Err(e) if is_missing(&e) || e.kind() == io::ErrorKind::PermissionDenied => continue,
            Err(e) => return Err(err(e)),
        };
        if real.is_dir() && !out.contains(&real) {
            out.push(real);
        }
    }
    Ok(out)
}

/// Mount an empty, read-only tmpfs over `dir`, then check it is empty.
fn hide(dir: &Path) -> Result<(), IsolationError> {
    let err = |source| IsolationError::Hide {
        dir: dir.to_owned(),
        source,
    };
    mount(
        "wg-wrap-hidden",
        dir,
        "tmpfs",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=0755,size=4k",
    )
    .map_err(|e| err(e.into()))?;
    let mut entries = std::fs::read_dir(dir).map_err(err)?;
    if entries.next().is_some() {
        return Err(err(io::Error::other("still not empty after the mount")));
    }
    Ok(())
}

/// Mount the file `source` (an `O_PATH` descriptor) over the directory entry
/// `target` — not over a symlink's target — read-only, and check that opening
/// `target` now gives that file.
fn place(source: &OwnedFd, target: &'static str) -> Result<(), IsolationError> {
    let err = |e: io::Error| IsolationError::Place { target, source: e };
    let st = fs::statat(fs::CWD, target, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| err(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return Err(err(Errno::ISDIR.into()));
    }
    let tree = open_tree(
        source,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| err(e.into()))?;
    // No MOVE_MOUNT_T_SYMLINKS: the mount goes on `target` itself.
    move_mount(
        &tree,
        "",
        fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err(e.into()))?;

    // A bind remount in a user namespace must repeat the flags the kernel locked when
    // it copied the host's mounts (nosuid, nodev, noexec of e.g. /run/user/<uid>),
    // or it fails with EPERM; the atime flags are kept when none is given.
    let have = fs::fstatvfs(&tree).map_err(|e| err(e.into()))?.f_flag;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (st, ms) in [
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    // The descriptor names the mount we just attached, wherever `target` led.
    mount_remount(
        format!("/proc/self/fd/{}", tree.as_raw_fd()).as_str(),
        flags,
        "",
    )
    .map_err(|e| err(e.into()))?;

    let now = fs::stat(target).map_err(|e| err(e.into()))?;
    let want = fs::fstat(source).map_err(|e| err(e.into()))?;
    if (now.st_dev, now.st_ino) != (want.st_dev, want.st_ino) {
        return Err(err(io::Error::other(
            "the path does not show the private copy",
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n";
    const PEER: &str = "[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n";

    fn config(interface: &str, allowed: &str) -> Config {
        let text = format!("[Interface]\n{KEYS}{interface}\n{PEER}AllowedIPs = {allowed}\n");
        wgconf::parse(&text).unwrap().config
    }

    const STUB: &str = "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";

    #[test]
    fn dns_from_the_profile_wins_and_needs_no_warning() {
        let c = config(
            "Address = 10.0.0.2/24\nDNS = 10.0.0.1, corp.example",
            "0.0.0.0/0",
        );
        let plan = plan_resolv_conf(&c, Some(STUB));
        assert_eq!(plan.warning, None);
        assert!(plan.text.contains("nameserver 10.0.0.1\n"), "{}", plan.text);
        assert!(plan.text.contains("search corp.example\n"), "{}", plan.text);
        assert!(!plan.text.contains("127.0.0.53"));
    }

    #[test]
    fn loopback_stub_is_never_kept() {
        // 0.0.0.0/0 covers 127.0.0.53, but the kernel keeps it local: inside the
        // namespace it would be the namespace's own loopback.
        let c = config("Address = 10.0.0.2/24", "0.0.0.0/0");
        let plan = plan_resolv_conf(&c, Some(STUB));
        assert!(host_nameservers(&plan.text).is_empty(), "{}", plan.text);
        let warning = plan.warning.unwrap();
        assert!(
            warning.contains("127.0.0.53") && warning.contains("DNS ="),
            "{warning}"
        );
    }

    #[test]
    fn host_servers_routed_through_the_tunnel_are_kept() {
        let c = config("Address = 10.0.0.2/24", "10.0.0.0/24");
        let host = "nameserver 10.0.0.53\nnameserver 10.0.0.54\nsearch corp.example\n";
        let plan = plan_resolv_conf(&c, Some(host));
        assert!(plan.text.ends_with(host), "{}", plan.text);
        assert!(plan.warning.unwrap().contains("10.0.0.53, 10.0.0.54"));
    }

    #[test]
    fn profile_search_domains_apply_to_kept_host_servers() {
        let c = config("Address = 10.0.0.2/24\nDNS = corp.example", "10.0.0.0/24");
        let plan = plan_resolv_conf(&c, Some("nameserver 10.0.0.53\nsearch lan\n"));
        let lines: Vec<&str> = plan.text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.last(), Some(&"search corp.example"), "{}", plan.text);
    }

    #[test]
    fn one_server_outside_the_tunnel_drops_them_all() {
        let c = config("Address = 10.0.0.2/24", "10.0.0.0/24");
        for host in [
            "nameserver 10.0.0.53\nnameserver 192.168.1.1\n",
            "nameserver 10.0.0.53\nnameserver fe80::1%eth0\n",
            "nameserver 10.0.0.53\nnameserver not-an-address\n",
            "nameserver 10.0.0.53\nnameserver\n",
            "# no servers at all\nsearch lan\n",
            "",
        ] {
            let plan = plan_resolv_conf(&c, Some(host));
            assert!(
                host_nameservers(&plan.text).is_empty(),
                "{host:?}: {}",
                plan.text
            );
            assert!(plan.warning.is_some());
        }
        let plan = plan_resolv_conf(&c, None);
        assert!(plan.warning.unwrap().contains("none configured"));
    }

    #[test]
    fn ipv6_server_needs_an_ipv6_tunnel() {
        let host = "nameserver fd00::53\n";
        let v4_only = config("Address = 10.0.0.2/24", "10.0.0.0/24, ::/0");
        assert!(host_nameservers(&plan_resolv_conf(&v4_only, Some(host)).text).is_empty());
        let dual = config("Address = 10.0.0.2/24, fd00::2/64", "10.0.0.0/24, ::/0");
        assert!(plan_resolv_conf(&dual, Some(host)).text.ends_with(host));
    }

    #[test]
    fn nsswitch_rewrites_hosts_only() {
        let host = "# /etc/nsswitch.conf\npasswd:         files systemd\ngroup:          files systemd\n\
                    hosts:          files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns myhostname\n\
                    networks:       files\n  hosts : files resolve\nhostsx: resolve\n";
        let out = private_nsswitch(host);
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "passwd:         files systemd",
                "group:          files systemd",
                HOSTS_LINE,
                "networks:       files",
                HOSTS_LINE,
                "hostsx: resolve",
            ]
        );
        assert!(!out.contains("resolve ") && !out.contains("mdns"));
    }

    #[test]
    fn nsswitch_without_hosts_gets_one() {
        let out = private_nsswitch("passwd: files\n");
        assert!(
            out.ends_with("passwd: files\nhosts:          files dns\n"),
            "{out}"
        );
    }

    #[test]
    fn errors_name_the_step() {
        let e = IsolationError::Hide {
            dir: "/run/nscd".into(),
            source: Errno::PERM.into(),
        };
        assert!(
            e.to_string()
                .starts_with("hide the resolver sockets in /run/nscd"),
            "{e}"
        );
        let e = IsolationError::Place {
            target: RESOLV_CONF,
            source: Errno::NOTDIR.into(),
        };
        assert!(e.to_string().contains("over /etc/resolv.conf"), "{e}");
    }
}
