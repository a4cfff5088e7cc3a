//! Least privilege once the namespace is set up: capabilities down to CAP_NET_ADMIN,
//! `no_new_privs`, and a seccomp allow-list of the system calls the supervisor's steady
//! state makes, applied to every thread (TSYNC). A call outside the list kills the
//! whole supervisor (SECCOMP_RET_KILL_PROCESS): the TUN device dies with it and the
//! session fails closed, exactly like any other supervisor death.
//!
//! The filters are built with `seccompiler` (rust-vmm), not hand-assembled BPF.
//!
//! Why CAP_NET_ADMIN stays: `reload` adds and removes the routes of changed
//! AllowedIPs over rtnetlink (`session/control.rs`), which the kernel only allows with
//! CAP_NET_ADMIN over the namespace. Everything else (CAP_SYS_ADMIN, the ambient and
//! inheritable sets) is gone. The bounding set cannot be shrunk (that needs
//! CAP_SETPCAP, which the launcher does not hand us), but with `no_new_privs` nothing
//! can gain a capability from it: execve is not on the list anyway.
//!
//! Threads: the supervisor's own threads are all started before [`confine`]. Later
//! thread creation (other stages may want it) stays possible: `clone` is allowed with
//! CLONE_THREAD only, and `clone3` — whose flags a seccomp filter cannot read — fails
//! with ENOSYS, on which glibc falls back to `clone`. A new process can therefore never
//! be created.

use rustix::thread::{CapabilitySet, CapabilitySets};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;

/// Drop every capability but CAP_NET_ADMIN from this thread (and so from every thread
/// started afterwards): clears the ambient and inheritable sets, and CAP_SYS_ADMIN.
pub fn keep_only_net_admin() -> io::Result<()> {
    rustix::thread::clear_ambient_capability_set()?;
    let keep = CapabilitySet::NET_ADMIN;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}

/// Set `no_new_privs` and install the steady-state filters on every thread of the
/// process. Call once set-up is complete and every long-lived thread runs.
pub fn confine() -> io::Result<()> {
    // The most restrictive verdict of all installed filters wins, so the order does
    // not matter; install the allow-list last so that `Seccomp_filters` reads 2 only
    // when both are in.
    for program in steady_state_filters()? {
        // Sets PR_SET_NO_NEW_PRIVS first (the kernel propagates it to every thread
        // with TSYNC).
        seccompiler::apply_filter_all_threads(&program).map_err(io::Error::other)?;
    }
    Ok(())
}

/// The two programs [`confine`] installs: `clone3` → ENOSYS, then the allow-list
/// whose mismatch action is SECCOMP_RET_KILL_PROCESS.
pub fn steady_state_filters() -> io::Result<Vec<BpfProgram>> {
    let arch = target_arch()?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(io::Error::other)?;
    let allow = SeccompFilter::new(
        allow_list()?,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(io::Error::other)?;
    let mut programs = Vec::new();
    for filter in [no_clone3, allow] {
        programs.push(BpfProgram::try_from(filter).map_err(io::Error::other)?);
    }
    Ok(programs)
}

fn target_arch() -> io::Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)
}

/// `arg` (of `len`) compared with `value` by `op`.
fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> io::Result<SeccompCondition> {
    SeccompCondition::new(arg, len, op, value).map_err(io::Error::other)
}

/// Allowed when any of the rules matches; each rule is a list of conditions that must
/// all hold.
fn rules(alternatives: Vec<Vec<SeccompCondition>>) -> io::Result<Vec<SeccompRule>> {
    alternatives
        .into_iter()
        .map(|c| SeccompRule::new(c).map_err(io::Error::other))
        .collect()
}

/// `arg` equal to one of `values`.
fn one_of(arg: u8, values: &[u64]) -> io::Result<Vec<SeccompRule>> {
    rules(
        values
            .iter()
            .map(|v| cond(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *v).map(|c| vec![c]))
            .collect::<io::Result<_>>()?,
    )
}

