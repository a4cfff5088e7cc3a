//! Entry points for the fuzz targets in `supervisor/fuzz` (feature `fuzzing`), one per
//! parser of bytes that other parties control, each checking the invariants that
//! matter and panicking when one breaks. The unit tests below replay the committed
//! corpus (`supervisor/fuzz/corpus/<target>/`) through the same checks, so a plain
//! `cargo test` keeps them without nightly. See supervisor/FUZZING.md.

use crate::contract::control::Request;
use crate::contract::handover::Handover;
use crate::contract::publish::{self, Owner, PublishSpec};
use crate::contract::state::{parse_pid_name, parse_stat_start_time, SessionState};
use crate::dataplane::checksum::{fold, pseudo_header_sum, sum_bytes};
use crate::dataplane::icmp;
use crate::dataplane::offload::{self, VnetHdr, HEADROOM, MAX_FRAME, VNET_HDR_LEN};
use crate::namespace::tun_device::TunIo;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const GSO_NONE: u8 = 0;
const GSO_ECN: u8 = 0x80;
const F_NEEDS_CSUM: u8 = 1;
const TCP_PSH: u8 = 0x08;

/// The TUN read side: `data` is `[mtu: u16 LE][frame]`, a frame as the TUN device
/// hands it over with offloads on (virtio-net header, then a packet or a TSO/USO
/// superpacket). Every produced segment of a superpacket is a well-formed packet no
/// longer than the MTU (the scratch buffer's size), and the segments carry exactly
/// the superpacket's payload, in order; a plain packet comes out unchanged but for a
/// completed checksum.
pub fn tun_read(data: &[u8]) {
    let Some((mtu, frame)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mtu = usize::from(u16::from_le_bytes(*mtu)).max(68);
    let input = frame.to_vec();
    let mut frame = frame.to_vec();
    let mut scratch = vec![0u8; mtu];
    let mut out: Vec<Vec<u8>> = Vec::new();
    let result = offload::split(&mut frame, true, &mut scratch, &mut |p| {
        out.push(p.to_vec())
    });
    if result.is_err() {
        assert!(out.is_empty(), "a failed split handed packets on");
        return;
    }
    let hdr = VnetHdr::decode(&input).expect("split accepted a frame without a header");
    let packet = &input[VNET_HDR_LEN..];
    if hdr.gso_type & !GSO_ECN == GSO_NONE {
        assert_eq!(out.len(), 1);
        let got = &out[0];
        assert_eq!(got.len(), packet.len());
        // Only the two checksum bytes may change.
        let at = (hdr.flags & F_NEEDS_CSUM != 0)
            .then(|| usize::from(hdr.csum_start) + usize::from(hdr.csum_offset));
        for (i, (a, b)) in got.iter().zip(packet).enumerate() {
            if at.is_none_or(|at| i != at && i != at + 1) {
                assert_eq!(a, b, "byte {i} of a plain packet changed");
            }
        }
        return;
    }
    // A superpacket: work out its layout independently of split.
    let v6 = packet[0] >> 4 == 6;
    let t = usize::from(hdr.csum_start);
    let first = &out[0];
    let proto = if v6 { first[6] } else { first[9] };
    let th_len = if proto == PROTO_TCP {
        usize::from(packet[t + 12] >> 4) * 4
    } else {
        8
    };
    let hdr_len = t + th_len;
    let gso = usize::from(hdr.gso_size);
    let mut payload = Vec::new();
    for (i, seg) in out.iter().enumerate() {
        assert!(
            seg.len() <= mtu,
            "segment {i}: {} bytes > MTU {mtu}",
            seg.len()
        );
        assert!(seg.len() >= hdr_len);
        assert_well_formed(seg, t);
        let body = &seg[hdr_len..];
        assert!(body.len() <= gso, "segment {i} carries more than gso_size");
        if i + 1 < out.len() {
            assert_eq!(body.len(), gso, "a middle segment is short");
        }
        if proto == PROTO_TCP {
            let seq = u32::from_be_bytes([seg[t + 4], seg[t + 5], seg[t + 6], seg[t + 7]]);
            let first_seq =
                u32::from_be_bytes([packet[t + 4], packet[t + 5], packet[t + 6], packet[t + 7]]);
            assert_eq!(
                seq,
                first_seq.wrapping_add(payload.len() as u32),
                "segment {i} seq"
            );
        }
        payload.extend_from_slice(body);
    }
    assert!(
        payload == packet[hdr_len..],
        "the segments do not carry the payload"
    );
}

/// An IPv4 or IPv6 packet with its transport header at `t`: lengths that match the
/// packet, valid checksums.
fn assert_well_formed(p: &[u8], t: usize) {
    let v6 = p[0] >> 4 == 6;
    let proto = if v6 {
        assert_eq!(
            usize::from(u16::from_be_bytes([p[4], p[5]])),
            p.len() - 40,
            "v6 length"
        );
        // Without extension headers the next header is the transport.
        if t == 40 {
            assert!(
                matches!(p[6], PROTO_TCP | PROTO_UDP),
                "v6 next header {}",
                p[6]
            );
        }
        if p[6] == PROTO_TCP || p[6] == PROTO_UDP {
            p[6]
        } else {
            return;
        }
    } else {
        assert_eq!(p[0] >> 4, 4);
        let ihl = usize::from(p[0] & 0x0f) * 4;
        assert_eq!(ihl, t, "IHL does not say where the transport header is");
        assert_eq!(
            usize::from(u16::from_be_bytes([p[2], p[3]])),
            p.len(),
            "v4 length"
        );
        assert_eq!(fold(sum_bytes(&p[..ihl], 0)), 0xffff, "v4 header checksum");
        assert!(
            matches!(p[9], PROTO_TCP | PROTO_UDP),
            "v4 protocol {}",
            p[9]
        );
        p[9]
    };
    if proto == PROTO_UDP {
        assert_eq!(
            usize::from(u16::from_be_bytes([p[t + 4], p[t + 5]])),
            p.len() - t
        );
    } else {
        let th = usize::from(p[t + 12] >> 4) * 4;
        assert!(th >= 20 && t + th <= p.len(), "TCP header length");
    }
    let sum = fold(sum_bytes(
        &p[t..],
        pseudo_header_sum(p, proto, p.len() - t, v6),
    ));
    assert_eq!(sum, 0xffff, "transport checksum");
}

/// A TUN device that records what is written to it. Nothing ever polls it; the
/// descriptor (one end of a pipe nobody writes) only satisfies [`TunIo::readable`].
struct Recorder(Mutex<Vec<Vec<u8>>>, std::os::fd::OwnedFd);

impl TunIo for Recorder {
    fn offload(&self) -> bool {
        true
    }
    fn readable(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.1.as_fd()
    }
    fn try_recv(&self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame.to_vec());
        Ok(())
    }
}

