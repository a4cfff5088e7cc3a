//! A malicious VPN server (issue 14), in the interop rig: root in the server's
//! throw-away namespace writes raw, adversarial inner packets into wireguard-go's TUN
//! device through an AF_PACKET socket, and wireguard-go encrypts them as they are and
//! sends them to wg-wrap. They reach the supervisor's decrypt, AllowedIPs and TUN
//! write (coalescing) path: header lengths beyond the packet, lying total lengths,
//! IPv4 fragments carrying TCP, IPv6 extension-header chains, option garbage, and
//! trains of TCP segments that look coalescable and then are not. The session must
//! survive them (same supervisor process) and carry traffic intact afterwards.

mod common;
mod interop_support;

use common::*;
use interop_support::services;
use interop_support::*;

/// Writes the adversarial packets: argv is IFNAME SRC4 DST4 SRC6 DST6 ROUNDS; prints
/// how many packets and bytes it sent. Every packet is addressed from the server's
/// tunnel address to wg-wrap's, so wireguard-go routes it to wg-wrap and the
/// supervisor's AllowedIPs check lets it in.
const INJECT: &str = r#"
import socket, struct, sys
ifname, src4, dst4, src6, dst6, rounds = sys.argv[1:7]
S4, D4 = socket.inet_aton(src4), socket.inet_aton(dst4)
S6, D6 = socket.inet_pton(socket.AF_INET6, src6), socket.inet_pton(socket.AF_INET6, dst6)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sent = [0, 0]

def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def send(p):
    proto = 0x86DD if p[0] >> 4 == 6 else 0x0800
    s.sendto(p, (ifname, proto))
    sent[0] += 1; sent[1] += len(p)

def v4(proto, body, ihl=5, total=None, ident=1, frag=0x4000, ttl=64, opts=b"", tos=0):
    if total is None: total = 20 + len(opts) + len(body)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total & 0xffff, ident, frag, ttl, proto, 0, S4, D4) + opts
    h = h[:10] + struct.pack("!H", csum(h[:max(20, min(len(h), ihl * 4))])) + h[12:]
    return h + body

def v6(nh, body, plen=None, hops=64, flow=0):
    if plen is None: plen = len(body)
    return struct.pack("!IHBB", 0x60000000 | flow, plen & 0xffff, nh, hops) + S6 + D6 + body

def tcp(seq, flags, payload, doff=5, opts=b"", win=500, sport=80, dport=40000):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 7, doff << 4, flags, win, 0, 0) + opts + payload

ACK, PSH, FIN, SYN, RST, URG = 0x10, 0x08, 0x01, 0x02, 0x04, 0x20
data = bytes((i * 7 + 3) & 0xff for i in range(1400))

def train(ip, n=8, size=1000, tweak=None):
    seq = 1000
    for i in range(n):
        kw = dict(seq=seq, flags=ACK, payload=data[:size])
        ipkw = {}
        if tweak: tweak(i, kw, ipkw)
        send(ip(tcp(kw["seq"], kw["flags"], kw["payload"], win=kw.get("win", 500)), **ipkw))
        seq += size

T4 = lambda body, **kw: v4(6, body, **kw)
T6 = lambda body, **kw: v6(6, body, **kw)

