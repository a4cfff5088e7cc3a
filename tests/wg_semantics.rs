//! wgconf judged by wireguard-tools: generated profiles go through both
//! `wgconf::parse` and `wg-quick strip FILE | wg setconf IF /dev/stdin` on a
//! wireguard-go interface, and must get the same accept/reject decision and,
//! when accepted, the same device: private key, listen port, fwmark, and per
//! peer the preshared key, AllowedIPs (in `wg show dump`'s order), endpoint and
//! keepalive.
//!
//! One wireguard-go interface in a throw-away network and mount namespace
//! (`interop_support::ServerNs`: private `/var/run/wireguard`) serves every
//! round; `wg setconf` replaces the whole device each time. Endpoint names are
//! only `localhost` (resolved from /etc/hosts; no DNS), and
//! `WG_ENDPOINT_RESOLUTION_RETRIES=0` keeps a failed lookup from retrying.
//!
//! The generator is seeded; the seed is printed and `WG_SEMANTICS_SEED=N`
//! repeats a run. Keys are made up for the test and belong to nothing.
//!
//! wg-quick-only keys (`Address`, `DNS`, `MTU`, `Table`, `SaveConfig`, hooks)
//! are stripped before `wg` sees them, so the tools cannot judge their values:
//! the generator writes only valid ones (wgconf checks them on its own, see
//! `wgconf/tests/fixtures`). Every profile has a `PrivateKey` and an
//! `Address`, which wg-wrap requires and wg-quick does not.

mod common;
mod interop_support;

use common::*;
use interop_support::{feed, Implementation, RealPeer, ServerNs};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use wgconf::{Endpoint, Key};

/// Profiles checked per run.
const ROUNDS: usize = 1000;

/// Values `wg` accepts only by accident of how it parses them (`getaddrinfo`,
/// `inet_aton`, `htons`); wgconf rejects them on purpose. Each row (where it
/// goes, the line, what `wg setconf` makes of it) is checked against the real
/// tools, so the table stays true.
#[rustfmt::skip]
const ACCIDENTAL: &[(Place, &str, &str)] = &[
    (Place::Interface, "ListenPort = 65536",           "port 0 (htons wraps): a random port"),
    (Place::Interface, "ListenPort = 65537",           "port 1 (htons wraps)"),
    (Place::Interface, "ListenPort = +5",              "port 5 (strtoul takes a sign)"),
    (Place::Interface, "ListenPort = domain",          "port 53 (an /etc/services name)"),
    (Place::Peer,      "Endpoint = 192.0.2.1:0",       "port 0, which no datagram can reach"),
    (Place::Peer,      "Endpoint = 192.0.2.1:65536",   "port 0 (wraps)"),
    (Place::Peer,      "Endpoint = 192.0.2.1:65537",   "port 1 (wraps)"),
    (Place::Peer,      "Endpoint = 192.0.2.1:+1",      "port 1 (strtoul takes a sign)"),
    (Place::Peer,      "Endpoint = 192.0.2.1:domain",  "port 53 (an /etc/services name)"),
    (Place::Peer,      "Endpoint = 1.2.3:1",           "1.2.0.3 (inet_aton's short forms)"),
    (Place::Peer,      "Endpoint = 01.2.3.4:1",        "1.2.3.4 (inet_aton reads octal)"),
    (Place::Peer,      "Endpoint = 0x7f.1:1",          "127.0.0.1 (inet_aton reads hex)"),
    (Place::Peer,      "Endpoint = 3221225985:1",      "192.0.2.1 (one 32-bit number)"),
    (Place::Peer,      "Endpoint = [192.0.2.1]:1",     "192.0.2.1 (brackets meant for IPv6)"),
    (Place::Peer,      "Endpoint = [localhost]:1",     "127.0.0.1 (brackets meant for IPv6)"),
];

