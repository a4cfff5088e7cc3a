//! `up`, `exec` and `down`.

use crate::dirs::Dirs;
use crate::launcher::Launcher;
use crate::profile::{self, ProfileRef};
use crate::progress::Feedback;
use crate::publish;
use crate::runtime::Runtime;
use crate::sessions::{self, Live, Prepared};
use crate::settings::Settings;
use crate::spawn;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::Duration;
use supervisor::contract::profile_dir::{lock_profile, remove_profile_dir, LockedProfile};
use supervisor::contract::publish::{Owner, PublishSpec};
use supervisor::contract::state::wrapped_processes;

/// How long a command waits for another wg-wrap holding the profile lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` waits for the supervisor to finish tearing down.
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn lock(runtime: &Runtime, name: &str) -> Result<LockedProfile> {
    lock_profile(runtime.profiles.as_fd(), name, LOCK_TIMEOUT).with_context(|| {
        format!(
            "lock profile {name} (another wg-wrap command is starting or stopping it: let it \
                 finish, then try again)"
        )
    })
}

/// What every command needs: where things are and the user's defaults.
pub struct Ctx {
    pub dirs: Dirs,
    pub settings: Settings,
    pub feedback: Feedback,
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

/// The live session, or a freshly started one. With `source`, the profile the command
/// names: a live session started from another file of that name is refused (see
/// [`sessions::check_source`]), and a new one records it.
pub fn live_or_start(
    runtime: &Runtime,
    locked: &LockedProfile,
    name: &str,
    source: Option<&ProfileRef>,
    prepare: impl FnOnce() -> Result<Prepared>,
) -> Result<(Live, bool)> {
    if let Some(live) = sessions::find_live(locked.dir.as_fd())? {
        if let Some(profile) = source {
            sessions::check_source(locked.dir.as_fd(), profile)?;
        }
        return Ok((live, false));
    }
    let prepared = prepare()?;
    if let Some(profile) = source {
        sessions::record_source(locked.dir.as_fd(), profile)?;
    }
    let live = sessions::start(
        runtime.profiles.as_fd(),
        locked.dir.as_fd(),
        name,
        &prepared,
    )
    .with_context(|| {
        format!(
            "start profile {name} (`wg-wrap up --foreground {name}` shows the supervisor's \
             messages on the terminal)"
        )
    })?;
    Ok((live, true))
}

/// How `up` should behave.
pub struct UpOptions {
    /// Wait this long for the first completed handshake.
    pub wait: Option<Duration>,
    /// Run the supervisor in the foreground (for systemd) instead of detaching.
    pub foreground: bool,
    /// Ports to publish for as long as the session lives.
    pub publish: Vec<PublishSpec>,
}

pub fn up(ctx: &Ctx, arg: &str, opts: &UpOptions) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    // Validate before touching any state.
    let prepared = load_config(ctx, &profile)?;
    let listeners = publish::open_all(&opts.publish, &ctx.dirs)?;
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
        sessions::record_source(locked.dir.as_fd(), &profile)?;
        return Err(sessions::exec_foreground(
            runtime.profiles.as_fd(),
            &locked.lock,
            &profile.name,
            &prepared,
            &listeners,
        ));
    }
    let (live, started) = live_or_start(&runtime, &locked, &profile.name, Some(&profile), || {
        Ok(prepared)
    })?;
    // On failure a session started for nothing ends by itself: no hold, no process.
    publish::hand_over(&live, &listeners, Owner::Session)?;
    drop(listeners);
    sessions::set_hold(locked.dir.as_fd(), true)?;
    drop(locked);
    if let Some(timeout) = opts.wait {
        crate::waits::handshake(&ctx.feedback, &runtime, &profile.name, timeout)?;
    }
    let pid = live.state.supervisor_pid;
    if started {
        ctx.feedback
            .info(&format!("{} is up (supervisor pid {pid})", profile.name));
    } else {
        ctx.feedback.info(&format!(
            "{} was already up (supervisor pid {pid})",
            profile.name
        ));
    }
    Ok(())
}

