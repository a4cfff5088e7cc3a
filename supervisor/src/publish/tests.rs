//! The relays on this process's loopback: a [`Publisher`] fed listeners bound here,
//! relaying to services on other loopback ports of the same namespace.

use super::*;
use rustix::net::sockopt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn spec(host_port: u16, ns_port: u16, proto: &str) -> PublishSpec {
    format!("127.0.0.1:{host_port}:{ns_port}/{proto}")
        .parse()
        .unwrap()
}

/// Publish a fresh TCP listener for `ns_port`; returns its host address.
fn publish_tcp(p: &Publisher, ns_port: u16, owner: Option<(u32, OwnedFd)>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    p.add(vec![(spec(addr.port(), ns_port, "tcp"), l.into())], owner)
        .unwrap();
    addr
}

use std::net::SocketAddr;

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tcp_half_close_works_in_both_directions() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = Publisher::new().unwrap();
    let host = publish_tcp(&p, service.local_addr().unwrap().port(), None);

    // Client ends first: the service sees EOF after every byte, and its answer still
    // comes back to the half-closed client.
    let sent = pattern(1 << 20, 1);
    let mut client = connect(host);
    let writer = {
        let mut c = client.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            c.write_all(&sent).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut inner = accept(&service);
    let mut got = Vec::new();
    inner.read_to_end(&mut got).unwrap();
    assert!(
        got == sent,
        "the service got {} bytes, not what was sent",
        got.len()
    );
    inner.write_all(b"after your FIN").unwrap();
    drop(inner);
    writer.join().unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"after your FIN");

    // Service ends first: the client sees EOF, and can still send.
    let mut client = connect(host);
    let mut inner = accept(&service);
    inner.write_all(&pattern(100_000, 2)).unwrap();
    inner.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, pattern(100_000, 2));
    client.write_all(b"still talking").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    inner.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"still talking");
    drop((client, inner));
    until("no open connections", || p.status()[0].connections == 0);
    assert_eq!(p.status()[0].total_connections, 2);
}

#[test]
fn resets_and_refusals_reach_the_other_side() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = Publisher::new().unwrap();
    let host = publish_tcp(&p, service.local_addr().unwrap().port(), None);

    // The service resets: so does the client's connection.
    let mut client = connect(host);
    client.write_all(b"hello").unwrap();
    let inner = accept(&service);
    sockopt::set_socket_linger(&inner, Some(Duration::ZERO)).unwrap();
    drop(inner);
    let mut buf = [0u8; 16];
    let err = client.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    // The client resets mid-stream: the service sees a reset, not a clean end.
    let client = connect(host);
    let mut inner = accept(&service);
    inner.write_all(&pattern(10_000, 3)).unwrap();
    sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);
    let mut sink = Vec::new();
    let err = inner.read_to_end(&mut sink).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    // Nothing listens on NS_PORT: the client is reset.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = free.local_addr().unwrap().port();
    drop(free);
    let host = publish_tcp(&p, closed_port, None);
    let mut client = connect(host);
    let err = client.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    until("no open connections", || {
        p.status().iter().all(|s| s.connections == 0)
    });
}

