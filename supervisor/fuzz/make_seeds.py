#!/usr/bin/env python3
"""Write the hand-made starting inputs in seeds/<target>/ (see ../FUZZING.md)."""
import os
import struct


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def v4(proto, l4, ident=7, ihl=5, frag=0x4000, opts=b""):
    total = 20 + len(opts) + len(l4)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, frag, 64, proto, 0,
                    bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + opts
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def v6(nh, l4):
    return (struct.pack("!IHBB", 0x60000000, len(l4), nh, 64)
            + bytes.fromhex("fd000000000000000000000000000001")
            + bytes.fromhex("fd000000000000000000000000000002") + l4)


def tcp(seq, flags, payload, opts=b""):
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", 8080, 50000, seq, 99, off << 4, flags, 500, 0, 0) + opts + payload


def udp(payload):
    return struct.pack("!HHHH", 5353, 53, 8 + len(payload), 0) + payload


def vnet(flags, gso, hdr_len, gso_size, cs, co):
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, cs, co)


def w(d, name, b):
    os.makedirs(os.path.join("seeds", d), exist_ok=True)
    with open(os.path.join("seeds", d, name), "wb") as f:
        f.write(b)


def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"


pay = bytes((i * 31 + 5) & 0xFF for i in range(3000))
ts = b"\x01\x01\x08\x0a" + b"\0" * 8

# tun_read: [mtu u16 LE][virtio-net header][packet]
mtu = struct.pack("<H", 1420)
w("tun_read", "tcp4_tso", mtu + vnet(1, 1, 40, 1380, 20, 16) + v4(6, tcp(1000, 0x18, pay)))
w("tun_read", "tcp6_tso", mtu + vnet(1, 4, 60, 1360, 40, 16) + v6(6, tcp(1000, 0x10, pay, ts)))
w("tun_read", "udp4_uso", mtu + vnet(1, 5, 28, 1200, 20, 6) + v4(17, udp(pay)))
w("tun_read", "udp6_uso", mtu + vnet(1, 5, 48, 1200, 40, 6) + v6(17, udp(pay[:2500])))
w("tun_read", "plain_csum", mtu + vnet(1, 0, 0, 0, 20, 16) + v4(6, tcp(5, 0x10, pay[:100])))
w("tun_read", "plain", mtu + vnet(0, 0, 0, 0, 0, 0) + v4(17, udp(b"hello")))

# tun_write: [len u16 LE][packet]..., 0xffff = flush
def rec(p):
    return struct.pack("<H", len(p)) + p


FL = b"\xff\xff"
w("tun_write", "train4",
  b"".join(rec(v4(6, tcp(1000 + i * 1000, 0x10, pay[:1000]), ident=i)) for i in range(5)) + FL)
w("tun_write", "train6_psh",
  b"".join(rec(v6(6, tcp(1000 + i * 500, 0x10 if i < 3 else 0x18, pay[:500], ts))) for i in range(4))
  + rec(v4(17, udp(b"x"))) + FL)
w("tun_write", "gap_and_short",
  rec(v4(6, tcp(1, 0x10, pay[:800]))) + rec(v4(6, tcp(801, 0x10, pay[:300])))
  + rec(v4(6, tcp(1101, 0x10, pay[:800]))) + rec(v4(6, tcp(5000, 0x10, pay[:800]))))
w("tun_write", "ttl_change", rec(v4(6, tcp(1, 0x10, pay[:800]))) + rec(v4(6, tcp(801, 0x11, pay[:800]))))

# icmp_unreachable: a packet
w("icmp_unreachable", "tcp4", v4(6, tcp(1, 2, b"")))
w("icmp_unreachable", "udp6", v6(17, udp(b"abc")))
w("icmp_unreachable", "echo4", v4(1, bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"ping"))
w("icmp_unreachable", "err6", v6(58, bytes([1, 3, 0, 0, 0, 0, 0, 0])))
w("icmp_unreachable", "opts4", v4(17, udp(b"y"), ihl=6, opts=b"\x01\x01\x01\x00"))

# dns_answer: [selector][header 12][rest]
ans = (b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 4) + b"\x01x\xc0\x0c"
       + b"\x01x\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1]))
w("dns_answer", "a_with_cname", bytes([0]) + struct.pack("!HHHHHH", 0x5A5A, 0x8180, 1, 2, 0, 0) + ans)
w("dns_answer", "aaaa", bytes([4]) + struct.pack("!HHHHHH", 0x5A5A, 0x8180, 1, 1, 0, 0)
  + b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + bytes(16))
w("dns_answer", "loop", bytes([0]) + struct.pack("!HHHHHH", 0x5A5A, 0x8180, 1, 1, 0, 0) + b"\xc0\x1d" + b"\x3f" * 20)
w("dns_answer", "raw", bytes([0x80]) + struct.pack("!HHHHHH", 0x5A5A, 0x8180, 1, 1, 0, 0)
  + name("vpn.example.com") + b"\0\x01\0\x01" + ans)
w("dns_answer", "nxdomain", bytes([1]) + struct.pack("!HHHHHH", 0x5A5A, 0x8183, 1, 0, 0, 0))

# control_and_state: [selector][text]
key = "A" * 43 + "="
h = f"nameserver 192.0.2.53\nendpoint {key} vpn.example.com 51820\n"
w("control_and_state", "reload", b"\x00" + f"{len(h)}\n{h}[Interface]\nPrivateKey = x\n".encode())
w("control_and_state", "handover", b"\x01" + h.encode())
w("control_and_state", "state", b"\x02" + b"wg-wrap-state 1\nsupervisor_pid=42\nsupervisor_start_time=7\n"
  b"netns_dev=4\nnetns_ino=4026531840\nstarted_unix=1700000000\ncontrol_id=9\n")
w("control_and_state", "pid", b"\x031234")
w("control_and_state", "stat", b"\x03" + b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 777 10000 100")
# Selectors from 0xF0: even, the control request line; odd, a publish body after a
# byte of [descriptor count: low 7 bits][truncated: top bit].
w("control_and_state", "line-status", b"\xf0status\n")
w("control_and_state", "line-reload", b"\xf0reload 42\n")
w("control_and_state", "line-publish", b"\xf2publish command\n")
w("control_and_state", "publish-two", b"\xf1\x02" + b'["8080:80","[::1]:5353:53/udp"]')
w("control_and_state", "publish-v4", b"\xf3\x01" + b'["0.0.0.0:8443:443/tcp"]')
w("control_and_state", "publish-truncated", b"\xf1\x81" + b'["8080:80"]')
