//! "Destination unreachable" for packets no peer's AllowedIPs cover, so the program
//! that sent them fails at once instead of waiting for a timeout.
//!
//! The kernel routes into `wg0` every address of the interface's own subnets (and,
//! after a reload, prefixes whose peer is gone), so a packet can reach the data plane
//! with no peer to take it.  Kernel WireGuard answers such a packet with ICMP host
//! unreachable (IPv4 type 3 code 1) or ICMPv6 address unreachable (type 1 code 3);
//! so do we, which the sender's kernel turns into EHOSTUNREACH ("No route to host"),
//! failing a TCP connect immediately.  The error claims to come from the unreachable
//! address itself: it is not one of ours (the kernel would drop it as a martian),
//! and the route back to it is `wg0`, so reverse-path filtering lets it in.
//!
//! No error answers an error, a non-first fragment, or a packet from or to a multicast
//! or broadcast address (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)); a token bucket keeps
//! a flood of unroutable packets from turning into a flood of errors.

use crate::dataplane::checksum::{fold, ipv4_header_checksum, pseudo_header_sum, sum_bytes};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// An IPv4 error quotes the original up to 576 bytes in all (RFC 1812 §4.3.2.3).
const V4_MAX: usize = 576;
/// An ICMPv6 error must fit the minimum IPv6 MTU (RFC 4443 §2.4(c)).
const V6_MAX: usize = 1280;
/// The largest error we build, for the caller's buffer.
pub const MAX_LEN: usize = V6_MAX;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_HOST_UNREACH: u8 = 1;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_ADDR_UNREACH: u8 = 3;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// Build the unreachable error for `packet` into `out` (at least [`MAX_LEN`] bytes);
/// returns its length, or `None` when no error may be sent for it.
pub fn unreachable(packet: &[u8], out: &mut [u8]) -> Option<usize> {
    match packet.first()? >> 4 {
        4 => unreachable_v4(packet, out),
        6 => unreachable_v6(packet, out),
        _ => None,
    }
}

