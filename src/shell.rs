//! `shell [PROFILE]`: the user's login shell inside the tunnel.
//!
//! It is `exec PROFILE -- $SHELL` with `WG_WRAP_PROFILE` set, so prompts can show
//! which tunnel a shell is in; the exit status is the shell's. Without a PROFILE the
//! choice must be unambiguous: the one running session, else the one profile.

use crate::commands::{self, Ctx};
use crate::runtime::Runtime;
use anyhow::{bail, Result};
use std::ffi::OsString;
use supervisor::contract::publish::PublishSpec;

/// The environment variable naming the profile inside `shell`.
pub const PROFILE_VAR: &str = "WG_WRAP_PROFILE";
const FALLBACK_SHELL: &str = "/bin/sh";

/// `$SHELL`, or `/bin/sh` when it is unset or empty.
pub fn user_shell(var: Option<OsString>) -> OsString {
    var.filter(|s| !s.is_empty())
        .unwrap_or_else(|| FALLBACK_SHELL.into())
}

/// Only returns on error: on success the process has become the shell.
pub fn run(ctx: &Ctx, profile: Option<&str>, publish: &[PublishSpec]) -> Result<()> {
    let arg = match profile {
        Some(p) => p.to_owned(),
        None => default_profile(ctx)?,
    };
    let shell = user_shell(std::env::var_os("SHELL"));
    let name = crate::profile::resolve(&arg, &ctx.dirs.config)?.name;
    commands::exec_with_env(
        ctx,
        &arg,
        publish,
        &[shell],
        &[(PROFILE_VAR, name.as_str())],
    )
}

fn default_profile(ctx: &Ctx) -> Result<String> {
    let running = crate::status::running_names(&Runtime::open(&ctx.dirs)?)?;
    if let [one] = running.as_slice() {
        return Ok(one.clone());
    }
    let profiles = crate::status::profiles_in(&ctx.dirs.config);
    match (running.as_slice(), profiles.as_slice()) {
        ([], [one]) => Ok(one.clone()),
        ([], []) => bail!(
            "no profile to open a shell in: import one first (`wg-wrap import FILE`), or give a path: `wg-wrap shell ./work.conf`"
        ),
        ([], many) => bail!(
            "which profile? give one: `wg-wrap shell NAME` (profiles: {})",
            many.join(", ")
        ),
        (many, _) => bail!(
            "which profile? give one: `wg-wrap shell NAME` (running: {})",
            many.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_falls_back_to_bin_sh() {
        assert_eq!(user_shell(Some("/bin/zsh".into())), "/bin/zsh");
        assert_eq!(user_shell(Some("".into())), "/bin/sh");
        assert_eq!(user_shell(None), "/bin/sh");
    }
}
