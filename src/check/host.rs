//! The host's settings as read from the (injected) roots, and the report they make
//! together with the probes' results.

use super::apparmor::{self, AppArmor, ChildLabel};
use super::probe::Outcome;
use super::{device, kernel, Check, Roots};
use crate::dirs::Dirs;
use crate::runtime::Runtime;
use std::path::PathBuf;

/// Everything the static checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `kernel.osrelease`.
    pub kernel_release: Option<String>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<i64>,
    /// `kernel.unprivileged_userns_clone` (Debian and some others; absent upstream).
    pub unprivileged_userns_clone: Option<i64>,
    pub apparmor: AppArmor,
    pub tun: device::Node,
    /// `vm.memfd_noexec` (Linux >= 6.3).
    pub memfd_noexec: Option<i64>,
    pub launcher: kernel::LauncherFiles,
    pub uid: u32,
}

impl Facts {
    pub fn read(roots: &Roots) -> Facts {
        Facts {
            kernel_release: Roots::read(&roots.proc, "sys/kernel/osrelease")
                .map(|s| s.trim().to_owned()),
            max_user_namespaces: roots.proc_number("sys/user/max_user_namespaces"),
            unprivileged_userns_clone: roots.proc_number("sys/kernel/unprivileged_userns_clone"),
            apparmor: AppArmor::read(roots),
            tun: device::Node::read(&roots.dev.join("net/tun")),
            memfd_noexec: roots.proc_number("sys/vm/memfd_noexec"),
            launcher: kernel::LauncherFiles::find(),
            uid: rustix::process::getuid().as_raw(),
        }
    }
}

/// The host checks, in the order they are shown, with the probe's failure (if any)
/// attributed to the check it belongs to.
pub fn checks(
    facts: &Facts,
    child_label: Option<&ChildLabel>,
    outcome: &Outcome,
    dirs: &Dirs,
) -> Vec<Check> {
    let gids = groups();
    let mut checks = vec![
        kernel::version(facts.kernel_release.as_deref()),
        kernel::user_namespaces(facts.max_user_namespaces, facts.unprivileged_userns_clone),
        apparmor::check(&facts.apparmor, child_label, &current_exe()),
        device::check(&facts.tun, facts.uid, &gids),
        kernel::launcher(&facts.launcher, facts.memfd_noexec),
        runtime_dir(dirs),
    ];
    let probe = outcome.check(facts.apparmor.restricting());
    if let Some(owner) = outcome.owner(facts.apparmor.restricting()) {
        if let Some(check) = checks.iter_mut().find(|c| c.name == owner) {
            check.absorb(&probe);
        }
    }
    checks.push(probe);
    checks
}

impl Check {
    /// Make this check an error because the probe failed in its area; a static
    /// verdict that already is an error keeps its own words.
    fn absorb(&mut self, probe: &Check) {
        if self.status == super::Status::Error {
            return;
        }
        self.status = super::Status::Error;
        self.message = format!("{} — but the session probe failed here", self.message);
        if self.fix.is_none() {
            // The probe's own fix points here; this line must say something itself.
            self.fix = Some(match self.name {
                // The settings allow it, yet creating one failed: something between
                // us and the kernel refuses (a container's seccomp profile, flatpak,
                // another security module).
                "userns" => "the kernel allows unprivileged user namespaces, but they are \
                             refused here: inside a container or sandbox (docker and podman's \
                             default seccomp profiles, flatpak) run wg-wrap on the host or \
                             allow user namespaces there"
                    .to_owned(),
                _ => probe.fix.clone().unwrap_or_default(),
            });
        }
    }
}

/// The runtime directory, opened exactly as every command opens it (created 0700 if
/// missing, refused when not ours or writable by others).
pub fn runtime_dir(dirs: &Dirs) -> Check {
    let shown = dirs.runtime.display().to_string();
    match Runtime::open(dirs) {
        Err(e) => Check::error(
            "runtime-dir",
            format!("{e:#}"),
            format!(
                "remove {shown} (or make it yours with mode 0700), or point WG_WRAP_RUNTIME_DIR \
                 at a private directory"
            ),
        ),
        Ok(_) if dirs.runtime_is_fallback => Check::warning(
            "runtime-dir",
            format!("XDG_RUNTIME_DIR is not set, so runtime state goes to {shown}"),
            "log in through a session manager that sets XDG_RUNTIME_DIR (pam_systemd), or \
             set WG_WRAP_RUNTIME_DIR to a private directory",
        ),
        Ok(_) => Check::ok("runtime-dir", format!("{shown} is yours and private")),
    }
}