#[test]
fn many_connections_each_get_their_own_bytes() {
    const CONNS: usize = 64;
    const LEN: usize = 256 * 1024;
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_addr = service.local_addr().unwrap();
    // An echo service, a thread per connection (the relay under test has none).
    thread::spawn(move || {
        for s in service.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    let p = Publisher::new().unwrap();
    let host = publish_tcp(&p, service_addr.port(), None);
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            thread::spawn(move || {
                let data = pattern(LEN, i as u8);
                let mut c = connect(host);
                let mut w = c.try_clone().unwrap();
                let out = data.clone();
                let writer = thread::spawn(move || {
                    w.write_all(&out).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                back == data
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "a connection got other bytes back");
    }
    until("no open connections", || p.status()[0].connections == 0);
    assert_eq!(p.status()[0].total_connections, CONNS as u64);
}

#[test]
fn a_service_that_does_not_read_stops_the_client_without_buffering() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = Publisher::new().unwrap();
    let host = publish_tcp(&p, service.local_addr().unwrap().port(), None);
    let mut client = connect(host);
    let mut inner = accept(&service);
    client.set_nonblocking(true).unwrap();
    // Write until the client is pushed back and stays pushed back.
    let chunk = pattern(64 * 1024, 4);
    let (mut sent, mut stuck_rounds) = (0usize, 0);
    let mut stream = Vec::new();
    while stuck_rounds < 5 {
        match client.write(&chunk) {
            Ok(n) => {
                sent += n;
                stream.extend_from_slice(&chunk[..n]);
                stuck_rounds = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stuck_rounds += 1;
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("write: {e}"),
        }
        assert!(
            sent < 256 << 20,
            "256 MiB went in and the client is still not pushed back"
        );
    }
    // What went in sits in kernel socket buffers and one pipe, not in the relay.
    assert!(sent < 64 << 20, "{sent} bytes in flight");
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    inner.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), sent);
    assert!(got == stream, "the bytes changed on the way");
    eprintln!("pushed back after {sent} bytes in flight");
}

#[test]
fn ports_of_a_command_end_with_it() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = Publisher::new().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let host = publish_tcp(
        &p,
        service.local_addr().unwrap().port(),
        Some((child.id(), pidfd)),
    );
    assert_eq!(p.status()[0].owner_pid, Some(child.id()));
    let mut c = connect(host);
    let mut inner = accept(&service);
    c.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    inner.read_exact(&mut one).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    until("the port to go", || p.status().is_empty());
    assert_eq!(
        TcpStream::connect(host).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

#[test]
fn udp_flows_keep_boundaries_and_clients_apart_and_expire() {
    // Each client must get back exactly its own datagrams.
    let service_port = udp_echo("127.0.0.1:0");
    let p = Publisher::with_limits(Duration::from_secs(3), None).unwrap();
    let host_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let host = host_socket.local_addr().unwrap();
    p.add(
        vec![(spec(host.port(), service_port, "udp"), host_socket.into())],
        None,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..20u8 {
        let tx = tx.clone();
        thread::spawn(move || {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Loopback UDP drops what does not fit a socket buffer: retry, at
            // staggered times so the clients do not all retry together.
            let wait = Duration::from_millis(200 + u64::from(i) * 25);
            c.set_read_timeout(Some(wait)).unwrap();
            c.connect(host).unwrap();
            let mut ok = true;
            for len in [1usize, 1400, 9000, 65507] {
                let d = pattern(len, i);
                let mut got = false;
                for _ in 0..40 {
                    c.send(&d).unwrap();
                    let mut buf = vec![0u8; 65536];
                    // A late answer to an earlier try is the same datagram.
                    if c.recv(&mut buf).is_ok_and(|n| buf[..n] == d[..]) {
                        got = true;
                        break;
                    }
                }
                ok &= got;
            }
            tx.send(ok).unwrap();
        });
    }
    drop(tx);
    let results: Vec<bool> = rx.iter().collect();
    assert_eq!(results, vec![true; 20]);
    assert_eq!(p.status()[0].total_connections, 20);
    until("idle flows to expire", || p.status()[0].connections == 0);
}

#[test]
fn a_socket_that_does_not_match_its_spec_is_refused() {
    let p = Publisher::new().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = p
        .add(vec![(spec(8080, 80, "tcp"), udp.into())], None)
        .unwrap_err();
    assert!(err.contains("not a listening socket"), "{err}");
    assert!(p.status().is_empty());
}

/// Anyone who can reach a published port could open connections until the supervisor
/// is out of descriptors, and with them its other threads (the session would end).
/// At the budget the relay stops accepting: clients wait in the listener's backlog,
/// and one is taken on for each connection that ends.
#[test]
fn connections_beyond_the_descriptor_budget_wait_in_the_backlog() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    // Room for two relayed connections (six descriptors each).
    let p = Publisher::with_limits(UDP_IDLE, Some(12)).unwrap();
    let host = publish_tcp(&p, service.local_addr().unwrap().port(), None);
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(host)).collect();
    let mut inner: Vec<TcpStream> = (0..2).map(|_| accept(&service)).collect();
    until("two relayed connections", || p.status()[0].connections == 2);
    // No third: the service is asked for nothing more while the budget is spent.
    service.set_nonblocking(true).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        service.accept().map_err(|e| e.kind()).err(),
        Some(ErrorKind::WouldBlock)
    );
    assert_eq!(p.status()[0].total_connections, 2);
    service.set_nonblocking(false).unwrap();

    // The relayed ones work.
    for (k, (c, s)) in clients.iter_mut().zip(inner.iter_mut()).enumerate() {
        c.write_all(&[k as u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, [k as u8; 1000]);
    }
    // One ends: the next waiting client is taken on, and its bytes go through.
    drop(clients.remove(0));
    drop(inner.remove(0));
    let mut third = accept(&service);
    clients[1].write_all(b"waited").unwrap();
    let mut got = [0u8; 6];
    third.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"waited");
    until("two relayed connections again", || {
        p.status()[0].connections == 2 && p.status()[0].total_connections == 3
    });
    // The relayed ones end: the last two waiting are taken on in turn.
    let waiting = clients.split_off(2);
    drop((clients, inner, third));
    let late: Vec<TcpStream> = (0..2).map(|_| accept(&service)).collect();
    until("all five relayed", || p.status()[0].total_connections == 5);
    drop((waiting, late));
    until("no relayed connection left", || {
        p.status()[0].connections == 0
    });
}

/// Both sockets of a relayed connection probe an idle peer after five minutes, so a
/// client that vanished without a reset does not hold its descriptors for good.
#[test]
fn relayed_connections_use_tcp_keepalive() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = connect(host.local_addr().unwrap());
    let (accepted, _) = host.accept().unwrap();
    let info = Arc::new(PortInfo {
        spec: spec(
            host.local_addr().unwrap().port(),
            service.local_addr().unwrap().port(),
            "tcp",
        ),
        owner_pid: None,
        active: AtomicU64::new(0),
        total: AtomicU64::new(0),
    });
    let conn = tcp::Conn::open(0, accepted.into(), info.spec.ns_addr(), info.clone()).unwrap();
    for fd in [&conn.client, &conn.inner] {
        assert!(sockopt::socket_keepalive(fd).unwrap());
        assert_eq!(sockopt::tcp_keepidle(fd).unwrap(), Duration::from_secs(300));
    }
}

