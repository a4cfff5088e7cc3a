//! `up`, `exec` and `down`.

use crate::dirs::Dirs;
use crate::launcher::Launcher;
use crate::profile::{self, ProfileRef};
use crate::runtime::Runtime;
use crate::sessions::{self, Live};
use crate::spawn;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::Duration;
use supervisor::profile_dir::{lock_profile, remove_profile_dir, LockedProfile};

/// How long a command waits for another wg-wrap holding the profile lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits for the supervisor to finish tearing down.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn lock(runtime: &Runtime, name: &str) -> Result<LockedProfile> {
    lock_profile(runtime.profiles.as_fd(), name, LOCK_TIMEOUT)
        .with_context(|| format!("lock profile {name}"))
}

/// Parse and prepare a profile; nothing is changed if this fails.
fn load_config(profile: &ProfileRef) -> Result<wgconf::Config> {
    let parsed = profile::load(profile)?;
    for w in &parsed.warnings {
        eprintln!(
            "wg-wrap: warning: {}",
            w.display_with_path(&profile.path.display().to_string())
        );
    }
    let mut config = parsed.config;
    profile::resolve_endpoints(&mut config)?;
    Ok(config)
}

/// The live session, or a freshly started one.
pub fn live_or_start(
    runtime: &Runtime,
    locked: &LockedProfile,
    name: &str,
    config: impl FnOnce() -> Result<wgconf::Config>,
) -> Result<(Live, bool)> {
    if let Some(live) = sessions::find_live(locked.dir.as_fd())? {
        return Ok((live, false));
    }
    let config = config()?;
    let live = sessions::start(runtime.profiles.as_fd(), locked.dir.as_fd(), name, &config)
        .with_context(|| format!("start profile {name}"))?;
    Ok((live, true))
}

pub fn up(dirs: &Dirs, arg: &str) -> Result<()> {
    let profile = profile::resolve(arg, &dirs.config)?;
    // Validate before touching any state.
    let config = load_config(&profile)?;
    let runtime = Runtime::open(dirs)?;
    let locked = lock(&runtime, &profile.name)?;
    let (live, started) = live_or_start(&runtime, &locked, &profile.name, || Ok(config))?;
    sessions::set_hold(locked.dir.as_fd(), true)?;
    if started {
        println!(
            "wg-wrap: {} is up (supervisor pid {})",
            profile.name, live.state.supervisor_pid
        );
    } else {
        println!(
            "wg-wrap: {} was already up (supervisor pid {})",
            profile.name, live.state.supervisor_pid
        );
    }
    Ok(())
}

pub fn down(dirs: &Dirs, arg: &str) -> Result<()> {
    let profile = profile::resolve(arg, &dirs.config)?;
    let runtime = Runtime::open(dirs)?;
    if runtime.existing_profile_dir(&profile.name)?.is_none() {
        println!("wg-wrap: {} has no session", profile.name);
        return Ok(());
    }
    let locked = lock(&runtime, &profile.name)?;
    let Some(live) = sessions::find_live(locked.dir.as_fd())? else {
        remove_profile_dir(runtime.profiles.as_fd(), &profile.name, locked.dir.as_fd())
            .context("remove stale session files")?;
        println!("wg-wrap: {} has no session", profile.name);
        return Ok(());
    };
    sessions::set_hold(locked.dir.as_fd(), false)?;
    let users = sessions::live_registrations(locked.dir.as_fd());
    drop(locked);
    if !users.is_empty() {
        println!(
            "wg-wrap: {} stays up while {} wrapped process(es) run: {:?}",
            profile.name,
            users.len(),
            users
        );
        return Ok(());
    }
    if !sessions::wait_exit(&live.pidfd, DOWN_TIMEOUT) {
        anyhow::bail!(
            "the supervisor of {} (pid {}) did not exit within {DOWN_TIMEOUT:?}",
            profile.name,
            live.state.supervisor_pid
        );
    }
    println!("wg-wrap: {} is down", profile.name);
    Ok(())
}

/// The launcher command that enters a live session and runs `argv` there.
pub fn join_command(launcher: &Launcher, live: &Live, argv: &[OsString]) -> Command {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut cmd = launcher.command();
    cmd.arg("join")
        .arg(live.pidfd.as_raw_fd().to_string())
        .arg(live.state.netns.dev.to_string())
        .arg(live.state.netns.ino.to_string())
        .arg(cwd)
        .arg("--")
        .args(argv);
    cmd
}

/// `exec`: join (or start) the session and become the command. Only returns on error.
pub fn exec(dirs: &Dirs, arg: &str, argv: &[OsString]) -> Result<()> {
    let profile = profile::resolve(arg, &dirs.config)?;
    let launcher = Launcher::locate()?;
    let runtime = Runtime::open(dirs)?;
    let locked = lock(&runtime, &profile.name)?;
    let (live, _) = live_or_start(&runtime, &locked, &profile.name, || load_config(&profile))?;
    // Register ourselves: exec keeps our PID through the launcher into the command.
    let pid = std::process::id();
    sessions::register(locked.dir.as_fd(), pid)?;
    let cmd = join_command(&launcher, &live, argv);
    spawn::keep_across_exec(live.pidfd.as_fd())?;
    let dir = locked.dir;
    drop(locked.lock);
    let err = spawn::exec(cmd);
    sessions::unregister(dir.as_fd(), pid);
    Err(err)
}