/// The TUN write side: `data` is a sequence of decrypted packets as a peer may send
/// them, each `[len: u16 LE][bytes]`, with a length of 0xffff meaning "flush now"
/// (the end of a batch). What is written equals what came in: splitting every
/// written superpacket at its gso_size gives back the input packets, per flow in
/// order, identical but for the fields coalescing legitimately rewrites (IPv4 ID and
/// header checksum, the TCP checksum, PSH moving to the last segment). Each packet
/// sits at the end of its own exact-size buffer, so any read past it panics.
pub fn tun_write(data: &[u8]) {
    let (never_readable, _writer) = rustix::pipe::pipe().expect("a pipe for the recorder");
    let tun = Recorder(Mutex::new(Vec::new()), never_readable);
    let mut writer = offload::Writer::new(true);
    let mut input: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = u16::from_le_bytes(*len);
        if len == 0xffff {
            writer.flush(&tun).expect("recorder never fails");
            rest = tail;
            continue;
        }
        let len = usize::from(len).min(tail.len());
        let (p, tail) = tail.split_at(len);
        rest = tail;
        let mut buf = vec![0u8; HEADROOM + p.len()];
        buf[HEADROOM..].copy_from_slice(p);
        writer
            .push(&tun, &mut buf, p.len())
            .expect("recorder never fails");
        input.push(p.to_vec());
    }
    writer.flush(&tun).expect("recorder never fails");
    let frames = tun.0.into_inner().unwrap_or_else(|e| e.into_inner());

    let mut output: Vec<(Vec<u8>, bool)> = Vec::new();
    for frame in &frames {
        assert!(frame.len() <= MAX_FRAME);
        let hdr = VnetHdr::decode(frame).expect("a frame without a virtio-net header");
        if hdr.gso_type == GSO_NONE {
            assert_eq!(hdr, VnetHdr::default(), "a plain packet with offload flags");
            output.push((frame[VNET_HDR_LEN..].to_vec(), false));
            continue;
        }
        let mut copy = frame.clone();
        let mut scratch = vec![0u8; MAX_FRAME];
        let mut segs = Vec::new();
        offload::split(&mut copy, true, &mut scratch, &mut |p| {
            segs.push(p.to_vec())
        })
        .expect("a written superpacket does not split");
        assert!(segs.len() >= 2, "a superpacket of one segment");
        output.extend(segs.into_iter().map(|s| (s, true)));
    }
    assert_eq!(output.len(), input.len(), "packets lost or invented");
    // Per flow, the order is kept; across flows it may change.
    let mut used = vec![false; output.len()];
    let mut last_of_flow: Vec<(Vec<u8>, usize)> = Vec::new();
    for p in &input {
        let key = flow_of(p);
        let from = last_of_flow
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, at)| at + 1);
        let found = (from..output.len())
            .find(|&i| !used[i] && same_packet(p, &output[i].0, output[i].1))
            .unwrap_or_else(|| panic!("input packet {p:02x?} not written as it came"));
        used[found] = true;
        match last_of_flow.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = found,
            None => last_of_flow.push((key, found)),
        }
    }
}

