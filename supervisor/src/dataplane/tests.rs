//! Real data planes wired back to back through the in-memory TUN and network of
//! [`super::fake`]: every test drives packets in at one TUN and looks for them at the
//! other, with real boringtun sessions in between.

use super::fake::{FakeNet, FakeTun, FakeUdp};
use super::*;
use crate::dataplane::offload::{VnetHdr, VNET_HDR_LEN};
use boringtun::x25519::{PublicKey, StaticSecret};
use rand_core::{OsRng, RngCore};
use std::sync::atomic::Ordering;
use std::time::Instant;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

fn keypair() -> ([u8; 32], [u8; 32]) {
    let mut private = [0u8; 32];
    OsRng.fill_bytes(&mut private);
    let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
    (private, public)
}

fn peer(public: [u8; 32], endpoint: Option<&str>, allowed: &[&str]) -> PeerConfig {
    PeerConfig {
        public_key: public,
        preshared_key: None,
        endpoint: endpoint.map(|e| e.parse().unwrap()),
        persistent_keepalive: None,
        allowed_ips: allowed.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

type Dev = Arc<Device<FakeTun, FakeUdp>>;

fn start(
    private: [u8; 32],
    udp: &FakeUdp,
    offload: bool,
    peers: Vec<PeerConfig>,
) -> (Dev, FakeTun) {
    let tun = FakeTun::new(offload);
    let dev = Arc::new(Device::new(tun.clone(), udp.clone(), private, peers));
    dev.start().unwrap();
    (dev, tun)
}

/// An IPv4 or IPv6 UDP packet (checksum left zero: nothing on the path checks it).
fn packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            crate::dataplane::checksum::ipv4_header_checksum(&mut p);
            p.extend_from_slice(&udp);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(udp.len() as u16).to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(&udp);
            p
        }
        _ => panic!("mixed families"),
    }
}

/// Two devices: `a` dials `b`, which only listens. A is 10.0.0.1 / fd00::1, B is
/// 10.0.0.2 / fd00::2.
struct Pair {
    net: FakeNet,
    a: Dev,
    a_tun: FakeTun,
    a_udp: FakeUdp,
    b: Dev,
    b_tun: FakeTun,
    b_udp: FakeUdp,
}

fn pair_with(
    a_addr: &str,
    b_addr: &str,
    offload: bool,
    psk: (Option<[u8; 32]>, Option<[u8; 32]>),
) -> Pair {
    let net = FakeNet::new();
    let (a_priv, a_pub) = keypair();
    let (b_priv, b_pub) = keypair();
    let a_udp = net.socket(a_addr);
    let b_udp = net.socket(b_addr);
    let mut to_b = peer(b_pub, Some(b_addr), &["10.0.0.2/32", "fd00::2/128"]);
    to_b.preshared_key = psk.0;
    let mut to_a = peer(a_pub, None, &["10.0.0.1/32", "fd00::1/128"]);
    to_a.preshared_key = psk.1;
    let (b, b_tun) = start(b_priv, &b_udp, offload, vec![to_a]);
    let (a, a_tun) = start(a_priv, &a_udp, offload, vec![to_b]);
    Pair {
        net,
        a,
        a_tun,
        a_udp,
        b,
        b_tun,
        b_udp,
    }
}

fn pair() -> Pair {
    pair_with("192.0.2.1:1000", "192.0.2.2:2000", false, (None, None))
}

#[test]
fn packets_cross_both_ways_in_both_families() {
    for (a_addr, b_addr) in [
        ("192.0.2.1:1000", "192.0.2.2:2000"),
        ("[2001:db8::1]:1000", "[2001:db8::2]:2000"),
    ] {
        let p = pair_with(a_addr, b_addr, false, (None, None));
        // Queued by boringtun during the handshake, then flushed.
        let first = packet("10.0.0.1", "10.0.0.2", b"hello over v4");
        p.a_tun.inject(&first);
        assert_eq!(p.b_tun.written(WAIT).as_deref(), Some(&first[..]));
        let v6 = packet("fd00::1", "fd00::2", b"hello over v6");
        p.a_tun.inject(&v6);
        assert_eq!(p.b_tun.written(WAIT).as_deref(), Some(&v6[..]));
        let back = packet("10.0.0.2", "10.0.0.1", b"and back");
        p.b_tun.inject(&back);
        assert_eq!(p.a_tun.written(WAIT).as_deref(), Some(&back[..]));
        let stats = p.b.stats();
        assert_eq!(
            stats[0].endpoint,
            Some(p.a_udp.addr()),
            "B learned where A is"
        );
        assert!(stats[0].last_handshake.is_some());
        assert!(stats[0].rx_bytes >= (first.len() + v6.len()) as u64);
    }
}

