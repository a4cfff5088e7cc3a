//! The leak suite (e2e tier): a wrapped program reaches nothing but the tunnel — not
//! through DNS, not through the host's resolver sockets, not over IPv6, not after the
//! supervisor dies, not on purpose.
//!
//! Each test builds a [`Rig`]: the usual sandbox network namespace with a virtual
//! peer, a "LAN" only the sandbox has (192.0.2.1/24), a fake host (a private mount
//! namespace with a systemd-resolved style `/etc/resolv.conf -> 127.0.0.53`,
//! `hosts: files resolve … dns` and listening resolved and nscd sockets) in which
//! wg-wrap runs as the unprivileged test user, decoys that count every DNS query and
//! resolver-socket connection reaching the host side, and a packet counter that sees
//! every packet in the sandbox namespace apart from the WireGuard flow itself. Every
//! test ends with the same check, [`Rig::assert_no_leaks`], and most also run a
//! control outside the wrap to prove the decoys would have noticed.
//!
//! The probes wrapped programs run are `tests/leak_probe.py` (python3) plus getent and
//! curl. Nothing is ever sent anywhere but the sandbox namespace.

mod common;

use common::leak::*;
use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};
use virtual_peer::{ClientSide, PeerConfig, VirtualPeer, VIRTUAL_PEER_GREETING};

const PEER: &str = "10.77.0.1";
const PROBE: &str = include_str!("leak_probe.py");

/// Everything one leak test needs; dropped in field order (counters first).
struct Rig {
    packets: PacketCounter,
    decoys: Decoys,
    peer: VirtualPeer,
    host: FakeHost,
    sb: Sandbox,
    probe: String,
    lan_before: (u64, u64),
}

impl Rig {
    fn new() -> Rig {
        Rig::with_peer(|_, _| {})
    }

    fn with_peer(change: impl FnOnce(&mut PeerConfig, &mut ClientSide)) -> Rig {
        let sb = Sandbox::new();
        sb.add_lan();
        let host = FakeHost::new(&sb);
        let (peer, _) = sb.virtual_peer_with("work", change);
        let probe = sb
            .write_shared("leak_probe.py", PROBE)
            .display()
            .to_string();
        let decoys = Decoys::start(&sb, &host);
        let packets = PacketCounter::start(&sb, peer.local_addr().port());
        let lan_before = sb.interface_packets("lan0");
        Rig {
            packets,
            decoys,
            peer,
            host,
            sb,
            probe,
            lan_before,
        }
    }