/// What orders packets: the TCP flow of a segment the writer can parse (the IP
/// length matches, the headers fit), or nothing: everything else is written the
/// moment it comes, in order, so it forms one "flow" of its own.
fn flow_of(p: &[u8]) -> Vec<u8> {
    let tcp = |t: usize, total: usize, addrs: std::ops::Range<usize>| {
        let th = usize::from(*p.get(t + 12)? >> 4) * 4;
        (total == p.len() && th >= 20 && t + th <= p.len())
            .then(|| [&p[addrs], &p[t..t + 4]].concat())
    };
    let key = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 && p[9] == PROTO_TCP => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            tcp(ihl, total, 12..20).map(|k| [&[4u8][..], &k].concat())
        }
        Some(6) if p.len() >= 40 && p[6] == PROTO_TCP => {
            let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
            tcp(40, total, 8..40).map(|k| [&[6u8][..], &k].concat())
        }
        _ => None,
    };
    key.unwrap_or_default()
}

/// `got` is `want` as written, or — `resplit`, cut back out of a superpacket — with
/// the fields coalescing rewrites masked.
fn same_packet(want: &[u8], got: &[u8], resplit: bool) -> bool {
    if !resplit || want.len() != got.len() {
        return want == got;
    }
    let v6 = want[0] >> 4 == 6;
    let t = if v6 { 40 } else { 20 };
    let masked = |i: usize| {
        (!v6 && matches!(i, 4 | 5 | 10 | 11)) || i == t + 16 || i == t + 17 || i == t + 13
    };
    let flags_ok = (want[t + 13] & !TCP_PSH) == (got[t + 13] & !TCP_PSH);
    flags_ok
        && want
            .iter()
            .zip(got)
            .enumerate()
            .all(|(i, (a, b))| masked(i) || a == b)
}