fn unreachable_v4(p: &[u8], out: &mut [u8]) -> Option<usize> {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let bad_address = |a: Ipv4Addr| a.is_unspecified() || a.is_multicast() || a.is_broadcast();
    if fragment_offset != 0 || bad_address(src) || bad_address(dst) || src.is_loopback() {
        return None;
    }
    // Never answer an ICMP error (only echo request/reply, timestamp and the like).
    if p[9] == PROTO_ICMP {
        let t = *p.get(ihl)?;
        if !matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return None;
        }
    }
    let quote = p.len().min(V4_MAX - 28);
    let len = 28 + quote;
    let o = &mut out[..len];
    o[..20].fill(0);
    o[0] = 0x45;
    o[1] = 0xc0; // precedence "internetwork control", as Linux sends its errors
    o[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    o[8] = 64;
    o[9] = PROTO_ICMP;
    o[12..16].copy_from_slice(&dst.octets());
    o[16..20].copy_from_slice(&src.octets());
    ipv4_header_checksum(o);
    o[20] = ICMP_DEST_UNREACH;
    o[21] = ICMP_HOST_UNREACH;
    o[22..28].fill(0);
    o[28..].copy_from_slice(&p[..quote]);
    let sum = !fold(sum_bytes(&o[20..], 0));
    o[22..24].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

fn unreachable_v6(p: &[u8], out: &mut [u8]) -> Option<usize> {
    if p.len() < 40 {
        return None;
    }
    let addr = |at: usize| -> Ipv6Addr {
        let mut b = [0u8; 16];
        b.copy_from_slice(&p[at..at + 16]);
        Ipv6Addr::from(b)
    };
    let (src, dst) = (addr(8), addr(24));
    if src.is_unspecified() || src.is_multicast() || dst.is_multicast() || src.is_loopback() {
        return None;
    }
    // Never answer an ICMPv6 error (types below 128); extension headers before an
    // ICMPv6 header are not followed, and such packets get no answer either.
    if p[6] == PROTO_ICMPV6 && p.get(40).is_none_or(|&t| t < 128) {
        return None;
    }
    let quote = p.len().min(V6_MAX - 48);
    let len = 48 + quote;
    let o = &mut out[..len];
    o[..40].fill(0);
    o[0] = 0x60;
    o[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    o[6] = PROTO_ICMPV6;
    o[7] = 64;
    o[8..24].copy_from_slice(&dst.octets());
    o[24..40].copy_from_slice(&src.octets());
    o[40] = ICMPV6_DEST_UNREACH;
    o[41] = ICMPV6_ADDR_UNREACH;
    o[42..48].fill(0);
    o[48..].copy_from_slice(&p[..quote]);
    let sum = !fold(sum_bytes(
        &o[40..],
        pseudo_header_sum(o, PROTO_ICMPV6, len - 40, true),
    ));
    o[42..44].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

/// At most `rate` errors a second, bursts of up to `rate` (Linux allows about 1000/s
/// by default in `net.ipv4.icmp_ratelimit`/`icmp_msgs_per_sec`).
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Whether one more error may be sent now.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp_syn() -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&60u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 2]);
        p[16..20].copy_from_slice(&[10, 77, 0, 99]);
        p[20..24].copy_from_slice(&[0xc0, 0x01, 0, 80]);
        p[33] = 0x02;
        ipv4_header_checksum(&mut p);
        p
    }

    fn v6_tcp_syn() -> Vec<u8> {
        let mut p = vec![0u8; 80];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&40u16.to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd77::2".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd77::99".parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    #[test]
    fn ipv4_host_unreachable_is_well_formed() {
        let p = v4_tcp_syn();
        let mut out = vec![0u8; MAX_LEN];
        let n = unreachable(&p, &mut out).unwrap();
        let o = &out[..n];
        assert_eq!(n, 28 + 60);
        assert_eq!(&o[12..16], &[10, 77, 0, 99], "from the unreachable address");
        assert_eq!(&o[16..20], &[10, 77, 0, 2], "to the sender");
        assert_eq!((o[20], o[21]), (3, 1));
        assert_eq!(fold(sum_bytes(&o[..20], 0)), 0xffff, "IP header checksum");
        assert_eq!(fold(sum_bytes(&o[20..], 0)), 0xffff, "ICMP checksum");
        assert_eq!(&o[28..], &p[..]);
    }

    #[test]
    fn ipv6_address_unreachable_is_well_formed() {
        let p = v6_tcp_syn();
        let mut out = vec![0u8; MAX_LEN];
        let n = unreachable(&p, &mut out).unwrap();
        let o = &out[..n];
        assert_eq!(n, 48 + 80);
        assert_eq!(o[6], 58);
        assert_eq!(&o[8..24], &p[24..40]);
        assert_eq!(&o[24..40], &p[8..24]);
        assert_eq!((o[40], o[41]), (1, 3));
        let sum = sum_bytes(&o[40..], pseudo_header_sum(o, 58, n - 40, true));
        assert_eq!(fold(sum), 0xffff, "ICMPv6 checksum");
    }

    #[test]
    fn long_packets_are_quoted_up_to_the_limit() {
        let mut p = v4_tcp_syn();
        p.resize(1400, 0xab);
        let mut out = vec![0u8; MAX_LEN];
        assert_eq!(unreachable(&p, &mut out), Some(576));
        let mut p = v6_tcp_syn();
        p.resize(1400, 0xab);
        assert_eq!(unreachable(&p, &mut out), Some(1280));
    }

    #[test]
    fn errors_fragments_and_multicast_get_no_answer() {
        let mut out = vec![0u8; MAX_LEN];
        let mut err = v4_tcp_syn();
        err[9] = 1;
        err[20] = 3; // an ICMP error itself
        assert_eq!(unreachable(&err, &mut out), None);
        let mut echo = err.clone();
        echo[20] = 8; // an echo request is answered
        assert!(unreachable(&echo, &mut out).is_some());
        let mut frag = v4_tcp_syn();
        frag[7] = 10;
        assert_eq!(unreachable(&frag, &mut out), None);
        let mut mcast = v4_tcp_syn();
        mcast[16] = 224;
        assert_eq!(unreachable(&mcast, &mut out), None);
        let mut bcast = v4_tcp_syn();
        bcast[16..20].fill(255);
        assert_eq!(unreachable(&bcast, &mut out), None);
        let mut e6 = v6_tcp_syn();
        e6[6] = 58;
        e6[40] = 1;
        assert_eq!(unreachable(&e6, &mut out), None);
        e6[40] = 128;
        assert!(unreachable(&e6, &mut out).is_some());
        assert_eq!(unreachable(&[0x45; 10], &mut out), None);
        assert_eq!(unreachable(&[], &mut out), None);
    }

    #[test]
    fn rate_limit_caps_bursts() {
        let mut r = RateLimit::new(10);
        let allowed = (0..100).filter(|_| r.allow()).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
    }
}
