//! The waits a command may do after the session is up: `up --wait` for the first
//! handshake, `down` for the supervisor to end the session. Both poll in short steps
//! so the progress line moves, and with `--verbose` report what they see on the way.

use crate::progress::{Feedback, Waiting};
use crate::runtime::Runtime;
use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};
use supervisor::contract::state::LOG_FILE;

const POLL: Duration = Duration::from_millis(20);
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Wait until some peer of `name` completed a handshake.
pub fn handshake(
    feedback: &Feedback,
    runtime: &Runtime,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut waiting = feedback.wait(format!("waiting for a handshake with {name}"), timeout);
    let mut events = Events::new(runtime, name);
    loop {
        let status = crate::status::query(runtime, name)?.with_context(|| {
            format!(
                "{name} went down while waiting for a handshake (its supervisor's log is gone \
                 with it; run `wg-wrap up --foreground {name}` to see it on the terminal)"
            )
        })?;
        events.report(&status, &mut waiting);
        if status
            .peers
            .iter()
            .any(|p| p.latest_handshake_secs_ago.is_some())
        {
            waiting.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            waiting.finish();
            anyhow::bail!(
                "{name} is up, but no peer completed a handshake within {timeout:?}: check the \
                 peer's Endpoint and both public keys (`wg-wrap show {name}`), see the peers with \
                 `wg-wrap status {name}`, or wait longer with `--wait-timeout SECS`"
            );
        }
        waiting.tick();
        std::thread::sleep(POLL);
    }
}

/// Wait until the supervisor behind `pidfd` exited; false on timeout.
pub fn supervisor_exit(
    feedback: &Feedback,
    pidfd: &OwnedFd,
    what: String,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut waiting = feedback.wait(what, timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if crate::sessions::wait_exit(pidfd, left.min(EXIT_POLL)) {
            return true;
        }
        if left.is_zero() {
            return false;
        }
        waiting.tick();
    }
}

/// What `--verbose` reports while waiting: new lines of the supervisor's log and
/// changes in each peer's endpoint and handshake, as seen in `status`.
struct Events {
    log: Option<std::fs::File>,
    pending: Vec<u8>,
    peers: HashMap<String, (Option<String>, bool)>,
}

impl Events {
    fn new(runtime: &Runtime, name: &str) -> Events {
        let log = runtime
            .existing_profile_dir(name)
            .ok()
            .flatten()
            .and_then(|dir| {
                rustix::fs::openat(
                    dir.as_fd(),
                    LOG_FILE,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .ok()
            })
            .map(std::fs::File::from);
        Events {
            log,
            pending: Vec::new(),
            peers: HashMap::new(),
        }
    }

    fn report(
        &mut self,
        status: &supervisor::contract::control::SessionStatus,
        waiting: &mut Waiting,
    ) {
        if let Some(log) = self.log.as_mut() {
            // The log only grows while the session lives; read what is new.
            let mut chunk = Vec::new();
            let _ = log.by_ref().take(64 * 1024).read_to_end(&mut chunk);
            self.pending.extend_from_slice(&chunk);
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                let line = line.trim_end();
                let line = line.strip_prefix("wg-wrap supervisor: ").unwrap_or(line);
                waiting.event(&format!("supervisor: {}", sanitize(line)));
            }
        }
        for peer in &status.peers {
            let short: String = peer.public_key.chars().take(8).collect();
            let seen = self
                .peers
                .entry(peer.public_key.clone())
                .or_insert((None, false));
            if peer.endpoint != seen.0 {
                if let Some(e) = &peer.endpoint {
                    waiting.event(&format!("peer {short}…: endpoint {e}"));
                }
                seen.0 = peer.endpoint.clone();
            }
            if peer.latest_handshake_secs_ago.is_some() && !seen.1 {
                waiting.event(&format!("peer {short}…: handshake completed"));
                seen.1 = true;
            }
        }
    }
}

/// The log is the supervisor's, but escape control characters anyway: a line must
/// not move the cursor or recolour the user's terminal.
fn sanitize(line: &str) -> String {
    line.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::sanitize("a\x1b[2Jb\r"), "a\\u{1b}[2Jb\\r");
    }
}