/// Where wgconf and the tools disagree by design, each checked against both:
/// where it goes, the line, whether the tools accept it, whether wgconf does,
/// and why.
#[rustfmt::skip]
const DELIBERATE: &[(Place, &str, bool, bool, &str)] = &[
    (Place::Peer, "Endpoint = [fe80::1%lo]:1", true, false,
     "a zone index names a host interface, which wg-wrap's namespace does not have"),
    (Place::Interface, "ListenPort = 1\n[ Interface ]\nAddress = 10.0.0.3/32", false, true,
     "wg-quick only strips Address under a header spelt exactly [Interface]"),
    (Place::Interface, "Add ress = 10.0.0.3/32", false, true,
     "wg-quick matches its own keys without removing inner whitespace"),
    (Place::Start, "\u{feff}", false, true,
     "a UTF-8 byte order mark: wg-quick and wg read it as part of the header"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Before `[Interface]`.
    Start,
    /// After the interface's PrivateKey and Address.
    Interface,
    /// In the only `[Peer]`, after its PublicKey.
    Peer,
}

/// The device as `wg show IF dump` reports it.
#[derive(Debug, Clone, PartialEq)]
struct Device {
    private_key: String,
    listen_port: u16,
    fwmark: Option<u32>,
    peers: BTreeMap<String, DevicePeer>,
}

#[derive(Debug, Clone, PartialEq)]
struct DevicePeer {
    preshared_key: Option<String>,
    endpoint: Option<String>,
    allowed_ips: Vec<String>,
    keepalive: Option<u16>,
}

enum Verdict {
    Accepted(Device),
    /// What the tools printed.
    Rejected(String),
}

/// wireguard-go in a throw-away namespace, and a directory for the profile
/// (wg-quick wants a path ending in `IFNAME.conf`). Both go away on drop.
struct Judge {
    // Declared first so that wireguard-go stops before its namespace does.
    device: RealPeer,
    ns: ServerNs,
    dir: PathBuf,
}

impl Judge {
    /// `name` tells apart the directories of tests running at the same time.
    fn new(name: &str) -> Judge {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (it makes network namespaces and runs wireguard-go)"
        );
        for tool in ["wg-quick", "wg", "wireguard-go", "nsenter"] {
            let found = std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).exists()));
            assert!(
                found,
                "{tool} is missing: install wireguard-tools and wireguard-go (sudo .ci/setup)"
            );
        }
        let dir = std::env::temp_dir().join(format!("wg-wrap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let ns = ServerNs::new();
        let device = RealPeer::start(
            Implementation::WireguardGo,
            &ns,
            dir.join("wireguard-go.log"),
        );
        Judge { device, ns, dir }
    }

    fn judge(&self, text: &str) -> Verdict {
        let path = self.dir.join("wgq0.conf");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut strip = Command::new("wg-quick");
        strip
            .arg("strip")
            .arg(&path)
            .stdin(std::process::Stdio::null());
        let out = run_timeout(strip, COMMAND_TIMEOUT);
        if !out.status.success() {
            return Verdict::Rejected(describe(&out));
        }
        let mut set = self.ns_wg(&["setconf", &self.device.ifname, "/dev/stdin"]);
        set.stdin(feed(&stdout(&out)));
        let out = run_timeout(set, COMMAND_TIMEOUT);
        if !out.status.success() {
            return Verdict::Rejected(describe(&out));
        }
        let out = run_timeout(
            self.ns_wg(&["show", &self.device.ifname, "dump"]),
            COMMAND_TIMEOUT,
        );
        assert!(out.status.success(), "wg show dump\n{}", describe(&out));
        Verdict::Accepted(parse_dump(&stdout(&out)))
    }

    fn ns_wg(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(self.ns.nsenter_args())
            .arg("--")
            .arg("wg")
            .args(args)
            .env("WG_ENDPOINT_RESOLUTION_RETRIES", "0")
            .stdin(std::process::Stdio::null());
        cmd
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn none_or<T>(field: &str, f: impl FnOnce(&str) -> T) -> Option<T> {
    (field != "(none)" && field != "off").then(|| f(field))
}

/// `wg show IF dump`: the interface line (private key, public key, port,
/// fwmark), then per peer: public key, preshared key, endpoint, allowed IPs,
/// handshake, rx, tx, keepalive.
fn parse_dump(text: &str) -> Device {
    let mut lines = text.lines();
    let head: Vec<&str> = lines
        .next()
        .expect("dump has a first line")
        .split('\t')
        .collect();
    let mut device = Device {
        private_key: head[0].to_owned(),
        listen_port: head[2].parse().unwrap(),
        fwmark: none_or(head[3], |m| {
            u32::from_str_radix(m.trim_start_matches("0x"), 16).unwrap()
        }),
        peers: BTreeMap::new(),
    };
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 8, "unexpected dump line {line:?}");
        let peer = DevicePeer {
            preshared_key: none_or(f[1], str::to_owned),
            endpoint: none_or(f[2], str::to_owned),
            allowed_ips: none_or(f[3], |a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            keepalive: none_or(f[7], |k| k.parse().unwrap()),
        };
        device.peers.insert(f[0].to_owned(), peer);
    }
    device
}

/// Whether the device is what wgconf's `Config` says `wg setconf` makes.
/// Returns what differs.
fn compare(config: &wgconf::Config, device: &Device) -> Vec<String> {
    let mut diffs = Vec::new();
    let iface = &config.interface;
    // The device clamps the private key (RFC 7748), as X25519 would anyway.
    let mut private = *iface.private_key.as_bytes();
    private[0] &= 248;
    private[31] = (private[31] & 127) | 64;
    if Key::from_bytes(private).to_base64() != device.private_key {
        diffs.push("private key".to_owned());
    }
    // Absent or 0: the device picks a port.
    if let Some(port) = iface.listen_port {
        if port != device.listen_port {
            diffs.push(format!(
                "listen port: wgconf {port}, wg {}",
                device.listen_port
            ));
        }
    }
    if iface.fwmark != device.fwmark {
        diffs.push(format!(
            "fwmark: wgconf {:?}, wg {:?}",
            iface.fwmark, device.fwmark
        ));
    }
    if config.peers.len() != device.peers.len() {
        diffs.push(format!(
            "peers: wgconf {}, wg {}",
            config.peers.len(),
            device.peers.len()
        ));
    }
    for peer in &config.peers {
        let key = peer.public_key.to_base64();
        let Some(dev) = device.peers.get(&key) else {
            diffs.push(format!("peer {key} missing from the device"));
            continue;
        };
        let psk = peer.preshared_key.map(|k| k.to_base64());
        if psk != dev.preshared_key {
            diffs.push(format!("peer {key}: preshared key"));
        }
        let allowed: Vec<String> = peer.allowed_ips.iter().map(|n| n.to_string()).collect();
        if allowed != dev.allowed_ips {
            diffs.push(format!(
                "peer {key}: AllowedIPs wgconf {allowed:?}, wg {:?}",
                dev.allowed_ips
            ));
        }
        let endpoint_ok = match (&peer.endpoint, &dev.endpoint) {
            (None, None) => true,
            (Some(e @ Endpoint::Addr(_)), Some(d)) => e.to_string() == *d,
            (Some(Endpoint::Host { host, port }), Some(d)) => {
                host.eq_ignore_ascii_case("localhost")
                    && [format!("127.0.0.1:{port}"), format!("[::1]:{port}")].contains(d)
            }
            _ => false,
        };
        if !endpoint_ok {
            diffs.push(format!(
                "peer {key}: endpoint wgconf {:?}, wg {:?}",
                peer.endpoint.as_ref().map(|e| e.to_string()),
                dev.endpoint
            ));
        }
        if peer.persistent_keepalive != dev.keepalive {
            diffs.push(format!(
                "peer {key}: keepalive wgconf {:?}, wg {:?}",
                peer.persistent_keepalive, dev.keepalive
            ));
        }
    }
    diffs
}

/// Marsaglia's xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn key(&mut self) -> String {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        Key::from_bytes(bytes).to_base64()
    }

    /// `key` as a profile may hold it: whitespace inside is removed by `wg`.
    fn spaced(&mut self, key: &str) -> String {
        if self.one_in(8) {
            let at = self.below(key.len());
            format!("{} {}", &key[..at], &key[at..])
        } else {
            key.to_owned()
        }
    }
}