    /// Rewrite profile `work` (e.g. its DNS line).
    fn edit_profile(&self, edit: impl FnOnce(&str) -> String) {
        let path = self.sb.config_dir.join("work.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        self.sb.write_profile("work", &edit(&text));
    }

    /// `wg-wrap ARGS…` in the fake host, to completion.
    fn wg_wrap(&self, args: &[&str]) -> Output {
        self.sb.run(self.host.wg_wrap(&self.sb, args))
    }

    /// `wg-wrap exec work -- sh -c SCRIPT`, where `$PROBE` runs the probe script.
    fn wrapped(&self, script: &str) -> Output {
        let script = format!("PROBE='python3 {}'; {script}", self.probe);
        self.wg_wrap(&["exec", "work", "--", "sh", "-c", &script])
    }

    /// The same script in the fake host itself, outside any wrap: the control.
    fn outside(&self, script: &str) -> Output {
        let script = format!("PROBE='python3 {}'; {script}", self.probe);
        self.sb
            .run(self.host.command(&self.sb, "sh", &["-c", &script]))
    }

    fn supervisor_pid(&self) -> u32 {
        self.sb.supervisor_pid_of("work")
    }

    /// No DNS query or resolver-socket connection reached the host side, no packet
    /// but the tunnel's moved in the sandbox namespace, and the LAN stayed silent.
    fn assert_no_leaks(&self) {
        assert_eq!(
            self.decoys.counts(),
            DecoyCounts::default(),
            "a host-side decoy was reached from inside; resolver socket connections: {:?}",
            self.decoys.unix_connections()
        );
        let leaks = self.packets.leaks();
        assert!(
            leaks.is_empty(),
            "packets outside the tunnel in the host's namespace:\n{}",
            leaks
                .iter()
                .map(|p| p.desc.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            self.sb.interface_packets("lan0"),
            self.lan_before,
            "the host's LAN interface saw traffic"
        );
        assert!(
            self.packets.total() > 0,
            "the packet counter saw nothing at all, not even the tunnel: it is not working"
        );
    }
}

/// The output split at lines reading `---`.
fn sections(out: &Output) -> Vec<String> {
    let text = stdout(out);
    let mut parts = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            parts.push(String::new());
        } else {
            let last = parts.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    parts
}

/// The result of the probe whose line starts with `what` ("connect fd00::1 80").
fn probe_result(out: &Output, what: &str) -> String {
    let text = stdout(out);
    let prefix = format!("{what}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no result for probe {what:?}\n{}", describe(out)))
        .to_owned()
}

/// Lines that are not comments.
fn config_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Case 1: with `DNS=`, the host's stub resolver (127.0.0.53, behind a symlinked
/// resolv.conf) hears nothing; getent, curl and raw queries use the tunnel's DNS,
/// search domains included. Also: the runtime directory sits on a nosuid,nodev tmpfs
/// like `/run/user/<uid>`, whose locked mount flags the read-only remount must keep.
#[test]
fn profile_dns_answers_through_the_tunnel_and_the_host_stub_hears_nothing() {
    let rig = Rig::new();
    rig.host.runtime_dir_on_tmpfs(&rig.sb);
    rig.edit_profile(|text| {
        text.replace(
            &format!("DNS = {PEER}, fd77::1"),
            &format!("DNS = {PEER}, fd77::1, wgwrap.test"),
        )
    });
    let out = rig.wrapped(
        "cat /etc/resolv.conf; echo ---; \
         if [ -L /etc/resolv.conf ]; then echo symlink; else echo file; fi; echo ---; \
         getent hosts peer.wgwrap.test; echo ---; getent ahostsv4 peer; echo ---; \
         curl -sS --max-time 10 http://peer.wgwrap.test/; echo ---; \
         $PROBE dns 127.0.0.53 53 peer.wgwrap.test -- dns 127.0.0.1 53 peer.wgwrap.test \
                -- dns 10.77.0.1 53 peer.wgwrap.test",
    );
    assert_success(&out);
    let s = sections(&out);
    assert_eq!(
        config_lines(&s[0]),
        [
            "nameserver 10.77.0.1",
            "nameserver fd77::1",
            "search wgwrap.test",
            "options edns0 trust-ad"
        ],
        "{}",
        describe(&out)
    );
    assert_eq!(
        s[1].trim(),
        "file",
        "the private resolv.conf replaces the symlink"
    );
    let first = s[2].lines().next().unwrap_or("");
    assert!(
        (first.starts_with(PEER) || first.starts_with("fd77::1"))
            && first.contains("peer.wgwrap.test"),
        "getent hosts: {first:?}\n{}",
        describe(&out)
    );
    assert!(
        s[3].lines()
            .any(|l| l.starts_with(PEER) && l.contains("peer.wgwrap.test")),
        "the search domain did not apply:\n{}",
        describe(&out)
    );
    assert_eq!(
        s[4].trim_end(),
        VIRTUAL_PEER_GREETING.trim_end(),
        "curl by name"
    );
    // 127.0.0.53 inside the wrap is the wrap's own loopback: nobody listens there.
    assert_eq!(
        probe_result(&out, "dns 127.0.0.53 53 peer.wgwrap.test"),
        "ECONNREFUSED"
    );
    assert_eq!(
        probe_result(&out, "dns 127.0.0.1 53 peer.wgwrap.test"),
        "ECONNREFUSED"
    );
    assert_eq!(
        probe_result(&out, "dns 10.77.0.1 53 peer.wgwrap.test"),
        format!("answer rcode=0 {PEER}")
    );
    rig.assert_no_leaks();

    // Control: the same lookups on the fake host do reach its stub and nscd.
    let out = rig.outside(
        "cat /etc/resolv.conf; getent hosts peer.wgwrap.test; \
         $PROBE dns 127.0.0.53 53 peer.wgwrap.test",
    );
    assert!(
        stdout(&out).contains("nameserver 127.0.0.53"),
        "{}",
        describe(&out)
    );
    let seen = rig.decoys.all_counts();
    assert!(
        seen.dns >= 2 && seen.nscd >= 1,
        "the decoys are deaf: {seen:?}"
    );
}

/// Case 2: nsswitch says `resolve` and resolved's and nscd's sockets listen on the
/// host side; inside the wrap `hosts:` is `files dns`, every other database is the
/// host's, the socket directories are empty, and lookups never connect to them.
#[test]
fn lookups_never_reach_the_host_resolver_sockets() {
    let rig = Rig::new();
    let real_nsswitch = std::fs::read("/etc/nsswitch.conf").ok();
    let out = rig.wrapped(
        "cat /etc/nsswitch.conf; echo ---; \
         find /run/systemd/resolve /run/nscd /var/run/nscd -mindepth 1; echo ---; \
         getent hosts peer.wgwrap.test; getent ahosts peer.wgwrap.test >/dev/null; \
         getent hosts no-such-name.wgwrap.test; echo missing=$?; echo ---; \
         $PROBE unix /run/systemd/resolve/io.systemd.Resolve -- unix /run/nscd/socket \
                -- unix /var/run/nscd/socket",
    );
    assert_success(&out);
    let s = sections(&out);
    let fake = std::fs::read_to_string(rig.host.path("/etc/nsswitch.conf")).unwrap();
    let expected: Vec<&str> = config_lines(&fake)
        .into_iter()
        .map(|l| {
            if l == FAKE_HOSTS_LINE {
                SESSION_HOSTS_LINE
            } else {
                l
            }
        })
        .collect();
    assert_eq!(config_lines(&s[0]), expected, "{}", describe(&out));
    assert_eq!(
        s[1], "",
        "the resolver socket directories are not empty inside"
    );
    assert!(
        s[2].starts_with(PEER) || s[2].starts_with("fd77::1"),
        "{}",
        describe(&out)
    );
    assert!(s[2].contains("missing=2"), "{}", describe(&out));
    for path in [
        "/run/systemd/resolve/io.systemd.Resolve",
        "/run/nscd/socket",
        "/var/run/nscd/socket",
    ] {
        assert_eq!(probe_result(&out, &format!("unix {path}")), "ENOENT");
    }
    rig.assert_no_leaks();

    // The fake host is untouched: its nsswitch, its resolved directory, its sockets.
    assert!(fake.contains(FAKE_HOSTS_LINE));
    assert!(rig
        .host
        .path("/run/systemd/resolve/io.systemd.Resolve")
        .exists());
    assert_eq!(std::fs::read("/etc/nsswitch.conf").ok(), real_nsswitch);
    // Control: outside the wrap both sockets answer.
    let out = rig.outside(
        "getent hosts peer.wgwrap.test; $PROBE unix /run/systemd/resolve/io.systemd.Resolve",
    );
    assert_eq!(
        probe_result(&out, "unix /run/systemd/resolve/io.systemd.Resolve"),
        "ok"
    );
    wait_until(
        "the decoys to count the control",
        Duration::from_secs(5),
        || {
            let c = rig.decoys.all_counts();
            c.resolved >= 1 && c.nscd >= 1
        },
    );
}

/// Case 3: an IPv4-only profile has no IPv6 at all on the tunnel: IPv6 connects fail
/// at once with ENETUNREACH, link-local and multicast sends fail, nothing goes out.
#[test]
fn ipv4_only_profile_fails_ipv6_fast_and_sends_nothing() {
    let rig = Rig::with_peer(|peer, client| {
        peer.tunnel_v6 = None;
        peer.dns_names.retain(|(_, ip)| ip.is_ipv4());
        client.address_v6 = None;
        client.dns = vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))];
    });
    let out = rig.wrapped(
        "cat /proc/sys/net/ipv6/conf/wg0/disable_ipv6; echo ---; \
         cat /proc/net/if_inet6; echo ---; cat /proc/net/ipv6_route; echo ---; \
         $PROBE connect fd00::1 80 -- connect fd77::1 80 -- connect 2001:db8::1 443 \
                -- sendto ff02::1%wg0 9 -- sendto fe80::1%wg0 9 -- sendto fd00::53 53 \
                -- connect 10.77.0.1 80",
    );
    assert_success(&out);
    let s = sections(&out);
    assert_eq!(s[0].trim(), "1", "IPv6 is on on wg0\n{}", describe(&out));
    assert!(
        s[1].lines().all(|l| l.trim_end().ends_with(" lo")),
        "IPv6 addresses outside lo:\n{}",
        s[1]
    );
    assert!(
        s[2].lines().all(|l| l.trim_end().ends_with(" lo")),
        "IPv6 routes outside lo:\n{}",
        s[2]
    );
    for target in ["fd00::1 80", "fd77::1 80", "2001:db8::1 443"] {
        let result = probe_result(&out, &format!("connect {target}"));
        let ms: f64 = result
            .strip_prefix("ENETUNREACH ms=")
            .unwrap_or_else(|| panic!("connect {target}: {result}"))
            .parse()
            .unwrap();
        assert!(ms < 100.0, "connect {target} took {ms} ms");
    }
    for target in ["ff02::1%wg0 9", "fe80::1%wg0 9", "fd00::53 53"] {
        let result = probe_result(&out, &format!("sendto {target}"));
        assert_ne!(result, "ok", "sendto {target} went out");
    }
    let v4 = probe_result(&out, "connect 10.77.0.1 80");
    assert!(v4.starts_with("ok "), "IPv4 through the tunnel: {v4}");
    rig.assert_no_leaks();
}

