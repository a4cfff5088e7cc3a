//! `join <pidfd> <netns-dev> <netns-ino> <cwd> -- <argv0> [args...]`: enter
//! a running supervisor's user, network and mount namespaces, check that the
//! network namespace is the expected one, and exec the command unprivileged.

use rustix::fd::AsFd;
use rustix::io::Errno;
use rustix::thread::{self, ThreadNameSpaceType};

use crate::args::{self, Args, Command};
use crate::{apparmor, exec, report, sys};

pub fn run(args: &mut Args) -> ! {
    let number = |i| args.get(i).and_then(args::decimal);
    let (Some(pidfd), Some(dev), Some(ino), Some(cwd)) =
        (number(2), number(3), number(4), args.get(5))
    else {
        report::usage()
    };
    if args.get(6) != Some(c"--") {
        report::usage()
    }
    let Some(command) = args.command(7) else {
        report::usage()
    };

    // Before setns: the label and the exec request are this process's own, but the
    // /proc to read them from is the caller's.
    let trampoline =
        apparmor::leave_profile_on_exec().unwrap_or_else(|(step, errno)| report::fail(step, errno));

    let pidfd = sys::take_inherited_fd(pidfd).unwrap_or_else(|e| report::fail(b"pidfd", e));
    let all = ThreadNameSpaceType::USER | ThreadNameSpaceType::NETWORK | ThreadNameSpaceType::MOUNT;
    let net_mnt = ThreadNameSpaceType::NETWORK | ThreadNameSpaceType::MOUNT;
    // One call enters all three in the right order, user namespace first
    // (setns(2), Linux >= 5.8). Asking for our own user namespace is EINVAL:
    // then we run nested inside wg-wrap and only need the other two. A
    // command already inside the session has no capabilities left, so even
    // re-entering the namespaces it is in is EPERM: fine if the network
    // namespace already is the one asked for.
    match thread::move_into_thread_name_spaces(pidfd.as_fd(), all) {
        Err(Errno::INVAL) => match thread::move_into_thread_name_spaces(pidfd.as_fd(), net_mnt) {
            Err(Errno::PERM) if in_net_ns(dev, ino) => Ok(()),
            other => other,
        },
        other => other,
    }
    .unwrap_or_else(|e| report::fail(b"setns", e));
    drop(pidfd);

    // The caller named the namespace by the device and inode of
    // /proc/PID/ns/net; the pidfd pins the process, but not which process
    // the caller meant.
    if !in_net_ns(dev, ino) {
        report::failed(b"join: network namespace mismatch")
    }

    rustix::process::chdir(cwd).unwrap_or_else(|e| report::fail(b"chdir", e));
    if rustix::process::getuid().is_root() || rustix::process::geteuid().is_root() {
        drop_root_privileges();
    }

    if !trampoline {
        exec_command(args, &command)
    }
    // Arguments 7.. are the command, after the "--" at 6.
    let Some(again) = args.reexec_command(7, c"wg-wrap-launcher", c"exec") else {
        report::usage()
    };
    report::fail(b"exec the launcher again", exec::exec_self(&again))
}

/// `exec -- <argv0> [args...]`: run the command, nothing else (the second half of
/// leaving an AppArmor profile, see `apparmor`).
pub fn run_exec(args: &Args) -> ! {
    if args.get(2) != Some(c"--") {
        report::usage()
    }
    let Some(command) = args.command(3) else {
        report::usage()
    };
    exec_command(args, &command)
}

/// Exec `command` like `execvp`, or report why not in the shell's way.
fn exec_command(args: &Args, command: &Command) -> ! {
    let errno = exec::exec_search(command, args.env(b"PATH"));
    let name = command.name().to_bytes();
    report::exec_failed(name, !name.contains(&b'/'), errno)
}

/// Whether this process's network namespace is the one with this device and
/// inode number (as `stat` shows /proc/PID/ns/net).
fn in_net_ns(dev: u64, ino: u64) -> bool {
    let net = rustix::fs::stat(c"/proc/self/ns/net")
        .unwrap_or_else(|e| report::fail(b"stat /proc/self/ns/net", e));
    net.st_dev == dev && net.st_ino == ino
}

/// A root caller is root inside too (the map is the identity), and uid 0 keeps every
/// capability of the session's user namespace across exec: it could change routes or
/// reach into the supervisor. Lock root's special case off (SECBIT_NOROOT) and empty
/// the sets that survive exec, so the command starts without capabilities, as a
/// non-root caller's does. File capabilities set by the administrator still apply.
fn drop_root_privileges() {
    use rustix::thread::{CapabilitiesSecureBits, CapabilitySet};
    thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT | CapabilitiesSecureBits::NO_ROOT_LOCKED,
    )
    .unwrap_or_else(|e| report::fail(b"securebits", e));
    thread::clear_ambient_capability_set().unwrap_or_else(|e| report::fail(b"ambient", e));
    let mut caps = thread::capabilities(None).unwrap_or_else(|e| report::fail(b"capget", e));
    caps.inheritable = CapabilitySet::empty();
    thread::set_capabilities(None, caps).unwrap_or_else(|e| report::fail(b"capset", e));
}