/// System calls the steady state makes with any arguments, by what makes them.
const PLAIN: &[&[i64]] = &[
    // Memory: the allocator, thread stacks (mmap and mprotect have argument rules:
    // never executable memory).
    &[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
    ],
    // Threads and their synchronisation; a thread's exit (sigaltstack teardown, rseq
    // and robust list at start for threads started by other stages later).
    &[
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_set_tid_address,
        libc::SYS_sigaltstack,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_restart_syscall,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
    ],
    // Time (the vDSO usually answers; these are its fallbacks) and sleeping; the timer
    // thread re-arms its CLOCK_BOOTTIME timerfd (made before the filter).
    &[
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_clock_nanosleep,
        libc::SYS_timerfd_settime,
        libc::SYS_nanosleep,
    ],
    // Keys and nonces (boringtun, DNS query ids).
    &[libc::SYS_getrandom],
    // Descriptors: TUN and socket I/O, the readiness pipe, logs on stderr.
    &[
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_fcntl,
        libc::SYS_lseek,
        libc::SYS_ppoll,
    ],
    // Sockets: batched UDP with GSO/GRO on the host socket, DNS on the second host
    // socket, rtnetlink for `reload`'s routes, the control socket (SO_PEERCRED,
    // timeouts, the listeners an `exec -p` hands over), `status`'s listen port.
    &[
        libc::SYS_recvmmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_accept4,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
    ],
    // The session directory: registrations, the hold file, the lock, `state`, the
    // teardown; /proc for start times and namespaces of wrapped processes.
    &[
        libc::SYS_openat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_fstat,
        libc::SYS_getdents64,
        libc::SYS_readlinkat,
        libc::SYS_mkdirat,
        libc::SYS_unlinkat,
        libc::SYS_renameat2,
        libc::SYS_flock,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
    ],
    // Wrapped processes: watched and, on `down --now`, ended through pidfds.
    &[libc::SYS_pidfd_open, libc::SYS_pidfd_send_signal],
    // Port publishing (`publish/`): host connections accepted and spliced through
    // pipes to services inside the namespace by one epoll loop, whose epoll and
    // wake-up eventfd are created before confinement. Publishing only connects
    // inside the namespace: no bind or listen there.
    &[
        libc::SYS_connect,
        libc::SYS_shutdown,
        libc::SYS_splice,
        libc::SYS_pipe2,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ],
    // The older forms of calls above that x86_64 still has (aarch64 has only the
    // newer ones: ppoll, epoll_pwait, clock_gettime, renameat2).
    #[cfg(target_arch = "x86_64")]
    &[
        libc::SYS_poll,
        libc::SYS_epoll_wait,
        libc::SYS_time,
        libc::SYS_renameat,
    ],
];

