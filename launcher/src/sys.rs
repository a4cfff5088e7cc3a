//! The few operations whose rustix wrappers are `unsafe`, each behind a safe
//! function that says why its use here is sound. (execveat, which rustix does
//! not offer publicly, is in `exec`.)
//!
//! Two facts carry most of the arguments: the launcher is single-threaded
//! (origin is built without its `thread` feature and nothing here spawns
//! threads), and it never closes a file descriptor it did not open.
#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::io::{self, Errno};
use rustix::runtime::Fork;
use rustix::thread::UnshareFlags;

/// Standard error, for `report`.
pub fn stderr() -> BorrowedFd<'static> {
    // SAFETY: the launcher never closes or replaces fd 2. If the caller
    // started us with it closed, `write` just fails with EBADF, which the
    // only user (`report`) ignores.
    unsafe { BorrowedFd::borrow_raw(2) }
}

/// A file descriptor the caller passed down by number, checked to be open.
pub fn inherited_fd(raw: u64) -> io::Result<BorrowedFd<'static>> {
    let raw = i32::try_from(raw).map_err(|_| Errno::BADF)?;
    // SAFETY: the launcher opens nothing before it reads its arguments and
    // never closes descriptors it did not open, so if `raw` is open it stays
    // open (it is the caller's). F_GETFD right here turns a closed number
    // into EBADF before anything else uses it.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    io::fcntl_getfd(fd)?;
    Ok(fd)
}

/// Like [`inherited_fd`], but takes ownership so that dropping it closes it.
pub fn take_inherited_fd(raw: u64) -> io::Result<OwnedFd> {
    let fd = inherited_fd(raw)?.as_raw_fd();
    // SAFETY: `fd` is open (checked above) and, being passed to us for this
    // purpose, ours to close; the caller of this function does not keep the
    // number anywhere else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)`.
pub fn unshare_user_mount_net() -> io::Result<()> {
    // SAFETY: `unshare_unsafe`'s contract concerns CLONE_FILES (threads that
    // could still see descriptors from the old table); it is not among these
    // flags, and there are no other threads.
    unsafe {
        rustix::thread::unshare_unsafe(
            UnshareFlags::NEWUSER | UnshareFlags::NEWNS | UnshareFlags::NEWNET,
        )
    }
}

/// `fork()`: `true` in the child, `false` in the parent.
pub fn fork() -> io::Result<bool> {
    // SAFETY: `kernel_fork` is unsafe because the child of a multi-threaded
    // process may find locks held by threads that no longer exist. The
    // launcher is single-threaded, holds no locks and has no allocator.
    match unsafe { rustix::runtime::kernel_fork() }? {
        Fork::Child(_) => Ok(true),
        Fork::ParentOf(_) => Ok(false),
    }
}