/// Values the tools and wgconf must agree on. The first group of each pool is
/// valid, the second invalid; accidental and deliberate differences are in
/// the tables above instead.
const LISTEN_PORTS: (&[&str], &[&str]) = (
    &["0", "1", "51820", "65535", "051820", "5 1820"],
    &["-1", "0x10", "x", "99999999999999999999", "65535.0", ""],
);
const FWMARKS: (&[&str], &[&str]) = (
    &[
        "0",
        "off",
        "OFF",
        "0x10",
        "010",
        "0xffffffff",
        "4294967295",
        "1234",
    ],
    &["0X10", "4294967296", "-1", "0x", "x", "0x1g", ""],
);
const KEEPALIVES: (&[&str], &[&str]) = (
    &["0", "off", "Off", "OFF", "25", "025", "1", "65535"],
    &["65536", "+5", "0x10", "on", "25s", "-1", ""],
);
const ENDPOINTS: (&[&str], &[&str]) = (
    &[
        "192.0.2.1:51820",
        "203.0.113.9:1",
        "192.0.2.1:051820",
        "[2001:db8::1]:51820",
        "[2001:DB8::a]:65535",
        "2001:db8::1:51820",
        "::1:5",
        "[::1]:65535",
        "[::ffff:192.0.2.1]:7",
        "localhost:1",
        "LocalHost:9",
        "192.0.2.1 : 4",
    ],
    &[
        "192.0.2.1",
        "192.0.2.1:",
        ":5",
        "[::1]5",
        "[::1:5",
        "[::1]:",
        "bad_host!:1",
        "192.0.2.1:-1",
        "192.0.2.1:x",
        "",
    ],
);
const PREFIXES: (&[&str], &[&str]) = (
    &[
        "10.0.0.0/8",
        "10.0.0.1/8",
        "10.1.0.0/16",
        "10.1.2.3/16",
        "10.0.0.1",
        "10.0.0.1/32",
        "0.0.0.0/0",
        "::/0",
        "::0/0",
        "fd00::/64",
        "fd00::1",
        "FD00::1/64",
        "fd00:0:0:0:0:0:0:1/128",
        "::ffff:10.0.0.1/128",
        "::ffff:10.0.0.1/96",
        "10.0.0.0/08",
        "192.168.1.77/24",
        "192.168.1.0/24",
        "10.0.0.0 / 8",
    ],
    &[
        "10.0.0.0/33",
        "::/129",
        "",
        "010.0.0.1",
        "1.2.3",
        "10.0.0.0/x",
        "10.0.0.0/-1",
        "10.0.0.0/+1",
        "fe80::1%lo/128",
        "10.0.0.0/",
        "10.0.0.0/8/8",
        "+10.0.0.0/8",
    ],
);
/// Lines that are wrong wherever they appear.
const BAD_LINES: &[&str] = &[
    "Foo = bar",
    "just some words",
    "[Peers]",
    "PublicKey",
    "= 1",
];