fn groups() -> Vec<u32> {
    let mut gids: Vec<u32> = rustix::process::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    gids.push(rustix::process::getgid().as_raw());
    gids
}

fn current_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::check::Status;

    /// Fake `proc`, `sys`, `dev` and `etc` trees in a fresh directory, removed on drop.
    pub struct FakeRoots {
        pub base: PathBuf,
        pub roots: Roots,
    }

    impl FakeRoots {
        pub fn new() -> FakeRoots {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let base = std::env::temp_dir().join(format!(
                "wg-wrap-check-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&base);
            for dir in ["proc", "sys", "dev", "etc", "usr"] {
                std::fs::create_dir_all(base.join(dir)).unwrap();
            }
            let roots = Roots {
                proc: base.join("proc"),
                sys: base.join("sys"),
                dev: base.join("dev"),
                etc: base.join("etc"),
                usr: base.join("usr"),
            };
            FakeRoots { base, roots }
        }

        /// Write `text` to `rel` (below the base, e.g. `proc/sys/vm/memfd_noexec`).
        pub fn write(&self, rel: &str, text: &str) {
            let path = self.base.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    impl Drop for FakeRoots {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    fn dirs(fake: &FakeRoots) -> Dirs {
        let runtime = fake.base.join("runtime");
        Dirs::from_vars(
            |k| (k == "WG_WRAP_RUNTIME_DIR").then(|| runtime.clone().into_os_string()),
            0,
        )
    }

    fn worked() -> Outcome {
        Outcome::Worked { label: None }
    }

    /// `facts` with a usable /dev/net/tun: the fake dev tree cannot hold a device node
    /// without mknod; the node's verdict has its own tests (device.rs).
    fn with_usable_tun(mut facts: Facts) -> Facts {
        facts.tun = device::Node::Present {
            path: "/dev/net/tun".into(),
            is_char_device: true,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        facts
    }

    /// A healthy Debian-like host: every check passes.
    fn healthy() -> FakeRoots {
        let fake = FakeRoots::new();
        fake.write("proc/sys/kernel/osrelease", "6.1.0-13-amd64\n");
        fake.write("proc/sys/user/max_user_namespaces", "63704\n");
        fake.write("proc/sys/kernel/unprivileged_userns_clone", "1\n");
        fake.write("proc/sys/vm/memfd_noexec", "0\n");
        fake
    }

    #[test]
    fn a_healthy_host_passes() {
        let fake = healthy();
        let facts = with_usable_tun(Facts::read(&fake.roots));
        assert_eq!(facts.kernel_release.as_deref(), Some("6.1.0-13-amd64"));
        assert_eq!(facts.max_user_namespaces, Some(63704));
        assert!(!facts.apparmor.enabled);
        let checks = checks(&facts, None, &worked(), &dirs(&fake));
        for c in &checks {
            assert_eq!(c.status, Status::Ok, "{c:?}");
        }
        let names: Vec<_> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "kernel",
                "userns",
                "apparmor",
                "tun",
                "launcher",
                "runtime-dir",
                "probe"
            ]
        );
    }

    #[test]
    fn every_sysctl_is_read_from_the_fake_tree() {
        let fake = healthy();
        fake.write("proc/sys/kernel/osrelease", "5.4.0-150-generic\n");
        fake.write("proc/sys/user/max_user_namespaces", "0\n");
        fake.write("proc/sys/vm/memfd_noexec", "2\n");
        let mut facts = Facts::read(&fake.roots);
        facts.launcher = kernel::LauncherFiles::default();
        let checks = checks(&facts, None, &worked(), &dirs(&fake));
        assert_eq!(find(&checks, "kernel").status, Status::Error);
        assert_eq!(find(&checks, "userns").status, Status::Error);
        assert_eq!(find(&checks, "launcher").status, Status::Error);
        // The fake dev tree has no /dev/net/tun.
        assert_eq!(find(&checks, "tun").status, Status::Error);
    }

    #[test]
    fn ubuntu_restriction_from_the_fake_tree() {
        let fake = healthy();
        fake.write("sys/module/apparmor/parameters/enabled", "Y\n");
        fake.write(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        );
        fake.write("proc/self/attr/apparmor/current", "unconfined\n");
        let facts = Facts::read(&fake.roots);
        assert!(facts.apparmor.restricting());
        let child = ChildLabel::Label("unprivileged_userns (enforce)".into());
        let outcome = Outcome::Launcher {
            step: "write /proc/self/uid_map".into(),
            errno: "EPERM".into(),
        };
        let checks = checks(&facts, Some(&child), &outcome, &dirs(&fake));
        let aa = find(&checks, "apparmor");
        assert_eq!(aa.status, Status::Error);
        assert!(aa
            .fix
            .as_ref()
            .unwrap()
            .contains("sudo apparmor_parser -r /etc/apparmor.d/wg-wrap"));
        let probe = find(&checks, "probe");
        assert_eq!(probe.status, Status::Error);
        assert!(probe.message.contains("write /proc/self/uid_map: EPERM"));
        // The userns sysctls are fine: the failure is not blamed on them.
        assert_eq!(find(&checks, "userns").status, Status::Ok);
    }

    #[test]
    fn a_probe_failure_marks_the_check_it_belongs_to() {
        let fake = healthy();
        let facts = with_usable_tun(Facts::read(&fake.roots));
        let outcome = Outcome::Step {
            step: "tun".into(),
            errno: "EACCES".into(),
        };
        let checks = checks(&facts, None, &outcome, &dirs(&fake));
        let tun = find(&checks, "tun");
        assert_eq!(tun.status, Status::Error);
        assert!(tun
            .fix
            .as_ref()
            .unwrap()
            .contains("sudo chmod 0666 /dev/net/tun"));

        // User namespaces allowed by every setting, yet unshare is refused (a
        // container's seccomp profile): the userns line says so, and does not send the
        // reader back to itself.
        let outcome = Outcome::Launcher {
            step: "unshare".into(),
            errno: "EPERM".into(),
        };
        let refused = super::checks(&facts, None, &outcome, &dirs(&fake));
        let userns = find(&refused, "userns");
        assert_eq!(userns.status, Status::Error, "{userns:?}");
        let fix = userns.fix.as_deref().unwrap();
        assert!(fix.contains("container"), "{fix}");
        assert!(!fix.contains("userns line"), "{fix}");
        assert!(find(&refused, "probe")
            .fix
            .as_deref()
            .unwrap()
            .contains("see the userns line above"));
    }

    #[test]
    fn runtime_dir_problems() {
        let fake = FakeRoots::new();
        let d = dirs(&fake);
        assert_eq!(runtime_dir(&d).status, Status::Ok);
        // Writable by others: refused, as every command would.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d.runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
        let c = runtime_dir(&d);
        assert_eq!(c.status, Status::Error, "{c:?}");
        assert!(c.message.contains("others can write to it"), "{c:?}");
        // Someone else's directory: refused too. As root, a directory given to
        // `nobody`; as anyone else, the root directory (owned by root).
        let mut foreign = dirs(&fake);
        if rustix::process::geteuid().is_root() {
            foreign.runtime = fake.base.join("foreign");
            std::fs::create_dir(&foreign.runtime).unwrap();
            std::os::unix::fs::chown(&foreign.runtime, Some(65534), Some(65534)).unwrap();
        } else {
            foreign.runtime = PathBuf::from("/");
        }
        let c = runtime_dir(&foreign);
        assert_eq!(c.status, Status::Error, "{c:?}");
        assert!(c.message.contains("not by you"), "{c:?}");
        assert!(
            c.fix
                .as_deref()
                .unwrap_or("")
                .contains("WG_WRAP_RUNTIME_DIR"),
            "{c:?}"
        );
        // No XDG_RUNTIME_DIR: the /tmp fallback, with a warning.
        let mut fallback = Dirs::from_vars(|_| None, rustix::process::getuid().as_raw());
        assert!(fallback.runtime_is_fallback);
        fallback.runtime = fake.base.join("fallback");
        let c = runtime_dir(&fallback);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.message.contains("XDG_RUNTIME_DIR is not set"));
    }
}
