//! `wg-wrap check` for real, as the unprivileged test user in the sandbox: it passes
//! here (text and JSON), `--connect` reaches the virtual peer and ends the session
//! again, a profile without `DNS =` behind a local stub resolver is warned about, and
//! a `/dev/net/tun` the user cannot open — a mode 0600 device node bind-mounted over
//! it in a mount namespace of the test's own — fails `check` with the fix, and makes
//! `exec` exit 125 naming the cause; in a PID namespace with `vm.memfd_noexec = 2`
//! the built-in launcher is reported with the fix, and a launcher file passes.

mod common;

use common::leak::FakeHost;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use virtual_peer::VirtualPeer;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON: {e}\n{}", describe(out)))
}

fn check_named<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {doc:#}"))
}

/// A mount namespace in which `/dev/net/tun` is a mode 0600 root-owned device node,
/// as on hosts that do not ship it 0666.
fn unusable_tun(sb: &Sandbox) -> FakeHost {
    let host = FakeHost::new(sb);
    let node = sb.root.join("tun-0600");
    let status = Command::new("mknod")
        .arg(&node)
        .args(["c", "10", "200"])
        .status()
        .expect("run mknod");
    assert!(status.success(), "mknod {}", node.display());
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut bind = Command::new("nsenter");
    bind.arg(format!("--mount={}", host.mnt_ns()))
        .args(["--", "mount", "--bind"])
        .arg(&node)
        .arg("/dev/net/tun");
    let out = run_timeout(bind, COMMAND_TIMEOUT);
    assert_success(&out);
    host
}

#[test]
fn check_passes_here_in_text_and_json() {
    let sb = Sandbox::new();
    let out = sb.run(sb.wg_wrap(&["check"]));
    assert_success(&out);
    let text = stdout(&out);
    for name in [
        "kernel",
        "userns",
        "apparmor",
        "tun",
        "launcher",
        "runtime-dir",
        "probe",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}: ok: "))),
            "no ok line for {name}\n{}",
            describe(&out)
        );
    }
    assert!(text.ends_with("wg-wrap can work here\n"), "{text}");

    let out = sb.run(sb.wg_wrap(&["check", "--json"]));
    assert_success(&out);
    let doc = json(&out);
    assert_eq!(doc["usable"], true, "{doc:#}");
    for c in doc["checks"].as_array().unwrap() {
        assert!(c["name"].is_string() && c["message"].is_string(), "{c}");
        assert_ne!(c["status"], "error", "{c}");
    }
    assert_eq!(check_named(&doc, "probe")["status"], "ok");

    // What the AppArmor child reports (run only where AppArmor is active): no label
    // on a kernel without it.
    let out = sb.run(sb.wg_wrap(&["__probe", "--label"]));
    assert_success(&out);
    assert_eq!(stdout(&out), "label -\n");
}

