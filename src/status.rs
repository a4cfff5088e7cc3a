//! `status`, `list` and `reload`: talking to running supervisors.

use crate::runtime::Runtime;
use crate::sessions;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::os::fd::AsFd;
use supervisor::contract::control::{self, ReloadReply, SessionStatus};
use supervisor::contract::profile_dir::list_dir;
use supervisor::contract::state::{control_socket_name, now_unix, SessionState};

#[derive(Serialize)]
struct StatusDoc {
    profiles: Vec<SessionStatus>,
}

fn control_name(state: &SessionState) -> String {
    control_socket_name(rustix::process::getuid().as_raw(), state.control_id)
}

/// Why a supervisor could not be asked; from inside a wrap that is by design.
fn unreachable(name: &str) -> String {
    format!(
        "ask the supervisor of {name} (its control socket is only reachable from outside \
         the session, never from a wrapped program: run this outside the wrap)"
    )
}

/// The status of one profile's session, or `None` when it has none.
pub fn query(runtime: &Runtime, name: &str) -> Result<Option<SessionStatus>> {
    let Some(dir) = runtime.existing_profile_dir(name)? else {
        return Ok(None);
    };
    // Read-only: no lock, so `status` never waits behind a starting session.
    let Some(live) = sessions::probe(dir.as_fd()) else {
        return Ok(None);
    };
    let answer = control::request(&control_name(&live.state), "status", None)
        .with_context(|| unreachable(name))?;
    let status = serde_json::from_str(&answer)
        .with_context(|| format!("the supervisor of {name} answered {answer:?}"))?;
    Ok(Some(status))
}

/// Every profile with a live session, by name.
pub fn all(runtime: &Runtime) -> Result<Vec<SessionStatus>> {
    let mut names = list_dir(runtime.profiles.as_fd()).context("list sessions")?;
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if let Some(s) = query(runtime, &name)? {
            out.push(s);
        }
    }
    Ok(out)
}

pub fn status(runtime: &Runtime, profile: Option<&str>, json: bool) -> Result<i32> {
    let sessions = match profile {
        Some(name) => query(runtime, name)?.into_iter().collect(),
        None => all(runtime)?,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&StatusDoc { profiles: sessions })?
        );
        return Ok(0);
    }
    if sessions.is_empty() {
        match profile {
            Some(name) => println!("wg-wrap: {name} has no session"),
            None => println!("wg-wrap: no sessions"),
        }
        return Ok(0);
    }
    let now = now_unix();
    let text: Vec<String> = sessions.iter().map(|s| render(s, now)).collect();
    print!("{}", text.join("\n"));
    Ok(0)
}

/// `list --json`: the running sessions as `status --json` shows them, and the names
/// of the profiles in the config directory that are not running.
#[derive(Serialize)]
struct ListDoc {
    profiles: Vec<SessionStatus>,
    not_running: Vec<String>,
}

/// Names of the profiles with a live session.
pub fn running_names(runtime: &Runtime) -> Result<Vec<String>> {
    Ok(all(runtime)?.into_iter().map(|s| s.name).collect())
}

/// Names of the `NAME.conf` profiles in `config_dir` (sorted; none if it is missing).
pub fn profiles_in(config_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(config_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".conf")?.to_owned();
            crate::profile::check_name(&stem).ok().map(|()| stem)
        })
        .collect();
    names.sort();
    names
}

pub fn list(runtime: &Runtime, config_dir: &std::path::Path, json: bool) -> Result<i32> {
    let sessions = all(runtime)?;
    let not_running: Vec<String> = profiles_in(config_dir)
        .into_iter()
        .filter(|n| !sessions.iter().any(|s| &s.name == n))
        .collect();
    if json {
        let doc = ListDoc {
            profiles: sessions,
            not_running,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let now = now_unix();
    for s in &sessions {
        let handshake = s
            .peers
            .iter()
            .filter_map(|p| p.latest_handshake_secs_ago)
            .min()
            .map(|a| format!("handshake {} ago", age(a)))
            .unwrap_or_else(|| "no handshake".into());
        println!(
            "{}\tpid {}\tup {}\t{} wrapped\t{}{}",
            s.name,
            s.supervisor_pid,
            age(now.saturating_sub(s.started_unix)),
            s.wrapped_pids.len(),
            handshake,
            if s.held { "\theld" } else { "" }
        );
    }
    for name in &not_running {
        println!("{name}\tnot running");
    }
    Ok(0)
}

/// `wg show`-like text for one session.
pub fn render(s: &SessionStatus, now: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "profile: {}", s.name);
    let _ = writeln!(
        t,
        "  state: up{}",
        if s.held { " (held by `up`)" } else { "" }
    );
    let _ = writeln!(
        t,
        "  supervisor: pid {}, up {}",
        s.supervisor_pid,
        age(now.saturating_sub(s.started_unix))
    );
    if let Some(port) = s.listen_port {
        let _ = writeln!(t, "  listening port: {port}");
    }
    let pids: Vec<String> = s.wrapped_pids.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(
        t,
        "  wrapped processes: {}",
        if pids.is_empty() {
            "none".into()
        } else {
            pids.join(", ")
        }
    );
    for p in &s.published {
        let lives = match p.owner_pid {
            Some(pid) => format!("while pid {pid} runs"),
            None => "with the session".into(),
        };
        let what = match p.spec.proto {
            supervisor::contract::publish::Proto::Tcp => "connections",
            supervisor::contract::publish::Proto::Udp => "flows",
        };
        let _ = writeln!(
            t,
            "  published: {} ({} {what} open, {} in all; {lives})",
            p.spec, p.connections, p.total_connections
        );
    }
    for p in &s.peers {
        let _ = writeln!(t, "\n  peer: {}", p.public_key);
        if let Some(e) = &p.endpoint {
            let _ = writeln!(t, "    endpoint: {e}");
        }
        let _ = writeln!(t, "    allowed ips: {}", p.allowed_ips.join(", "));
        match p.latest_handshake_secs_ago {
            Some(a) => {
                let _ = writeln!(t, "    latest handshake: {} ago", age(a));
            }
            None => {
                let _ = writeln!(t, "    latest handshake: none");
            }
        }
        let _ = writeln!(
            t,
            "    transfer: {} received, {} sent",
            bytes(p.rx_bytes),
            bytes(p.tx_bytes)
        );
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(t, "    persistent keepalive: every {k} seconds");
        }
    }
    t
}

