//! The everyday commands end to end (issue 12): key tools against `wg`, `import`,
//! `list` with profiles that are not running, `shell`, and what waits look like on a
//! terminal and off one (`-q`, `-v`).

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use virtual_peer::PeerConfig;

/// `wg` from wireguard-tools: the reference the key tools must match byte for byte.
fn wg(args: &[&str], stdin: &[u8]) -> Output {
    let probe = Command::new("wg").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "`wg` is missing: install wireguard-tools (`apt-get install --no-install-recommends \
         wireguard-tools`; .ci/setup does this)"
    );
    piped(Command::new("wg").args(args), stdin)
}

fn wg_wrap_direct(args: &[&str], stdin: &[u8]) -> Output {
    piped(Command::new(WG_WRAP).args(args), stdin)
}

fn piped(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    wait_output(child, COMMAND_TIMEOUT)
}

#[test]
fn key_tools_match_wg_byte_for_byte() {
    for _ in 0..5 {
        // Ours generate, wg derives; wg generates, ours derive.
        let ours = wg_wrap_direct(&["genkey"], b"");
        assert_success(&ours);
        assert_eq!(ours.stdout.len(), 45, "{}", describe(&ours));
        let theirs_pub = wg(&["pubkey"], &ours.stdout);
        let ours_pub = wg_wrap_direct(&["pubkey"], &ours.stdout);
        assert_success(&ours_pub);
        assert_eq!(ours_pub.stdout, theirs_pub.stdout);

        let theirs = wg(&["genkey"], b"");
        let theirs_pub = wg(&["pubkey"], &theirs.stdout);
        let ours_pub = wg_wrap_direct(&["pubkey"], &theirs.stdout);
        assert_eq!(ours_pub.stdout, theirs_pub.stdout);

        // A preshared key is 32 random bytes: wg accepts ours as a key.
        let psk = wg_wrap_direct(&["genpsk"], b"");
        assert_success(&psk);
        assert_eq!(psk.stdout.len(), 45);
        assert_success(&wg(&["pubkey"], &psk.stdout));
    }
}

#[test]
fn pubkey_refuses_what_wg_refuses_with_its_message() {
    let key = wg(&["genkey"], b"").stdout;
    let key = String::from_utf8(key).unwrap();
    let key = key.trim_end();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "Key is not the correct length or format"),
        (
            key[..43].to_owned(),
            "Key is not the correct length or format",
        ),
        (
            format!("{}\n", &key[..40]),
            "Key is not the correct length or format",
        ),
        (
            format!("{key}garbage\n"),
            "Trailing characters found after key",
        ),
        (
            format!("{key}\n{key}\n"),
            "Trailing characters found after key",
        ),
        (
            format!("!{}\n", &key[1..]),
            "Key is not the correct length or format",
        ),
    ];
    for (input, message) in &cases {
        let theirs = wg(&["pubkey"], input.as_bytes());
        let ours = wg_wrap_direct(&["pubkey"], input.as_bytes());
        assert_eq!(
            theirs.status.code(),
            Some(1),
            "{input:?}: {}",
            describe(&theirs)
        );
        assert_eq!(
            ours.status.code(),
            Some(1),
            "{input:?}: {}",
            describe(&ours)
        );
        assert!(ours.stdout.is_empty(), "{input:?}");
        let theirs_err = String::from_utf8_lossy(&theirs.stderr);
        let ours_err = String::from_utf8_lossy(&ours.stderr);
        assert!(
            theirs_err.contains(message),
            "{input:?}: wg said {theirs_err}"
        );
        assert!(ours_err.contains(message), "{input:?}: we said {ours_err}");
    }
    // Trailing whitespace and NULs are fine for both.
    let input = format!("{key}\n \t\0\n");
    assert_eq!(
        wg_wrap_direct(&["pubkey"], input.as_bytes()).stdout,
        wg(&["pubkey"], input.as_bytes()).stdout
    );
}

/// A valid profile for a fresh virtual-peer key pair, not written anywhere.
fn profile_text(endpoint: std::net::SocketAddr) -> String {
    PeerConfig::demo().1.wg_quick_conf(endpoint)
}

fn user_file(sb: &Sandbox, name: &str, text: &str) -> std::path::PathBuf {
    let path = sb.home.join(name);
    std::fs::write(&path, text).unwrap();
    std::os::unix::fs::chown(&path, Some(sb.uid), Some(sb.gid)).unwrap();
    path
}

