//! `wg-wrap demo`: a whole session against the built-in virtual peer, with nothing
//! but loopback involved. Throw-away keys, a throw-away profile, cleaned up at the end.

use crate::commands::{join_command, live_or_start};
use crate::dirs::Dirs;
use crate::launcher::Launcher;
use crate::runtime::Runtime;
use crate::sessions;
use crate::spawn;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;
use supervisor::contract::profile_dir::lock_profile;
use virtual_peer::{PeerConfig, VirtualPeer};

const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(dirs: &Dirs, feedback: &crate::progress::Feedback, command: &[OsString]) -> Result<i32> {
    let (peer_config, client) = PeerConfig::demo();
    let peer_addr = peer_config
        .tunnel_v4
        .map(|(a, _)| a)
        .context("the demo peer has no IPv4 address")?;
    let socket = UdpSocket::bind("127.0.0.1:0").context("bind the virtual peer on loopback")?;
    let peer = VirtualPeer::start(peer_config, socket).context("start the virtual peer")?;
    let conf = client.wg_quick_conf(peer.local_addr());
    let config = wgconf::parse(&conf)
        .map_err(|e| anyhow::anyhow!("the demo profile does not parse: {e}"))?
        .config;

    let argv: Vec<OsString> = if command.is_empty() {
        let exe = std::env::current_exe().context("find our own executable")?;
        vec![
            exe.into(),
            "__http-get".into(),
            format!("{peer_addr}:80").into(),
            "/".into(),
        ]
    } else {
        command.to_vec()
    };

    let name = format!("demo-{}", std::process::id());
    let launcher = Launcher::locate()?;
    let runtime = Runtime::open(dirs)?;
    let locked = lock_profile(runtime.profiles.as_fd(), &name, Duration::from_secs(10))?;
    let prepared = crate::sessions::Prepared {
        config,
        // The demo peer is on loopback: nothing to re-resolve.
        reresolve: Default::default(),
    };
    let (live, _) = live_or_start(&runtime, &locked, &name, None, || Ok(prepared))?;
    // The demo process itself holds the session while its child runs.
    sessions::register(locked.dir.as_fd(), std::process::id())?;
    let dir = locked.dir;
    drop(locked.lock);
    // What runs where (not on --quiet): the peer, and the command as a shell would
    // show it.
    if feedback.verbosity > crate::progress::Verbosity::Quiet {
        let shown: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!(
            "wg-wrap demo: virtual peer on {} (tunnel {}), running {}",
            peer.local_addr(),
            peer_addr,
            shown.join(" ")
        );
    }

    let mut cmd = join_command(&launcher, &live, &argv);
    spawn::inherit_fds(&mut cmd, &[live.pidfd.as_raw_fd()]);
    let status = cmd.status().context("run the command in the tunnel");
    sessions::unregister(dir.as_fd(), std::process::id());
    let ended = sessions::wait_exit(&live.pidfd, TEARDOWN_TIMEOUT);
    peer.stop();
    let status = status?;
    if !ended {
        anyhow::bail!(
            "the demo session did not end within {TEARDOWN_TIMEOUT:?}: a process it started may \
             still run (`wg-wrap list` shows the session; `wg-wrap down --now NAME` ends it)"
        );
    }
    Ok(spawn::shell_status(status))
}

/// `__http-get HOST:PORT PATH`: the demo's default command, so the demo needs no curl.
/// Prints the response body; exits non-zero unless the status is 200.
pub fn http_get(addr: &str, path: &str) -> Result<i32> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .context("read the response")?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    print!("{body}");
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    Ok(if ok { 0 } else { 1 })
}

/// `__virtual-peer LISTEN PROFILE`: serve the demo peer on LISTEN until killed, after
/// writing a matching client profile to PROFILE (mode 0600). For benchmarks and
/// trying things by hand; loopback addresses only make sense here.
pub fn serve_virtual_peer(listen: &str, profile: &std::path::Path) -> Result<i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let (peer_config, client) = PeerConfig::demo();
    let socket = UdpSocket::bind(listen).with_context(|| format!("bind {listen}"))?;
    let peer = VirtualPeer::start(peer_config, socket).context("start the virtual peer")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(profile)
        .with_context(|| format!("write {}", profile.display()))?;
    file.write_all(client.wg_quick_conf(peer.local_addr()).as_bytes())?;
    drop(file);
    println!("{}", peer.local_addr());
    loop {
        std::thread::park();
    }
}
