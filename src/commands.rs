//! `up`, `exec` and `down`.

use crate::dirs::Dirs;
use crate::launcher::Launcher;
use crate::profile::{self, ProfileRef};
use crate::runtime::Runtime;
use crate::sessions::{self, Live, Prepared};
use crate::settings::Settings;
use crate::spawn;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::{Duration, Instant};
use supervisor::contract::profile_dir::{lock_profile, remove_profile_dir, LockedProfile};
use supervisor::contract::state::processes_in_netns;

/// How long a command waits for another wg-wrap holding the profile lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits for the supervisor to finish tearing down.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn lock(runtime: &Runtime, name: &str) -> Result<LockedProfile> {
    lock_profile(runtime.profiles.as_fd(), name, LOCK_TIMEOUT)
        .with_context(|| format!("lock profile {name}"))
}

/// What every command needs: where things are and the user's defaults.
pub struct Ctx {
    pub dirs: Dirs,
    pub settings: Settings,
}

/// Parse and prepare a profile; nothing is changed if this fails.
fn load_config(ctx: &Ctx, profile: &ProfileRef) -> Result<Prepared> {
    if let Some(w) = crate::show::permission_warning(profile) {
        eprintln!("wg-wrap: warning: {w}");
    }
    let parsed = profile::load(profile)?;
    for w in &parsed.warnings {
        eprintln!(
            "wg-wrap: warning: {}",
            w.display_with_path(&profile.path.display().to_string())
        );
    }
    let mut config = parsed.config;
    if config.interface.mtu.is_none() {
        config.interface.mtu = ctx.settings.mtu;
    }
    // Names first (the supervisor re-resolves them later, on the host network), then
    // resolve them now, on the host.
    let reresolve = supervisor::contract::handover::Handover::for_profile(
        &config,
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    );
    profile::resolve_endpoints(&mut config)?;
    Ok(Prepared { config, reresolve })
}

/// The live session, or a freshly started one.
pub fn live_or_start(
    runtime: &Runtime,
    locked: &LockedProfile,
    name: &str,
    prepare: impl FnOnce() -> Result<Prepared>,
) -> Result<(Live, bool)> {
    if let Some(live) = sessions::find_live(locked.dir.as_fd())? {
        return Ok((live, false));
    }
    let prepared = prepare()?;
    let live = sessions::start(
        runtime.profiles.as_fd(),
        locked.dir.as_fd(),
        name,
        &prepared,
    )
    .with_context(|| format!("start profile {name}"))?;
    Ok((live, true))
}

/// How `up` should behave.
pub struct UpOptions {
    /// Wait this long for the first completed handshake.
    pub wait: Option<Duration>,
    /// Run the supervisor in the foreground (for systemd) instead of detaching.
    pub foreground: bool,
}

pub fn up(ctx: &Ctx, arg: &str, opts: &UpOptions) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    // Validate before touching any state.
    let prepared = load_config(ctx, &profile)?;
    let runtime = Runtime::open(&ctx.dirs)?;
    let locked = lock(&runtime, &profile.name)?;
    if opts.foreground {
        if let Some(live) = sessions::find_live(locked.dir.as_fd())? {
            anyhow::bail!(
                "{} is already up (supervisor pid {}); `down` it first to run it in the foreground",
                profile.name,
                live.state.supervisor_pid
            );
        }
        sessions::set_hold(locked.dir.as_fd(), true)?;
        return Err(sessions::exec_foreground(
            runtime.profiles.as_fd(),
            &locked.lock,
            &profile.name,
            &prepared,
        ));
    }
    let (live, started) = live_or_start(&runtime, &locked, &profile.name, || Ok(prepared))?;
    sessions::set_hold(locked.dir.as_fd(), true)?;
    drop(locked);
    if let Some(timeout) = opts.wait {
        wait_for_handshake(&runtime, &profile.name, timeout)?;
    }
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

fn wait_for_handshake(runtime: &Runtime, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = crate::status::query(runtime, name)?
            .with_context(|| format!("{name} went down while waiting for a handshake"))?;
        if status
            .peers
            .iter()
            .any(|p| p.latest_handshake_secs_ago.is_some())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{name} is up, but no peer completed a handshake within {timeout:?} (check the Endpoint and keys; `wg-wrap status {name}` shows the peers)"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn down(ctx: &Ctx, arg: &str, now: bool) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    let runtime = Runtime::open(&ctx.dirs)?;
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
    // Registered processes, and whatever they left running in the namespace.
    let mut users = supervisor::contract::profile_dir::live_registrations(locked.dir.as_fd());
    for pid in processes_in_netns(live.state.netns, live.state.supervisor_pid) {
        if !users.contains(&pid) {
            users.push(pid);
        }
    }
    drop(locked);
    let timeout = if now {
        // The supervisor ends every wrapped process (TERM, then KILL) and exits.
        rustix::process::pidfd_send_signal(&live.pidfd, rustix::process::Signal::TERM)
            .context("signal the supervisor")?;
        supervisor::contract::state::STOP_GRACE + DOWN_TIMEOUT
    } else if !users.is_empty() {
        println!(
            "wg-wrap: {} stays up while {} wrapped process(es) run: {:?} (`down --now` ends them)",
            profile.name,
            users.len(),
            users
        );
        return Ok(());
    } else {
        DOWN_TIMEOUT
    };
    if !sessions::wait_exit(&live.pidfd, timeout) {
        anyhow::bail!(
            "the supervisor of {} (pid {}) did not exit within {timeout:?}",
            profile.name,
            live.state.supervisor_pid
        );
    }
    println!("wg-wrap: {} is down", profile.name);
    Ok(())
}

pub fn reload(ctx: &Ctx, arg: &str) -> Result<i32> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    let prepared = load_config(ctx, &profile)?;
    let runtime = Runtime::open(&ctx.dirs)?;
    crate::status::reload(&runtime, &profile.name, &prepared)
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
pub fn exec(ctx: &Ctx, arg: &str, argv: &[OsString]) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    let launcher = Launcher::locate()?;
    let runtime = Runtime::open(&ctx.dirs)?;
    let locked = lock(&runtime, &profile.name)?;
    let (live, _) = live_or_start(&runtime, &locked, &profile.name, || {
        load_config(ctx, &profile)
    })?;
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