fn config_listing(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&sb.config_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn import_checks_copies_privately_and_list_shows_it() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let good = profile_text("127.0.0.1:9".parse().unwrap());
    let bad = good.replace("AllowedIPs = ", "AllowedIPs = 10.1.0.0/33, ") + "Bogus = 1\n";
    user_file(&sb, "vpn.conf", &bad);

    // Every error, nothing changed.
    let out = sb.run(sb.wg_wrap(&["import", "vpn.conf"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid AllowedIPs"), "{err}");
    assert!(err.contains("unknown key \"Bogus\""), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("vpn.conf:")).count(),
        2,
        "{err}"
    );
    assert_eq!(config_listing(&sb), ["work.conf"]);

    // A good file is copied byte for byte, mode 0600, even from a 0644 file.
    let path = user_file(&sb, "vpn.conf", &good);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run(sb.wg_wrap(&["import", "vpn.conf"]));
    assert_success(&out);
    let dst = sb.config_dir.join("vpn.conf");
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), good);
    let meta = std::fs::metadata(&dst).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), sb.uid);

    // No overwrite without --force; an invalid NAME is refused.
    user_file(&sb, "vpn.conf", &format!("# second\n{good}"));
    let out = sb.run(sb.wg_wrap(&["import", "vpn.conf"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), good);
    let out = sb.run(sb.wg_wrap(&["import", "vpn.conf", "../escape"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid profile name"));
    // --quiet: nothing on stdout (it said "imported ..." before).
    let out = sb.run(sb.wg_wrap(&["-q", "import", "--force", "vpn.conf"]));
    assert_success(&out);
    assert_eq!(stdout(&out), "", "{}", describe(&out));
    assert!(std::fs::read_to_string(&dst)
        .unwrap()
        .starts_with("# second"));
    assert_eq!(config_listing(&sb), ["vpn.conf", "work.conf"]);

    // list: running sessions, then the rest.
    assert_success(&sb.run(sb.wg_wrap(&["up", "work"])));
    let out = sb.run(sb.wg_wrap(&["list"]));
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("work\tpid "), "{text}");
    assert_eq!(lines[1], "vpn\tnot running");
    let out = sb.run(sb.wg_wrap(&["list", "--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["profiles"][0]["name"], "work", "{doc:#}");
    assert_eq!(doc["not_running"], serde_json::json!(["vpn"]), "{doc:#}");
    assert_success(&sb.run(sb.wg_wrap(&["down", "work"])));
    let out = sb.run(sb.wg_wrap(&["list"]));
    assert_eq!(stdout(&out), "vpn\tnot running\nwork\tnot running\n");
}

fn with_stdin(mut cmd: Command, input: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait_output(child, COMMAND_TIMEOUT)
}

#[test]
fn shell_runs_the_users_shell_inside_with_the_profile_named() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let script = "echo \"$0 $WG_WRAP_PROFILE\"; readlink /proc/self/ns/net; \
                  curl -sS --max-time 20 http://10.77.0.1/; exit 3\n";
    let mut cmd = sb.wg_wrap(&["shell", "work"]);
    cmd.env("SHELL", "/bin/bash");
    let out = with_stdin(cmd, script);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("/bin/bash work"), "{}", describe(&out));
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(lines.next().unwrap(), host_ns.to_str().unwrap());
    assert!(
        text.ends_with(virtual_peer::VIRTUAL_PEER_GREETING),
        "{text}"
    );

    // No $SHELL: /bin/sh; no PROFILE: the only profile there is.
    let out = with_stdin(sb.wg_wrap(&["shell"]), "echo \"$0 $WG_WRAP_PROFILE\"\n");
    assert_success(&out);
    assert_eq!(stdout(&out), "/bin/sh work\n");
    let left = sb.wait_no_processes(Duration::from_secs(10));
    assert!(left.is_empty(), "shell left processes: {left:?}");

    // Two profiles, none running: the user must choose, and is told how.
    sb.write_profile("home", &profile_text("127.0.0.1:9".parse().unwrap()));
    let out = sb.run(sb.wg_wrap(&["shell"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wg-wrap shell NAME") && err.contains("home, work"),
        "{err}"
    );
}

/// A profile whose peer never answers (a bound UDP socket in the sandbox), so a
/// handshake wait runs to its timeout.
fn silent_profile(sb: &Sandbox) -> std::net::UdpSocket {
    let silent = sb.bind_udp("127.0.0.1:0");
    sb.write_profile("silent", &profile_text(silent.local_addr().unwrap()));
    silent
}

/// Run `cmd` with a pseudo-terminal as stderr; returns the exit status, stdout and
/// everything written to the terminal.
fn run_with_tty_stderr(mut cmd: Command) -> (Option<i32>, String, String) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .expect("open a pseudo-terminal");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .expect("open the terminal's slave side");
    cmd.stderr(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(master);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // EIO once the last holder of the slave side closed it.
        let _ = master.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    let mut stdout_pipe = child.stdout.take().unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command under a pty timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    stdout_pipe.read_to_string(&mut out).unwrap();
    let tty = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the terminal was not closed after the command exited");
    (
        status.code(),
        out,
        String::from_utf8_lossy(&tty).into_owned(),
    )
}

const WAIT_LINE: &str = "waiting for a handshake with silent";

#[test]
fn a_long_wait_shows_a_spinner_on_a_terminal_and_one_line_otherwise() {
    let sb = Sandbox::new();
    let _silent = silent_profile(&sb);

    // Not a terminal: one plain line, no carriage returns or escape codes.
    let out = sb.run(sb.wg_wrap(&["up", "--wait-timeout", "3", "silent"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches(WAIT_LINE).count(), 1, "{err}");
    assert!(
        err.contains(&format!("wg-wrap: {WAIT_LINE} (up to 3 s)...\n")),
        "{err}"
    );
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    assert!(
        err.contains("--wait-timeout SECS"),
        "the error says what to do: {err}"
    );
    assert_success(&sb.run(sb.wg_wrap(&["down", "silent"])));

    // A terminal: a spinner redrawn in place, erased at the end.
    let (code, _, tty) = run_with_tty_stderr(sb.wg_wrap(&["up", "--wait-timeout", "3", "silent"]));
    assert_eq!(code, Some(125), "{tty}");
    assert!(tty.contains(&format!("\r\x1b[K⠙ {WAIT_LINE} (")), "{tty:?}");
    assert!(
        tty.matches(WAIT_LINE).count() > 3,
        "the spinner never moved: {tty:?}"
    );
    assert!(
        tty.contains("\r\x1b[Kwg-wrap: silent is up, but no peer"),
        "{tty:?}"
    );
    assert_success(&sb.run(sb.wg_wrap(&["down", "silent"])));

    // --quiet: neither, only the error.
    let (code, _, tty) =
        run_with_tty_stderr(sb.wg_wrap(&["up", "-q", "--wait-timeout", "2", "silent"]));
    assert_eq!(code, Some(125), "{tty}");
    assert!(!tty.contains(WAIT_LINE) && !tty.contains('\x1b'), "{tty:?}");
    assert!(tty.contains("no peer completed a handshake"), "{tty:?}");
    assert_success(&sb.run(sb.wg_wrap(&["down", "silent"])));
}

#[test]
fn verbose_up_wait_reports_endpoint_handshake_and_supervisor_log() {
    let sb = Sandbox::new();
    let (peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&["up", "--wait", "-v", "work"]));
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(": endpoint {}\n", peer.local_addr())),
        "{err}"
    );
    assert!(err.contains("…: handshake completed\n"), "{err}");
    assert!(
        err.contains("wg-wrap: supervisor: session work is up\n"),
        "{err}"
    );
    assert_eq!(stdout(&out).lines().count(), 1, "{}", describe(&out));
    // --quiet: nothing at all on success.
    let out = sb.run(sb.wg_wrap(&["down", "-q", "work"]));
    assert_success(&out);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );
}

#[test]
fn down_now_shows_progress_while_processes_take_their_time() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    const WAITING: &str =
        "waiting for work's wrapped processes to exit (TERM, then KILL after 3 s)";

    // Not a terminal: one plain line.
    let stubborn = start_stubborn(&sb);
    let out = sb.run(sb.wg_wrap(&["down", "--now", "work"]));
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("wg-wrap: {WAITING}")), "{err}");
    assert!(!err.contains('\r'), "{err:?}");
    assert_eq!(stdout(&out), "wg-wrap: work is down\n");
    expect_killed(stubborn);

    // A terminal: a spinner redrawn in place while the supervisor waits.
    let stubborn = start_stubborn(&sb);
    let (code, _, tty) = run_with_tty_stderr(sb.wg_wrap(&["down", "--now", "work"]));
    assert_eq!(code, Some(0), "{tty:?}");
    assert!(tty.contains(&format!("\r\x1b[K⠙ {WAITING}")), "{tty:?}");
    assert!(
        tty.matches(WAITING).count() > 3,
        "the spinner never moved: {tty:?}"
    );
    expect_killed(stubborn);
}

/// A wrapped process that ignores TERM: the supervisor has to KILL it after its
/// grace period, so `down --now` waits for seconds. Returns once it runs.
fn start_stubborn(sb: &Sandbox) -> std::process::Child {
    let mut cmd = sb.wg_wrap(&exec_args(
        "work",
        &["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"],
    ));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut stubborn = cmd.spawn().unwrap();
    let mut line = [0u8; 6];
    stubborn
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"ready\n");
    stubborn
}

