//! Data-plane semantics end to end (issue 5): the real `wg-wrap`, as the unprivileged
//! test user in a throw-away namespace, against virtual peers and against itself.
//!
//! - a profile with two peers reaches each by its AllowedIPs;
//! - IPv4-only and IPv6-only tunnels, each over the other family's endpoint;
//! - 100 MiB down from a virtual peer and 100 MiB between two sessions, with a
//!   SHA-256 computed at both ends;
//! - a ListenPort profile that another session dials over loopback;
//! - a connect to an address the kernel routes into the tunnel but no peer covers
//!   fails at once with "No route to host" (the data plane's ICMP unreachable);
//! - a hostname endpoint added by `reload` is looked up again on the host network
//!   when the peer does not answer, and the session follows the name.

mod common;

use common::leak::FakeHost;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use virtual_peer::{
    generate_keypair, key_to_base64, PeerConfig, VirtualPeer, VIRTUAL_PEER_GREETING,
};

const MIB: u64 = 1024 * 1024;

fn exec_args<'a>(profile: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["exec", profile, "--"];
    v.extend_from_slice(cmd);
    v
}

/// A virtual peer with the given tunnel addresses that accepts `client_public`.
fn start_peer(
    sb: &Sandbox,
    bind: &str,
    client_public: [u8; 32],
    v4: Option<(Ipv4Addr, u8)>,
    v6: Option<(Ipv6Addr, u8)>,
) -> (VirtualPeer, [u8; 32]) {
    let (private, public) = generate_keypair();
    let config = PeerConfig {
        private_key: private,
        client_public_key: client_public,
        preshared_key: None,
        tunnel_v4: v4,
        tunnel_v6: v6,
        dns_names: Vec::new(),
        persistent_keepalive: None,
    };
    (
        VirtualPeer::start(config, sb.bind_udp(bind)).unwrap(),
        public,
    )
}

fn peer_section(public: &[u8; 32], allowed: &str, endpoint: Option<SocketAddr>) -> String {
    let mut s = format!(
        "\n[Peer]\nPublicKey = {}\nAllowedIPs = {allowed}\n",
        key_to_base64(public)
    );
    if let Some(e) = endpoint {
        s.push_str(&format!("Endpoint = {e}\n"));
    }
    s
}

fn interface(private: &[u8; 32], address: &str, listen_port: Option<u16>) -> String {
    let mut s = format!(
        "[Interface]\nPrivateKey = {}\nAddress = {address}\n",
        key_to_base64(private)
    );
    if let Some(p) = listen_port {
        s.push_str(&format!("ListenPort = {p}\n"));
    }
    s
}

fn url(host: &str, path: &str) -> String {
    if host.contains(':') {
        format!("http://[{host}]{path}")
    } else {
        format!("http://{host}{path}")
    }
}

fn fetch(sb: &Sandbox, profile: &str, host: &str) -> String {
    let u = url(host, "/");
    let out = sb.run(sb.wg_wrap(&exec_args(
        profile,
        &["curl", "-sS", "-g", "--max-time", "20", &u],
    )));
    assert_success(&out);
    stdout(&out)
}