/// Case 4: SIGKILL the supervisor in the middle of a download. The download stalls
/// and fails, a fresh connect from the same namespace fails at once, no route is
/// left but the loopback's, and nothing leaves on the host side from then on.
#[test]
fn killed_supervisor_leaves_a_namespace_with_no_way_out() {
    let rig = Rig::new();
    let script = format!(
        "PROBE='python3 {}'; \
         curl -sS -o /dev/null --speed-time 3 --speed-limit 1000 --max-time 40 \
              http://10.77.0.1/bytes/4294967296; echo curl=$?; \
         $PROBE connect 10.77.0.1 80 2 -- connect 192.0.2.1 80 2 -- sendto 192.0.2.2 9 \
                -- dns 10.77.0.1 53 peer.wgwrap.test; echo ---; \
         cat /proc/net/route; echo ---; cat /proc/net/ipv6_route; echo ---; \
         tail -n +3 /proc/net/dev | cut -d: -f1",
        rig.probe
    );
    let running = spawn_timeout(
        rig.host
            .wg_wrap(&rig.sb, &["exec", "work", "--", "sh", "-c", &script]),
        COMMAND_TIMEOUT,
    );
    wait_until("the download to stream", Duration::from_secs(30), || {
        rig.peer.stats().tx_bytes > 8 << 20
    });
    let client = rig
        .peer
        .stats()
        .last_client_endpoint
        .expect("the peer knows the client");
    let pid = rig.supervisor_pid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let killed = Instant::now();
    let out = running.wait();
    assert_success(&out);
    let s = sections(&out);

    let curl = s[0]
        .lines()
        .find_map(|l| l.strip_prefix("curl="))
        .unwrap_or("?");
    assert_ne!(
        curl,
        "0",
        "the download finished without a tunnel\n{}",
        describe(&out)
    );
    for (probe, want) in [
        ("connect 10.77.0.1 80 2", "ENETUNREACH"),
        ("connect 192.0.2.1 80 2", "ENETUNREACH"),
        ("sendto 192.0.2.2 9", "ENETUNREACH"),
        ("dns 10.77.0.1 53 peer.wgwrap.test", "ENETUNREACH"),
    ] {
        let result = probe_result(&out, probe);
        assert!(
            result.starts_with(want),
            "{probe}: {result}\n{}",
            describe(&out)
        );
    }
    // /proc/net/route: a header and nothing else; ipv6_route: loopback only.
    assert_eq!(s[1].lines().count(), 1, "IPv4 routes left:\n{}", s[1]);
    assert!(
        s[2].lines().all(|l| l.trim_end().ends_with(" lo")),
        "IPv6 routes left:\n{}",
        s[2]
    );
    assert_eq!(
        s[3].split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "links left"
    );

    // Nothing from the tunnel's host socket after the kill (in-flight packets aside).
    let late: Vec<String> = rig
        .packets
        .since(killed + Duration::from_millis(100))
        .into_iter()
        .filter(|p| p.src_port == Some(client.port()))
        .map(|p| p.desc)
        .collect();
    assert!(
        late.is_empty(),
        "sent after the supervisor died:\n{}",
        late.join("\n")
    );
    rig.assert_no_leaks();
}