for r in range(int(rounds)):
    for ip in (T4, T6):
        train(ip)                                                           # coalescable
        train(ip, tweak=lambda i, kw, ipkw: kw.update(seq=kw["seq"] + (5000 if i == 4 else 0)))   # gap
        train(ip, tweak=lambda i, kw, ipkw: kw.update(seq=kw["seq"] - (500 if i == 3 else 0)))    # overlap
        train(ip, tweak=lambda i, kw, ipkw: kw.update(flags=[ACK | FIN, SYN, RST, ACK | URG][r % 4] if i == 2 else ACK))
        train(ip, tweak=lambda i, kw, ipkw: kw.update(payload=data[:300] if i == 3 else data[:1000]))  # short middle
        train(ip, tweak=lambda i, kw, ipkw: kw.update(win=900 if i == 5 else 500))
        if ip is T4:
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(ttl=3 if i == 2 else 64))
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(tos=0x10 if i == 6 else 0))
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(total=1040 + 400 * (i == 1)))    # lying total
        else:
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(hops=1 if i == 2 else 64))
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(flow=0x12345 if i == 6 else 0))
            train(ip, tweak=lambda i, kw, ipkw: ipkw.update(plen=1020 + 400 * (i == 1)))
    # IPv4 header lengths beyond the packet, below the minimum, lying total lengths.
    for ihl in range(16):
        send(v4(6, tcp(1, ACK, b"x")[:max(0, ihl * 4 - 20)], ihl=ihl))
        send(v4(17, b"\0" * 8, ihl=ihl, total=ihl * 4 + 8))
    for total in (0, 1, 19, 20, 21, 39, 41, 1500, 65535):
        send(v4(6, tcp(1, ACK, b"hello"), total=total))
        send(v4(17, struct.pack("!HHHH", 53, 53, total & 0xffff, 0) + b"dns", total=total))
    # IPv4 options: garbage, and an option running past the header.
    for opts in (b"\xff" * 40, b"\x44\x28" + b"\0" * 38, b"\x07\xff\x04\0", b"\x01\x01\x01\x00", b"\x83\x03\x10\x00"):
        ihl = 5 + (len(opts) + 3) // 4
        send(v4(6, tcp(1, ACK, b"opt"), ihl=ihl, opts=opts.ljust((ihl - 5) * 4, b"\0")))
    # IPv4 fragments carrying TCP: first fragment (MF), middle, last, tiny first.
    send(v4(6, tcp(1, ACK, data[:800]), frag=0x2000, ident=77))
    send(v4(6, data[:800], frag=0x2000 | 101, ident=77))
    send(v4(6, data[:300], frag=201, ident=77))
    send(v4(6, tcp(1, ACK, b"")[:8], frag=0x2000, ident=78))
    send(v4(6, tcp(1, ACK, data[:1000]), frag=1, ident=79))
    # TCP data offsets beyond the packet and below the minimum.
    for doff in range(16):
        send(v4(6, tcp(9, ACK, b"d", doff=doff)))
        send(v6(6, tcp(9, ACK, b"d", doff=doff)))
    # IPv6 extension-header chains: hop-by-hop, routing, destination options,
    # fragment, lengths that run past the packet, and a long chain.
    hbh = lambda nh, n=0: bytes([nh, n]) + b"\x01" + bytes([4 + 8 * n]) + b"\0" * (4 + 8 * n)
    rt = lambda nh: bytes([nh, 0, 0, 0]) + b"\0" * 4
    frag6 = lambda nh, off_m: bytes([nh, 0]) + struct.pack("!HI", off_m, 99)
    send(v6(0, hbh(43) + rt(60) + hbh(44) + frag6(6, 1) + tcp(1, ACK, data[:900])))
    send(v6(44, frag6(6, 0x0008) + data[:400]))
    send(v6(0, bytes([6, 255]) + b"\0" * 6 + tcp(1, ACK, b"z")))
    send(v6(60, bytes([60, 0]) * 4 * 30 + tcp(1, ACK, b"chain")))
    send(v6(60, b"\x06"))
    send(v6(59, data[:200]))
    send(v6(6, tcp(1, ACK, data[:100]), plen=65535))
    send(v6(17, struct.pack("!HHHH", 1, 2, 9999, 0) + b"x", plen=3))
    # ICMP errors quoting garbage, other versions, a bare header.
    send(v4(1, bytes([3, 1, 0, 0, 0, 0, 0, 0]) + b"\x4f" + b"\0" * 7))
    send(v6(58, bytes([1, 3, 0, 0, 0, 0, 0, 0]) + b"\x6f" * 48))
    for ver in (0, 5, 7, 15):
        p = bytearray(v4(6, tcp(1, ACK, b"v")))
        p[0] = (ver << 4) | 5
        send(bytes(p))
    send(v4(6, b""))
    send(v6(6, b""))
print(sent[0], sent[1])
"#;

/// `VmHWM` (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for pid {pid}: is the supervisor gone?"))
}

fn checked_download(rig: &Rig, n: usize) {
    let url = format!("http://{SERVER_TUNNEL_V4}/bytes/{n}");
    let out = rig.exec_ok(&["curl", "-sS", "--max-time", "55", &url]);
    rig.check(
        out.stdout.len() == n,
        &format!("download length: got {} of {n} bytes", out.stdout.len()),
    );
    let bad = services::first_pattern_mismatch(&out.stdout);
    rig.check(
        bad.is_none(),
        &format!("download content: first corrupt byte at {bad:?}"),
    );
}