/// ICMP unreachable generation from any packet: when an error is built, it is a
/// well-formed ICMP or ICMPv6 "unreachable" of at most [`icmp::MAX_LEN`] bytes, from
/// the packet's destination back to its source, quoting the packet's start; and no
/// error ever answers an ICMP error.
pub fn icmp_unreachable(packet: &[u8]) {
    let mut out = vec![0u8; icmp::MAX_LEN];
    let Some(len) = icmp::unreachable(packet, &mut out) else {
        return;
    };
    assert!(len <= icmp::MAX_LEN);
    let o = &out[..len];
    let v6 = packet[0] >> 4 == 6;
    if v6 {
        assert_eq!(o[0] >> 4, 6);
        assert_eq!(usize::from(u16::from_be_bytes([o[4], o[5]])), len - 40);
        assert_eq!(o[6], PROTO_ICMPV6);
        assert_eq!(
            o[8..24],
            packet[24..40],
            "source is the packet's destination"
        );
        assert_eq!(
            o[24..40],
            packet[8..24],
            "destination is the packet's source"
        );
        assert!(
            packet[6] != PROTO_ICMPV6 || packet[40] >= 128,
            "answered an ICMPv6 error"
        );
        let sum = fold(sum_bytes(
            &o[40..],
            pseudo_header_sum(o, PROTO_ICMPV6, len - 40, true),
        ));
        assert_eq!(sum, 0xffff, "ICMPv6 checksum");
        assert_eq!(o[48..], packet[..len - 48], "quote");
    } else {
        assert_eq!(o[0], 0x45);
        assert_eq!(usize::from(u16::from_be_bytes([o[2], o[3]])), len);
        assert_eq!(fold(sum_bytes(&o[..20], 0)), 0xffff, "IPv4 header checksum");
        assert_eq!(o[12..16], packet[16..20]);
        assert_eq!(o[16..20], packet[12..16]);
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        assert!(
            packet[9] != PROTO_ICMP || matches!(packet[ihl], 0 | 8 | 13..=18),
            "answered an ICMP error"
        );
        assert_eq!(fold(sum_bytes(&o[20..], 0)), 0xffff, "ICMP checksum");
        assert_eq!(o[28..], packet[..len - 28], "quote");
    }
}

/// Names the DNS target asks for (picked by the input's first byte).
const DNS_NAMES: [&str; 4] = ["vpn.example.com", "a.b", "x", "VPN.Example.COM."];

/// DNS answer parsing: `data` is `[selector][header: 12][rest]`; the message parsed
/// is the header (with the query's id), our question (so mutations get past the
/// question check; with the selector's top bit set the question is taken from the
/// input instead), then the rest: arbitrary answers, compression pointers (loops
/// included), truncation. Parsing ends, and every address found has the family asked
/// for, at most one per answer record.
pub fn dns_answer(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let name = DNS_NAMES[usize::from(sel & 3)];
    let qtype: u16 = if sel & 4 == 0 { 1 } else { 28 };
    let id = 0x5a5a;
    let Some(query) = crate::reresolve::build_query(id, name, qtype) else {
        return;
    };
    let mut msg = Vec::with_capacity(query.len() + rest.len());
    if sel & 0x80 != 0 {
        msg.extend_from_slice(rest);
    } else {
        let (header, tail) = rest.split_at(rest.len().min(12));
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(header.get(2..).unwrap_or_default());
        if header.len() == 12 {
            msg.extend_from_slice(&query[12..]);
        }
        msg.extend_from_slice(tail);
    }
    let Some(addrs) = crate::reresolve::parse_answer(&msg, id, name, qtype) else {
        return;
    };
    let an = usize::from(u16::from_be_bytes([msg[6], msg[7]]));
    assert!(addrs.len() <= an, "more addresses than answer records");
    for a in addrs {
        assert_eq!(matches!(a, IpAddr::V6(_)), qtype == 28, "wrong family: {a}");
    }
}