/// SHA-256 of `n` bytes of `byte(i)`, by the host's `sha256sum`.
fn sha256_of(n: u64, byte: impl Fn(u64) -> u8) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut i = 0;
    while i < n {
        let len = (n - i).min(MIB) as usize;
        for (k, b) in buf[..len].iter_mut().enumerate() {
            *b = byte(i + k as u64);
        }
        stdin.write_all(&buf[..len]).unwrap();
        i += len as u64;
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn two_peers_are_reached_by_their_allowed_ips() {
    let sb = Sandbox::new();
    let (private, public) = generate_keypair();
    let one = Ipv4Addr::new(10, 80, 1, 1);
    let two = Ipv4Addr::new(10, 80, 2, 1);
    let (p1, k1) = start_peer(&sb, "127.0.0.1:0", public, Some((one, 24)), None);
    let (p2, k2) = start_peer(&sb, "127.0.0.1:0", public, Some((two, 24)), None);
    let text = interface(&private, "10.80.0.2/16", None)
        + &peer_section(&k1, "10.80.1.0/24", Some(p1.local_addr()))
        + &peer_section(&k2, "10.80.2.0/24", Some(p2.local_addr()));
    sb.write_profile("multi", &text);
    assert_success(&sb.run(sb.wg_wrap(&["up", "multi"])));
    assert_eq!(fetch(&sb, "multi", "10.80.1.1"), VIRTUAL_PEER_GREETING);
    assert_eq!(fetch(&sb, "multi", "10.80.2.1"), VIRTUAL_PEER_GREETING);
    // Each request went to its own peer: both did a handshake and took traffic, and
    // neither saw a packet meant for the other.
    for p in [&p1, &p2] {
        let s = p.stats();
        assert!(s.handshakes >= 1 && s.rx_datagrams > 3, "{s:?}");
        assert_eq!(s.misaddressed_packets, 0, "{s:?}");
    }
    assert_success(&sb.run(sb.wg_wrap(&["down", "multi"])));
}

/// IPv6 inside over an IPv4 endpoint, and IPv4 inside over an IPv6 endpoint.
#[test]
fn single_family_tunnels_over_either_family() {
    let sb = Sandbox::new();
    let (private, public) = generate_keypair();
    let (v6_peer, k6) = start_peer(
        &sb,
        "127.0.0.1:0",
        public,
        None,
        Some(("fd78::1".parse().unwrap(), 64)),
    );
    let text = interface(&private, "fd78::2/64", None)
        + &peer_section(&k6, "fd78::/64", Some(v6_peer.local_addr()));
    sb.write_profile("six", &text);
    assert_eq!(fetch(&sb, "six", "fd78::1"), VIRTUAL_PEER_GREETING);
    let out = sb.run(sb.wg_wrap(&exec_args(
        "six",
        &["ping", "-c", "2", "-W", "5", "fd78::1"],
    )));
    assert!(stdout(&out).contains("2 received"), "{}", describe(&out));
    // No IPv4 at all in an IPv6-only profile.
    let out = sb.run(sb.wg_wrap(&exec_args(
        "six",
        &["curl", "-sS", "--max-time", "5", "http://10.78.0.1/"],
    )));
    assert!(!out.status.success());

    let (v4_peer, k4) = start_peer(
        &sb,
        "[::1]:0",
        public,
        Some((Ipv4Addr::new(10, 78, 0, 1), 24)),
        None,
    );
    assert!(v4_peer.local_addr().is_ipv6());
    let text = interface(&private, "10.78.0.2/24", None)
        + &peer_section(&k4, "10.78.0.0/24", Some(v4_peer.local_addr()));
    sb.write_profile("four", &text);
    assert_success(&sb.run(sb.wg_wrap(&["up", "four"])));
    assert_eq!(fetch(&sb, "four", "10.78.0.1"), VIRTUAL_PEER_GREETING);
    let out = sb.run(sb.wg_wrap(&["status", "four", "--json"]));
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!("\"[::1]:{}\"", v4_peer.local_addr().port())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn hundred_mib_download_has_the_same_checksum_at_both_ends() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let n = 100 * MIB;
    let u = url("10.77.0.1", &format!("/bytes/{n}"));
    let script = format!("curl -sS --max-time 100 '{u}' | tee >(wc -c >&2) | sha256sum");
    let out = run_timeout(
        sb.wg_wrap(&exec_args("work", &["bash", "-c", &script])),
        Duration::from_secs(120),
    );
    assert_success(&out);
    let received: u64 = String::from_utf8_lossy(&out.stderr)
        .trim()
        .parse()
        .expect("a byte count");
    assert_eq!(received, n);
    let got = stdout(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(got, sha256_of(n, virtual_peer::pattern_byte));
}

/// The receiving end: prints the byte count and SHA-256 of one connection's data.
const SINK: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
print(n, h.hexdigest())
"#;

/// The sending end: N deterministic bytes, retrying the connect until the sink listens.
const SOURCE: &str = r#"
import hashlib, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
for attempt in range(100):
    try:
        c = socket.create_connection((host, port), timeout=30)
        break
    except (ConnectionRefusedError, TimeoutError):
        time.sleep(0.1)
h, sent = hashlib.sha256(), 0
while sent < n:
    chunk = block[: min(len(block), n - sent)]
    c.sendall(chunk)
    h.update(chunk)
    sent += len(chunk)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(sent, h.hexdigest())
"#;

/// A session with ListenPort is dialed by another session over loopback (each has
/// the other's public key; only the client knows an endpoint), and 100 MiB go from
/// one to the other with the same SHA-256 at both ends.
#[test]
fn listen_port_session_is_dialed_by_another_session() {
    let sb = Sandbox::new();
    let port = sb.bind_udp("127.0.0.1:0").local_addr().unwrap().port();
    let (srv_private, srv_public) = generate_keypair();
    let (cli_private, cli_public) = generate_keypair();
    sb.write_profile(
        "srv",
        &(interface(&srv_private, "10.99.0.1/24", Some(port))
            + &peer_section(&cli_public, "10.99.0.2/32", None)),
    );
    let endpoint = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    sb.write_profile(
        "cli",
        &(interface(&cli_private, "10.99.0.2/24", None)
            + &peer_section(&srv_public, "10.99.0.1/32", Some(endpoint))),
    );
    assert_success(&sb.run(sb.wg_wrap(&["up", "srv"])));
    assert_success(&sb.run(sb.wg_wrap(&["up", "cli"])));
    let n = (100 * MIB).to_string();
    let sink = spawn_timeout(
        sb.wg_wrap(&exec_args(
            "srv",
            &["python3", "-c", SINK, "10.99.0.1", "9000"],
        )),
        Duration::from_secs(90),
    );
    let source = run_timeout(
        sb.wg_wrap(&exec_args(
            "cli",
            &["python3", "-c", SOURCE, "10.99.0.1", "9000", &n],
        )),
        Duration::from_secs(90),
    );
    assert_success(&source);
    let sink = sink.wait();
    assert_success(&sink);
    let sent = stdout(&source);
    assert_eq!(stdout(&sink), sent, "bytes and SHA-256 at both ends");
    assert!(sent.starts_with(&format!("{n} ")), "{sent}");
    // The server learned the client's address from its handshake.
    let out = sb.run(sb.wg_wrap(&["status", "srv", "--json"]));
    assert!(stdout(&out).contains("\"127.0.0.1:"), "{}", stdout(&out));
    // And it answers pings the other way.
    let out = sb.run(sb.wg_wrap(&exec_args(
        "srv",
        &["ping", "-c", "1", "-W", "5", "10.99.0.2"],
    )));
    assert!(stdout(&out).contains("1 received"), "{}", describe(&out));
}

/// Connect to `addr` port 80 from inside `profile`; prints errno (0 on success) and
/// the seconds it took.
const CONNECT: &str = r#"
import socket, sys, time
addr = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.settimeout(20)
t = time.monotonic()
try:
    s.connect((addr, 80))
    err = 0
except OSError as e:
    err = e.errno or -1
print(err, round(time.monotonic() - t, 3))
"#;

/// 10.77.0.99 and fd77::99 lie in the profile's own subnets, so the kernel routes
/// them into the tunnel, but AllowedIPs only cover the peer itself: the data plane
/// answers with ICMP unreachable and the connect fails at once.
#[test]
fn connect_to_an_address_no_peer_covers_fails_fast() {
    let sb = Sandbox::new();
    let (_peer, client) = sb.virtual_peer("narrow");
    let text = client.wg_quick_conf(_peer.local_addr()).replace(
        "AllowedIPs = 10.77.0.0/24, fd77::/64",
        "AllowedIPs = 10.77.0.1/32, fd77::1/128",
    );
    assert!(text.contains("10.77.0.1/32"), "{text}");
    sb.write_profile("narrow", &text);
    assert_eq!(fetch(&sb, "narrow", "10.77.0.1"), VIRTUAL_PEER_GREETING);
    for addr in ["10.77.0.99", "fd77::99"] {
        let started = Instant::now();
        let out = sb.run(sb.wg_wrap(&exec_args("narrow", &["python3", "-c", CONNECT, addr])));
        assert_success(&out);
        let text = stdout(&out);
        let errno: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
        // EHOSTUNREACH ("No route to host").
        assert_eq!(errno, 113, "connect to {addr}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
    let out = sb.run(sb.wg_wrap(&exec_args(
        "narrow",
        &["curl", "-sS", "--max-time", "20", "http://10.77.0.99/"],
    )));
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
}

/// A DNS server for one name, on the sandbox's 127.0.0.53:53 (where the fake host's
/// resolv.conf points): A questions for the name get the current answer, any other
/// question an empty NOERROR. Stops on drop.
struct OneNameDns {
    answer: Arc<Mutex<Ipv4Addr>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OneNameDns {
    fn start(sb: &Sandbox, name: &str, answer: Ipv4Addr) -> OneNameDns {
        let socket = sb.bind_udp("127.0.0.53:53");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut dns = OneNameDns {
            answer: Arc::new(Mutex::new(answer)),
            queries: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (answer, queries, stop) = (dns.answer.clone(), dns.queries.clone(), dns.stop.clone());
        let wire_name: Vec<u8> = name
            .split('.')
            .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
            .chain([0])
            .collect();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                // Header, then the question: name, type, class.
                let question_end = 12 + wire_name.len() + 4;
                if n < question_end {
                    continue;
                }
                queries.fetch_add(1, Ordering::SeqCst);
                let q = &buf[..question_end];
                let is_a = q[12..12 + wire_name.len()].eq_ignore_ascii_case(&wire_name)
                    && q[question_end - 4..question_end - 2] == [0, 1];
                let mut reply = q.to_vec();
                reply[2] |= 0x80; // a response (opcode and RD kept)
                reply[3] = 0x80; // recursion available, NOERROR
                reply[4..12].copy_from_slice(&[0, 1, 0, is_a as u8, 0, 0, 0, 0]);
                if is_a {
                    // Name (pointer to the question), A, IN, TTL 0, 4 bytes.
                    reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
                    reply.extend_from_slice(&answer.lock().unwrap().octets());
                }
                let _ = socket.send_to(&reply, from);
            }
        });
        dns.thread = Some(thread);
        dns
    }

    fn set(&self, answer: Ipv4Addr) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl Drop for OneNameDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The session starts without any hostname (so nothing about names is handed over at
/// start), a reload brings one, and the name then moves: within re-resolution's 30 s
/// round the supervisor asks the host's nameserver — through its host socket, as the
/// tunnel is down — and follows the name to the live peer.
#[test]
fn a_hostname_added_by_reload_is_re_resolved_on_the_host() {
    const NAME: &str = "peer.wg-wrap.test";
    let sb = Sandbox::new();
    // wg-wrap runs in a fake host whose /etc/resolv.conf says 127.0.0.53.
    let host = FakeHost::new(&sb);
    let nowhere = Ipv4Addr::new(127, 0, 0, 9);
    let dns = OneNameDns::start(&sb, NAME, nowhere);
    let (private, public) = generate_keypair();
    let (peer, peer_key) = start_peer(
        &sb,
        "127.0.0.1:0",
        public,
        Some((Ipv4Addr::new(10, 81, 0, 1), 24)),
        None,
    );
    let port = peer.local_addr().port();
    let profile = |endpoint: &str| {
        interface(&private, "10.81.0.2/24", None)
            + &peer_section(&peer_key, "10.81.0.0/24", None)
            + &format!("Endpoint = {endpoint}\nPersistentKeepalive = 1\n")
    };
    let run = |args: &[&str]| sb.run(host.wg_wrap(&sb, args));
    // Nothing listens at 127.0.0.9: the keepalive's handshakes go unanswered.
    sb.write_profile("named", &profile(&format!("{nowhere}:{port}")));
    assert_success(&run(&["up", "named"]));
    sb.write_profile("named", &profile(&format!("{NAME}:{port}")));
    let out = run(&["reload", "named"]);
    assert_success(&out);
    let asked_by_cli = dns.queries.load(Ordering::SeqCst);
    assert!(
        asked_by_cli > 0,
        "the reload resolved {NAME} on the host\n{}",
        describe(&out)
    );
    dns.set(Ipv4Addr::LOCALHOST);
    let moved = Instant::now();

    let deadline = moved + Duration::from_secs(50);
    let status = loop {
        let out = run(&["status", "--json"]);
        assert_success(&out);
        let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let peer_status = doc["profiles"][0]["peers"][0].clone();
        if !peer_status["latest_handshake_secs_ago"].is_null() {
            break peer_status;
        }
        assert!(
            Instant::now() < deadline,
            "no handshake {:?} after {NAME} moved to 127.0.0.1; the DNS server had {} \
             queries ({asked_by_cli} from the reload)\nstatus: {peer_status}\n\
             supervisor log:\n{}",
            moved.elapsed(),
            dns.queries.load(Ordering::SeqCst),
            sb.supervisor_log("named")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "re-resolution: handshake {:?} after the name moved",
        moved.elapsed()
    );
    assert_eq!(
        status["endpoint"].as_str(),
        Some(format!("127.0.0.1:{port}").as_str()),
        "{status}"
    );
    assert!(
        dns.queries.load(Ordering::SeqCst) > asked_by_cli,
        "the supervisor asked the host's nameserver"
    );
    let out = run(&exec_args(
        "named",
        &["curl", "-sS", "--max-time", "20", "http://10.81.0.1/"],
    ));
    assert_success(&out);
    assert_eq!(stdout(&out), VIRTUAL_PEER_GREETING);
    assert_success(&run(&["down", "named"]));
}
