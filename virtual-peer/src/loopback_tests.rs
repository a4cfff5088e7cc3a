//! End-to-end tests: a `VirtualPeer` and a `testing::TestClient` talking
//! WireGuard over 127.0.0.1 UDP. No privileges, no namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::testing::{TestClient, TestError, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA};
use crate::{
    pattern_byte, ClientSide, PeerConfig, VirtualPeer, DEMO_DNS_NAME, ECHO_PORT,
    VIRTUAL_PEER_GREETING,
};

const PEER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
const PEER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1));
const T: Duration = Duration::from_secs(10);

fn start_demo() -> (VirtualPeer, ClientSide) {
    let (config, client) = PeerConfig::demo();
    let peer = VirtualPeer::start(config, UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    (peer, client)
}

/// A peer and a client that have completed the handshake.
fn connected() -> (VirtualPeer, TestClient) {
    let (peer, side) = start_demo();
    let mut client = TestClient::new(&side, peer.local_addr()).unwrap();
    client.handshake(T).unwrap();
    (peer, client)
}

#[test]
fn handshake_completes_and_peer_learns_endpoint() {
    let (peer, client) = connected();
    // Stats are published once per event-loop turn: allow a moment.
    let deadline = Instant::now() + T;
    while peer.stats().handshakes == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = peer.stats();
    assert_eq!(stats.handshakes, 1);
    assert_eq!(
        stats.last_client_endpoint,
        Some(client.local_addr().unwrap())
    );
    assert!(stats.rx_bytes >= 148 && stats.tx_bytes >= 92, "{stats:?}");
    assert_eq!(client.counters().handshakes, 1);
    peer.stop();
}

#[test]
fn answers_icmp_echo_v4_and_v6() {
    let (peer, mut client) = connected();
    for (seq, dst) in [PEER_V4, PEER_V6].into_iter().enumerate() {
        let payload = format!("ping {dst}").into_bytes();
        let reply = client
            .ping(dst, seq as u16, &payload, T)
            .unwrap_or_else(|e| panic!("{dst}: {e}"));
        assert_eq!(reply, payload);
    }
    peer.stop();
}

#[test]
fn http_greeting_and_not_found() {
    let (peer, mut client) = connected();
    for dst in [PEER_V4, PEER_V6] {
        let page = client.http_get(dst, "/", T).unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.body, VIRTUAL_PEER_GREETING.as_bytes());
        assert_eq!(page.header("connection"), Some("close"));
    }
    let missing = client.http_get(PEER_V4, "/missing", T).unwrap();
    assert_eq!(missing.status, 404);
    peer.stop();
}

#[test]
fn http_bytes_one_mib_intact() {
    let (peer, mut client) = connected();
    let n = 1 << 20;
    let page = client
        .http_get(PEER_V4, &format!("/bytes/{n}"), Duration::from_secs(60))
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-length"), Some(n.to_string().as_str()));
    assert_eq!(page.body.len(), n);
    let bad = page
        .body
        .iter()
        .enumerate()
        .position(|(i, &b)| b != pattern_byte(i as u64));
    assert_eq!(bad, None, "first corrupt byte");
    peer.stop();
}

/// Several GETs at once, on both address families: each gets its own
/// socket from the pool, and the pool re-arms for the rounds that follow.
/// (One client: WireGuard has one endpoint per peer, so several clients with
/// the same key would steal each other's replies.)
#[test]
fn http_concurrent_and_sequential_connections() {
    let (peer, mut client) = connected();
    for round in 0..4 {
        let paths: Vec<String> = (0..6)
            .map(|i| format!("/bytes/{}", 20_000 * (i + 1) + round))
            .collect();
        let gets: Vec<(IpAddr, &str)> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (if i % 2 == 0 { PEER_V4 } else { PEER_V6 }, p.as_str()))
            .collect();
        let pages = client
            .http_get_many(&gets, T)
            .unwrap_or_else(|e| panic!("{e}; peer {:?}", peer.stats()));
        for (i, page) in pages.iter().enumerate() {
            assert_eq!(page.status, 200);
            assert_eq!(page.body.len(), 20_000 * (i + 1) + round);
            assert!(page
                .body
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(i as u64)));
        }
    }
    peer.stop();
}

