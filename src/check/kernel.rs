//! Kernel features: the version, unprivileged user namespaces, and whether the
//! embedded launcher may run from a memfd (or an installed one is there instead).

use super::Check;
use crate::launcher;
use std::path::PathBuf;

/// pidfd `setns` (joining a session) needs Linux 5.8.
const MIN_KERNEL: (u32, u32) = (5, 8);
/// A value for `user.max_user_namespaces` when it is 0 (what most distros ship is
/// far higher; this is plenty for wg-wrap and nested sandboxes).
const SUGGESTED_MAX_USERNS: u32 = 15000;
const SYSCTL_FILE: &str = "/etc/sysctl.d/60-wg-wrap.conf";

/// `5.15.0-91-generic` -> (5, 15).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn version(release: Option<&str>) -> Check {
    let Some(release) = release else {
        return Check::warning(
            "kernel",
            "cannot read the kernel version (/proc/sys/kernel/osrelease)",
            "mount /proc",
        );
    };
    match parse_release(release) {
        Some(v) if v >= MIN_KERNEL => Check::ok("kernel", format!("Linux {release}")),
        Some(_) => Check::error(
            "kernel",
            format!(
                "Linux {release} is older than {}.{}, which wg-wrap needs to join sessions \
                 (setns with a pidfd)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            format!(
                "upgrade to a kernel >= {}.{} (your distribution's current kernel package)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        None => Check::warning(
            "kernel",
            format!("cannot tell the version of kernel {release:?}"),
            "make sure it is Linux 5.8 or newer",
        ),
    }
}

pub fn user_namespaces(max: Option<i64>, unprivileged_clone: Option<i64>) -> Check {
    if unprivileged_clone == Some(0) {
        return Check::error(
            "userns",
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            format!(
                "sudo sysctl -w kernel.unprivileged_userns_clone=1, and keep it across reboots: \
                 echo kernel.unprivileged_userns_clone=1 | sudo tee {SYSCTL_FILE}"
            ),
        );
    }
    if max == Some(0) {
        return Check::error(
            "userns",
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            format!(
                "sudo sysctl -w user.max_user_namespaces={SUGGESTED_MAX_USERNS}, and keep it across \
                 reboots: echo user.max_user_namespaces={SUGGESTED_MAX_USERNS} | sudo tee {SYSCTL_FILE}"
            ),
        );
    }
    let shown = match max {
        Some(n) => format!("user.max_user_namespaces = {n}"),
        None => "no limit readable".to_owned(),
    };
    Check::ok(
        "userns",
        format!("unprivileged user namespaces are enabled ({shown})"),
    )
}

/// Where a launcher could come from, besides the embedded copy.
#[derive(Debug, Clone, Default)]
pub struct LauncherFiles {
    /// `$WG_WRAP_LAUNCHER`, as given.
    pub env_override: Option<PathBuf>,
    /// The installed launcher beside this binary, if it exists.
    pub installed: Option<PathBuf>,
    /// Where an installed launcher would be looked for.
    pub installed_path: Option<PathBuf>,
}

impl LauncherFiles {
    pub fn find() -> LauncherFiles {
        LauncherFiles {
            env_override: std::env::var_os(launcher::ENV_OVERRIDE).map(PathBuf::from),
            installed: launcher::installed(),
            installed_path: launcher::installed_path(),
        }
    }
}

pub fn launcher(files: &LauncherFiles, memfd_noexec: Option<i64>) -> Check {
    if let Some(path) = &files.env_override {
        return if path.is_file() {
            Check::ok(
                "launcher",
                format!("{} = {}", launcher::ENV_OVERRIDE, path.display()),
            )
        } else {
            Check::error(
                "launcher",
                format!(
                    "{} = {} does not exist",
                    launcher::ENV_OVERRIDE,
                    path.display()
                ),
                format!(
                    "unset {} to use the built-in launcher",
                    launcher::ENV_OVERRIDE
                ),
            )
        };
    }
    if let Some(path) = &files.installed {
        return Check::ok("launcher", format!("installed at {}", path.display()));
    }
    let install = match &files.installed_path {
        Some(path) => format!(
            "install the wg-wrap package (it ships the launcher), or write it beside this binary: \
             mkdir -p {dir} && wg-wrap __dump-launcher {path}",
            dir = path.parent().unwrap_or(path).display(),
            path = path.display()
        ),
        None => "install the wg-wrap package (it ships the launcher)".to_owned(),
    };
    match memfd_noexec {
        Some(n) if n >= 2 => Check::error(
            "launcher",
            format!(
                "vm.memfd_noexec = {n} forbids the built-in launcher (it runs from a memfd) and \
                 no launcher is installed"
            ),
            install,
        ),
        Some(n) => Check::ok(
            "launcher",
            format!("built-in, run from a memfd (vm.memfd_noexec = {n} allows it)"),
        ),
        None => Check::ok("launcher", "built-in, run from a memfd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
        assert_eq!(version(Some("5.8.0")).status, Status::Ok);
        assert_eq!(version(Some("6.1.0-13-amd64")).status, Status::Ok);
        let old = version(Some("5.4.0-150-generic"));
        assert_eq!(old.status, Status::Error);
        assert!(old.message.contains("older than 5.8"), "{old:?}");
        assert_eq!(version(Some("4.19.0")).status, Status::Error);
        assert_eq!(version(None).status, Status::Warning);
    }

    #[test]
    fn user_namespace_sysctls() {
        assert_eq!(user_namespaces(Some(96365), None).status, Status::Ok);
        assert_eq!(user_namespaces(Some(96365), Some(1)).status, Status::Ok);
        let off = user_namespaces(Some(0), None);
        assert_eq!(off.status, Status::Error);
        assert!(off
            .fix
            .unwrap()
            .contains("sudo sysctl -w user.max_user_namespaces="));
        let debian = user_namespaces(Some(96365), Some(0));
        assert_eq!(debian.status, Status::Error);
        assert!(debian
            .fix
            .unwrap()
            .contains("sudo sysctl -w kernel.unprivileged_userns_clone=1"));
    }

    #[test]
    fn launcher_sources() {
        let none = LauncherFiles {
            installed_path: Some("/opt/x/libexec/wg-wrap/launcher".into()),
            ..LauncherFiles::default()
        };
        assert_eq!(launcher(&none, Some(0)).status, Status::Ok);
        assert_eq!(launcher(&none, Some(1)).status, Status::Ok);
        assert_eq!(launcher(&none, None).status, Status::Ok);
        let forbidden = launcher(&none, Some(2));
        assert_eq!(forbidden.status, Status::Error);
        assert!(forbidden.message.contains("vm.memfd_noexec = 2"));
        assert!(forbidden
            .fix
            .unwrap()
            .contains("wg-wrap __dump-launcher /opt/x/libexec/wg-wrap/launcher"));
        let installed = LauncherFiles {
            installed: Some("/usr/libexec/wg-wrap/launcher".into()),
            ..none.clone()
        };
        assert_eq!(launcher(&installed, Some(2)).status, Status::Ok);
        let missing = LauncherFiles {
            env_override: Some("/nonexistent/launcher".into()),
            ..none
        };
        assert_eq!(launcher(&missing, Some(0)).status, Status::Error);
    }
}