#[test]
fn longest_prefix_match_picks_the_peer() {
    let net = FakeNet::new();
    let (hub_priv, hub_pub) = keypair();
    let (b_priv, b_pub) = keypair();
    let (c_priv, c_pub) = keypair();
    let hub_udp = net.socket("192.0.2.1:1");
    let b_udp = net.socket("192.0.2.2:1");
    let c_udp = net.socket("192.0.2.3:1");
    let (_b, b_tun) = start(
        b_priv,
        &b_udp,
        false,
        vec![peer(hub_pub, None, &["10.0.0.0/8"])],
    );
    let (_c, c_tun) = start(
        c_priv,
        &c_udp,
        false,
        vec![peer(hub_pub, None, &["10.0.0.0/8", "fd00::/64"])],
    );
    let (_hub, hub_tun) = start(
        hub_priv,
        &hub_udp,
        false,
        vec![
            peer(b_pub, Some("192.0.2.2:1"), &["10.0.0.2/32"]),
            peer(c_pub, Some("192.0.2.3:1"), &["10.0.0.0/24", "fd00::/64"]),
        ],
    );
    let to_b = packet("10.0.0.1", "10.0.0.2", b"b");
    let to_c = packet("10.0.0.1", "10.0.0.3", b"c");
    let to_c6 = packet("fd00::1", "fd00::3", b"c6");
    for p in [&to_b, &to_c, &to_c6] {
        hub_tun.inject(p);
    }
    assert_eq!(b_tun.written(WAIT).as_deref(), Some(&to_b[..]));
    let mut at_c = vec![c_tun.written(WAIT).unwrap(), c_tun.written(WAIT).unwrap()];
    at_c.sort();
    let mut want = vec![to_c, to_c6];
    want.sort();
    assert_eq!(at_c, want);
    assert_eq!(b_tun.written(QUIET), None, "nothing else reached B");
}

#[test]
fn sources_outside_the_peers_allowed_ips_are_dropped() {
    let p = pair();
    p.a_tun.inject(&packet("10.0.0.1", "10.0.0.2", b"hi"));
    p.b_tun.written(WAIT).expect("session up");
    // B may only send from 10.0.0.2 / fd00::2 (A's AllowedIPs for B).
    p.b_tun.inject(&packet("10.0.0.66", "10.0.0.1", b"spoofed"));
    p.b_tun.inject(&packet("fd00::66", "fd00::1", b"spoofed"));
    let good = packet("10.0.0.2", "10.0.0.1", b"genuine");
    p.b_tun.inject(&good);
    assert_eq!(p.a_tun.written(WAIT).as_deref(), Some(&good[..]));
    assert_eq!(p.a_tun.written(QUIET), None);
}

#[test]
fn endpoint_follows_authenticated_packets_only() {
    let p = pair();
    p.a_tun.inject(&packet("10.0.0.1", "10.0.0.2", b"hi"));
    p.b_tun.written(WAIT).expect("session up");
    assert_eq!(
        p.b.stats()[0].endpoint,
        Some("192.0.2.1:1000".parse().unwrap())
    );

    // Garbage and a replayed datagram from elsewhere move nothing.
    let stranger = p.net.socket("203.0.113.9:9");
    stranger
        .send_to(
            &[
                4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                9, 9, 9, 9,
            ],
            p.b_udp.addr(),
        )
        .unwrap();
    thread::sleep(QUIET);
    assert_eq!(
        p.b.stats()[0].endpoint,
        Some("192.0.2.1:1000".parse().unwrap())
    );

    // A's host gets a new address: its next packet moves B's endpoint, and B's
    // answers reach A there.
    p.a_udp.rebind("198.51.100.7:1000");
    let moved = packet("10.0.0.1", "10.0.0.2", b"from the new address");
    p.a_tun.inject(&moved);
    assert_eq!(p.b_tun.written(WAIT).as_deref(), Some(&moved[..]));
    assert_eq!(
        p.b.stats()[0].endpoint,
        Some("198.51.100.7:1000".parse().unwrap())
    );
    let back = packet("10.0.0.2", "10.0.0.1", b"found you");
    p.b_tun.inject(&back);
    assert_eq!(p.a_tun.written(WAIT).as_deref(), Some(&back[..]));
}