pub fn reload(
    feedback: &crate::progress::Feedback,
    runtime: &Runtime,
    profile: &crate::profile::ProfileRef,
    prepared: &sessions::Prepared,
) -> Result<i32> {
    let name = profile.name.as_str();
    let Some(dir) = runtime.existing_profile_dir(name)? else {
        bail!("{name} has no session to reload: start it with `wg-wrap up {name}`");
    };
    let locked = supervisor::contract::profile_dir::lock_profile(
        runtime.profiles.as_fd(),
        name,
        std::time::Duration::from_secs(30),
    )?;
    drop(dir);
    let Some(live) = sessions::find_live(locked.dir.as_fd())? else {
        bail!("{name} has no session to reload: start it with `wg-wrap up {name}`");
    };
    // Reload reapplies the session's own file: another file of that name is refused.
    sessions::check_source(locked.dir.as_fd(), profile)?;
    let (request, body) =
        control::reload_request(&wgconf::render(&prepared.config), &prepared.reresolve);
    let answer = control::request(&control_name(&live.state), &request, Some(&body))
        .with_context(|| unreachable(name))?;
    let reply: ReloadReply = serde_json::from_str(&answer).with_context(|| {
        format!(
            "the supervisor of {name} answered {answer:?} (started by another version of \
             wg-wrap? `wg-wrap down {name}` and `up` again to reload)"
        )
    })?;
    for w in &reply.warnings {
        eprintln!("wg-wrap: warning: {w}");
    }
    if !reply.ok {
        bail!(
            "reload of {name} failed: {}",
            reply.error.unwrap_or_default()
        );
    }
    feedback.info(&format!(
        "{name} reloaded: {} peer(s) kept, {} renewed, {} added, {} removed",
        reply.kept, reply.replaced, reply.added, reply.removed
    ));
    Ok(0)
}

/// "1h 2m 3s" style ages, as `wg show` prints them.
pub fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !parts.is_empty() {
            parts.push(format!("{v}{unit}"));
        }
    }
    parts.push(format!("{s}s"));
    parts.join(" ")
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor::contract::control::PeerStatus;

    #[test]
    fn ages_and_sizes() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(65), "1m 5s");
        assert_eq!(age(3600), "1h 0m 0s");
        assert_eq!(age(90061), "1d 1h 1m 1s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.00 MiB");
    }

    #[test]
    fn render_shows_every_field() {
        let s = SessionStatus {
            name: "work".into(),
            supervisor_pid: 42,
            started_unix: 1000,
            listen_port: Some(51821),
            held: true,
            wrapped_pids: vec![7, 8],
            peers: vec![PeerStatus {
                public_key: "KEY=".into(),
                endpoint: Some("127.0.0.1:51820".into()),
                allowed_ips: vec!["10.0.0.0/24".into()],
                latest_handshake_secs_ago: Some(3),
                rx_bytes: 2048,
                tx_bytes: 10,
                persistent_keepalive: Some(25),
            }],
            published: vec![supervisor::contract::publish::PublishedPort {
                spec: "8080:80".parse().unwrap(),
                owner_pid: Some(9),
                connections: 2,
                total_connections: 5,
            }],
        };
        let text = render(&s, 1065);
        for want in [
            "profile: work",
            "held by `up`",
            "pid 42, up 1m 5s",
            "wrapped processes: 7, 8",
            "listening port: 51821",
            "peer: KEY=",
            "endpoint: 127.0.0.1:51820",
            "allowed ips: 10.0.0.0/24",
            "latest handshake: 3s ago",
            "2.00 KiB received, 10 B sent",
            "every 25 seconds",
            "published: 127.0.0.1:8080:80/tcp (2 connections open, 5 in all; while pid 9 runs)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
