//! wg-wrap-launcher: the only part of wg-wrap that creates or enters
//! namespaces. A static, libc-free binary (origin supplies `_start`, rustix
//! the syscalls) so it can run from a sealed memfd, is small enough to audit
//! in one sitting, and has no loader, allocator or threads.
//!
//! # Theory of operation
//!
//! `wg-wrap-launcher create [--detach] <exe-fd> -- <argv0> [args...]`
//! starts the supervisor in fresh namespaces:
//! 1. read the caller's uid and gid (after `unshare` they read as overflow ids);
//! 2. `unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)`;
//! 3. write `/proc/self/uid_map` = `U U 1`, then `/proc/self/setgroups` =
//!    `deny`, then `/proc/self/gid_map` = `G G 1`: an identity map, so the
//!    supervisor is the caller's uid inside, never root (the kernel refuses
//!    an unprivileged gid_map until setgroups is denied);
//! 4. make `/` recursively private, so mounts made inside never propagate out;
//! 5. put CAP_NET_ADMIN and CAP_SYS_ADMIN into the inheritable and then the
//!    ambient set: a non-zero uid keeps only ambient capabilities over exec;
//! 6. with `--detach`, fork: the parent exits 0 at once (the caller reaps it),
//!    the child goes on and is reparented away from the caller;
//! 7. `execveat(exe-fd, "", argv, envp, AT_EMPTY_PATH)`: the supervisor
//!    comes from an inherited fd, never a name looked up here.
//!
//! `wg-wrap-launcher join <pidfd> <netns-dev> <netns-ino> <cwd> -- <argv0> [args...]`
//! runs a command in the namespaces of a running supervisor:
//! 1. `setns(pidfd, CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)` in one call;
//!    EINVAL means we already are in that user namespace (nested use), so
//!    retry with the network and mount namespaces only;
//! 2. close the pidfd, so it does not leak into the command;
//! 3. check that `/proc/self/ns/net` is the namespace the caller named by
//!    device and inode: a recycled PID must never put a command on the host
//!    network;
//! 4. `chdir(cwd)`: entering a mount namespace resets the working directory;
//!    a root caller (root inside, too) then locks SECBIT_NOROOT and empties
//!    its inheritable and ambient sets, so it also runs without capabilities;
//! 5. if this process runs under an unconfined-mode AppArmor profile (the
//!    packages' `wg-wrap` profile; checked before step 1, in the caller's
//!    /proc), re-execute itself as `exec -- <argv0> [args...]` with plain
//!    `unconfined` requested for that exec, so the command gets the
//!    confinement it would get outside wg-wrap (see `apparmor`);
//! 6. exec the command like `execvp`, with argv and environment untouched.
//!    No capability is raised: a non-zero uid loses them all at exec.
//!
//! `wg-wrap-launcher exec -- <argv0> [args...]` is step 6 alone.
//!
//! Failures print `wg-wrap: <step>: <ERRNO>` and exit 125; exec failures
//! follow the shell: 127 for a command not found, 126 otherwise.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

// Linked for its `_start` and mem* functions; nothing here names it.
extern crate origin;

mod apparmor;
mod args;
mod create;
mod exec;
mod join;
// `has_profile` is for `wg-wrap check`, which includes this file too.
#[allow(dead_code)]
mod label;
mod report;
mod sys;

use args::Args;

/// Called by origin's `_start` with the vectors the kernel put on the stack.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
unsafe fn origin_main(argc: usize, argv: *mut *mut u8, envp: *mut *mut u8) -> i32 {
    // SAFETY: origin hands over argc/argv/envp exactly as the kernel laid
    // them out on the initial stack, which is what `Args::from_raw` requires.
    let mut args = unsafe { Args::from_raw(argc, argv.cast(), envp.cast_const().cast()) };
    match args.get(1).map(|mode| mode.to_bytes()) {
        Some(b"create") => create::run(&args),
        Some(b"join") => join::run(&mut args),
        Some(b"exec") => join::run_exec(&args),
        _ => report::usage(),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    report::failed(b"panic")
}
