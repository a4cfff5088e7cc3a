//! From a failed step to its likely cause: used by `wg-wrap check` to attribute the
//! probe's failure, and by `up`/`exec` so that a session that fails to start names
//! the cause and points to `wg-wrap check`.

use super::apparmor::AppArmor;
use super::Roots;

/// A likely cause: which check covers it, and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub check: &'static str,
    pub text: &'static str,
}

const USERNS_OFF: Cause = Cause {
    check: "userns",
    text: "unprivileged user namespaces are disabled on this system",
};
const APPARMOR: Cause = Cause {
    check: "apparmor",
    text: "AppArmor restricts unprivileged user namespaces \
           (kernel.apparmor_restrict_unprivileged_userns = 1) and wg-wrap's AppArmor profile is \
           not loaded or does not cover this binary",
};
const UNREADABLE_LAUNCHER: Cause = Cause {
    check: "launcher",
    text: "the launcher file is not readable (install it mode 0755)",
};
const TUN_PERMISSION: Cause = Cause {
    check: "tun",
    text: "/dev/net/tun is not usable by you (it must be readable and writable: mode 0666)",
};
const TUN_MISSING: Cause = Cause {
    check: "tun",
    text: "/dev/net/tun is missing (the tun module is not loaded)",
};

/// The last `wg-wrap: <step>: <ERRNO>` line the launcher printed, as (step, ERRNO).
pub fn launcher_failure(text: &str) -> Option<(String, String)> {
    text.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("wg-wrap: ")?;
        let (step, errno) = rest.rsplit_once(": ")?;
        let errno_like = errno.starts_with('E') && errno.bytes().all(|b| b.is_ascii_uppercase())
            || errno.starts_with("errno ");
        errno_like.then(|| (step.to_owned(), errno.to_owned()))
    })
}

/// Why the launcher's `create` fails at `step` with `errno`.
pub fn cause_of_launcher_step(step: &str, errno: &str, restricting: bool) -> Option<Cause> {
    let map_step = matches!(
        step,
        "write /proc/self/uid_map" | "write /proc/self/setgroups" | "write /proc/self/gid_map"
    );
    let capability_step = matches!(
        step,
        "make / private" | "capset" | "ambient CAP_NET_ADMIN" | "ambient CAP_SYS_ADMIN"
    );
    match (step, errno) {
        // AppArmor answers EACCES when its policy denies the user namespace itself
        // (a confining profile without a `userns` rule).
        ("unshare", "EACCES") if restricting => Some(APPARMOR),
        ("unshare", "EPERM" | "ENOSPC" | "EUSERS") => Some(USERNS_OFF),
        _ if (map_step || capability_step) && restricting => Some(APPARMOR),
        ("write /proc/self/uid_map", "EACCES") => Some(UNREADABLE_LAUNCHER),
        _ if map_step => Some(USERNS_OFF),
        _ => None,
    }
}

/// Why the supervisor's set-up failed with `error` (its `step: cause` text).
pub fn cause_of_supervisor_error(error: &str, restricting: bool) -> Option<Cause> {
    let errno = error
        .rsplit_once("(os error ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse::<i32>().ok());
    if error.starts_with("create the TUN device") {
        return match errno {
            Some(1 | 13) if restricting => Some(APPARMOR),
            Some(1 | 13) => Some(TUN_PERMISSION),
            Some(2 | 6 | 19) => Some(TUN_MISSING),
            _ => None,
        };
    }
    match errno {
        Some(1 | 13) if restricting => Some(APPARMOR),
        _ => None,
    }
}

fn restricting_here() -> bool {
    AppArmor::read(&Roots::host()).restricting()
}

fn suffix(cause: Option<Cause>) -> String {
    match cause {
        Some(cause) => format!(
            "\nlikely cause: {}; run 'wg-wrap check' for details",
            cause.text
        ),
        None => "\nrun 'wg-wrap check' for details".to_owned(),
    }
}

/// What to add to the error of a launcher that failed with `output`.
pub fn for_launcher_output(output: &str) -> String {
    match launcher_failure(output) {
        Some((step, errno)) => suffix(cause_of_launcher_step(&step, &errno, restricting_here())),
        None => String::new(),
    }
}

/// What to add to a supervisor's set-up error.
pub fn for_supervisor_error(error: &str) -> String {
    suffix(cause_of_supervisor_error(error, restricting_here()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_launchers_line() {
        assert_eq!(
            launcher_failure("some log\nwg-wrap: write /proc/self/uid_map: EPERM\n"),
            Some(("write /proc/self/uid_map".into(), "EPERM".into()))
        );
        assert_eq!(
            launcher_failure("wg-wrap: unshare: errno 200"),
            Some(("unshare".into(), "errno 200".into()))
        );
        assert_eq!(launcher_failure("wg-wrap: foo: not an errno"), None);
        assert_eq!(launcher_failure(""), None);
    }

    #[test]
    fn launcher_steps() {
        let c = |step, errno, r| cause_of_launcher_step(step, errno, r).map(|c| c.check);
        assert_eq!(c("unshare", "EPERM", false), Some("userns"));
        assert_eq!(c("unshare", "ENOSPC", true), Some("userns"));
        // A confining profile without a `userns` rule.
        assert_eq!(c("unshare", "EACCES", true), Some("apparmor"));
        assert_eq!(c("unshare", "EACCES", false), None);
        // The AppArmor restriction: unshare works, the maps do not.
        assert_eq!(
            c("write /proc/self/uid_map", "EPERM", true),
            Some("apparmor")
        );
        assert_eq!(
            c("write /proc/self/setgroups", "EACCES", true),
            Some("apparmor")
        );
        assert_eq!(
            c("write /proc/self/uid_map", "EPERM", false),
            Some("userns")
        );
        assert_eq!(
            c("write /proc/self/uid_map", "EACCES", false),
            Some("launcher")
        );
        assert_eq!(c("fork", "EAGAIN", true), None);
    }

    #[test]
    fn supervisor_errors() {
        let tun = "create the TUN device (is /dev/net/tun usable by this user?): Permission denied (os error 13)";
        assert_eq!(cause_of_supervisor_error(tun, false), Some(TUN_PERMISSION));
        assert_eq!(cause_of_supervisor_error(tun, true), Some(APPARMOR));
        let missing = "create the TUN device (is /dev/net/tun usable by this user?): No such file or directory (os error 2)";
        assert_eq!(cause_of_supervisor_error(missing, false), Some(TUN_MISSING));
        let netlink =
            "configure the network namespace: bring lo up: Operation not permitted (os error 1)";
        assert_eq!(cause_of_supervisor_error(netlink, true), Some(APPARMOR));
        assert_eq!(cause_of_supervisor_error(netlink, false), None);
        assert!(suffix(Some(TUN_PERMISSION)).contains("run 'wg-wrap check' for details"));
    }
}