#[test]
fn a_malicious_server_sending_adversarial_inner_packets_does_not_break_the_session() {
    let rig = Rig::happy(Implementation::WireguardGo);
    rig.up();
    rig.wait_handshake();
    let pid = rig.client.supervisor_pid_of(PROFILE);
    checked_download(&rig, 4 << 20);
    let hwm_before = vm_hwm_kib(pid);
    let tx_before = rig.client_on_server().tx;

    let out = must(
        rig.server.command(
            "python3",
            &[
                "-c",
                INJECT,
                &rig.wg.ifname,
                SERVER_TUNNEL_V4,
                CLIENT_TUNNEL_V4,
                SERVER_TUNNEL_V6,
                CLIENT_TUNNEL_V6,
                "20",
            ],
        ),
        "inject adversarial packets into the peer's TUN device",
    );
    let report = stdout(&out);
    let mut counts = report.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    let (packets, bytes) = (counts.next().unwrap(), counts.next().unwrap());

    // The peer encrypted what it could read of them and sent it to us (its TUN queue
    // drops some of a burst this fast, and wireguard-go drops the unknown IP
    // versions): its transfer counter grows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut tx = rig.client_on_server().tx;
    while tx == tx_before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        tx = rig.client_on_server().tx;
    }
    rig.check(
        tx > tx_before,
        &format!("the peer sent some of the {packets} packets ({bytes} bytes) on"),
    );

    rig.check(
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && rig.client.supervisor_pid_of(PROFILE) == pid,
        "the supervisor survived the adversarial packets",
    );
    checked_download(&rig, 8 << 20);
    rig.exec_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "20",
        &format!("http://[{SERVER_TUNNEL_V6}]/hello"),
    ]);
    rig.check(
        rig.client.supervisor_pid_of(PROFILE) == pid,
        "the same supervisor carried the traffic afterwards",
    );
    eprintln!(
        "hostile: {packets} adversarial packets ({bytes} bytes) written, the peer sent {} bytes \
         on; supervisor VmHWM {hwm_before} KiB after a 4 MiB download, {} KiB after the \
         packets and an 8 MiB download",
        tx - tx_before,
        vm_hwm_kib(pid)
    );
    rig.down();
}

/// Sends 1200-byte UDP datagrams to argv[1] port 9 as fast as the socket takes them
/// for argv[2] seconds (a workload length, not a threshold); prints how many.
const FLOOD: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, n, payload = time.monotonic() + float(sys.argv[2]), 0, b"f" * 1200
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.sendto(payload, (sys.argv[1], 9))
            n += 1
        except OSError:
            pass
print(n)
"#;

/// Under load (issue 14): one wrapped program floods UDP towards the peer at full
/// speed while another downloads; the download arrives intact and the same
/// supervisor carries both. Its peak memory is reported (the buffers are fixed).
#[test]
fn a_wrapped_udp_flood_does_not_starve_another_programs_download() {
    let rig = Rig::happy(Implementation::WireguardGo);
    rig.up();
    rig.wait_handshake();
    let pid = rig.client.supervisor_pid_of(PROFILE);
    checked_download(&rig, 4 << 20);
    let hwm_before = vm_hwm_kib(pid);
    let rx_before = rig.client_on_server().rx;

    let flood = spawn_timeout(
        rig.exec_command(&["python3", "-c", FLOOD, SERVER_TUNNEL_V4, "20"]),
        COMMAND_TIMEOUT,
    );
    // Let the flood fill the queues before the download starts.
    std::thread::sleep(std::time::Duration::from_secs(2));
    checked_download(&rig, 16 << 20);
    let out = flood.wait();
    rig.record("the UDP flood", &out);
    rig.check(out.status.success(), "the UDP flood ran");
    let datagrams: u64 = stdout(&out).trim().parse().unwrap_or(0);
    rig.check(datagrams > 0, "the flood sent datagrams");
    rig.check(
        rig.client.supervisor_pid_of(PROFILE) == pid,
        "the same supervisor carried the flood and the download",
    );
    eprintln!(
        "flood: {datagrams} datagrams of 1200 bytes sent by the wrapped program, the peer \
         received {} bytes meanwhile; supervisor VmHWM {hwm_before} KiB before, {} KiB after",
        rig.client_on_server().rx - rx_before,
        vm_hwm_kib(pid)
    );
    rig.down();
}