/// Case 5: a program that tries to get out on purpose: bind and send to the host's
/// LAN, reach the host's resolver sockets, take the host socket out of the
/// supervisor, ptrace it, join the host's network namespace, unmount or remount
/// what hides the host's resolvers (also from a user namespace of its own).
#[test]
fn deliberate_escapes_fail() {
    let rig = Rig::new();
    assert_success(&rig.wg_wrap(&["up", "work"]));
    let supervisor = rig.supervisor_pid();
    // A process of the same user on the host side, whose namespace it may try to join.
    // A process of the same user on the (fake) host, whose network namespace and
    // root directory (with the resolver sockets in view) it may try to use.
    let _host_process = spawn_timeout(rig.host.command(&rig.sb, "sleep", &["30"]), COMMAND_TIMEOUT);
    let host_pid = {
        let mut found = None;
        wait_until("the host-side process", Duration::from_secs(10), || {
            found = rig.sb.marked_pids().into_iter().find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"sleep\0"))
            });
            found.is_some()
        });
        found.unwrap()
    };
    let probes = format!(
        "bind {LAN_ADDR} -- bind 127.0.0.53 -- sendto {LAN_NEIGHBOUR} 9 -- sendto {LAN_ADDR} 53 \
         -- connect {LAN_ADDR} 80 1 -- connect 127.0.0.53 53 1 \
         -- unix /run/systemd/resolve/io.systemd.Resolve -- unix /var/run/nscd/socket \
         -- unix /proc/{host_pid}/root/run/systemd/resolve/io.systemd.Resolve \
         -- getfd {supervisor} -- ptrace {supervisor} -- setns-net /proc/{host_pid}/ns/net \
         -- umount /run/systemd/resolve here -- umount /run/systemd/resolve nested \
         -- umount /etc/resolv.conf nested \
         -- remount-rw /etc/resolv.conf here -- remount-rw /etc/resolv.conf nested"
    );
    let out = rig.wrapped(&format!("$PROBE {probes}; echo ---; cat /etc/resolv.conf"));
    assert_success(&out);
    let expect = |probe: String, want: &str| {
        let result = probe_result(&out, &probe);
        assert!(
            result.starts_with(want),
            "{probe}: {result} (wanted {want})\n{}",
            describe(&out)
        );
    };
    expect(format!("bind {LAN_ADDR}"), "EADDRNOTAVAIL");
    // 127.0.0.53 exists inside too: it is the wrap's own loopback.
    expect("bind 127.0.0.53".into(), "ok");
    expect(format!("sendto {LAN_NEIGHBOUR} 9"), "ENETUNREACH");
    expect(format!("sendto {LAN_ADDR} 53"), "ENETUNREACH");
    expect(format!("connect {LAN_ADDR} 80 1"), "ENETUNREACH");
    expect("connect 127.0.0.53 53 1".into(), "ECONNREFUSED");
    expect(
        "unix /run/systemd/resolve/io.systemd.Resolve".into(),
        "ENOENT",
    );
    expect("unix /var/run/nscd/socket".into(), "ENOENT");
    expect(format!("getfd {supervisor}"), "errors EPERMx64");
    expect(format!("ptrace {supervisor}"), "EPERM");
    // The kernel refuses a process in a child user namespace any ptrace-mode access
    // to one in the parent (commoncap), so even opening these fails.
    expect(
        format!("unix /proc/{host_pid}/root/run/systemd/resolve/io.systemd.Resolve"),
        "EACCES",
    );
    expect(format!("setns-net /proc/{host_pid}/ns/net"), "open EACCES");
    expect(
        "umount /run/systemd/resolve here".into(),
        "EPERM entries=[]",
    );
    // In a user namespace of its own the mounts are locked to what they cover.
    expect(
        "umount /run/systemd/resolve nested".into(),
        "EINVAL entries=[]",
    );
    expect("umount /etc/resolv.conf nested".into(), "EINVAL");
    // Then the write: EACCES (the file is 0444) here, EROFS in its own namespace.
    expect("remount-rw /etc/resolv.conf here".into(), "EPERM E");
    expect("remount-rw /etc/resolv.conf nested".into(), "EPERM EROFS");
    let s = sections(&out);
    assert_eq!(
        config_lines(&s[1])[..2],
        ["nameserver 10.77.0.1", "nameserver fd77::1"],
        "{}",
        describe(&out)
    );
    rig.assert_no_leaks();
    assert_success(&rig.wg_wrap(&["down", "work"]));

    // Control: the same send from the fake host itself is seen by both counters.
    let out = rig.outside(&format!("$PROBE sendto {LAN_NEIGHBOUR} 9"));
    assert_eq!(
        probe_result(&out, &format!("sendto {LAN_NEIGHBOUR} 9")),
        "ok"
    );
    wait_until(
        "the counters to see the control",
        Duration::from_secs(5),
        || !rig.packets.leaks().is_empty() && rig.sb.interface_packets("lan0").1 > rig.lan_before.1,
    );
}