#[test]
fn tcp_echo_round_trips() {
    let (peer, mut client) = connected();
    for dst in [PEER_V4, PEER_V6] {
        let data = b"echo, echo, echo\n";
        let mut got = Vec::new();
        client
            .tcp_exchange(SocketAddr::new(dst, ECHO_PORT), data, true, T, &mut |d| {
                got.extend_from_slice(d)
            })
            .unwrap();
        assert_eq!(got, data);
    }
    // Several rounds larger than the windows: needs flow control both ways.
    let data: Vec<u8> = (0..3_000_000u64).map(|i| (i * 7 % 256) as u8).collect();
    let got = client
        .tcp_echo(
            SocketAddr::new(PEER_V4, ECHO_PORT),
            &data,
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(got == data, "echoed {} of {} bytes", got.len(), data.len());
    peer.stop();
}

#[test]
fn udp_echo_round_trips() {
    let (peer, mut client) = connected();
    for dst in [PEER_V4, PEER_V6] {
        let payload = format!("datagram to {dst}").into_bytes();
        let reply = client
            .udp_exchange(SocketAddr::new(dst, ECHO_PORT), &payload, T)
            .unwrap();
        assert_eq!(reply, payload);
    }
    peer.stop();
}

#[test]
fn dns_answers_a_aaaa_and_nxdomain() {
    let (peer, mut client) = connected();
    for server in [PEER_V4, PEER_V6] {
        let a = client.dns_lookup(server, DEMO_DNS_NAME, TYPE_A, T).unwrap();
        assert_eq!((a.rcode, a.addrs.clone()), (RCODE_NOERROR, vec![PEER_V4]));
        let aaaa = client
            .dns_lookup(server, DEMO_DNS_NAME, TYPE_AAAA, T)
            .unwrap();
        assert_eq!(
            (aaaa.rcode, aaaa.addrs.clone()),
            (RCODE_NOERROR, vec![PEER_V6])
        );
        let nx = client
            .dns_lookup(server, "nothing.wgwrap.test", TYPE_A, T)
            .unwrap();
        assert_eq!((nx.rcode, nx.addrs.len()), (RCODE_NXDOMAIN, 0));
    }
    peer.stop();
}

#[test]
fn malformed_dns_is_ignored() {
    let (peer, mut client) = connected();
    let server = SocketAddr::new(PEER_V4, crate::DNS_PORT);
    for junk in [
        &b"\x12\x34"[..],
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
    ] {
        match client.udp_exchange(server, junk, Duration::from_millis(300)) {
            Err(TestError::Timeout(_)) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }
    // Still serving afterwards.
    let a = client
        .dns_lookup(PEER_V4, DEMO_DNS_NAME, TYPE_A, T)
        .unwrap();
    assert_eq!(a.addrs, vec![PEER_V4]);
    peer.stop();
}

/// Decrypted packets for addresses that are not ours are dropped and counted.
#[test]
fn misaddressed_packets_are_dropped() {
    let (peer, mut client) = connected();
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&28u16.to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&[10, 77, 0, 2]);
    packet[16..20].copy_from_slice(&[10, 77, 0, 99]);
    client.send_ip(&packet);
    let deadline = Instant::now() + T;
    while peer.stats().misaddressed_packets == 0 && Instant::now() < deadline {
        client.pump(Duration::from_millis(5));
    }
    assert_eq!(peer.stats().misaddressed_packets, 1);
    peer.stop();
}

/// A client with the wrong key gets nowhere, and the peer does not adopt its address.
#[test]
fn unknown_client_is_rejected() {
    let (peer, mut side) = start_demo();
    side.private_key = crate::generate_keypair().0;
    let mut stranger = TestClient::new(&side, peer.local_addr()).unwrap();
    assert!(matches!(
        stranger.handshake(Duration::from_millis(500)),
        Err(TestError::Timeout(_))
    ));
    let stats = peer.stats();
    assert_eq!((stats.handshakes, stats.last_client_endpoint), (0, None));
    assert!(stats.rejected_datagrams >= 1, "{stats:?}");
    peer.stop();
}

/// The client moves to a new UDP port mid-session; the peer follows the
/// first authenticated packet from there, without a new handshake.
#[test]
fn peer_follows_roaming_client() {
    let (peer, mut client) = connected();
    assert_eq!(client.http_get(PEER_V4, "/", T).unwrap().status, 200);
    let old = client.local_addr().unwrap();
    client.rebind().unwrap();
    assert_ne!(client.local_addr().unwrap(), old);
    assert_eq!(client.http_get(PEER_V6, "/", T).unwrap().status, 200);
    let stats = peer.stats();
    assert_eq!(
        stats.last_client_endpoint,
        Some(client.local_addr().unwrap())
    );
    assert_eq!(stats.handshakes, 1);
    peer.stop();
}

#[test]
fn preshared_key_handshake() {
    let (mut config, mut side) = PeerConfig::demo();
    let psk = crate::generate_keypair().0;
    config.preshared_key = Some(psk);
    side.preshared_key = Some(psk);
    let peer = VirtualPeer::start(config, UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    let mut client = TestClient::new(&side, peer.local_addr()).unwrap();
    client.handshake(T).unwrap();
    assert_eq!(client.ping(PEER_V4, 1, b"psk", T).unwrap(), b"psk");
    peer.stop();
}

#[test]
fn stop_returns_promptly() {
    let (peer, mut client) = connected();
    assert_eq!(client.ping(PEER_V6, 9, b"x", T).unwrap(), b"x");
    let start = Instant::now();
    peer.stop();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "stop took {:?}",
        start.elapsed()
    );
    // Dropping without stop() also joins the thread.
    let (peer, _) = start_demo();
    let start = Instant::now();
    drop(peer);
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
fn invalid_config_is_refused() {
    let (mut config, _) = PeerConfig::demo();
    config.tunnel_v4 = None;
    config.tunnel_v6 = None;
    let err = VirtualPeer::start(config, UdpSocket::bind("127.0.0.1:0").unwrap())
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let inner = err
        .into_inner()
        .unwrap()
        .downcast::<crate::ConfigError>()
        .unwrap();
    assert_eq!(*inner, crate::ConfigError::NoTunnelAddress);
}

/// Throughput of one 10 MiB GET (run with `--nocapture` to see the number;
/// `--release` for a meaningful one).
#[test]
fn http_ten_mib_throughput() {
    let (peer, mut client) = connected();
    let n: u64 = 10 << 20;
    let mut offset = 0u64;
    let mut corrupt = None;
    let (mut first, mut last) = (None, None);
    let start = Instant::now();
    let page = client
        .http_get_streaming(
            PEER_V4,
            &format!("/bytes/{n}"),
            Duration::from_secs(120),
            &mut |chunk| {
                if offset == 0 {
                    first = Some(start.elapsed());
                }
                for &b in chunk {
                    if corrupt.is_none() && b != pattern_byte(offset) {
                        corrupt = Some(offset);
                    }
                    offset += 1;
                }
                if offset == n {
                    last = Some(start.elapsed());
                }
            },
        )
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!((page.status, page.body_len, corrupt), (200, n, None));
    let mib_s = n as f64 / (1 << 20) as f64 / elapsed.as_secs_f64();
    let (sent, got) = (peer.stats().tx_datagrams, client.counters().rx_datagrams);
    // From the request to the server's FIN; the FIN waits for the ACK of the
    // last byte (see services.rs), so the body itself ends a little earlier.
    eprintln!(
        "10 MiB GET: {elapsed:?}, {mib_s:.1} MiB/s ({:.0} Mbit/s); first body byte at {first:?}, \
         last at {last:?}; datagrams sent {sent}, received {got}",
        mib_s * 8.389
    );
    peer.stop();
}

/// Loss recovery on both sides: 1 in 30 tunnelled packets dropped each way.
#[test]
fn survives_packet_loss() {
    let (peer, mut client) = connected();
    client.set_loss(30);
    for round in 0..2 {
        let paths: Vec<String> = (0..4)
            .map(|i| format!("/bytes/{}", 40_000 * (i + 1) + round))
            .collect();
        let gets: Vec<(IpAddr, &str)> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (if i % 2 == 0 { PEER_V4 } else { PEER_V6 }, p.as_str()))
            .collect();
        let pages = client
            .http_get_many(&gets, Duration::from_secs(60))
            .unwrap();
        for (i, page) in pages.iter().enumerate() {
            assert_eq!(page.body.len(), 40_000 * (i + 1) + round);
            assert!(page
                .body
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(i as u64)));
        }
    }
    client.set_loss(0);
    assert_eq!(
        client.ping(PEER_V6, 1, b"still there", T).unwrap(),
        b"still there"
    );
    peer.stop();
}
