//! Giving the wrapped command the AppArmor confinement it would have outside
//! wg-wrap.
//!
//! Where the packages' profile applies, wg-wrap and this launcher run as
//! `wg-wrap (unconfined)`: a profile with `flags=(unconfined)` whose only job is the
//! `userns` rule that Ubuntu's restriction asks for. Such a profile keeps its label
//! across exec unless some other profile attaches to the new program's path
//! (security/apparmor/domain.c, `profile_transition`: an unconfined-mode profile
//! only tries `find_attach`), so every wrapped program would inherit wg-wrap's
//! exemption: the restriction would no longer apply to anything run under wg-wrap.
//!
//! Asking for `unconfined` on exec (`change_onexec`) straight for the command would
//! fix that but break path attachment: an onexec label overrides every other exec
//! transition (`apparmor_bprm_creds_for_exec`: "onexec override other x
//! transitions"), so a browser would run unconfined instead of under its own
//! profile (Ubuntu's `chrome`, `firefox`), and its sandbox's namespaces would lose
//! the `userns` rule that profile grants. So the launcher takes two steps:
//! 1. write `exec unconfined` to `/proc/self/attr/apparmor/exec` (an unconfined-mode
//!    profile may change to anything: `change_profile_perms` grants it without a
//!    rule) and re-execute itself as `wg-wrap-launcher exec -- <command>`, which
//!    then runs as plain `unconfined`;
//! 2. that trampoline executes the command like any unconfined program does: a
//!    profile attaching to its path applies, otherwise it stays `unconfined`, and a
//!    user namespace it makes gets the host's policy, as outside wg-wrap.
//!
//! Without AppArmor (or with a label that is not an unconfined-mode profile) this is
//! one failed or short read of a /proc file and nothing else.

use core::ffi::CStr;

use rustix::fd::OwnedFd;
use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno};

use crate::label;

/// The files of the AppArmor-specific directory (Linux >= 5.8), then the shared
/// ones, which belong to whichever LSM is the major one.
const SPECIFIC: (&CStr, &CStr) = (
    c"/proc/self/attr/apparmor/current",
    c"/proc/self/attr/apparmor/exec",
);
const SHARED: (&CStr, &CStr) = (c"/proc/self/attr/current", c"/proc/self/attr/exec");

/// If this process runs under an unconfined-mode profile, arranges for the next
/// exec to land in plain `unconfined` and returns `true`; the caller must then
/// exec the trampoline. `false`: exec the command directly.
pub fn leave_profile_on_exec() -> Result<bool, (&'static [u8], Errno)> {
    let (current, exec) = match open(SPECIFIC.0, OFlags::RDONLY) {
        Ok(fd) => (fd, SPECIFIC.1),
        Err(Errno::NOENT) => match open(SHARED.0, OFlags::RDONLY) {
            Ok(fd) => (fd, SHARED.1),
            Err(_) => return Ok(false),
        },
        // Not readable: nothing we could leave.
        Err(_) => return Ok(false),
    };
    let mut buf = [0u8; 512];
    let Ok(n) = read_into(&current, &mut buf) else {
        // No AppArmor here (the kernel answers EINVAL): nothing to leave.
        return Ok(false);
    };
    if n == buf.len() || !label::leave_before_exec(&buf[..n]) {
        return Ok(false);
    }
    let step: &'static [u8] = if exec == SPECIFIC.1 {
        b"write /proc/self/attr/apparmor/exec"
    } else {
        b"write /proc/self/attr/exec"
    };
    write_all(exec, b"exec unconfined").map_err(|e| (step, e))?;
    Ok(true)
}

fn open(path: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
}

fn read_into(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// One `write(2)`: the kernel takes the whole command or none of it.
fn write_all(path: &CStr, contents: &[u8]) -> io::Result<()> {
    let fd = open(path, OFlags::WRONLY)?;
    match io::write(&fd, contents)? {
        n if n == contents.len() => Ok(()),
        _ => Err(Errno::IO),
    }
}