#[test]
fn check_connect_reaches_the_virtual_peer_and_ends_the_session() {
    let sb = Sandbox::new();
    let (_peer, _client): (VirtualPeer, _) = sb.virtual_peer("vp");
    let out = sb.run(sb.wg_wrap(&["check", "vp", "--connect", "--json"]));
    assert_success(&out);
    let doc = json(&out);
    assert_eq!(doc["usable"], true, "{doc:#}");
    assert_eq!(check_named(&doc, "profile")["status"], "ok", "{doc:#}");
    let connect = check_named(&doc, "connect");
    assert_eq!(connect["status"], "ok", "{doc:#}");
    assert!(connect["handshake_ms"].is_u64(), "{doc:#}");
    eprintln!("connect: {}", connect["message"]);
    // The session it started is gone again.
    let left = sb.wait_no_processes(Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let out = sb.run(sb.wg_wrap(&["list", "--json"]));
    assert_success(&out);
    let doc = json(&out);
    assert_eq!(doc["profiles"], serde_json::json!([]), "{}", describe(&out));
    assert_eq!(
        doc["not_running"],
        serde_json::json!(["vp"]),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_profile_reports_parse_errors_and_a_stub_resolver_without_dns() {
    let sb = Sandbox::new();
    sb.write_profile("broken", "[Interface]\nPrivateKey = nope\n");
    let out = sb.run(sb.wg_wrap(&["check", "broken"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("profile: error: ") && stdout(&out).contains("broken.conf:2"),
        "{}",
        describe(&out)
    );
    // The machine is fine: the summary blames the profile, not the machine.
    assert!(
        stdout(&out).ends_with(
            "wg-wrap can work here, but not with this profile until 1 problem is fixed\n"
        ),
        "{}",
        describe(&out)
    );
    // A missing profile is told how to get one, not to correct lines it lacks.
    let out = sb.run(sb.wg_wrap(&["check", "nosuch", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let profile = check_named(&json(&out), "profile").clone();
    assert!(
        profile["message"]
            .as_str()
            .unwrap()
            .ends_with("nosuch.conf does not exist")
            && profile["fix"]
                .as_str()
                .unwrap()
                .starts_with("`wg-wrap import FILE nosuch`"),
        "{profile:#}"
    );

    // The fake host's resolv.conf is a systemd-resolved style stub (127.0.0.53).
    let host = FakeHost::new(&sb);
    let (_peer, client) = sb.virtual_peer("nodns");
    let text: String = client
        .wg_quick_conf(_peer.local_addr())
        .lines()
        .filter(|l| !l.starts_with("DNS"))
        .map(|l| format!("{l}\n"))
        .collect();
    sb.write_profile("nodns", &text);
    let out = sb.run(host.wg_wrap(&sb, &["check", "nodns", "--json"]));
    // A warning, not an error: the tunnel works, names do not.
    assert_success(&out);
    let doc = json(&out);
    let dns = check_named(&doc, "dns");
    assert_eq!(dns["status"], "warning", "{doc:#}");
    assert!(
        dns["message"].as_str().unwrap().contains("local stub"),
        "{doc:#}"
    );
    assert!(dns["fix"].as_str().unwrap().contains("DNS = "), "{doc:#}");
}

#[test]
fn check_fails_with_the_fix_when_tun_is_not_usable() {
    let sb = Sandbox::new();
    let host = unusable_tun(&sb);
    let out = sb.run(host.wg_wrap(&sb, &["check"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    let tun = text
        .lines()
        .find(|l| l.starts_with("tun: "))
        .unwrap_or_else(|| panic!("no tun line\n{text}"));
    assert!(
        tun.starts_with("tun: error: /dev/net/tun is mode 0600"),
        "{tun}"
    );
    assert!(tun.contains("fix: sudo chmod 0666 /dev/net/tun"), "{tun}");
    assert!(tun.contains(r#"KERNEL=="tun", MODE="0666""#), "{tun}");
    assert!(
        text.contains("probe: error: the probe failed to create a TUN device: EACCES"),
        "{text}"
    );

    let out = sb.run(host.wg_wrap(&sb, &["check", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = json(&out);
    assert_eq!(doc["usable"], false);
    assert_eq!(check_named(&doc, "tun")["status"], "error");
    assert_eq!(
        sb.wait_no_processes(Duration::from_secs(10)),
        Vec::<u32>::new()
    );
}

#[test]
fn exec_names_the_cause_when_tun_is_not_usable() {
    let sb = Sandbox::new();
    let host = unusable_tun(&sb);
    let (_peer, _client) = sb.virtual_peer("vp");
    let marker = sb.root.join("ran");
    let out = sb.run(host.wg_wrap(&sb, &exec_args("vp", &["touch", marker.to_str().unwrap()])));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("likely cause: /dev/net/tun is not usable by you"),
        "{err}"
    );
    assert!(err.contains("run 'wg-wrap check' for details"), "{err}");
    assert!(!Path::new(&marker).exists(), "the command ran");
    assert_eq!(
        sb.wait_no_processes(Duration::from_secs(10)),
        Vec::<u32>::new()
    );
}

/// `cmd` run in a fresh PID namespace whose `vm.memfd_noexec` is 2 (the sysctl is
/// per PID namespace, so the host keeps its own).
fn with_memfd_noexec(cmd: &Command) -> Command {
    let mut outer = Command::new("unshare");
    outer
        .args(["--pid", "--fork", "--", "sh", "-c"])
        .arg(r#"echo 2 > /proc/sys/vm/memfd_noexec && exec "$@""#)
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            outer.env(key, value);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    outer
}

#[test]
fn check_names_memfd_noexec_and_accepts_an_installed_launcher() {
    let sb = Sandbox::new();
    let out = sb.run(with_memfd_noexec(&sb.wg_wrap(&["check", "--json"])));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc = json(&out);
    let launcher = check_named(&doc, "launcher");
    assert_eq!(launcher["status"], "error", "{doc:#}");
    assert!(
        launcher["message"]
            .as_str()
            .unwrap()
            .contains("vm.memfd_noexec = 2"),
        "{doc:#}"
    );
    assert!(
        launcher["fix"]
            .as_str()
            .unwrap()
            .contains("wg-wrap __dump-launcher"),
        "{doc:#}"
    );
    assert_eq!(check_named(&doc, "probe")["status"], "error", "{doc:#}");

    // A launcher file (what the packages install) makes it work again.
    let file = sb.root.join("launcher");
    let dump = Command::new(&sb.wg_wrap)
        .arg("__dump-launcher")
        .arg(&file)
        .output()
        .unwrap();
    assert_success(&dump);
    let mut cmd = sb.wg_wrap(&["check", "--json"]);
    cmd.env("WG_WRAP_LAUNCHER", &file);
    let out = sb.run(with_memfd_noexec(&cmd));
    assert_success(&out);
    let doc = json(&out);
    assert_eq!(check_named(&doc, "launcher")["status"], "ok", "{doc:#}");
    assert_eq!(check_named(&doc, "probe")["status"], "ok", "{doc:#}");
}
