//! Finding the launcher (see launcher/src/main.rs): the small static helper
//! that creates or joins wg-wrap's namespaces.
//!
//! In order of preference:
//! 1. `$WG_WRAP_LAUNCHER`, a file path (for development and odd installs);
//! 2. `<dir of this binary>/../libexec/wg-wrap/launcher`, as a distro package
//!    installs it (a file, so AppArmor-style policies can attach by path).
//!    Install it readable (0755): the kernel marks a process running an
//!    unreadable executable non-dumpable, which makes /proc/self/uid_map
//!    root-owned, and `create` then fails with
//!    `wg-wrap: write /proc/self/uid_map: EACCES` (checked with 0711);
//! 3. the copy embedded in this binary, written to a sealed memfd and run as
//!    `/proc/self/fd/<n>`.
//!
//! Running `/proc/self/fd/<n>` works for `Command::spawn` and
//! `CommandExt::exec`: the kernel resolves the path before close-on-exec
//! descriptors are closed, and a static ELF file is never reopened by name.
//! Verified on Linux 6.18: executing the memfd while this process still holds
//! the writable descriptor from `memfd_create` does not fail with ETXTBSY
//! (that descriptor does not count as a writer the way an `open(O_RDWR)`
//! does), so it is not reopened read-only; the seals make it immutable.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;

/// The launcher built by build.rs.
pub const EMBEDDED: &[u8] = include_bytes!(env!("WG_WRAP_LAUNCHER_BIN"));

/// Names a launcher file to use instead of the installed or embedded one.
pub const ENV_OVERRIDE: &str = "WG_WRAP_LAUNCHER";

/// argv[0] of the launcher, and the memfd's name (shown in /proc/PID/exe).
const NAME: &str = "wg-wrap-launcher";

/// Where a package installs the launcher, relative to this binary's directory.
const INSTALLED: &str = "../libexec/wg-wrap/launcher";

/// How to run the launcher: a path usable with [`std::process::Command`],
/// plus whatever keeps it alive. Keep the `Launcher` until the command has
/// been spawned: a memfd path stops working once it is dropped.
pub struct Launcher {
    path: PathBuf,
    _memfd: Option<OwnedFd>,
}

impl Launcher {
    /// In order: `$WG_WRAP_LAUNCHER` (a file path; an error if it does not
    /// exist), an installed file at `<dir of current_exe>/../libexec/wg-wrap/launcher`,
    /// else the embedded copy in a sealed memfd.
    pub fn locate() -> anyhow::Result<Launcher> {
        if let Some(path) = std::env::var_os(ENV_OVERRIDE) {
            // Absolute, so a `Command::current_dir` cannot change its meaning.
            let path = std::path::absolute(&path)
                .with_context(|| format!("{ENV_OVERRIDE}={}", path.to_string_lossy()))?;
            if !path.is_file() {
                bail!(
                    "{ENV_OVERRIDE}={}: no such launcher file (unset {ENV_OVERRIDE} to use the built-in one)",
                    path.display()
                );
            }
            return Ok(Launcher { path, _memfd: None });
        }
        if let Some(path) = installed() {
            return Ok(Launcher { path, _memfd: None });
        }
        Launcher::embedded()
    }

    /// The embedded launcher in a sealed memfd, whatever else is installed.
    pub fn embedded() -> anyhow::Result<Launcher> {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        // MFD_EXEC says so explicitly (Linux >= 6.3 warns when neither it nor
        // MFD_NOEXEC_SEAL is given); older kernels reject it with EINVAL.
        let memfd = match rustix::fs::memfd_create(NAME, flags | MemfdFlags::EXEC) {
            Err(Errno::INVAL) => rustix::fs::memfd_create(NAME, flags),
            other => other,
        };
        let memfd = match memfd {
            Ok(fd) => fd,
            Err(Errno::ACCESS | Errno::PERM) => bail!(
                "this system does not allow executable memfds (vm.memfd_noexec = 2?), \
                 so the built-in launcher cannot run: install it as a file, \
                 <prefix>/libexec/wg-wrap/launcher beside <prefix>/bin/wg-wrap, or set \
                 {ENV_OVERRIDE} to its path (`wg-wrap __dump-launcher FILE` writes it)"
            ),
            Err(e) => return Err(e).context("memfd_create for the launcher"),
        };
        let mut file = File::from(memfd);
        file.write_all(EMBEDDED)
            .context("writing the launcher to its memfd")?;
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )
        .context("sealing the launcher memfd")?;
        let memfd = OwnedFd::from(file);
        Ok(Launcher {
            path: PathBuf::from(format!("/proc/self/fd/{}", memfd.as_raw_fd())),
            _memfd: Some(memfd),
        })
    }

    /// A Command for the launcher, with argv[0] set to "wg-wrap-launcher".
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.path());
        command.arg0(NAME);
        command
    }

    /// The path to execute; for the memfd, valid only in this process and
    /// its children until they exec.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes the embedded launcher to `path` as an executable file (mode 0755):
/// what a package installs as `libexec/wg-wrap/launcher`, and how the tests
/// get the exact bytes this binary would run.
pub fn dump_embedded(path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    // Only ever a regular file: as root, `__dump-launcher /dev/null` would otherwise
    // make /dev/null executable and unwritable for everyone else.
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        bail!(
            "{} is not a regular file: name a new file for the launcher",
            path.display()
        );
    }
    // `mode` applies only to a newly created file (and under the umask).
    file.set_permissions(std::fs::Permissions::from_mode(0o755))
        .and_then(|()| file.write_all(EMBEDDED))
        .with_context(|| format!("write the launcher to {}", path.display()))
}

/// The installed launcher file beside this binary, if there is one.
pub fn installed() -> Option<PathBuf> {
    installed_path().filter(|path| path.is_file())
}

/// Where an installed launcher is looked for.
pub fn installed_path() -> Option<PathBuf> {
    // /proc/self/exe: already absolute with symlinks resolved.
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join(INSTALLED))
}