/// The steady state's system calls: [`PLAIN`], and the calls below with the
/// arguments they may take. Found by reading the code and by running the e2e,
/// sessions, leaks, dataplane and interop tiers (reload, status, re-resolution, rekey,
/// keepalive, `down --now` ending wrapped processes, teardown) with the mismatch
/// action switched to SECCOMP_RET_LOG: the kernel's audit log (type=1326) showed no
/// call outside this list; `strace -f -c -p` on running supervisors agrees. To extend
/// it, do the same: a missing call shows up as the supervisor dying of SIGSYS, and
/// the audit line names the syscall number.
fn allow_list() -> io::Result<BTreeMap<i64, Vec<SeccompRule>>> {
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq};
    let mut list: BTreeMap<i64, Vec<SeccompRule>> = PLAIN
        .iter()
        .flat_map(|group| group.iter())
        .map(|call| (*call, vec![]))
        .collect();

    let prot_exec = libc::PROT_EXEC as u64;
    // mmap/mprotect: never PROT_EXEC (arg 2).
    for call in [libc::SYS_mmap, libc::SYS_mprotect] {
        list.insert(
            call,
            rules(vec![vec![cond(2, Dword, MaskedEq(prot_exec), 0)?]])?,
        );
    }
    // Threads only, never a process. clone3 passes this list (the most restrictive
    // verdict wins, and killing beats the other filter's ENOSYS) but never gets
    // through the other filter; see the module docs.
    list.insert(libc::SYS_clone3, vec![]);
    let thread = libc::CLONE_THREAD as u64;
    list.insert(
        libc::SYS_clone,
        rules(vec![vec![cond(0, Qword, MaskedEq(thread), thread)?]])?,
    );
    // Naming a new thread; nothing else (no PR_SET_DUMPABLE back on, say).
    list.insert(libc::SYS_prctl, one_of(0, &[libc::PR_SET_NAME as u64])?);
    // std's set_nonblocking on accepted connections (publishing) and FIONREAD. The
    // request's type differs between C libraries (u64 on glibc, i32 on musl).
    #[allow(clippy::unnecessary_cast)]
    list.insert(
        libc::SYS_ioctl,
        one_of(1, &[libc::FIONBIO as u64, libc::FIONREAD as u64])?,
    );
    // Sockets inside the namespace for publishing: Internet families only (no new
    // netlink or packet sockets).
    list.insert(
        libc::SYS_socket,
        one_of(0, &[libc::AF_INET as u64, libc::AF_INET6 as u64])?,
    );
    // abort() on a panic raises SIGABRT at ourselves: a clear death, not SIGSYS.
    let me = std::process::id() as u64;
    list.insert(
        libc::SYS_tgkill,
        rules(vec![vec![
            cond(0, Dword, Eq, me)?,
            cond(2, Dword, Eq, libc::SIGABRT as u64)?,
        ]])?,
    );
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Run `f` in a forked child under the real filters and return how it ended.
    fn in_confined_child(f: fn() -> i32) -> std::process::ExitStatus {
        let programs = steady_state_filters().unwrap();
        // SAFETY: the child only installs the filters (the programs are built before
        // the fork, so no allocation happens there), runs `f` and exits with
        // `_exit`; the test harness's other threads do not exist in the child.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            for p in &programs {
                if seccompiler::apply_filter(p).is_err() {
                    // SAFETY: `_exit` never returns and touches nothing of ours.
                    unsafe { libc::_exit(100) };
                }
            }
            let code = f();
            // SAFETY: as above.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child, `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        std::process::ExitStatus::from_raw(status)
    }

    #[test]
    fn a_call_off_the_list_kills_with_sigsys() {
        // execve is the call an attacker wants most.
        let status = in_confined_child(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: valid NUL-terminated path and NULL-terminated vectors.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            7
        });
        assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
    }

    #[test]
    fn allowed_calls_pass_and_argument_rules_bite() {
        // Listed calls work under the filter.
        let ok = in_confined_child(|| {
            let mut buf = [0u8; 8];
            // SAFETY: a valid buffer of the given length.
            let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            i32::from(n != 8)
        });
        assert_eq!(ok.code(), Some(0), "{ok:?}");
        // A process-creating clone dies; so does a netlink socket and executable memory.
        let fork = in_confined_child(|| {
            // SAFETY: raw clone without CLONE_THREAD behaves like fork; the filter
            // kills us before it returns.
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as u64, 0, 0, 0, 0) as i32 }
        });
        assert_eq!(fork.signal(), Some(libc::SIGSYS), "{fork:?}");
        let netlink = in_confined_child(|| {
            // SAFETY: plain socket call.
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) }
        });
        assert_eq!(netlink.signal(), Some(libc::SIGSYS), "{netlink:?}");
        // An Internet socket may be made (publishing connects with one), but not
        // turned into a listener inside the namespace.
        let listener = in_confined_child(|| {
            // SAFETY: plain socket calls on a descriptor this child owns.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    return 3;
                }
                libc::listen(fd, 1)
            }
        });
        assert_eq!(listener.signal(), Some(libc::SIGSYS), "{listener:?}");
        let exec_mem = in_confined_child(|| {
            // SAFETY: an anonymous mapping that nothing uses.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            i32::from(p == libc::MAP_FAILED)
        });
        assert_eq!(exec_mem.signal(), Some(libc::SIGSYS), "{exec_mem:?}");
        // clone3 is refused softly (glibc then falls back to clone with CLONE_THREAD).
        let clone3 = in_confined_child(|| {
            // SAFETY: a clone3 call with a null argument; the filter answers first.
            let r = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
            let errno = io::Error::last_os_error().raw_os_error();
            i32::from(!(r == -1 && errno == Some(libc::ENOSYS)))
        });
        assert_eq!(clone3.code(), Some(0), "{clone3:?}");
        let threads = in_confined_child(|| {
            let t = std::thread::spawn(|| 5);
            i32::from(t.join().ok() != Some(5))
        });
        assert_eq!(threads.code(), Some(0), "{threads:?}");
    }
}