/// A wrong key: each form `wg` and wgconf both refuse.
fn bad_key(r: &mut Rng) -> String {
    let good = r.key();
    match r.below(5) {
        0 => good[..43].to_owned(),
        1 => format!("{}A=", &good[..42]),
        2 => good.replace('+', "-").replace('/', "_") + "x",
        // Low bits set in the last character: not a canonical encoding.
        3 => format!("{}B=", &good[..42]),
        _ => format!("{good}{good}"),
    }
}

fn value(r: &mut Rng, pool: (&[&'static str], &[&'static str]), bad: bool) -> String {
    if bad {
        r.pick(pool.1).to_owned()
    } else {
        r.pick(pool.0).to_owned()
    }
}

/// `Key = value` with the spellings the format allows for keys `wg` reads:
/// any case, whitespace anywhere, comments after.
fn wg_line(r: &mut Rng, key: &str, value: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| match r.below(4) {
            0 => c.to_ascii_lowercase(),
            1 => c.to_ascii_uppercase(),
            _ => c,
        })
        .collect();
    let key = if r.one_in(6) {
        let mid = key.len() / 2;
        format!("{} {}", &key[..mid], &key[mid..])
    } else {
        key
    };
    // Vertical tab and form feed are C `isspace` too.
    let pad = |r: &mut Rng| {
        r.pick(&["", " ", "  ", "\t", " \t", "", " ", "\x0b", "\x0c"])
            .to_owned()
    };
    let mut line = format!("{}{key}{}={}{value}", pad(r), pad(r), pad(r));
    if r.one_in(5) {
        line.push_str(&format!("{}# comment = [Peer]", pad(r)));
    }
    line
}