/// A UDP echo service on `bind` (a thread that lives as long as the test binary);
/// returns its port.
fn udp_echo(bind: &str) -> u16 {
    let service = UdpSocket::bind(bind).unwrap();
    let port = service.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = service.recv_from(&mut buf) {
            let _ = service.send_to(&buf[..n], from);
        }
    });
    port
}

/// Publish a UDP socket bound to the wildcard `any` (port chosen by the kernel) for
/// `ns_port`; returns the host port.
fn publish_udp_wildcard(p: &Publisher, any: &str, ns_port: u16) -> u16 {
    let host_socket = UdpSocket::bind(format!("{any}:0")).unwrap();
    let port = host_socket.local_addr().unwrap().port();
    let spec: PublishSpec = format!("{any}:{port}:{ns_port}/udp").parse().unwrap();
    p.add(vec![(spec, host_socket.into())], None).unwrap();
    port
}

/// Whether a socket bound to `bind` and connected to `to` (so it takes answers from
/// `to` only) gets `payload` echoed; loopback UDP may drop under load, so a few tries.
fn echoed_from_the_address_sent_to(bind: &str, to: SocketAddr, payload: &[u8]) -> bool {
    let c = UdpSocket::bind(bind).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.connect(to).unwrap();
    let mut got = vec![0u8; payload.len() + 1];
    (0..10).any(|_| {
        c.send(payload).unwrap();
        c.recv(&mut got).is_ok_and(|n| got[..n] == *payload)
    })
}

/// A UDP port published on every address answers from the address each client sent
/// to: a client whose socket is connected to 127.0.0.2 drops an answer from
/// 127.0.0.1, which is what the routes would pick for it.
#[test]
fn udp_answers_leave_from_the_address_the_client_sent_to() {
    let service_port = udp_echo("127.0.0.1:0");
    let p = Publisher::new().unwrap();
    let port = publish_udp_wildcard(&p, "0.0.0.0", service_port);
    for (k, local) in ["127.0.0.2", "127.0.0.1", "127.0.0.3"]
        .into_iter()
        .enumerate()
    {
        let to: SocketAddr = format!("{local}:{port}").parse().unwrap();
        assert!(
            echoed_from_the_address_sent_to("127.0.0.1:0", to, &[k as u8; 100]),
            "no answer from {to}"
        );
    }
    // One flow per (client, local address).
    assert_eq!(p.status()[0].total_connections, 3);
}

/// The same on a dual-stack IPv6 socket published on `[::]`: IPv6 clients, and IPv4
/// clients (v4-mapped) sending to a secondary loopback address.
#[test]
fn udp_answers_on_a_dual_stack_wildcard_port_leave_from_the_right_address() {
    let service_port = udp_echo("[::1]:0");
    let p = Publisher::new().unwrap();
    let port = publish_udp_wildcard(&p, "[::]", service_port);
    for (k, (bind, to)) in [("[::1]:0", "[::1]"), ("127.0.0.1:0", "127.0.0.2")]
        .into_iter()
        .enumerate()
    {
        let to: SocketAddr = format!("{to}:{port}").parse().unwrap();
        assert!(
            echoed_from_the_address_sent_to(bind, to, &[k as u8 + 7; 64]),
            "no answer from {to}"
        );
    }
}
