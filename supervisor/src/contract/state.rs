//! The on-disk contract between the CLI and a running supervisor.
//!
//! A profile's runtime directory `profiles/<name>/` holds:
//! - `lock`: flock'ed by whoever registers a process or decides to tear down;
//! - `state`: written by the supervisor once the session is usable, removed at teardown;
//! - `hold`: present while an `up` holds the session;
//! - `pids/<pid>`: one file per wrapped process, holding that process's start time
//!   (so a recycled PID is never mistaken for a registered one);
//! - `resolv.conf`, `supervisor.log`: the session's private files.
//!
//! The control socket (status, reload) is not a file: it is an abstract unix socket
//! created by the CLI in the host's network namespace and handed to the supervisor.
//! Abstract sockets belong to a network namespace, so wrapped programs — which live
//! in the session's — cannot reach it at all, even though they can read `state`.
//!
//! Everything here is plain text so a human can debug a stuck session with `cat`.

use std::fmt;
use std::time::Duration;

pub const STATE_FILE: &str = "state";
pub const PIDS_DIR: &str = "pids";
pub const LOCK_FILE: &str = "lock";
pub const HOLD_FILE: &str = "hold";
pub const LOG_FILE: &str = "supervisor.log";
pub const RESOLV_FILE: &str = "resolv.conf";

const STATE_MAGIC: &str = "wg-wrap-state 1";

/// What identifies a live session: the supervisor process (PID plus start time, so
/// a recycled PID is detected) and the network namespace it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub supervisor_pid: u32,
    /// Field 22 of `/proc/<pid>/stat`, in clock ticks since boot.
    pub supervisor_start_time: u64,
    pub netns: NsId,
    /// Seconds since the Unix epoch at which the session became usable.
    pub started_unix: u64,
    /// Names the control socket (see [`control_socket_name`]).
    pub control_id: u64,
}

/// How long wrapped processes get between SIGTERM and SIGKILL when a supervisor is
/// stopped by a signal (`down --now` waits that long and more).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Seconds since the Unix epoch, as `started_unix` counts them (0 if the clock is
/// before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The abstract name of a session's control socket.
pub fn control_socket_name(uid: u32, control_id: u64) -> String {
    format!("wg-wrap/{uid}/{control_id:016x}")
}

/// A namespace's identity: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    BadMagic,
    MissingField(&'static str),
    BadField(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic => write!(f, "not a wg-wrap state file"),
            StateError::MissingField(k) => write!(f, "state file lacks {k}"),
            StateError::BadField(k) => write!(f, "state file has an invalid {k}"),
        }
    }
}

impl std::error::Error for StateError {}

impl SessionState {
    pub fn render(&self) -> String {
        format!(
            "{STATE_MAGIC}\nsupervisor_pid={}\nsupervisor_start_time={}\nnetns_dev={}\nnetns_ino={}\nstarted_unix={}\ncontrol_id={}\n",
            self.supervisor_pid,
            self.supervisor_start_time,
            self.netns.dev,
            self.netns.ino,
            self.started_unix,
            self.control_id
        )
    }

    pub fn parse(text: &str) -> Result<SessionState, StateError> {
        let mut lines = text.lines();
        if lines.next() != Some(STATE_MAGIC) {
            return Err(StateError::BadMagic);
        }
        let mut fields = [None; 6];
        const NAMES: [&str; 6] = [
            "supervisor_pid",
            "supervisor_start_time",
            "netns_dev",
            "netns_ino",
            "started_unix",
            "control_id",
        ];
        for line in lines {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if let Some(i) = NAMES.iter().position(|n| *n == key) {
                fields[i] = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| StateError::BadField(NAMES[i])),
                );
            }
        }
        let mut get = |i: usize| -> Result<u64, StateError> {
            fields[i].take().ok_or(StateError::MissingField(NAMES[i]))?
        };
        let pid = get(0)?;
        let state = SessionState {
            supervisor_pid: u32::try_from(pid)
                .ok()
                .filter(|p| *p > 0)
                .ok_or(StateError::BadField(NAMES[0]))?,
            supervisor_start_time: get(1)?,
            netns: NsId {
                dev: get(2)?,
                ino: get(3)?,
            },
            started_unix: get(4)?,
            control_id: get(5)?,
        };
        Ok(state)
    }
}