/// wg-quick's own keys: any case, but no whitespace inside the key (see
/// `DELIBERATE`), valid values only (see the module docs).
fn quick_line(r: &mut Rng) -> String {
    let (key, value) = match r.below(7) {
        0 => (
            "Address",
            r.pick(&["10.0.0.9/32", "fd00::9/64, 10.0.0.9/24", "10.0.0.9"]),
        ),
        1 => (
            "DNS",
            r.pick(&["192.0.2.53", "192.0.2.53, example.com", "2001:db8::53"]),
        ),
        2 => ("MTU", r.pick(&["1420", "1280", "9000"])),
        3 => ("Table", r.pick(&["off", "auto", "1234", "main"])),
        4 => ("SaveConfig", r.pick(&["true", "false", "TRUE"])),
        5 => ("PostUp", r.pick(&["echo up", "echo a = b # not a comment"])),
        _ => ("PreDown", r.pick(&["", "true"])),
    };
    let key = if r.one_in(3) {
        key.to_ascii_lowercase()
    } else {
        key.to_owned()
    };
    format!("{}{key} = {value}", r.pick(&["", " ", "\t"]))
}

struct Profile {
    text: String,
    /// Whether the generator put something invalid in.
    meant_bad: bool,
}

/// Interface key pairs, made once per run by `wg genkey`/`wg pubkey`.
struct Pools {
    interface: Vec<interop_support::Keys>,
    /// A small pool, so that peers repeat.
    peers: Vec<String>,
}

