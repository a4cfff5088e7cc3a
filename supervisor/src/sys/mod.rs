//! The few raw operations the supervisor needs beyond rustix's safe API, and the only
//! code that may use `unsafe`: taking ownership of inherited file descriptors (here),
//! batched UDP socket calls with GSO/GRO control messages ([`mmsg`]), single datagrams
//! with their local address for published UDP ports ([`pktinfo`]), and giving up
//! privileges once set-up is done ([`confine`]: capabilities, no_new_privs, seccomp).

use rustix::io::{fcntl_getfd, fcntl_setfd, Errno, FdFlags};
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[cfg(target_os = "linux")]
pub(crate) mod confine;
#[cfg(target_os = "linux")]
pub(crate) mod mmsg;
#[cfg(target_os = "linux")]
pub(crate) mod pktinfo;

/// Take ownership of a descriptor the CLI passed to us by number.
///
/// The number comes from our own command line, written by the CLI that opened the
/// descriptor for exactly this purpose, and each number is taken once at start-up.
pub fn take_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {raw} is not a descriptor handed to the supervisor"),
        ));
    }
    // SAFETY: `raw` is only borrowed to check that it is open; the borrow ends here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl_getfd(borrowed)?;
    // Don't pass it on to anything we might start.
    fcntl_setfd(borrowed, FdFlags::CLOEXEC)?;
    // SAFETY: the descriptor is open (checked above), was created by the CLI for the
    // supervisor alone, and no other owner exists in this process: the caller takes
    // each number once, before anything else could have wrapped it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Out of descriptors or memory: a condition to wait out (something else holds them
/// for now), not a failure of the operation that ran into it.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::NOBUFS)
    )
}
