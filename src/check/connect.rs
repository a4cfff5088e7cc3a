//! `--connect`: start a session for the profile (or use the one that is up), wait for
//! the first completed handshake — one round trip to the peer — report how long it
//! took, and end the session again if this check started it.

use super::Check;
use crate::commands::{live_or_start, Ctx};
use crate::profile::ProfileRef;
use crate::progress::Feedback;
use crate::runtime::Runtime;
use crate::sessions::{self, Prepared};
use anyhow::{Context, Result};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use supervisor::contract::profile_dir::lock_profile;

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const DOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor is asked whether a handshake completed.
const POLL: Duration = Duration::from_millis(5);

pub fn run(ctx: &Ctx, profile: &ProfileRef, prepared: Prepared) -> Check {
    match connect(ctx, profile, prepared) {
        Ok(check) => check,
        Err(e) => Check::error(
            "connect",
            format!("{e:#}"),
            format!(
                "check the profile's Endpoint and keys; `wg-wrap up --wait {}` shows the same",
                profile.name
            ),
        ),
    }
}

fn connect(ctx: &Ctx, profile: &ProfileRef, mut prepared: Prepared) -> Result<Check> {
    let timeout = Duration::from_secs(ctx.settings.wait_timeout_secs.unwrap_or(10));
    let name = &profile.name;
    crate::profile::resolve_endpoints(&mut prepared.config)?;
    let runtime = Runtime::open(&ctx.dirs)?;
    let locked = lock_profile(runtime.profiles.as_fd(), name, LOCK_TIMEOUT)
        .with_context(|| format!("lock profile {name}"))?;
    let (live, started) = live_or_start(&runtime, &locked, name, Some(profile), || Ok(prepared))?;
    let ready = Instant::now();
    // Hold it while we watch, so it does not end as soon as the lock is released.
    if started {
        sessions::set_hold(locked.dir.as_fd(), true)?;
    }
    drop(locked);
    let waited = wait_for_handshake(&ctx.feedback, &runtime, name, timeout);
    let elapsed = ready.elapsed();
    if started {
        end(&runtime, name, &live)?;
    }
    let last = waited?;
    let mut check = if started {
        Check::ok(
            "connect",
            format!(
                "handshake with the peer completed {} ms after the session started; \
                 the session is down again",
                elapsed.as_millis()
            ),
        )
    } else {
        Check::ok(
            "connect",
            format!(
                "{name} was already up; its latest handshake was {} ago",
                crate::status::age(last)
            ),
        )
    };
    if started {
        check.handshake_ms = Some(elapsed.as_millis() as u64);
    }
    Ok(check)
}

/// Seconds since the latest handshake, once there is one. Shows the progress line
/// (on a terminal) like `up --wait`.
fn wait_for_handshake(
    feedback: &Feedback,
    runtime: &Runtime,
    name: &str,
    timeout: Duration,
) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut waiting = feedback.wait(format!("waiting for a handshake with {name}"), timeout);
    loop {
        let status = crate::status::query(runtime, name)?
            .with_context(|| format!("{name} went down while waiting for a handshake"))?;
        if let Some(ago) = status
            .peers
            .iter()
            .filter_map(|p| p.latest_handshake_secs_ago)
            .min()
        {
            waiting.finish();
            return Ok(ago);
        }
        if Instant::now() >= deadline {
            waiting.finish();
            anyhow::bail!("no peer completed a handshake within {timeout:?}");
        }
        waiting.tick();
        std::thread::sleep(POLL);
    }
}

/// Release the hold; the supervisor then ends the session (nothing else uses it)
/// and exits.
fn end(runtime: &Runtime, name: &str, live: &sessions::Live) -> Result<()> {
    let locked = lock_profile(runtime.profiles.as_fd(), name, LOCK_TIMEOUT)
        .with_context(|| format!("lock profile {name}"))?;
    sessions::set_hold(locked.dir.as_fd(), false)?;
    drop(locked);
    if !sessions::wait_exit(&live.pidfd, DOWN_TIMEOUT) {
        anyhow::bail!(
            "the supervisor of {name} (pid {}) did not exit within {DOWN_TIMEOUT:?}",
            live.state.supervisor_pid
        );
    }
    Ok(())
}
