//! `execveat(2)` as inline assembly (rustix has no public exec), and the
//! `execvp`-style PATH search built on it.
#![allow(unsafe_code)]

use core::ffi::CStr;

use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::Errno;

use crate::args::Command;

/// `AT_FDCWD` from <linux/fcntl.h>: resolve a relative path from the cwd.
const AT_FDCWD: i32 = -100;
/// `AT_EMPTY_PATH` from <linux/fcntl.h>: with path "", exec `dirfd` itself.
const AT_EMPTY_PATH: u32 = 0x1000;
/// Used when the environment has no PATH (what glibc's `execvp` uses, plus
/// /usr/local/bin).
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// `execveat(dirfd, path, argv, envp, flags)`; returns only on failure.
///
/// # Safety
///
/// `argv` and `envp` must be NULL-terminated arrays of pointers to
/// NUL-terminated strings.
unsafe fn execveat(
    dirfd: i32,
    path: &CStr,
    argv: *const *const u8,
    envp: *const *const u8,
    flags: u32,
) -> Errno {
    let ret: isize;
    // SAFETY: the syscall reads only the strings and arrays described in
    // this function's contract; it writes no user memory. On success it
    // does not return; on failure it returns -errno in the return register
    // and leaves everything but the registers named here untouched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        // The `syscall` instruction clobbers rcx and r11 (see syscall(2)).
        core::arch::asm!(
            "syscall",
            inlateout("rax") 322isize => ret, // __NR_execveat
            in("rdi") dirfd as isize,
            in("rsi") path.as_ptr(),
            in("rdx") argv,
            in("r10") envp,
            in("r8") flags as usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") 281usize, // __NR_execveat
            inlateout("x0") dirfd as isize => ret,
            in("x1") path.as_ptr(),
            in("x2") argv,
            in("x3") envp,
            in("x4") flags as usize,
            options(nostack, preserves_flags),
        );
    }
    // The kernel returns -4095..=-1 for errors; anything else is impossible
    // here because a successful exec does not return.
    Errno::from_raw_os_error(ret.unsigned_abs() as i32)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("wg-wrap-launcher: execveat is only written for x86_64 and aarch64");

/// Executes the file open at `fd` (AT_EMPTY_PATH); returns only on failure.
pub fn exec_fd(fd: BorrowedFd<'_>, command: &Command) -> Errno {
    // SAFETY: a `Command`'s argv and envp are NULL-terminated arrays of
    // NUL-terminated strings (see `args`).
    unsafe {
        execveat(
            fd.as_raw_fd(),
            c"",
            command.argv(),
            command.envp(),
            AT_EMPTY_PATH,
        )
    }
}

/// Executes this very program again (`/proc/self/exe`, which also works for a
/// memfd); returns only on failure.
pub fn exec_self(command: &Command) -> Errno {
    exec_path(c"/proc/self/exe", command)
}

/// Executes the file at `path`, like `execve`; returns only on failure.
fn exec_path(path: &CStr, command: &Command) -> Errno {
    // SAFETY: as in `exec_fd`.
    unsafe { execveat(AT_FDCWD, path, command.argv(), command.envp(), 0) }
}

/// Runs `command` the way `execvp` does: a name containing '/' is executed
/// as is; otherwise each directory of `path` (or [`DEFAULT_PATH`]) is tried
/// in order, an empty entry meaning the current directory. ENOENT, ENOTDIR
/// and the other "not here" errors move on to the next directory; EACCES is
/// remembered and reported if nothing else is found, like glibc. Unlike
/// glibc, a file the kernel refuses with ENOEXEC is not retried with
/// /bin/sh. Returns only on failure: ENOENT means not found.
pub fn exec_search(command: &Command, path: Option<&[u8]>) -> Errno {
    let name = command.name().to_bytes();
    if name.contains(&b'/') {
        return exec_path(command.name(), command);
    }
    if name.is_empty() {
        return Errno::NOENT;
    }
    let mut denied = false;
    for dir in path.unwrap_or(DEFAULT_PATH).split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut buf = [0u8; 4096];
        let len = dir.len() + 1 + name.len();
        if len >= buf.len() {
            // Longer than PATH_MAX: cannot exist.
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..len].copy_from_slice(name);
        // Neither part can contain a NUL: both come from C strings.
        let Ok(candidate) = CStr::from_bytes_with_nul(&buf[..=len]) else {
            continue;
        };
        match exec_path(candidate, command) {
            Errno::ACCESS => denied = true,
            // The ones glibc's execvpe also steps over.
            Errno::NOENT | Errno::NOTDIR | Errno::STALE | Errno::NODEV | Errno::TIMEDOUT => {}
            other => return other,
        }
    }
    if denied {
        Errno::ACCESS
    } else {
        Errno::NOENT
    }
}
