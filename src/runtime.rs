//! The runtime directory: created private, checked before use, opened by fd.

use anyhow::{bail, Context, Result};
use rustix::fs::{self, Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use supervisor::contract::profile_dir::open_dir;

use crate::dirs::Dirs;

pub const PROFILES_DIR: &str = "profiles";

/// Whether `name` has a session directory, without creating anything on the way.
pub fn has_profile_dir(dirs: &Dirs, name: &str) -> bool {
    dirs.runtime.join(PROFILES_DIR).join(name).is_dir()
}

/// The open runtime root's `profiles/` directory.
pub struct Runtime {
    pub profiles: OwnedFd,
}

impl Runtime {
    /// Open (creating, mode 0700) the runtime directory and `profiles/` below it.
    /// Refuses a directory that is a symlink, is not owned by us, or that others can
    /// write to: state there decides which namespace a command enters.
    pub fn open(dirs: &Dirs) -> Result<Runtime> {
        let root = open_private_dir(&dirs.runtime, !dirs.runtime_is_fallback)
            .with_context(|| format!("runtime directory {}", dirs.runtime.display()))?;
        let profiles = open_dir(root.as_fd(), PROFILES_DIR, true).with_context(|| {
            format!(
                "runtime directory {}/{PROFILES_DIR}",
                dirs.runtime.display()
            )
        })?;
        check_private(&profiles).with_context(|| {
            format!(
                "runtime directory {}/{PROFILES_DIR}",
                dirs.runtime.display()
            )
        })?;
        Ok(Runtime { profiles })
    }

    /// The profile directory if it exists (without creating it).
    pub fn existing_profile_dir(&self, name: &str) -> Result<Option<OwnedFd>> {
        match open_dir(self.profiles.as_fd(), name, false) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("profile directory {name}")),
        }
    }
}

fn open_private_dir(path: &Path, create_parents: bool) -> Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    // The common case, first: it exists already.
    if let Ok(fd) = fs::open(path, flags, Mode::empty()) {
        check_private(&fd)?;
        return Ok(fd);
    }
    if create_parents {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    match fs::mkdir(path, Mode::RWXU) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e).context("cannot create it"),
    }
    let fd = fs::open(
        path,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("cannot open it (a symlink is refused)")?;
    check_private(&fd)?;
    Ok(fd)
}

fn check_private(fd: &OwnedFd) -> Result<()> {
    let st = fs::fstat(fd)?;
    let uid = rustix::process::getuid().as_raw();
    if st.st_uid != uid {
        bail!(
            "it is owned by uid {}, not by you (uid {uid}); refusing to use it: point \
             $WG_WRAP_RUNTIME_DIR (or runtime_dir in config.toml) at a directory of your own",
            st.st_uid
        );
    }
    if st.st_mode & 0o022 != 0 {
        bail!(
            "others can write to it (mode {:o}); refusing to use it: `chmod go-w` it, or \
             point $WG_WRAP_RUNTIME_DIR at a private directory",
            st.st_mode & 0o7777
        );
    }
    if st.st_mode & 0o077 != 0 {
        // Ours, but readable by others: tighten it rather than fail.
        fs::fchmod(fd, Mode::RWXU)?;
    }
    Ok(())
}