/// Without `DNS=` and with the host's resolver on loopback, name resolution inside is
/// off (no nameserver) instead of leaking, and `up` says how to set DNS — once.
#[test]
fn without_dns_an_unreachable_host_resolver_is_replaced_by_none() {
    let rig = Rig::new();
    rig.edit_profile(|text| {
        text.lines()
            .filter(|l| !l.starts_with("DNS"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let up = rig.wg_wrap(&["up", "work"]);
    assert_success(&up);
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("wg-wrap: warning: the profile sets no DNS")
            && err.contains("127.0.0.53")
            && err.contains("DNS ="),
        "{}",
        describe(&up)
    );
    let out =
        rig.wrapped("cat /etc/resolv.conf; echo ---; getent hosts peer.wgwrap.test; echo rc=$?");
    assert_success(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "the warning is shown once, by the command that started the session\n{}",
        describe(&out)
    );
    let s = sections(&out);
    assert!(
        config_lines(&s[0])
            .iter()
            .all(|l| !l.starts_with("nameserver")),
        "{}",
        describe(&out)
    );
    assert!(s[1].contains("rc=2"), "{}", describe(&out));
    rig.assert_no_leaks();
    assert_success(&rig.wg_wrap(&["down", "work"]));
}

/// Without `DNS=`, a host resolver that is routed through the tunnel is kept.
#[test]
fn without_dns_a_host_resolver_inside_the_tunnel_is_kept() {
    let rig = Rig::new();
    rig.edit_profile(|text| {
        text.lines()
            .filter(|l| !l.starts_with("DNS"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    rig.host
        .set_resolv_conf(&format!("nameserver {PEER}\nsearch wgwrap.test\n"));
    let out = rig.wrapped("cat /etc/resolv.conf; echo ---; getent ahostsv4 peer");
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wg-wrap: warning: the profile sets no DNS") && err.contains(PEER),
        "{}",
        describe(&out)
    );
    let s = sections(&out);
    assert_eq!(
        config_lines(&s[0]),
        [
            format!("nameserver {PEER}"),
            "search wgwrap.test".to_owned()
        ],
        "{}",
        describe(&out)
    );
    assert!(s[1].starts_with(PEER), "{}", describe(&out));
    rig.assert_no_leaks();
}

/// Run as root, wg-wrap maps root to root and wrapped programs keep every capability
/// inside: `up` says so (and the protections are in place all the same).
#[test]
fn root_caller_gets_a_wrapped_command_without_capabilities() {
    let rig = Rig::new();
    let base = rig.sb.root.join("as-root");
    let (config, runtime) = (base.join("config"), base.join("runtime"));
    for dir in [&config, &runtime] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let profile = config.join("work.conf");
    std::fs::copy(rig.sb.config_dir.join("work.conf"), &profile).unwrap();
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_root = |args: &[&str], script: Option<&str>| {
        let exe = rig.sb.wg_wrap.to_str().unwrap().to_owned();
        let mut all: Vec<&str> = args.to_vec();
        if let Some(script) = script {
            all.extend(["--", "sh", "-c", script]);
        }
        let mut cmd = rig
            .sb
            .root_command_in_mount_ns(&rig.host.mnt_ns(), &exe, &all);
        cmd.env("HOME", &base)
            .env("WG_WRAP_CONFIG_DIR", &config)
            .env("WG_WRAP_RUNTIME_DIR", &runtime);
        rig.sb.run(cmd)
    };
    assert_success(&as_root(&["up", "work"], None));
    // Root inside (the map is the identity), but without a single capability: it
    // cannot change routes, remount, or reach into the supervisor.
    let out = as_root(
        &["exec", "work"],
        Some(
            "id -u; grep -c '^nameserver 10.77.0.1$' /etc/resolv.conf; ls -A /run/nscd; \
             grep -E '^Cap(Prm|Eff|Amb)' /proc/self/status; \
             ip route add 192.0.2.0/24 dev lo 2>/dev/null && echo route-added; \
             umount /etc/resolv.conf 2>/dev/null && echo unmounted; true",
        ),
    );
    assert_success(&out);
    let text = stdout(&out);
    let none = "0000000000000000";
    assert_eq!(
        text,
        format!("0\n1\nCapPrm:\t{none}\nCapEff:\t{none}\nCapAmb:\t{none}\n"),
        "{}",
        describe(&out)
    );
    assert_success(&as_root(&["down", "work"], None));
    rig.assert_no_leaks();
}

/// When the protections cannot be put in place, nothing runs: `exec` exits 125 with
/// the failed step, and the command never starts.
#[test]
fn exec_refuses_to_run_unprotected() {
    let rig = Rig::new();
    rig.host.remove_resolv_conf();
    let marker = rig.sb.user_dir("marker-dir").join("ran");
    let out = rig.wg_wrap(&["exec", "work", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("protect name resolution") && err.contains("/etc/resolv.conf"),
        "{}",
        describe(&out)
    );
    assert!(!marker.exists(), "the command ran without protection");
    let left = rig.sb.wait_no_processes(Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    rig.assert_no_leaks_but_the_tunnel_is_optional();
}

impl Rig {
    /// [`Rig::assert_no_leaks`] for a test in which the tunnel never came up.
    fn assert_no_leaks_but_the_tunnel_is_optional(&self) {
        assert_eq!(self.decoys.counts(), DecoyCounts::default());
        assert!(
            self.packets.leaks().is_empty(),
            "{:?}",
            self.packets.leaks()
        );
        assert_eq!(self.sb.interface_packets("lan0"), self.lan_before);
    }
}
