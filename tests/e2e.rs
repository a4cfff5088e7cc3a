//! End-to-end: the real `wg-wrap` binary, run as an unprivileged user inside a
//! throw-away network namespace, talking through the tunnel to the virtual peer.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const PEER: &str = "10.77.0.1";

#[test]
fn http_get_through_the_tunnel() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&exec_args(
        "work",
        &["curl", "-sS", "--max-time", "20", "http://10.77.0.1/"],
    )));
    assert_success(&out);
    assert_eq!(stdout(&out), virtual_peer::VIRTUAL_PEER_GREETING);
}

#[test]
fn ten_mib_arrive_intact() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let n: u64 = 10 * 1024 * 1024;
    let url = format!("http://{PEER}/bytes/{n}");
    let out = sb.run(sb.wg_wrap(&exec_args(
        "work",
        &["curl", "-sS", "--max-time", "50", &url],
    )));
    assert_success(&out);
    assert_eq!(out.stdout.len() as u64, n, "length");
    let bad = out
        .stdout
        .iter()
        .enumerate()
        .find(|(i, b)| **b != virtual_peer::pattern_byte(*i as u64));
    assert!(
        bad.is_none(),
        "first corrupt byte at {:?}",
        bad.map(|b| b.0)
    );
}

#[test]
fn dns_from_the_profile_resolves_inside() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&exec_args(
        "work",
        &[
            "sh",
            "-c",
            "cat /etc/resolv.conf; getent ahostsv4 peer.wgwrap.test",
        ],
    )));
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains(&format!("nameserver {PEER}")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(PEER)),
        "peer.wgwrap.test did not resolve to {PEER}:\n{text}"
    );
}

#[test]
fn exit_status_is_propagated() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    for (script, code) in [("exit 0", 0), ("exit 7", 7)] {
        let out = sb.run(sb.wg_wrap(&exec_args("work", &["sh", "-c", script])));
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    }
    // The command *is* the process we started (same PID through launcher and exec),
    // so a signal death is seen as one.
    let out = sb.run(sb.wg_wrap(&exec_args("work", &["sh", "-c", "kill -TERM $$"])));
    assert_eq!(out.status.signal(), Some(15), "{}", describe(&out));
    let out = sb.run(sb.wg_wrap(&exec_args("work", &["no-such-command-xyz"])));
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
}

#[test]
fn cwd_env_and_argv_are_intact() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let dir = sb.user_dir("some where");
    let mut cmd = sb.wg_wrap(&exec_args(
        "work",
        &[
            "sh",
            "-c",
            r#"pwd; echo "$MY_VAR"; printf '[%s]\n' "$@""#,
            "sh",
            "a b",
            "",
            "'q'",
            "\"dq\"",
            "-x",
            "--",
        ],
    ));
    cmd.current_dir(&dir).env("MY_VAR", "value with spaces");
    let out = sb.run(cmd);
    assert_success(&out);
    let expected = format!(
        "{}\nvalue with spaces\n[a b]\n[]\n['q']\n[\"dq\"]\n[-x]\n[--]\n",
        dir.display()
    );
    assert_eq!(stdout(&out), expected);
}

#[test]
fn ping_works_for_the_unprivileged_user() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&exec_args("work", &["ping", "-c", "2", "-W", "5", PEER])));
    assert_success(&out);
    assert!(stdout(&out).contains("2 received"), "{}", describe(&out));
}

#[test]
fn concurrent_execs_share_one_session_and_down_cleans_up() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&["up", "work"]));
    assert_success(&out);

    let probe = "readlink /proc/self/ns/net; id -u; sleep 1";
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = sb.wg_wrap(&exec_args("work", &["sh", "-c", probe]));
            cmd.stdout(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert_success(out);
    }
    let a = stdout(&outs[0]);
    let b = stdout(&outs[1]);
    assert_eq!(
        a, b,
        "both execs must land in the same namespace as the same uid"
    );
    let mut lines = a.lines();
    let ns = lines.next().unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(ns, host_ns.to_str().unwrap());
    assert_eq!(lines.next().unwrap(), sb.uid.to_string());

    let out = sb.run(sb.wg_wrap(&["down", "work"]));
    assert_success(&out);
    let left = sb.wait_no_processes(Duration::from_secs(5));
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(
        !sb.profile_runtime_dir("work").exists(),
        "runtime files left after down"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(sb.runtime_dir.to_str().unwrap()));
    // A second down is harmless.
    let out = sb.run(sb.wg_wrap(&["down", "work"]));
    assert_success(&out);
    assert!(stdout(&out).contains("no session"), "{}", describe(&out));
}

