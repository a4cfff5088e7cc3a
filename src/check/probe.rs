//! The session probe, seen from the CLI: start `wg-wrap __probe` through the
//! launcher's `create` exactly as a supervisor is started (see
//! `supervisor::probe`), and say which check a failure belongs to.

use super::{apparmor, device, Check};
use crate::launcher::Launcher;
use crate::spawn;
use rustix::fs::{Mode, OFlags};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

/// How the probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step worked; the label the supervisor would run under, if AppArmor is on.
    Worked { label: Option<String> },
    /// The launcher failed at `step` (its `wg-wrap: <step>: <ERRNO>` line).
    Launcher { step: String, errno: String },
    /// The probe itself failed at `step` (`tun`, `netlink`, `address`, `link`, `mount`).
    Step { step: String, errno: String },
    /// It could not even be started (the launcher could not be found or run).
    NotStarted(String),
    /// Anything else: exit status and output, for the report.
    Unexpected(String),
}

/// Run the probe.
pub fn run() -> Outcome {
    let launcher = match Launcher::locate() {
        Ok(l) => l,
        Err(e) => return Outcome::NotStarted(format!("{e:#}")),
    };
    let exe = match rustix::fs::open(
        "/proc/self/exe",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return Outcome::NotStarted(format!("open /proc/self/exe: {e}")),
    };
    let mut cmd = launcher.command();
    cmd.arg("create")
        .arg(exe.as_raw_fd().to_string())
        .args(["--", "wg-wrap", "__probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn::inherit_fds(&mut cmd, &[exe.as_raw_fd()]);
    match spawn::output_timeout(cmd, TIMEOUT) {
        Ok(out) => parse(
            out.status.code(),
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ),
        Err(e) => Outcome::NotStarted(format!("{e:#}")),
    }
}

/// Read the probe's report (stdout) and the launcher's (stderr).
pub fn parse(code: Option<i32>, stdout: &str, stderr: &str) -> Outcome {
    let mut label = None;
    for line in stdout.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("label"), Some(rest), more) => {
                let text = match more {
                    Some(more) => format!("{rest} {more}"),
                    None => rest.to_owned(),
                };
                label = (text != "-").then_some(text);
            }
            (Some("fail"), Some(step), Some(errno)) => {
                let errno = errno
                    .parse()
                    .map(errno_name)
                    .unwrap_or_else(|_| errno.to_owned());
                return Outcome::Step {
                    step: step.to_owned(),
                    errno,
                };
            }
            _ => {}
        }
    }
    if code == Some(0) && stdout.lines().any(|l| l == "ok mount") {
        return Outcome::Worked { label };
    }
    if let Some((step, errno)) = super::hint::launcher_failure(stderr) {
        return Outcome::Launcher { step, errno };
    }
    Outcome::Unexpected(format!(
        "exit status {code:?}: {}{}",
        stderr.trim(),
        stdout.trim()
    ))
}

/// The names the launcher prints, for numbers the probe reports.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        19 => "ENODEV",
        22 => "EINVAL",
        24 => "EMFILE",
        28 => "ENOSPC",
        30 => "EROFS",
        38 => "ENOSYS",
        87 => "EUSERS",
        95 => "EOPNOTSUPP",
        _ => return format!("errno {n}"),
    };
    name.to_owned()
}