/// The control socket's request line, `reload` and `publish` bodies and the session
/// files: `data` is `[selector][text]`. Selectors from 0xF0 on pick the request line
/// (even) or the `publish` body (odd); below that, `selector % 4` the others, as the
/// committed corpus was made. Readers never panic, and what they accept renders back
/// to something they read as the same thing.
pub fn control_and_state(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel >= 0xF0 {
        return if sel % 2 == 0 {
            request_line(rest)
        } else {
            publish_body(rest)
        };
    }
    let text = String::from_utf8_lossy(rest);
    match sel % 4 {
        0 => {
            // `reload N`: the length on the request line, then the body.
            let (len, body) = text.split_once('\n').unwrap_or((&text, ""));
            let mut reader = body.as_bytes();
            if let Ok((profile, names)) = crate::contract::control::read_reload(&mut reader, len) {
                assert!(profile.len() <= body.len());
                assert_eq!(Handover::parse(&names.render()).ok(), Some(names));
            }
        }
        1 => {
            if let Ok(h) = Handover::parse(&text) {
                assert_eq!(Handover::parse(&h.render()).ok(), Some(h));
            }
        }
        2 => {
            if let Ok(s) = SessionState::parse(&text) {
                assert_eq!(SessionState::parse(&s.render()).ok(), Some(s));
            }
        }
        _ => {
            if let Some(pid) = parse_pid_name(&text) {
                assert!(pid > 0);
                assert_eq!(
                    pid.to_string().trim_start_matches('0'),
                    text.trim_start_matches('0')
                );
            }
            let _ = parse_stat_start_time(&text);
        }
    }
}

/// The control server's request line, read as it does: at most 64 bytes up to and
/// including a newline. A known request renders back to a line that parses the same;
/// a `publish` owner word that is accepted is the word of its [`Owner`].
fn request_line(data: &[u8]) {
    let mut line = String::new();
    if io::BufRead::read_line(&mut io::Read::take(data, 64), &mut line).is_err() {
        return;
    }
    let request = Request::parse(&line);
    match request.render() {
        Some(again) => {
            assert_eq!(Request::parse(&again), request);
            assert_eq!(again, line.trim_end());
        }
        None => assert_eq!(request, Request::Unknown),
    }
    if let Request::Publish(word) = request {
        if let Some(owner) = Owner::from_word(word) {
            assert_eq!(owner.word(), word);
        }
    }
}

/// The body of `publish`: `[descriptors: low 7 bits, truncated: top bit][JSON]`.
/// Accepted specs are as many as the descriptors, none cut off, and each renders (as
/// `-p` text and as the JSON body) to what parses to the same spec again.
fn publish_body(data: &[u8]) {
    let Some((&fds, body)) = data.split_first() else {
        return;
    };
    let (descriptors, truncated) = (usize::from(fds & 0x7f), fds & 0x80 != 0);
    let text = String::from_utf8_lossy(body);
    let Ok(specs) = publish::parse_request_body(&text, descriptors, truncated) else {
        return;
    };
    assert!(!truncated);
    assert_eq!(specs.len(), descriptors);
    for spec in &specs {
        assert_ne!(spec.host_port, 0);
        assert_ne!(spec.ns_port, 0);
        assert_eq!(spec.to_string().parse::<PublishSpec>().ok(), Some(*spec));
    }
    let json = serde_json::to_string(&specs).expect("specs serialize");
    assert_eq!(
        publish::parse_request_body(&json, descriptors, false).ok(),
        Some(specs)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Replay `supervisor/fuzz/corpus/<target>/*` through `check`; returns how many
    /// inputs there were.
    fn replay(target: &str, check: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                panic!("{} fails: {e:?}", path.display());
            }
            n += 1;
        }
        n
    }

    #[test]
    fn fuzz_corpus_tun_read_replays() {
        assert!(replay("tun_read", tun_read) > 0);
    }

    #[test]
    fn fuzz_corpus_tun_write_replays() {
        assert!(replay("tun_write", tun_write) > 0);
    }

    #[test]
    fn fuzz_corpus_icmp_unreachable_replays() {
        assert!(replay("icmp_unreachable", icmp_unreachable) > 0);
    }

    #[test]
    fn fuzz_corpus_dns_answer_replays() {
        assert!(replay("dns_answer", dns_answer) > 0);
    }

    #[test]
    fn fuzz_corpus_control_and_state_replays() {
        assert!(replay("control_and_state", control_and_state) > 0);
    }
}