#[test]
fn exec_without_up_ends_its_session_afterwards() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&exec_args("work", &["true"])));
    assert_success(&out);
    let left = sb.wait_no_processes(Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "supervisor outlived its only user: {left:?}"
    );
    assert!(!sb.profile_runtime_dir("work").exists());
}

#[test]
fn demo_fetches_the_greeting() {
    let sb = Sandbox::new();
    let out = sb.run(sb.wg_wrap(&["demo"]));
    assert_success(&out);
    assert_eq!(stdout(&out), virtual_peer::VIRTUAL_PEER_GREETING);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wg-wrap demo: virtual peer on "), "{err}");
    let out = sb.run(sb.wg_wrap(&["demo", "--", "sh", "-c", "exit 3"]));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running sh -c exit 3"),
        "{}",
        describe(&out)
    );
    // --quiet: only what the command says.
    let out = sb.run(sb.wg_wrap(&["-q", "demo"]));
    assert_success(&out);
    assert_eq!(stdout(&out), virtual_peer::VIRTUAL_PEER_GREETING);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "{}",
        describe(&out)
    );
    let left = sb.wait_no_processes(Duration::from_secs(5));
    assert!(left.is_empty(), "demo left processes: {left:?}");
}

#[test]
fn bad_profile_is_reported_with_file_and_line_and_changes_nothing() {
    let sb = Sandbox::new();
    let path = sb.write_profile(
        "broken",
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.2/24\n\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.0.0.0/33\n",
    );
    let out = sb.run(sb.wg_wrap(&["up", "broken"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:7:", path.display())) && err.contains("AllowedIPs"),
        "{err}"
    );
    assert!(!sb.profile_runtime_dir("broken").exists());
}

#[test]
fn show_prints_the_profile_without_secrets_or_every_error() {
    let sb = Sandbox::new();
    let (_peer, client) = sb.virtual_peer("work");
    let out = sb.run(sb.wg_wrap(&["show", "work"]));
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("PrivateKey = (hidden)"), "{text}");
    assert!(!text.contains(&virtual_peer::key_to_base64(&client.private_key)));
    assert!(text.contains(&virtual_peer::key_to_base64(&client.peer_public_key)));

    let path = sb.write_profile(
        "bad",
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.2/24\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.0.0.0/33\nEndpoint = vpn.example.com\nFoo = bar\n",
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = sb.run(sb.wg_wrap(&["show", "bad"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    for want in [
        format!("{p}:6: invalid AllowedIPs"),
        format!("{p}:7: invalid Endpoint"),
        format!("{p}:8: unknown key \"Foo\""),
        "readable by group or others".to_owned(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn a_hostname_endpoint_is_resolved_on_the_host() {
    let sb = Sandbox::new();
    // Dual-stack, so whichever address `localhost` resolves to first reaches it.
    let (config, client) = virtual_peer::PeerConfig::demo();
    let peer = virtual_peer::VirtualPeer::start(config, sb.bind_udp("[::]:0")).unwrap();
    let port = peer.local_addr().port();
    let text = client.wg_quick_conf(peer.local_addr()).replace(
        &format!("Endpoint = {}", peer.local_addr()),
        &format!("Endpoint = localhost:{port}"),
    );
    assert!(text.contains("Endpoint = localhost:"), "{text}");
    sb.write_profile("named", &text);
    let out = sb.run(sb.wg_wrap(&exec_args(
        "named",
        &["curl", "-sS", "--max-time", "20", "http://10.77.0.1/"],
    )));
    assert_success(&out);
    assert_eq!(stdout(&out), virtual_peer::VIRTUAL_PEER_GREETING);
}
