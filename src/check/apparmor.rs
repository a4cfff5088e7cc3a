//! Ubuntu's AppArmor restriction of unprivileged user namespaces (23.10+).
//!
//! With `kernel.apparmor_restrict_unprivileged_userns = 1`, an unconfined program's
//! `unshare(CLONE_NEWUSER)` succeeds, but the new namespace's credentials move to the
//! `unprivileged_userns` profile, which denies every capability: writing `uid_map`
//! then fails with EPERM (`setgroups` with EACCES), and so would TUNSETIFF, netlink
//! and mount. Programs that need user namespaces get a profile with a `userns` rule;
//! the packages install one for wg-wrap. This module reads the sysctl, this
//! process's label and — definitively — the label a child gets after making a user
//! namespace.

use super::{Check, Roots};
use crate::spawn;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

// The launcher's label parser, shared so both sides read labels the same way.
#[allow(dead_code)]
#[path = "../../launcher/src/label.rs"]
mod label;

pub use label::Label;

/// What the packages install, and how to load it.
pub const PROFILE_FILE: &str = "/etc/apparmor.d/wg-wrap";
/// The packages' copy of the profile, which their install scripts put in place.
const SHIPPED_PROFILE: &str = "/usr/share/wg-wrap/apparmor/wg-wrap";
pub const INSTALLED_BINARY: &str = "/usr/bin/wg-wrap";
pub const INSTALLED_LAUNCHER: &str = "/usr/libexec/wg-wrap/launcher";
/// The profile Ubuntu moves a restricted new user namespace into.
const RESTRICTED_PROFILE: &[u8] = b"unprivileged_userns";
const LABEL_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// AppArmor as this process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArmor {
    /// `/sys/module/apparmor/parameters/enabled` is `Y`.
    pub enabled: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu kernels only).
    pub restrict: Option<i64>,
    /// This process's label (`attr/apparmor/current`, else `attr/current`).
    pub label: Option<String>,
    /// The packages' profile is in /etc/apparmor.d. They install it only where
    /// AppArmor 4 was there when they were configured: after a release upgrade that
    /// brought AppArmor 4 (and the restriction) it can be missing.
    pub profile_installed: bool,
    /// The packages' copy of the profile (what their install scripts put in place).
    pub profile_shipped: bool,
}

impl AppArmor {
    pub fn read(roots: &Roots) -> AppArmor {
        let enabled = Roots::read(&roots.sys, "module/apparmor/parameters/enabled")
            .is_some_and(|v| v.trim() == "Y");
        AppArmor {
            enabled,
            restrict: roots.proc_number("sys/kernel/apparmor_restrict_unprivileged_userns"),
            label: read_label(&roots.proc.join("self/attr")),
            profile_installed: roots.etc.join("apparmor.d/wg-wrap").is_file(),
            profile_shipped: roots.usr.join("share/wg-wrap/apparmor/wg-wrap").is_file(),
        }
    }

    /// Whether new user namespaces of unconfined programs lose their capabilities.
    pub fn restricting(&self) -> bool {
        self.enabled && self.restrict == Some(1)
    }
}

/// The AppArmor label in a `/proc/PID/attr` directory: the LSM's own file first
/// (Linux >= 5.8); the shared `current` belongs to whichever LSM is the major one,
/// so it counts only if it reads as an AppArmor label.
pub fn read_label(attr: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(attr.join("apparmor/current")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::read_to_string(attr.join("current")).ok()?
        }
        Err(_) => return None,
    };
    label::parse(text.as_bytes()).map(|_| text.trim_end_matches(['\n', '\0']).to_owned())
}

/// What the child that made a user namespace reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLabel {
    Label(String),
    /// The child could not be run or said nothing useful.
    Failed(String),
}