/// One profile. Peer keys come from a small pool, so that peers repeat, and
/// now and then a peer has the interface's own public key; prefixes come from
/// a small pool too, so that they land under several peers.
fn profile(r: &mut Rng, pools: &Pools) -> Profile {
    // Mostly valid: a bad value in one place in about a third of the profiles.
    let bad_at = if r.one_in(3) { Some(r.below(8)) } else { None };
    let mut meant_bad = false;
    let mut bad = |r: &mut Rng, place: usize| {
        let b = bad_at == Some(place) && !r.one_in(4);
        meant_bad |= b;
        b
    };
    let mut lines: Vec<String> = Vec::new();
    if r.one_in(4) {
        lines.push("# generated".to_owned());
    }
    lines.push(
        r.pick(&["[Interface]", "[interface]", "  [INTERFACE]  # iface"])
            .to_owned(),
    );
    if bad(r, 0) && r.one_in(3) {
        lines.insert(0, r.pick(&["ListenPort = 1", "Foo = 1"]).to_owned());
    }
    let mut own = None;
    let private = if bad(r, 0) {
        bad_key(r)
    } else if r.one_in(2) {
        let pair = &pools.interface[r.below(pools.interface.len())];
        own = Some(pair.public.clone());
        r.spaced(&pair.private)
    } else {
        let k = r.key();
        r.spaced(&k)
    };
    let peer_key = |r: &mut Rng| match &own {
        Some(own) if r.one_in(12) => own.clone(),
        _ => pools.peers[r.below(pools.peers.len())].clone(),
    };
    lines.push(wg_line(r, "PrivateKey", &private));
    lines.push(format!(
        "Address = {}",
        r.pick(&["10.0.0.2/32", "10.0.0.2/24, fd00::2/64"])
    ));
    for _ in 0..r.below(3) {
        lines.push(quick_line(r));
    }
    if r.one_in(2) {
        let b = bad(r, 1);
        let v = value(r, LISTEN_PORTS, b);
        lines.push(wg_line(r, "ListenPort", &v));
    }
    if r.one_in(3) {
        let b = bad(r, 2);
        let v = value(r, FWMARKS, b);
        lines.push(wg_line(r, "FwMark", &v));
    }
    if bad(r, 3) {
        lines.push(r.pick(BAD_LINES).to_owned());
    }
    let mut sections = Vec::new();
    for _ in 0..r.below(5) {
        let mut s: Vec<String> = Vec::new();
        s.push(
            r.pick(&["[Peer]", "[peer]", "[PEER] # p", "[ Peer ]", "\t[pe er]"])
                .to_owned(),
        );
        if !bad(r, 4) || r.one_in(2) {
            let key = peer_key(r);
            let key = r.spaced(&key);
            s.push(wg_line(r, "PublicKey", &key));
        }
        let mut body = Vec::new();
        if r.one_in(10) {
            // Given again: the later one counts.
            let key = peer_key(r);
            body.push(wg_line(r, "PublicKey", &key));
        }
        if r.one_in(3) {
            let psk = if bad(r, 5) { bad_key(r) } else { r.key() };
            body.push(wg_line(r, "PresharedKey", &psk));
        }
        for _ in 0..r.below(3) {
            let n = 1 + r.below(3);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    let b = bad(r, 6);
                    value(r, PREFIXES, b)
                })
                .collect();
            let sep = r.pick(&[",", ", ", " ,"]);
            body.push(wg_line(r, "AllowedIPs", &items.join(sep)));
        }
        for _ in 0..r.below(3) {
            let b = bad(r, 7);
            let v = value(r, ENDPOINTS, b);
            body.push(wg_line(r, "Endpoint", &v));
        }
        if r.one_in(2) {
            let b = bad(r, 7);
            let v = value(r, KEEPALIVES, b);
            body.push(wg_line(r, "PersistentKeepalive", &v));
        }
        // Any order inside the section.
        for i in (1..body.len()).rev() {
            body.swap(i, r.below(i + 1));
        }
        s.extend(body);
        sections.push(s);
    }
    if r.one_in(8) {
        let v = value(r, LISTEN_PORTS, false);
        // Spaces inside the brackets are fine here: wg-quick only needs the
        // exact spelling for its own keys (see `DELIBERATE`), and this
        // section has none.
        let header = r.pick(&["[Interface]", "[ Interface ]", "[inter face]"]);
        sections.push(vec![header.to_owned(), wg_line(r, "ListenPort", &v)]);
    }
    for s in sections {
        if r.one_in(3) {
            lines.push(
                r.pick(&["", "", "  \t", "\x0b", "# [Interface]"])
                    .to_owned(),
            );
        }
        lines.extend(s);
    }
    let newline = if r.one_in(4) { "\r\n" } else { "\n" };
    let mut text = lines.join(newline);
    if !r.one_in(5) {
        text.push_str(newline);
    }
    Profile { text, meant_bad }
}

fn seed() -> u64 {
    match std::env::var("WG_SEMANTICS_SEED") {
        Ok(s) => s.parse().expect("WG_SEMANTICS_SEED is a number"),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (now.as_nanos() as u64) | 1
        }
    }
}

fn template(place: Place, line: &str, private: &str, public: &str) -> String {
    match place {
        Place::Start => format!(
            "{line}[Interface]\nPrivateKey = {private}\nAddress = 10.0.0.2/32\n[Peer]\nPublicKey = {public}\n"
        ),
        Place::Interface => format!(
            "[Interface]\nPrivateKey = {private}\nAddress = 10.0.0.2/32\n{line}\n[Peer]\nPublicKey = {public}\n"
        ),
        Place::Peer => format!(
            "[Interface]\nPrivateKey = {private}\nAddress = 10.0.0.2/32\n[Peer]\nPublicKey = {public}\n{line}\n"
        ),
    }
}