pub fn down(ctx: &Ctx, arg: &str, now: bool) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    let runtime = Runtime::open(&ctx.dirs)?;
    if runtime.existing_profile_dir(&profile.name)?.is_none() {
        ctx.feedback
            .info(&format!("{} has no session", profile.name));
        return Ok(());
    }
    let locked = lock(&runtime, &profile.name)?;
    let Some(live) = sessions::find_live(locked.dir.as_fd())? else {
        remove_profile_dir(runtime.profiles.as_fd(), &profile.name, locked.dir.as_fd())
            .context("remove stale session files")?;
        ctx.feedback
            .info(&format!("{} has no session", profile.name));
        return Ok(());
    };
    sessions::check_source(locked.dir.as_fd(), &profile)?;
    sessions::set_hold(locked.dir.as_fd(), false)?;
    // Registered processes, and whatever they left running in the namespace (as
    // `status` lists them).
    let users = wrapped_processes(
        supervisor::contract::profile_dir::live_registrations(locked.dir.as_fd()),
        live.state.netns,
        live.state.supervisor_pid,
    );
    drop(locked);
    let name = &profile.name;
    let (timeout, what) = if now {
        // The supervisor ends every wrapped process (TERM, then KILL) and exits.
        rustix::process::pidfd_send_signal(&live.pidfd, rustix::process::Signal::TERM)
            .context("signal the supervisor")?;
        let what = format!(
            "waiting for {name}'s wrapped processes to exit (TERM, then KILL after {} s)",
            supervisor::contract::state::STOP_GRACE.as_secs()
        );
        (supervisor::contract::state::STOP_GRACE + DOWN_TIMEOUT, what)
    } else if !users.is_empty() {
        ctx.feedback.info(&format!(
            "{name} stays up while {} wrapped process(es) run: {users:?} (`wg-wrap down --now {name}` ends them)",
            users.len(),
        ));
        return Ok(());
    } else {
        (
            DOWN_TIMEOUT,
            format!("waiting for {name}'s supervisor to exit"),
        )
    };
    if !crate::waits::supervisor_exit(&ctx.feedback, &live.pidfd, what, timeout) {
        anyhow::bail!(
            "the supervisor of {name} (pid {}) did not exit within {timeout:?}: see `wg-wrap status {name}`, and `kill {}` it if it hangs",
            live.state.supervisor_pid,
            live.state.supervisor_pid
        );
    }
    ctx.feedback.info(&format!("{name} is down"));
    Ok(())
}

pub fn reload(ctx: &Ctx, arg: &str) -> Result<i32> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    let prepared = load_config(ctx, &profile)?;
    let runtime = Runtime::open(&ctx.dirs)?;
    crate::status::reload(&ctx.feedback, &runtime, &profile, &prepared)
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
pub fn exec(ctx: &Ctx, arg: &str, publish: &[PublishSpec], argv: &[OsString]) -> Result<()> {
    exec_with_env(ctx, arg, publish, argv, &[])
}

/// [`exec`] with extra environment variables for the command.
pub fn exec_with_env(
    ctx: &Ctx,
    arg: &str,
    publish: &[PublishSpec],
    argv: &[OsString],
    env: &[(&str, &str)],
) -> Result<()> {
    let profile = profile::resolve(arg, &ctx.dirs.config)?;
    // No session directory, no session: this command will start one, so the profile
    // is read now, before anything is created (a bad one then changes nothing). A
    // session that is running is joined without reading it.
    let mut prepared = if crate::runtime::has_profile_dir(&ctx.dirs, &profile.name) {
        None
    } else {
        Some(load_config(ctx, &profile)?)
    };
    let listeners = publish::open_all(publish, &ctx.dirs)?;
    let launcher = Launcher::locate()?;
    let runtime = Runtime::open(&ctx.dirs)?;
    let locked = lock(&runtime, &profile.name)?;
    let (live, _) =
        live_or_start(
            &runtime,
            &locked,
            &profile.name,
            Some(&profile),
            || match prepared.take() {
                Some(p) => Ok(p),
                None => load_config(ctx, &profile),
            },
        )?;
    // Register ourselves: exec keeps our PID through the launcher into the command.
    let pid = std::process::id();
    sessions::register(locked.dir.as_fd(), pid)?;
    // The ports live as long as this PID: the command's, through the launcher's exec.
    if let Err(e) = publish::hand_over(&live, &listeners, Owner::Command) {
        sessions::unregister(locked.dir.as_fd(), pid);
        return Err(e);
    }
    // Our copies: the supervisor has its own now, and the command must hold none.
    drop(listeners);
    let mut cmd = join_command(&launcher, &live, argv);
    cmd.envs(env.iter().copied());
    spawn::keep_across_exec(live.pidfd.as_fd())?;
    let dir = locked.dir;
    drop(locked.lock);
    let err = spawn::exec(cmd);
    sessions::unregister(dir.as_fd(), pid);
    Err(err)
}
