//! Process plumbing that std does not offer: handing descriptors to a child, waiting
//! with a timeout, sealed memfds.

use anyhow::{bail, Context, Result};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::{fcntl_setfd, FdFlags};
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Let `fds` survive into the child's exec.
pub fn inherit_fds(cmd: &mut Command, fds: &[RawFd]) {
    let fds = fds.to_vec();
    // SAFETY: the closure runs between fork and exec and only makes raw fcntl calls
    // on descriptors that stay open in the parent for the duration of the spawn; it
    // allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                fcntl_setfd(BorrowedFd::borrow_raw(fd), FdFlags::empty())?;
            }
            Ok(())
        });
    }
}

/// Start the child in a new session, so a terminal's ^C or hangup does not reach a
/// detached supervisor.
pub fn detach(cmd: &mut Command) {
    // SAFETY: setsid is a single async-signal-safe syscall.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
}

/// Make the child enter a new user namespace before it executes (what `wg-wrap check`
/// uses to see which AppArmor label a new namespace gets).
pub fn in_new_user_namespace(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec in the single-threaded child and
    // makes one syscall; CLONE_FILES is not among the flags (see `unshare_unsafe`).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)?;
            Ok(())
        });
    }
}

/// Run `cmd` to completion with its output captured (it must write little: the
/// pipes are read once it has exited); killed and an error after `timeout`.
pub fn output_timeout(mut cmd: Command, timeout: Duration) -> Result<std::process::Output> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {:?}", cmd.get_program()))?;
    let status = wait_timeout(&mut child, timeout)?;
    let mut output = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut output.stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut output.stderr)?;
    }
    Ok(output)
}

/// Clear close-on-exec on a descriptor we are about to hand to an exec'd launcher.
pub fn keep_across_exec(fd: BorrowedFd<'_>) -> Result<()> {
    fcntl_setfd(fd, FdFlags::empty()).context("pass a descriptor to the launcher")
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("wait for the launcher")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the launcher did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A read-only, sealed in-memory file holding `data`.
pub fn sealed_memfd(name: &str, data: &[u8]) -> Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Data, never code: say so, or hosts with vm.memfd_noexec = 2 refuse the memfd.
    // Kernels before 6.3 do not know the flag (EINVAL).
    let fd = match rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, flags)?,
        other => other?,
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(OwnedFd::from(file))
}

/// The shell's view of how a child ended: its code, or 128 + the signal number.
pub fn shell_status(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 125,
    }
}

/// Replace this process with `cmd`; only returns on failure.
pub fn exec(mut cmd: Command) -> anyhow::Error {
    anyhow::Error::from(cmd.exec()).context("execute the launcher")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn a_child_in_a_new_user_namespace() {
        let mut cmd = Command::new("readlink");
        cmd.arg("/proc/self/ns/user")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        in_new_user_namespace(&mut cmd);
        let out = output_timeout(cmd, Duration::from_secs(10)).unwrap();
        assert!(out.status.success(), "{out:?}");
        let theirs = String::from_utf8(out.stdout).unwrap();
        let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
        assert_ne!(theirs.trim(), ours.to_str().unwrap());
        assert!(theirs.starts_with("user:["), "{theirs}");
    }
}