#[test]
fn preshared_key_must_match() {
    let (k1, k2) = ([1u8; 32], [2u8; 32]);
    let p = pair_with("192.0.2.1:1", "192.0.2.2:1", false, (Some(k1), Some(k1)));
    let hi = packet("10.0.0.1", "10.0.0.2", b"psk ok");
    p.a_tun.inject(&hi);
    assert_eq!(p.b_tun.written(WAIT).as_deref(), Some(&hi[..]));

    let p = pair_with("192.0.2.1:1", "192.0.2.2:1", false, (Some(k1), Some(k2)));
    p.a_tun
        .inject(&packet("10.0.0.1", "10.0.0.2", b"psk wrong"));
    assert_eq!(p.b_tun.written(Duration::from_secs(1)), None);
    assert!(p.a.stats()[0].last_handshake.is_none());
    // B could check A's initiation (the PSK only enters with the response) and
    // answered; A refused the response, so no session carries anything.
    assert_eq!(p.a_tun.written(Duration::from_millis(100)), None);
}

#[test]
fn unroutable_packets_get_icmp_unreachable() {
    let p = pair();
    for (probe, v6) in [
        (packet("10.0.0.1", "10.0.0.77", b"nobody"), false),
        (packet("fd00::1", "fd00::77", b"nobody"), true),
    ] {
        p.a_tun.inject(&probe);
        let err = p.a_tun.written(WAIT).expect("an ICMP error");
        if v6 {
            assert_eq!((err[6], err[40], err[41]), (58, 1, 3));
            assert_eq!(&err[8..24], &probe[24..40]);
            assert_eq!(&err[48..], &probe[..]);
        } else {
            assert_eq!((err[9], err[20], err[21]), (1, 3, 1));
            assert_eq!(&err[12..16], &probe[16..20]);
            assert_eq!(&err[28..], &probe[..]);
        }
    }
    // A peer nobody has heard from has no endpoint: unreachable as well.
    let net = FakeNet::new();
    let (k, _) = keypair();
    let (_, stranger) = keypair();
    let lone_udp = net.socket("192.0.2.5:1");
    let (_lone, lone_tun) = start(
        k,
        &lone_udp,
        false,
        vec![peer(stranger, None, &["10.0.0.0/24"])],
    );
    lone_tun.inject(&packet("10.0.0.5", "10.0.0.1", b"where are you"));
    let err = lone_tun.written(WAIT).expect("an ICMP error");
    assert_eq!((err[20], err[21]), (3, 1));
}

#[test]
fn several_peers_handshake_at_once_and_are_told_apart() {
    let net = FakeNet::new();
    let (s_priv, s_pub) = keypair();
    let s_udp = net.socket("[2001:db8::1]:51820");
    let clients: Vec<_> = (2..6)
        .map(|i| {
            let (k, public) = keypair();
            let udp = net.socket(&format!("192.0.2.{i}:1"));
            (k, public, udp, format!("10.0.0.{i}"))
        })
        .collect();
    let peers = clients
        .iter()
        .map(|(_, public, _, ip)| peer(*public, None, &[&format!("{ip}/32")]))
        .collect();
    let (server, s_tun) = start(s_priv, &s_udp, false, peers);
    let mut tuns = Vec::new();
    for (k, _, udp, _) in &clients {
        tuns.push(start(
            *k,
            udp,
            false,
            vec![peer(s_pub, Some("[2001:db8::1]:51820"), &["10.0.0.1/32"])],
        ));
    }
    let mut want = Vec::new();
    for ((_, tun), (_, _, _, ip)) in tuns.iter().zip(&clients) {
        let p = packet(ip, "10.0.0.1", ip.as_bytes());
        tun.inject(&p);
        want.push(p);
    }
    let mut got: Vec<Vec<u8>> = (0..want.len())
        .map(|_| s_tun.written(WAIT).expect("every client's packet"))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for (stats, (_, _, udp, _)) in server.stats().iter().zip(&clients) {
        assert!(stats.last_handshake.is_some());
        assert_eq!(stats.endpoint, Some(udp.addr()));
    }
}

