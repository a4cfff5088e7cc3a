//! `create [--detach] <exe-fd> -- <argv0> [args...]`: new user, mount and
//! network namespaces, then exec the supervisor from `exe-fd` with
//! CAP_NET_ADMIN and CAP_SYS_ADMIN in its ambient set.

use core::ffi::CStr;

use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno, FdFlags};
use rustix::mount::{self, MountPropagationFlags};
use rustix::thread::{self, CapabilitySet};

use crate::args::{self, Args};
use crate::{exec, report, sys};

pub fn run(args: &Args) -> ! {
    let mut i = 2;
    let detach = args.get(i) == Some(c"--detach");
    if detach {
        i += 1;
    }
    let Some(exe) = args.get(i).and_then(args::decimal) else {
        report::usage()
    };
    if args.get(i + 1) != Some(c"--") {
        report::usage()
    }
    let Some(command) = args.command(i + 2) else {
        report::usage()
    };
    let exe = sys::inherited_fd(exe).unwrap_or_else(|e| report::fail(b"exe-fd", e));

    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();

    sys::unshare_user_mount_net().unwrap_or_else(|e| report::fail(b"unshare", e));
    write_map(c"/proc/self/uid_map", b"write /proc/self/uid_map", uid);
    write_file(c"/proc/self/setgroups", b"deny")
        .unwrap_or_else(|e| report::fail(b"write /proc/self/setgroups", e));
    write_map(c"/proc/self/gid_map", b"write /proc/self/gid_map", gid);

    mount::mount_change(
        c"/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .unwrap_or_else(|e| report::fail(b"make / private", e));

    raise_ambient();

    // The supervisor must not inherit its own executable's descriptor. ELF
    // files are mapped before close-on-exec descriptors are closed, so
    // execveat still works (it would not for a script).
    io::fcntl_setfd(exe, FdFlags::CLOEXEC).unwrap_or_else(|e| report::fail(b"exe-fd", e));

    if detach && !sys::fork().unwrap_or_else(|e| report::fail(b"fork", e)) {
        report::exit(0)
    }

    let errno = exec::exec_fd(exe, &command);
    report::exec_failed(command.name().to_bytes(), false, errno)
}

/// Writes `<id> <id> 1` (an identity map of one id) to `path`.
fn write_map(path: &CStr, step: &[u8], id: u32) {
    let mut digits = [0u8; 20];
    let id = report::decimal(&mut digits, id.into());
    let mut line = [0u8; 64];
    let mut len = 0;
    for part in [id, b" ", id, b" 1"] {
        line[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    write_file(path, &line[..len]).unwrap_or_else(|e| report::fail(step, e));
}

/// Writes all of `contents` to `path` with a single `write(2)`: the
/// /proc/self/*_map files accept exactly one write.
fn write_file(path: &CStr, contents: &[u8]) -> io::Result<()> {
    let fd = fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    match io::write(&fd, contents)? {
        n if n == contents.len() => Ok(()),
        _ => Err(Errno::IO),
    }
}

/// Gives the supervisor exactly CAP_NET_ADMIN and CAP_SYS_ADMIN across
/// exec. After `unshare(CLONE_NEWUSER)` we hold every capability in the new
/// namespace, but a non-zero uid keeps only its ambient set over exec, and a
/// capability can be made ambient only once it is permitted and inheritable.
fn raise_ambient() {
    let mut caps = thread::capabilities(None).unwrap_or_else(|e| report::fail(b"capget", e));
    caps.inheritable = CapabilitySet::NET_ADMIN | CapabilitySet::SYS_ADMIN;
    thread::set_capabilities(None, caps).unwrap_or_else(|e| report::fail(b"capset", e));
    for (cap, step) in [
        (CapabilitySet::NET_ADMIN, b"ambient CAP_NET_ADMIN"),
        (CapabilitySet::SYS_ADMIN, b"ambient CAP_SYS_ADMIN"),
    ] {
        thread::configure_capability_in_ambient_set(cap, true)
            .unwrap_or_else(|e| report::fail(step, e));
    }
}
