//! Internet checksums (RFC 1071) for the packets the data plane builds or completes:
//! segments cut from a superpacket ([`super::offload`]) and ICMP errors
//! ([`super::icmp`]).

/// IP protocol number of UDP (its checksum 0 means "none", RFC 768).
const PROTO_UDP: u8 = 17;

/// Recompute an IPv4 header's checksum in place.
pub fn ipv4_header_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let sum = !fold(sum_bytes(&p[..ihl], 0));
    p[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Compute the TCP or UDP checksum of `p` (transport header at `t`, checksum field
/// `field` bytes into it) in place.
pub fn transport_checksum(p: &mut [u8], t: usize, field: usize, proto: u8, v6: bool) {
    p[t + field] = 0;
    p[t + field + 1] = 0;
    let sum = sum_bytes(&p[t..], pseudo_header_sum(p, proto, p.len() - t, v6));
    let mut c = !fold(sum);
    if proto == PROTO_UDP && c == 0 {
        c = 0xffff; // RFC 768: zero means "no checksum"
    }
    p[t + field..t + field + 2].copy_from_slice(&c.to_be_bytes());
}

/// The pseudo-header's contribution (addresses from the IP header of `p`).
pub fn pseudo_header_sum(p: &[u8], proto: u8, transport_len: usize, v6: bool) -> u64 {
    let addrs = if v6 { &p[8..40] } else { &p[12..20] };
    let mut tail = [0u8; 8];
    tail[..4].copy_from_slice(&(transport_len as u32).to_be_bytes());
    tail[7] = proto;
    sum_bytes(&tail, sum_bytes(addrs, 0))
}

/// The ones'-complement sum of `data` as big-endian 16-bit words, added to `initial`
/// (a value from this function), unfolded. Native-order 32-bit words are summed into
/// a 64-bit accumulator (no carries to track for anything under 16 GiB, and the loop
/// vectorizes), then folded and byte-swapped once (RFC 1071 §2(B)).
pub fn sum_bytes(data: &[u8], initial: u64) -> u64 {
    let (words, rest) = data.as_chunks::<4>();
    let mut acc: u64 = words
        .iter()
        .map(|w| u64::from(u32::from_ne_bytes(*w)))
        .sum();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_ne_bytes(tail));
    // Native-order sum -> big-endian 16-bit sum.
    initial + u64::from(u16::from_be(fold(acc)))
}

/// Fold a 64-bit ones'-complement sum to 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