#[test]
fn wgconf_agrees_with_wg_setconf_on_generated_profiles() {
    let judge = Judge::new("generated");
    let seed = seed();
    eprintln!("WG_SEMANTICS_SEED={seed}");
    let mut r = Rng(seed);
    let pools = Pools {
        interface: (0..2).map(|_| interop_support::Keys::generate()).collect(),
        peers: (0..3).map(|_| r.key()).collect(),
    };
    let (mut accepted, mut rejected) = (0, 0);
    let (mut repeated_peers, mut moved_prefixes, mut own_keys) = (0, 0, 0);
    for round in 0..ROUNDS {
        let p = profile(&mut r, &pools);
        let context = || {
            format!(
                "WG_SEMANTICS_SEED={seed}, profile {round} (generated as {}):\n{}\n",
                if p.meant_bad { "invalid" } else { "valid" },
                p.text.replace('\r', "\\r")
            )
        };
        match (wgconf::parse(&p.text), judge.judge(&p.text)) {
            (Ok(parsed), Verdict::Accepted(device)) => {
                let diffs = compare(&parsed.config, &device);
                assert!(
                    diffs.is_empty(),
                    "{}wgconf and wg setconf disagree:\n{}\nwgconf: {:#?}\nwg: {device:#?}",
                    context(),
                    diffs.join("\n"),
                    parsed.config
                );
                accepted += 1;
                let said = |w: &str| parsed.warnings.iter().any(|x| x.message.contains(w));
                repeated_peers += usize::from(said("has the same PublicKey"));
                moved_prefixes += usize::from(said("this later [Peer]"));
                own_keys += usize::from(said("own public key"));
            }
            (Err(errors), Verdict::Rejected(_)) => {
                assert!(!errors.errors().is_empty());
                rejected += 1;
            }
            (Ok(parsed), Verdict::Rejected(why)) => panic!(
                "{}wgconf accepts it (warnings: {:?}), wireguard-tools reject it:\n{why}",
                context(),
                parsed.warnings
            ),
            (Err(errors), Verdict::Accepted(device)) => panic!(
                "{}wireguard-tools accept it ({device:?}), wgconf rejects it:\n{errors}",
                context()
            ),
        }
    }
    eprintln!(
        "{ROUNDS} profiles: {accepted} accepted by both ({repeated_peers} with a repeated \
         peer, {moved_prefixes} with a prefix under two peers, {own_keys} with the \
         interface's own key as a peer), {rejected} rejected by both"
    );
    // The generator keeps covering both sides and the tricky cases.
    assert!(
        accepted >= ROUNDS / 4 && rejected >= ROUNDS / 10,
        "{accepted}/{rejected}"
    );
    assert!(repeated_peers > 0 && moved_prefixes > 0 && own_keys > 0);
}

#[test]
fn accidental_and_deliberate_differences_are_as_listed() {
    let judge = Judge::new("differences");
    let mut r = Rng(0x5eed);
    let (private, public) = (r.key(), r.key());
    for (place, line, what) in ACCIDENTAL {
        let text = template(*place, line, &private, &public);
        assert!(
            matches!(judge.judge(&text), Verdict::Accepted(_)),
            "wg no longer accepts {line:?} ({what}); update the table"
        );
        assert!(wgconf::parse(&text).is_err(), "wgconf accepts {line:?}");
    }
    for (place, line, tools, ours, why) in DELIBERATE {
        let text = template(*place, line, &private, &public);
        let got = matches!(judge.judge(&text), Verdict::Accepted(_));
        assert_eq!(got, *tools, "the tools on {line:?} ({why})");
        assert_eq!(
            wgconf::parse(&text).is_ok(),
            *ours,
            "wgconf on {line:?} ({why})"
        );
    }
}