/// Start `wg-wrap __probe --label` in a new user namespace (made between fork and
/// exec) and read the label it reports.
pub fn probe_child_label() -> ChildLabel {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return ChildLabel::Failed(format!("cannot find this program: {e}")),
    };
    let mut cmd = Command::new(exe);
    cmd.args(["__probe", "--label"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn::in_new_user_namespace(&mut cmd);
    let out = match spawn::output_timeout(cmd, LABEL_PROBE_TIMEOUT) {
        Ok(out) => out,
        Err(e) => return ChildLabel::Failed(format!("{e:#}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.strip_prefix("label ")) {
        Some("-") | None => ChildLabel::Failed(format!(
            "it reported no label ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Some(label) => ChildLabel::Label(label.to_owned()),
    }
}

pub fn check(aa: &AppArmor, child: Option<&ChildLabel>, exe: &Path) -> Check {
    if !aa.enabled {
        return Check::ok("apparmor", "AppArmor is not active");
    }
    let own = aa.label.as_deref().unwrap_or("unknown");
    if !aa.restricting() {
        return Check::ok(
            "apparmor",
            format!("AppArmor does not restrict unprivileged user namespaces (label {own})"),
        );
    }
    let child_restricted = match child {
        Some(ChildLabel::Label(l)) => {
            label::parse(l.as_bytes()).map(|l| l.has_profile(RESTRICTED_PROFILE))
        }
        _ => None,
    };
    let own_parsed = aa.label.as_deref().and_then(|l| label::parse(l.as_bytes()));
    let restricted = match child_restricted {
        Some(r) => r,
        // No answer from the child: judge by our own label. Plain unconfined is
        // exactly what the restriction applies to.
        None => matches!(own_parsed, Some(Label::Unconfined) | None),
    };
    if !restricted {
        return Check::ok(
            "apparmor",
            format!(
                "AppArmor restricts unprivileged user namespaces, and wg-wrap's label {own} \
                 allows them"
            ),
        );
    }
    let shown_child = match child {
        Some(ChildLabel::Label(l)) => format!("a new user namespace gets {l}"),
        Some(ChildLabel::Failed(why)) => format!("the user-namespace probe failed: {why}"),
        None => "no user-namespace probe ran".to_owned(),
    };
    let mut fix = if aa.profile_installed || !aa.profile_shipped {
        format!(
            "install the wg-wrap package, whose AppArmor profile {PROFILE_FILE} covers \
             {INSTALLED_BINARY} and {INSTALLED_LAUNCHER}, and load it: sudo apparmor_parser -r \
             {PROFILE_FILE}"
        )
    } else {
        // The package is here, its profile is not (installed before AppArmor 4 was).
        format!(
            "install the package's AppArmor profile and load it: sudo install -m 0644 \
             {SHIPPED_PROFILE} {PROFILE_FILE} && sudo apparmor_parser -r {PROFILE_FILE} (on \
             Debian and Ubuntu `sudo dpkg-reconfigure wg-wrap` does both)"
        )
    };
    if exe != Path::new(INSTALLED_BINARY) {
        fix.push_str(&format!(
            " (the profile attaches by path: run {INSTALLED_BINARY}, not {})",
            exe.display()
        ));
    }
    Check::error(
        "apparmor",
        format!(
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns = 1) and no profile allows them for \
             wg-wrap: it runs as {own}, {shown_child}"
        ),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::host::tests::FakeRoots;
    use crate::check::Status;

    fn restricted(label: &str) -> AppArmor {
        AppArmor {
            enabled: true,
            restrict: Some(1),
            label: Some(label.to_owned()),
            profile_installed: true,
            profile_shipped: true,
        }
    }

    #[test]
    fn reads_the_label_files() {
        let fake = FakeRoots::new();
        // No AppArmor: nothing under attr/apparmor, attr/current unreadable.
        assert_eq!(AppArmor::read(&fake.roots), AppArmor::default());
        fake.write("sys/module/apparmor/parameters/enabled", "Y\n");
        fake.write(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        );
        fake.write("proc/self/attr/current", "unconfined\n");
        let aa = AppArmor::read(&fake.roots);
        assert!(aa.restricting());
        assert_eq!(aa.label.as_deref(), Some("unconfined"));
        // The AppArmor directory wins over the shared file.
        fake.write("proc/self/attr/apparmor/current", "wg-wrap (unconfined)\n");
        assert_eq!(
            AppArmor::read(&fake.roots).label.as_deref(),
            Some("wg-wrap (unconfined)")
        );
        // Where the packages' profile is: shipped, then installed.
        let aa = AppArmor::read(&fake.roots);
        assert!(!aa.profile_installed && !aa.profile_shipped);
        fake.write("usr/share/wg-wrap/apparmor/wg-wrap", "profile\n");
        assert!(AppArmor::read(&fake.roots).profile_shipped);
        fake.write("etc/apparmor.d/wg-wrap", "profile\n");
        assert!(AppArmor::read(&fake.roots).profile_installed);
    }

    #[test]
    fn an_selinux_context_is_not_a_label() {
        let fake = FakeRoots::new();
        fake.write(
            "proc/self/attr/current",
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023\0",
        );
        assert_eq!(read_label(&fake.roots.proc.join("self/attr")), None);
    }

    #[test]
    fn restriction_without_a_profile_is_an_error_naming_the_profile() {
        let child = ChildLabel::Label("unprivileged_userns (enforce)".into());
        let c = check(
            &restricted("unconfined"),
            Some(&child),
            Path::new("/home/u/.cargo/bin/wg-wrap"),
        );
        assert_eq!(c.status, Status::Error);
        assert!(c.message.contains("unprivileged_userns (enforce)"), "{c:?}");
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("sudo apparmor_parser -r /etc/apparmor.d/wg-wrap"),
            "{fix}"
        );
        assert!(fix.contains("/usr/libexec/wg-wrap/launcher"), "{fix}");
        assert!(fix.contains("not /home/u/.cargo/bin/wg-wrap"), "{fix}");
        // The package is installed but its profile is not (installed before AppArmor
        // 4 came with a release upgrade): the fix puts the shipped copy in place.
        let upgraded = AppArmor {
            profile_installed: false,
            ..restricted("unconfined")
        };
        let fix = check(&upgraded, Some(&child), Path::new(INSTALLED_BINARY))
            .fix
            .unwrap();
        assert!(
            fix.contains(
                "sudo install -m 0644 /usr/share/wg-wrap/apparmor/wg-wrap /etc/apparmor.d/wg-wrap"
            ),
            "{fix}"
        );
        assert!(fix.contains("dpkg-reconfigure wg-wrap"), "{fix}");
        // A stacked label counts too, and no child answer falls back on our label.
        let stacked = ChildLabel::Label("wg-wrap//&unprivileged_userns (mixed)".into());
        assert_eq!(
            check(
                &restricted("unconfined"),
                Some(&stacked),
                Path::new(INSTALLED_BINARY)
            )
            .status,
            Status::Error
        );
        let failed = ChildLabel::Failed("EACCES".into());
        assert_eq!(
            check(
                &restricted("unconfined"),
                Some(&failed),
                Path::new(INSTALLED_BINARY)
            )
            .status,
            Status::Error
        );
    }

    #[test]
    fn the_loaded_profile_makes_it_fine() {
        let child = ChildLabel::Label("wg-wrap (unconfined)".into());
        let c = check(
            &restricted("wg-wrap (unconfined)"),
            Some(&child),
            Path::new(INSTALLED_BINARY),
        );
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let failed = ChildLabel::Failed("timeout".into());
        assert_eq!(
            check(
                &restricted("wg-wrap (unconfined)"),
                Some(&failed),
                Path::new(INSTALLED_BINARY)
            )
            .status,
            Status::Ok
        );
    }

    #[test]
    fn no_restriction_no_apparmor() {
        assert_eq!(
            check(&AppArmor::default(), None, Path::new("/x")).status,
            Status::Ok
        );
        let off = AppArmor {
            enabled: true,
            restrict: Some(0),
            label: Some("unconfined".into()),
            profile_installed: false,
            profile_shipped: false,
        };
        assert_eq!(check(&off, None, Path::new("/x")).status, Status::Ok);
        // Debian: AppArmor on, no such sysctl at all.
        let debian = AppArmor {
            restrict: None,
            ..off
        };
        assert!(!debian.restricting());
    }
}
