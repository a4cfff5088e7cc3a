//! ICMP and ICMPv6 echo through the test client, with hand-built packets
//! (the stack answers echo requests but has no ICMP sockets to send them).

use std::net::IpAddr;
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr,
};

use super::{TestClient, TestError};

const ICMP_IDENT: u16 = 0x7767;

impl TestClient {
    /// Send an ICMP (v4) or ICMPv6 echo request and return the echoed payload.
    pub fn ping(
        &mut self,
        dst: IpAddr,
        seq: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TestError> {
        let packet = self.echo_request(dst, seq, payload)?;
        self.send_ip(&packet);
        self.pump_until(timeout, "the echo reply", |c| {
            let at = c
                .echo_replies
                .iter()
                .position(|r| r.from == dst && r.ident == ICMP_IDENT && r.seq == seq)?;
            c.echo_replies.remove(at).map(|r| r.data)
        })
    }

    fn echo_request(&self, dst: IpAddr, seq: u16, data: &[u8]) -> Result<Vec<u8>, TestError> {
        let caps = ChecksumCapabilities::default();
        match (dst, self.source_for(dst)) {
            (IpAddr::V4(dst), Some(IpAddr::V4(src))) => {
                let icmp = Icmpv4Repr::EchoRequest {
                    ident: ICMP_IDENT,
                    seq_no: seq,
                    data,
                };
                let ip = Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Icmp,
                    payload_len: icmp.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
                ip.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]), &caps);
                icmp.emit(
                    &mut Icmpv4Packet::new_unchecked(&mut packet[ip.buffer_len()..]),
                    &caps,
                );
                Ok(packet)
            }
            (IpAddr::V6(dst), Some(IpAddr::V6(src))) => {
                let icmp = Icmpv6Repr::EchoRequest {
                    ident: ICMP_IDENT,
                    seq_no: seq,
                    data,
                };
                let ip = Ipv6Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: icmp.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
                ip.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
                icmp.emit(
                    &src,
                    &dst,
                    &mut Icmpv6Packet::new_unchecked(&mut packet[ip.buffer_len()..]),
                    &caps,
                );
                Ok(packet)
            }
            _ => Err(TestError::NoSourceAddress(dst)),
        }
    }
}

pub(super) struct EchoReply {
    from: IpAddr,
    ident: u16,
    seq: u16,
    data: Vec<u8>,
}

/// An ICMP/ICMPv6 echo reply, with its checksum verified; `None` for anything else.
pub(super) fn parse_echo_reply(packet: &[u8]) -> Option<EchoReply> {
    let caps = ChecksumCapabilities::default();
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
            if ip_repr.next_header != IpProtocol::Icmp {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            match Icmpv4Repr::parse(&icmp, &caps).ok()? {
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some(EchoReply {
                    from: IpAddr::V4(ip_repr.src_addr),
                    ident,
                    seq: seq_no,
                    data: data.to_vec(),
                }),
                _ => None,
            }
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let ip_repr = Ipv6Repr::parse(&ip).ok()?;
            if ip_repr.next_header != IpProtocol::Icmpv6 {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
            match Icmpv6Repr::parse(&ip_repr.src_addr, &ip_repr.dst_addr, &icmp, &caps).ok()? {
                Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                } => Some(EchoReply {
                    from: IpAddr::V6(ip_repr.src_addr),
                    ident,
                    seq: seq_no,
                    data: data.to_vec(),
                }),
                _ => None,
            }
        }
        _ => None,
    }
}
