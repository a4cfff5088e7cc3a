//! Property tests: random configurations survive `render` then `parse`,
//! also after the cosmetic changes the format allows (case, whitespace,
//! comments, CRLF, a BOM). A seeded xorshift keeps every run reproducible.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{Config, Interface, Peer, Table};
use crate::endpoint::Endpoint;
use crate::key::Key;
use crate::net::IpNet;
use crate::parse::parse;
use crate::render::render;
use crate::testutil::without_lines;

/// Marsaglia's xorshift64: tiny, deterministic, good enough for test data.
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

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    fn some<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        (!self.one_in(2)).then(|| f(self))
    }

    fn many<T>(&mut self, max: u64, mut f: impl FnMut(&mut Rng) -> T) -> Vec<T> {
        (0..self.below(max + 1)).map(|_| f(self)).collect()
    }
}

fn key(r: &mut Rng) -> Key {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&r.next().to_le_bytes());
    }
    Key::from_bytes(bytes)
}

fn ip(r: &mut Rng) -> IpAddr {
    match r.below(5) {
        0 => IpAddr::V4(Ipv4Addr::from(r.next() as u32)),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, r.below(3) as u8, r.below(256) as u8)),
        2 => IpAddr::V6(Ipv6Addr::from(
            u128::from(r.next()) << 64 | u128::from(r.next()),
        )),
        3 => IpAddr::V6(Ipv4Addr::from(r.next() as u32).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, r.below(4) as u16)),
    }
}

fn net(r: &mut Rng) -> IpNet {
    let addr = ip(r);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    IpNet::new(addr, r.range(0, max) as u8).unwrap()
}

fn name(r: &mut Rng) -> String {
    const CHARS: &[u8] = b"abcxyzABZ019-_";
    let labels = r.range(1, 3);
    let mut s = String::new();
    for i in 0..labels {
        if i > 0 {
            s.push('.');
        }
        // A leading letter keeps the name from looking like an address.
        s.push(*r.pick(b"abqz") as char);
        for _ in 0..r.below(8) {
            s.push(*r.pick(CHARS) as char);
        }
    }
    if r.one_in(5) {
        s.push('.');
    }
    s
}

fn hook(r: &mut Rng) -> String {
    const CHARS: &[char] = &[
        'a', 'z', 'Q', '0', ' ', ' ', '\t', '#', '=', '%', '"', '\'', ';', '$', '|', '[', ']', 'é',
        '\r', '\x0b', '\u{feff}',
    ];
    let s: String = (0..r.below(24)).map(|_| *r.pick(CHARS)).collect();
    s.trim_matches(crate::parse::is_space).to_owned()
}

fn table(r: &mut Rng) -> Table {
    match r.below(3) {
        0 => Table::Auto,
        1 => Table::Off,
        _ if r.one_in(2) => Table::Custom(r.range(1, 1 << 32).to_string()),
        _ => Table::Custom(format!("t{}", name(r))),
    }
}

fn endpoint(r: &mut Rng) -> Endpoint {
    let port = r.range(1, 65535) as u16;
    if r.one_in(3) {
        Endpoint::Host {
            host: name(r),
            port,
        }
    } else {
        Endpoint::Addr(SocketAddr::new(ip(r), port))
    }
}

fn config(r: &mut Rng) -> Config {
    let mut interface = Interface::new(key(r));
    interface.addresses = (0..r.range(1, 3)).map(|_| net(r)).collect();
    interface.dns = r.many(3, ip);
    interface.dns_search = r.many(2, name);
    interface.mtu = r.some(|r| r.range(576, 65535) as u16);
    interface.listen_port = r.some(|r| r.range(1, 65535) as u16);
    interface.fwmark = r.some(|r| r.range(1, u64::from(u32::MAX)) as u32);
    interface.table = table(r);
    interface.save_config = r.one_in(3);
    interface.pre_up = r.many(2, hook);
    interface.post_up = r.many(2, hook);
    interface.pre_down = r.many(1, hook);
    interface.post_down = r.many(1, hook);
    // What `parse` returns holds each prefix once, host bits cleared.
    let mut taken = std::collections::HashSet::new();
    let peers = r.many(4, |r| {
        let mut peer = Peer::new(key(r));
        peer.preshared_key = r.some(key);
        peer.allowed_ips = (r.many(4, net).into_iter())
            .map(|n| n.network())
            .filter(|n| taken.insert(*n))
            .collect();
        peer.endpoint = r.some(endpoint);
        peer.persistent_keepalive = r.some(|r| r.range(1, 65535) as u16);
        peer
    });
    Config { interface, peers }
}

fn flip_case(r: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| match r.below(3) {
            0 => c.to_ascii_lowercase(),
            1 => c.to_ascii_uppercase(),
            _ => c,
        })
        .collect()
}

fn blank(r: &mut Rng) -> &'static str {
    r.pick_str(&["", " ", "\t", "  \t ", "\x0b"])
}

/// Rewrites canonical text into an equivalent messy file.
fn perturb(r: &mut Rng, text: &str) -> String {
    let newline = if r.one_in(2) { "\r\n" } else { "\n" };
    let mut out = String::new();
    if r.one_in(4) {
        out.push('\u{feff}');
    }
    for line in text.lines() {
        if r.one_in(4) {
            let extra = r.pick_str(&["", "# a comment", "  ## [Peer]", "\t"]);
            out.push_str(extra);
            out.push_str(newline);
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push_str(&format!(
                "{}[{}{}]{}",
                blank(r),
                flip_case(r, section),
                blank(r),
                blank(r)
            ));
        } else if let Some((key, value)) = line.split_once(" = ") {
            let hook = key.ends_with("Up") || key.ends_with("Down");
            out.push_str(&format!(
                "{}{}{}={}{}",
                blank(r),
                flip_case(r, key),
                blank(r),
                blank(r),
                value
            ));
            // A trailing comment would become part of a hook.
            if !hook && r.one_in(3) {
                out.push_str(&format!("{}# trailing = comment", blank(r)));
            }
        } else {
            out.push_str(line);
        }
        out.push_str(newline);
    }
    out
}

#[test]
fn generated_configs_round_trip() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..3000 {
        let want = config(&mut r);
        let text = render(&want);
        let parsed = match parse(&text) {
            Ok(p) => p,
            Err(e) => panic!("case {case}: rendered config does not parse:\n{e}\n{text}"),
        };
        assert_eq!(
            without_lines(parsed.config.clone()),
            want,
            "case {case}:\n{text}"
        );
        assert_eq!(
            render(&parsed.config),
            text,
            "case {case}: render is not canonical"
        );

        let messy = perturb(&mut r, &text);
        match parse(&messy) {
            Ok(p) => assert_eq!(without_lines(p.config), want, "case {case}:\n{messy:?}"),
            Err(e) => panic!("case {case}: perturbed text does not parse:\n{e}\n{messy:?}"),
        }
    }
}