/// Parse a `pids/` entry name. Anything but a plain positive decimal PID is garbage.
pub fn parse_pid_name(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse::<u32>().ok().filter(|p| *p > 0)
}

/// Extract the start time (field 22) from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After ")" come fields 3, 4, ...; the start time is field 22, i.e. index 19.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The start time of a live process, or `None` when it does not exist.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    use std::io::Read;
    // One read: procfs reports size 0, and read_to_string would grow its buffer in
    // many small reads. The line is far shorter than 1 KiB unless the command name
    // is hostile, and then the fields we need may be cut off: that is a failure.
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read(&mut buf)
        .ok()?;
    parse_stat_start_time(std::str::from_utf8(&buf[..n]).ok()?)
}

/// The network namespace of a process, if we may look at it.
pub fn netns_of(pid: u32) -> Option<NsId> {
    let meta = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    use std::os::unix::fs::MetadataExt;
    Some(NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Every live process in a network namespace (zombies have none and are skipped),
/// except `exclude`. This is how a session notices a wrapped command's daemonized
/// children, which were never registered.
pub fn processes_in_netns(ns: NsId, exclude: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(parse_pid_name))
        .filter(|pid| *pid != exclude && netns_of(*pid) == Some(ns))
        .collect()
}

/// The processes a session waits for, as `status` and `down` list them: the
/// `registered` ones, and every other process in its namespace whose parent is outside
/// it (what a wrapped command left running, reparented when the command exited). The
/// children of these are part of them and not listed.
pub fn wrapped_processes(registered: Vec<u32>, ns: NsId, exclude: u32) -> Vec<u32> {
    let inside: std::collections::HashSet<u32> =
        processes_in_netns(ns, exclude).into_iter().collect();
    let mut pids = registered;
    pids.extend(
        inside
            .iter()
            .filter(|pid| proc_parent(**pid).is_some_and(|parent| !inside.contains(&parent))),
    );
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The parent of a live process (field 4 of `/proc/<pid>/stat`).
fn proc_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_parent(&stat)
}

/// Field 4 of a `/proc/<pid>/stat` text, counted from the last `)` like the start time.
fn parse_stat_parent(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_hostile_command_name() {
        assert_eq!(parse_stat_parent("7 (a) b) S 42 7 7 0"), Some(42));
        assert_eq!(parse_stat_parent("7 (x"), None);
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        assert_eq!(proc_parent(me), Some(parent));
    }

    fn sample() -> SessionState {
        SessionState {
            supervisor_pid: 4242,
            supervisor_start_time: 987654,
            netns: NsId {
                dev: 4,
                ino: 4026532000,
            },
            started_unix: 1_790_000_000,
            control_id: 0xfeed,
        }
    }

    #[test]
    fn state_round_trips() {
        assert_eq!(SessionState::parse(&sample().render()), Ok(sample()));
    }

    #[test]
    fn state_rejects_garbage() {
        assert_eq!(SessionState::parse("hello"), Err(StateError::BadMagic));
        let text = sample().render().replace("netns_ino=4026532000\n", "");
        assert_eq!(
            SessionState::parse(&text),
            Err(StateError::MissingField("netns_ino"))
        );
        let text = sample()
            .render()
            .replace("supervisor_pid=4242", "supervisor_pid=0");
        assert_eq!(
            SessionState::parse(&text),
            Err(StateError::BadField("supervisor_pid"))
        );
        let text = sample().render().replace("netns_dev=4", "netns_dev=x");
        assert_eq!(
            SessionState::parse(&text),
            Err(StateError::BadField("netns_dev"))
        );
    }

    #[test]
    fn pid_names() {
        assert_eq!(parse_pid_name("123"), Some(123));
        for bad in ["", "0", "-1", "12a", ".tmp-5", "99999999999", "+5", " 5"] {
            assert_eq!(parse_pid_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stat_start_time_survives_hostile_comm() {
        let stat = "77 (a) b) (c) S 1 77 77 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 555123 1000 10";
        assert_eq!(parse_stat_start_time(stat), Some(555123));
        assert_eq!(parse_stat_start_time("77 (x) S 1"), None);
    }

    #[test]
    fn our_own_netns_contains_us() {
        let ns = netns_of(std::process::id()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = processes_in_netns(ns, std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!found.contains(&std::process::id()));
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(proc_start_time(std::process::id()).is_some());
    }
}
