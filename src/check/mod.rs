//! `wg-wrap check [PROFILE] [--connect] [--json]`: can wg-wrap work here, and if not,
//! what exactly to change.
//!
//! # Theory of operation
//! 1. Read the host's settings from `/proc`, `/sys`, `/dev` and `/etc` (the roots are
//!    injected, so every detection is unit-tested against fake trees): kernel
//!    version, the user-namespace sysctls, AppArmor (active? restricting? this
//!    process's label), `/dev/net/tun`, `vm.memfd_noexec`, the runtime directory.
//! 2. Where AppArmor is active, start a child that makes a user namespace and reports
//!    the label it ends up with (`unprivileged_userns` = restricted, no profile
//!    applies) — see [`apparmor`].
//! 3. Run the session probe (see [`probe`]): the real launcher's `create` path
//!    executes `wg-wrap __probe` instead of the supervisor, which makes a TUN device,
//!    an address, the link up and a tmpfs, and reports the first step that fails.
//!    A failure is attributed to the check it belongs to, which then shows the fix.
//! 4. With PROFILE: parse it (warnings shown) and look at its DNS against the host's
//!    resolver (see [`profile`]); with `--connect` start a session, wait for the
//!    handshake, report how long it took and end the session (see [`connect`]).
//! 5. Render one line per check (or JSON, see [`render`]); exit 1 if any check is an
//!    error, 0 otherwise (warnings do not block).
//!
//! [`hint`] reuses the same knowledge for run-time errors: when starting a session
//! fails at one of these steps, the error names the likely cause.

mod apparmor;
mod connect;
mod device;
pub mod hint;
mod host;
mod kernel;
mod probe;
mod profile;
mod render;

use crate::commands::Ctx;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing; does not stop wg-wrap from working.
    Warning,
    /// wg-wrap cannot work here until this is fixed.
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable identifier (`kernel`, `userns`, `apparmor`, `tun`, `launcher`,
    /// `runtime-dir`, `probe`, `profile`, `dns`, `connect`).
    pub name: &'static str,
    pub status: Status,
    /// What was found (for `ok`, what makes it fine).
    pub message: String,
    /// The command to run or the file to change, for warnings and errors.
    pub fix: Option<String>,
    /// For `connect`: milliseconds from the session's start to the first handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<u64>,
}

impl Check {
    pub fn ok(name: &'static str, message: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            message: message.into(),
            fix: None,
            handshake_ms: None,
        }
    }

    pub fn warning(
        name: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Warning,
            fix: Some(fix.into()),
            ..Check::ok(name, message)
        }
    }

    pub fn error(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Error,
            fix: Some(fix.into()),
            ..Check::ok(name, message)
        }
    }
}

/// Where the host's files are read from: `/proc`, `/sys`, `/dev` and `/etc`, or
/// fake trees in a test.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub etc: PathBuf,
    pub usr: PathBuf,
}

impl Roots {
    pub fn host() -> Roots {
        Roots {
            proc: "/proc".into(),
            sys: "/sys".into(),
            dev: "/dev".into(),
            etc: "/etc".into(),
            usr: "/usr".into(),
        }
    }

    fn read(root: &Path, rel: &str) -> Option<String> {
        std::fs::read_to_string(root.join(rel)).ok()
    }

    /// A number from a file under `/proc` (a sysctl), if the file exists.
    fn proc_number(&self, rel: &str) -> Option<i64> {
        Roots::read(&self.proc, rel)?.trim().parse().ok()
    }
}

/// `wg-wrap check`: print the report; 0 when wg-wrap can work here, 1 otherwise.
pub fn run(ctx: &Ctx, profile: Option<&str>, connect: bool, json: bool) -> Result<i32> {
    if connect && profile.is_none() {
        anyhow::bail!("--connect needs a PROFILE to connect with");
    }
    let roots = Roots::host();
    let facts = host::Facts::read(&roots);
    let child_label = if facts.apparmor.enabled {
        Some(apparmor::probe_child_label())
    } else {
        None
    };
    let outcome = probe::run();
    let mut checks = host::checks(&facts, child_label.as_ref(), &outcome, &ctx.dirs);
    let mut usable = !checks.iter().any(|c| c.status == Status::Error);
    if let Some(arg) = profile {
        let (profile_checks, prepared) = profile::checks(ctx, arg, &roots);
        let profile_ok = !profile_checks.iter().any(|c| c.status == Status::Error);
        checks.extend(profile_checks);
        if connect {
            checks.push(match prepared {
                Some((profile, prepared)) if usable && profile_ok => {
                    connect::run(ctx, &profile, prepared)
                }
                // Not a problem of its own: the errors above already fail the check.
                _ => Check::warning(
                    "connect",
                    "not tried: fix the errors above first",
                    "fix the errors above, then run the check again",
                ),
            });
        }
        usable = !checks.iter().any(|c| c.status == Status::Error);
    }
    if json {
        println!("{}", render::json(&checks, usable));
    } else {
        print!("{}", render::text(&checks, usable));
    }
    Ok(if usable { 0 } else { 1 })
}