fn expect_killed(stubborn: std::process::Child) {
    let out = wait_output(stubborn, COMMAND_TIMEOUT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{}",
        describe(&out)
    );
}

/// build.rs links the unwinder in (libgcc_eh) instead of loading libgcc_s.so.1, to
/// shorten every command's start-up: the CLI needs only libc and the loader, and a
/// binary linked that way (this test's own) still unwinds a panic. With
/// WG_WRAP_SHARED_LIBGCC=1 the shared library is the packager's choice, and checked
/// as such; a build that wanted the static one and could not have it fails here.
#[test]
fn the_unwinder_is_linked_in_and_still_unwinds() {
    let caught = std::panic::catch_unwind(|| panic!("through the unwinder"));
    assert!(caught.is_err());
    if cfg!(wg_wrap_unwinder = "unavailable") {
        panic!(
            "the linker driver has no libgcc_eh.a, so wg-wrap loads libgcc_s.so.1: install \
             gcc (or set WG_WRAP_SHARED_LIBGCC=1 to choose the shared unwinder)"
        );
    }
    let out = Command::new("readelf")
        .args(["--dynamic", WG_WRAP])
        .output()
        .expect("readelf is missing: install binutils (.ci/setup does this)");
    assert!(out.status.success(), "readelf: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once('[')?.1.strip_suffix(']'))
        .collect();
    let shared = needed.iter().any(|n| n.starts_with("libgcc_s"));
    if cfg!(wg_wrap_unwinder = "static") {
        assert!(!shared, "the CLI loads libgcc_s: NEEDED {needed:?}");
        assert!(needed.contains(&"libc.so.6"), "NEEDED: {needed:?}");
    } else if cfg!(wg_wrap_unwinder = "shared") {
        assert!(shared, "WG_WRAP_SHARED_LIBGCC=1 but NEEDED {needed:?}");
    }
}

/// Sessions are named after their file. A command that names its profile by a path
/// joins, reloads or stops the session of that name only if that same file started
/// it (found in review: `exec other/work.conf` joined the running `work`, so the
/// command's traffic left through another file's tunnel). A name means the session
/// of that name. `status` takes a path like the other commands, and a profile that
/// cannot start a session leaves no session directory behind.
#[test]
fn a_profile_named_by_path_must_be_the_sessions_own_file() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    assert_success(&sb.run(sb.wg_wrap(&["up", "work"])));
    let other_dir = sb.home.join("other");
    std::fs::create_dir(&other_dir).unwrap();
    std::os::unix::fs::chown(&other_dir, Some(sb.uid), Some(sb.gid)).unwrap();
    user_file(
        &sb,
        "other/work.conf",
        &profile_text("127.0.0.1:9".parse().unwrap()),
    );
    let own = sb.config_dir.join("work.conf");
    for args in [
        &["exec", "other/work.conf", "--", "true"][..],
        &["up", "other/work.conf"],
        &["reload", "other/work.conf"],
        &["down", "other/work.conf"],
    ] {
        let out = sb.run(sb.wg_wrap(args));
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("profile work is running from {}", own.display()))
                && err.contains("wg-wrap down work"),
            "{args:?}: {err}"
        );
    }
    // Still up, and joined by its name and by its own file under another spelling.
    let spelled = sb
        .config_dir
        .join("..")
        .join(sb.config_dir.file_name().unwrap())
        .join("work.conf");
    for profile in ["work", spelled.to_str().unwrap()] {
        assert_success(&sb.run(sb.wg_wrap(&["exec", profile, "--", "true"])));
    }
    // status: a path names its file's profile; a bad name is an error.
    let out = sb.run(sb.wg_wrap(&["status", "other/work.conf", "--json"]));
    assert_success(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["profiles"][0]["name"], "work", "{doc}");
    let out = sb.run(sb.wg_wrap(&["status", "bad name!"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid profile name"));

    // A profile that cannot start a session changes nothing.
    user_file(&sb, "broken.conf", "[Interface]\nPrivateKey = nope\n");
    for profile in ["nosuch", "broken.conf"] {
        let out = sb.run(sb.wg_wrap(&["exec", profile, "--", "true"]));
        assert_eq!(
            out.status.code(),
            Some(125),
            "{profile}: {}",
            describe(&out)
        );
        let name = profile.trim_end_matches(".conf");
        let dir = sb.runtime_dir.join("profiles").join(name);
        assert!(!dir.exists(), "{profile} left {}", dir.display());
    }
    assert_success(&sb.run(sb.wg_wrap(&["down", "work"])));
}