#[test]
fn under_load_initiations_get_cookie_replies_and_pass_with_the_cookie() {
    let net = FakeNet::new();
    let (s_priv, s_pub) = keypair();
    let (c_priv, c_pub) = keypair();
    let s_udp = net.socket("192.0.2.1:1");
    let c_udp = net.socket("192.0.2.9:1");
    let tun = FakeTun::new(false);
    let server = Arc::new(Device::with_handshake_limit(
        tun,
        s_udp.clone(),
        s_priv,
        vec![peer(c_pub, None, &["10.0.0.9/32"])],
        1,
    ));
    server.start().unwrap();
    // A bare boringtun client, driven by hand.
    let mut client = Tunn::new(
        StaticSecret::from(c_priv),
        PublicKey::from(s_pub),
        None,
        None,
        7,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let mut kinds = Vec::new();
    for _ in 0..4 {
        if let TunnResult::WriteToNetwork(init) = client.format_handshake_initiation(&mut buf, true)
        {
            c_udp.send_to(init, s_udp.addr()).unwrap();
        }
    }
    let mut cookie = None;
    while let Some((_, reply)) = c_udp.recv(Duration::from_millis(300)) {
        kinds.push(reply[0]);
        if reply[0] == 3 {
            cookie = Some(reply);
        }
    }
    assert_eq!(kinds.first(), Some(&2), "the first initiation is answered");
    assert!(
        kinds.contains(&3),
        "later ones get cookie replies: {kinds:?}"
    );
    // With the cookie, the client's next initiation carries mac2 and is answered
    // although the server is still under load.
    assert!(matches!(
        client.decapsulate(None, &cookie.unwrap(), &mut buf),
        TunnResult::Done
    ));
    if let TunnResult::WriteToNetwork(init) = client.format_handshake_initiation(&mut buf, true) {
        c_udp.send_to(init, s_udp.addr()).unwrap();
    }
    let (_, reply) = c_udp.recv(WAIT).expect("an answer");
    assert_eq!(reply[0], 2, "a handshake response, not another cookie");
}

#[test]
fn persistent_keepalive_is_sent_while_idle() {
    let net = FakeNet::new();
    let (a_priv, a_pub) = keypair();
    let (b_priv, b_pub) = keypair();
    let a_udp = net.socket("192.0.2.1:1");
    let b_udp = net.socket("192.0.2.2:1");
    let (_b, b_tun) = start(
        b_priv,
        &b_udp,
        false,
        vec![peer(a_pub, None, &["10.0.0.1/32"])],
    );
    let mut to_b = peer(b_pub, Some("192.0.2.2:1"), &["10.0.0.2/32"]);
    to_b.persistent_keepalive = Some(1);
    let (_a, a_tun) = start(a_priv, &a_udp, false, vec![to_b]);
    a_tun.inject(&packet("10.0.0.1", "10.0.0.2", b"x"));
    b_tun.written(WAIT).expect("session up");
    let before = net.delivered(a_udp.addr(), b_udp.addr());
    thread::sleep(Duration::from_millis(2600));
    let after = net.delivered(a_udp.addr(), b_udp.addr());
    assert!(
        after >= before + 2,
        "keepalives while idle: {before} -> {after}"
    );
}

#[test]
fn a_lost_initiation_is_retried() {
    let net = FakeNet::new();
    let dropped = Arc::new(AtomicU32::new(0));
    let d = dropped.clone();
    // Lose the first initiation only.
    net.drop_when(move |_, _, datagram| datagram[0] == 1 && d.fetch_add(1, Ordering::SeqCst) == 0);
    let (a_priv, a_pub) = keypair();
    let (b_priv, b_pub) = keypair();
    let a_udp = net.socket("192.0.2.1:1");
    let b_udp = net.socket("192.0.2.2:1");
    let (_b, b_tun) = start(
        b_priv,
        &b_udp,
        false,
        vec![peer(a_pub, None, &["10.0.0.1/32"])],
    );
    let (_a, a_tun) = start(
        a_priv,
        &a_udp,
        false,
        vec![peer(b_pub, Some("192.0.2.2:1"), &["10.0.0.2/32"])],
    );
    let p = packet("10.0.0.1", "10.0.0.2", b"eventually");
    a_tun.inject(&p);
    // boringtun retries after REKEY_TIMEOUT (5 s).
    assert_eq!(
        b_tun.written(Duration::from_secs(9)).as_deref(),
        Some(&p[..])
    );
    assert!(dropped.load(Ordering::SeqCst) >= 2);
}

/// A TSO superpacket read from A's TUN leaves as UDP GSO runs and reaches B's TUN
/// coalesced again: the segments B's kernel would see are exactly A's.
#[test]
fn offloaded_superpackets_cross_and_arrive_coalesced() {
    let p = pair_with("192.0.2.1:1", "192.0.2.2:1", true, (None, None));
    // Up first, so no segment waits in boringtun's queue.
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(&packet("10.0.0.1", "10.0.0.2", b"up"));
    p.a_tun.inject(&frame);
    assert!(p.b_tun.written(WAIT).is_some());

    let mss = 1368;
    let data: Vec<u8> = (0..(mss * 30 + 500)).map(|i| (i * 7 % 251) as u8).collect();
    let mut sp = vec![0u8; 52];
    sp[0] = 0x45;
    sp[2..4].copy_from_slice(&((52 + data.len()) as u16).to_be_bytes());
    sp[6] = 0x40;
    sp[8] = 64;
    sp[9] = 6;
    sp[12..16].copy_from_slice(&[10, 0, 0, 1]);
    sp[16..20].copy_from_slice(&[10, 0, 0, 2]);
    sp[20..24].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    sp[24..28].copy_from_slice(&1u32.to_be_bytes());
    sp[28..32].copy_from_slice(&1u32.to_be_bytes());
    sp[32] = 8 << 4;
    sp[33] = 0x18; // ACK PSH
    sp[34..36].copy_from_slice(&1000u16.to_be_bytes());
    sp[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    sp.extend_from_slice(&data);
    let pseudo = crate::dataplane::checksum::fold(crate::dataplane::checksum::pseudo_header_sum(
        &sp,
        6,
        sp.len() - 20,
        false,
    ));
    sp[36..38].copy_from_slice(&pseudo.to_be_bytes());
    let mut frame = vec![0u8; VNET_HDR_LEN];
    VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 52,
        gso_size: mss as u16,
        csum_start: 20,
        csum_offset: 16,
    }
    .encode(&mut frame);
    frame.extend_from_slice(&sp);
    let mut want = Vec::new();
    crate::dataplane::offload::split(&mut frame.clone(), true, &mut vec![0u8; 65536], &mut |s| {
        want.push(s.to_vec())
    })
    .unwrap();
    assert_eq!(want.len(), 31);

    p.a_tun.inject(&frame);
    let mut got = Vec::new();
    let mut frames = 0;
    while got.len() < want.len() {
        let mut f = p.b_tun.written(WAIT).expect("the rest of the segments");
        frames += 1;
        crate::dataplane::offload::split(&mut f, true, &mut vec![0u8; 65536], &mut |s| {
            got.push(s.to_vec())
        })
        .unwrap();
    }
    assert_eq!(got, want);
    assert!(
        frames < 5,
        "{frames} TUN writes for 31 segments: not coalesced"
    );
}

/// Regression: a client whose address changed in the middle of a download (it only
/// answers what it receives, and now receives nothing) must handshake again from
/// its new address after 15 s of silence, so the peer follows it. boringtun stamps
/// events with the time of the last `update_timers`, so the data plane runs the
/// timers whenever it takes a session for a batch; with only the 250 ms ticks the
/// last answer and the last download packet shared a stamp and the rule never fired.
#[test]
fn a_client_moved_mid_download_handshakes_again_from_its_new_address() {
    let p = pair();
    p.a_tun.inject(&packet("10.0.0.1", "10.0.0.2", b"hi"));
    p.b_tun.written(WAIT).expect("session up");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let (b_tun, stop) = (p.b_tun.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                b_tun.inject(&packet("10.0.0.2", "10.0.0.1", b"download"));
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // A answers each packet it gets, like a TCP receiver's ACKs.
    let answer = |until: Duration| -> Option<Instant> {
        let deadline = Instant::now() + until;
        while Instant::now() < deadline {
            if p.a_tun.written(Duration::from_millis(100)).is_some() {
                p.a_tun.inject(&packet("10.0.0.1", "10.0.0.2", b"ack"));
                return Some(Instant::now());
            }
        }
        None
    };
    for _ in 0..20 {
        answer(WAIT).expect("the download flows");
    }
    // The old address stops receiving; what already arrived is still answered from
    // it (the client's last word before it moves); then the client is elsewhere.
    let old = p.a_udp.addr();
    let b_addr = p.b_udp.addr();
    p.net
        .drop_when(move |from, to, _| from == b_addr && to == old);
    while answer(Duration::from_millis(300)).is_some() {}
    p.a_udp.rebind("198.51.100.7:1000");
    let moved = Instant::now();
    let back = p.a_tun.written(Duration::from_secs(20));
    let took = moved.elapsed();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(back.is_some(), "the download never came back");
    assert_eq!(
        p.b.stats()[0].endpoint,
        Some("198.51.100.7:1000".parse().unwrap())
    );
    // KEEPALIVE_TIMEOUT + REKEY_TIMEOUT, plus a timer tick.
    assert!(
        took >= Duration::from_secs(14) && took < Duration::from_secs(17),
        "recovered after {took:?}"
    );
}

/// The running device as re-resolution sees it: a peer that never completed a
/// handshake (its configured address is dead) is looked up again and its endpoint
/// moves to where the name now points; traffic then flows.
#[test]
fn reresolution_moves_a_stale_hostname_endpoint() {
    use crate::contract::handover::{Handover, NamedEndpoint};
    use crate::reresolve::{Names, Reresolver, Resolver};
    struct Table;
    impl Resolver for Table {
        fn resolve(&mut self, host: &str) -> io::Result<Vec<IpAddr>> {
            assert_eq!(host, "b.example");
            Ok(vec![
                "2001:db8::2".parse().unwrap(),
                "192.0.2.2".parse().unwrap(),
            ])
        }
    }
    let net = FakeNet::new();
    let (a_priv, a_pub) = keypair();
    let (b_priv, b_pub) = keypair();
    let a_udp = net.socket("[2001:db8::1]:1");
    let b_udp = net.socket("192.0.2.2:51820");
    let (_b, b_tun) = start(
        b_priv,
        &b_udp,
        false,
        vec![peer(a_pub, None, &["10.0.0.1/32"])],
    );
    // A's profile said b.example:51820, which resolved to an address that is gone.
    let (a, a_tun) = start(
        a_priv,
        &a_udp,
        false,
        vec![peer(b_pub, Some("192.0.2.99:51820"), &["10.0.0.2/32"])],
    );
    let mut r = Reresolver::new(
        Table,
        Names::new(Handover {
            nameservers: vec![],
            endpoints: vec![NamedEndpoint {
                public_key: b_pub,
                host: "b.example".into(),
                port: 51820,
            }],
        }),
    );
    assert_eq!(r.check(&*a), vec![b_pub]);
    // IPv4 kept (the endpoint's family), in the socket's v4-mapped form.
    assert_eq!(
        a.stats()[0].endpoint,
        Some("192.0.2.2:51820".parse().unwrap())
    );
    let p = packet("10.0.0.1", "10.0.0.2", b"found by name");
    a_tun.inject(&p);
    assert_eq!(b_tun.written(WAIT).as_deref(), Some(&p[..]));
    // A live session is left alone.
    assert!(a.stats()[0].last_handshake.is_some());
    assert_eq!(r.check(&*a), Vec::<[u8; 32]>::new());
}