/// What `show`, `up`, `status` and the tunnel make of a profile with a repeated
/// `[Peer]` and a prefix under two peers: one peer per key, each prefix under
/// the peer that owns it, the warnings with `file:line:`, and traffic to the
/// moved prefix reaching its owner.
#[test]
fn show_status_and_traffic_agree_on_repeated_peers_and_moved_prefixes() {
    let sb = Sandbox::new();
    let (server, client) = sb.virtual_peer("work");
    let server_key = virtual_peer::key_to_base64(&client.peer_public_key);
    let other_key = Rng(0x0123_4567_89ab_cdef).key();
    let text = format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.77.0.2/24\n\n\
         [Peer]\nPublicKey = {server_key}\nAllowedIPs = 10.99.0.0/24\nEndpoint = {}\n\
         PersistentKeepalive = 25\n\n\
         [Peer]\nPublicKey = {other_key}\nAllowedIPs = 10.77.0.0/24, 10.88.0.0/16\n\n\
         [Peer]\nPublicKey = {server_key}\nAllowedIPs = 10.77.0.1/24\n",
        virtual_peer::key_to_base64(&client.private_key),
        server.local_addr(),
    );
    let path = sb.write_profile("work", &text);
    let p = path.display();
    let warnings = [
        format!("{p}:15: [Peer] has the same PublicKey as the [Peer] on line 5;"),
        format!("{p}:17: AllowedIPs 10.77.0.1/24 has host bits set"),
        format!(
            "{p}:17: AllowedIPs 10.77.0.0/24 is also listed on line 13 for the [Peer] on \
             line 11; this later [Peer] on line 15 gets it"
        ),
    ];

    let out = sb.run(sb.wg_wrap(&["show", "work"]));
    assert_success(&out);
    let shown = stdout(&out);
    let profile: String = shown
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(profile.matches("[Peer]").count(), 2, "{shown}");
    assert_eq!(profile.matches("10.77.0.0/24").count(), 1, "{shown}");
    assert!(
        shown.contains(&format!(
            "[Peer]\nPublicKey = {server_key}\nAllowedIPs = 10.77.0.0/24\nEndpoint = {}\n\
             PersistentKeepalive = 25\n",
            server.local_addr()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "[Peer]\nPublicKey = {other_key}\nAllowedIPs = 10.88.0.0/16\n"
        )),
        "{shown}"
    );
    assert!(!shown.contains("10.99.0.0"), "{shown}");
    for w in &warnings {
        assert!(shown.contains(w.as_str()), "missing {w:?} in\n{shown}");
    }

    let out = sb.run(sb.wg_wrap(&["up", "work"]));
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    for w in &warnings {
        assert!(err.contains(w.as_str()), "`up` did not warn {w:?}:\n{err}");
    }
    let out = sb.run(sb.wg_wrap(&exec_args(
        "work",
        &["curl", "-sS", "--max-time", "20", "http://10.77.0.1/"],
    )));
    assert_success(&out);
    assert_eq!(stdout(&out), virtual_peer::VIRTUAL_PEER_GREETING);

    let out = sb.run(sb.wg_wrap(&["status", "work", "--json"]));
    assert_success(&out);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let peers = doc["profiles"][0]["peers"].as_array().unwrap().clone();
    let allowed: BTreeMap<String, serde_json::Value> = peers
        .iter()
        .map(|p| {
            (
                p["public_key"].as_str().unwrap().to_owned(),
                p["allowed_ips"].clone(),
            )
        })
        .collect();
    assert_eq!(allowed.len(), 2, "{peers:?}");
    assert_eq!(allowed[&server_key], serde_json::json!(["10.77.0.0/24"]));
    assert_eq!(allowed[&other_key], serde_json::json!(["10.88.0.0/16"]));
    let text = stdout(&sb.run(sb.wg_wrap(&["status", "work"])));
    assert_eq!(text.matches("10.77.0.0/24").count(), 1, "{text}");

    assert_success(&sb.run(sb.wg_wrap(&["down", "work"])));
}