impl Outcome {
    /// The check a failure belongs to, if any.
    pub fn owner(&self, apparmor_restricting: bool) -> Option<&'static str> {
        match self {
            Outcome::Worked { .. } | Outcome::Unexpected(_) => None,
            Outcome::NotStarted(_) => Some("launcher"),
            Outcome::Launcher { step, errno } => {
                super::hint::cause_of_launcher_step(step, errno, apparmor_restricting)
                    .map(|c| c.check)
            }
            Outcome::Step { step, .. } if step == "tun" => Some("tun"),
            // Capability use in the namespace: what the AppArmor restriction denies.
            Outcome::Step { .. } if apparmor_restricting => Some("apparmor"),
            Outcome::Step { .. } => None,
        }
    }

    /// The probe's own line in the report.
    pub fn check(&self, apparmor_restricting: bool) -> Check {
        let failed = |what: String| {
            let fix = match self.owner(apparmor_restricting) {
                Some("tun") => device::probe_fix(),
                Some("apparmor") => format!(
                    "load the wg-wrap AppArmor profile: sudo apparmor_parser -r {}",
                    apparmor::PROFILE_FILE
                ),
                Some(owner) => format!("see the {owner} line above"),
                None => "report this with the output of `wg-wrap check --json`".to_owned(),
            };
            Check::error("probe", what, fix)
        };
        match self {
            Outcome::Worked { label } => Check::ok(
                "probe",
                format!(
                    "a session's namespaces, TUN device, address and mounts work{}",
                    label
                        .as_ref()
                        .map(|l| format!(" (AppArmor label {l})"))
                        .unwrap_or_default()
                ),
            ),
            Outcome::Launcher { step, errno } => {
                failed(format!("the launcher failed: {step}: {errno}"))
            }
            Outcome::Step { step, errno } => failed(format!(
                "the probe failed to {}: {errno}",
                step_description(step)
            )),
            Outcome::NotStarted(why) => failed(format!("could not start the probe: {why}")),
            Outcome::Unexpected(what) => failed(format!("the probe failed: {what}")),
        }
    }
}

fn step_description(step: &str) -> &str {
    match step {
        "tun" => "create a TUN device",
        "netlink" => "configure the namespace over rtnetlink",
        "address" => "add an address to the TUN device",
        "link" => "bring the TUN device up",
        "mount" => "mount a tmpfs in the private mount namespace",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    #[test]
    fn a_full_report_is_success() {
        let out = "label -\nok tun\nok netlink\nok address\nok link\nok mount\n";
        assert_eq!(parse(Some(0), out, ""), Outcome::Worked { label: None });
        let out = "label wg-wrap (unconfined)\nok tun\nok netlink\nok address\nok link\nok mount\n";
        assert_eq!(
            parse(Some(0), out, ""),
            Outcome::Worked {
                label: Some("wg-wrap (unconfined)".into())
            }
        );
        // Exit 0 without the last step is not success.
        assert!(matches!(
            parse(Some(0), "label -\nok tun\n", ""),
            Outcome::Unexpected(_)
        ));
    }

    #[test]
    fn a_failed_step_belongs_to_its_check() {
        let o = parse(Some(1), "label -\nfail tun 13\n", "");
        assert_eq!(
            o,
            Outcome::Step {
                step: "tun".into(),
                errno: "EACCES".into()
            }
        );
        assert_eq!(o.owner(false), Some("tun"));
        let c = o.check(false);
        assert_eq!(c.status, Status::Error);
        assert!(c.message.contains("create a TUN device: EACCES"), "{c:?}");
        assert!(c.fix.unwrap().contains("sudo chmod 0666 /dev/net/tun"));

        let mount = parse(
            Some(1),
            "label -\nok tun\nok netlink\nok address\nok link\nfail mount 1\n",
            "",
        );
        assert_eq!(mount.owner(true), Some("apparmor"));
        assert_eq!(mount.owner(false), None);
    }

    #[test]
    fn launcher_failures_are_read_from_its_stderr() {
        let o = parse(Some(125), "", "wg-wrap: write /proc/self/uid_map: EPERM\n");
        assert_eq!(
            o,
            Outcome::Launcher {
                step: "write /proc/self/uid_map".into(),
                errno: "EPERM".into()
            }
        );
        assert_eq!(o.owner(true), Some("apparmor"));
        assert_eq!(o.owner(false), Some("userns"));
        let o = parse(Some(125), "", "wg-wrap: unshare: ENOSPC\n");
        assert_eq!(o.owner(false), Some("userns"));
        assert_eq!(o.check(false).status, Status::Error);
    }
}
