//! A tiny authoritative DNS responder (RFC 1035) for a fixed name table.
//!
//! Pure bytes in, bytes out: the smoltcp glue lives in `services.rs`.
//! Anything that is not a well-formed single-question query is dropped
//! (no reply), so a fuzzing client cannot make the peer panic or chatter.

use std::net::IpAddr;

/// Largest reply over UDP without EDNS (RFC 1035 §4.2.1).
const MAX_UDP_REPLY: usize = 512;
const HEADER_LEN: usize = 12;
/// Longest name on the wire, including length bytes and the root label (RFC 1035 §2.3.4).
const MAX_NAME_WIRE: usize = 255;
const MAX_LABEL: usize = 63;
/// TTL of our answers: short, so a test that restarts the peer is not fooled by a cache.
const ANSWER_TTL: u32 = 60;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const OPCODE_MASK: u16 = 0x7800;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// The names the server answers for, in wire form (lower-cased).
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    entries: Vec<(Vec<u8>, IpAddr)>,
}

impl NameTable {
    /// Names that cannot be encoded are skipped; `PeerConfig::validate` rejects them earlier.
    pub fn new(names: &[(String, IpAddr)]) -> NameTable {
        let entries = names
            .iter()
            .filter_map(|(name, addr)| Some((encode_name(name)?, *addr)))
            .collect();
        NameTable { entries }
    }
}

/// `name` ("peer.wgwrap.test", one trailing dot allowed) as wire-format
/// labels, lower-cased; `None` if it is not a valid host name.
pub fn encode_name(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        let printable = label.bytes().all(|b| b.is_ascii_graphic());
        if label.is_empty() || label.len() > MAX_LABEL || !printable {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_WIRE).then_some(wire)
}

/// A parsed question: where it sits in the query and what it asks.
struct Question {
    /// End offset of QCLASS: the question section is `query[HEADER_LEN..end]`.
    end: usize,
    /// The name in lower-cased wire form.
    name: Vec<u8>,
    qtype: u16,
    qclass: u16,
}

/// Parse the question at `HEADER_LEN`; `None` if it is malformed.
fn parse_question(query: &[u8]) -> Option<Question> {
    let mut pos = HEADER_LEN;
    let mut name = Vec::with_capacity(32);
    loop {
        let len = usize::from(*query.get(pos)?);
        // 0xC0 is a compression pointer, 0x40/0x80 are reserved label
        // types: none belong in a question that starts right after the header.
        if len > MAX_LABEL {
            return None;
        }
        let label = query.get(pos + 1..pos + 1 + len)?;
        name.push(len as u8);
        name.extend(label.iter().map(u8::to_ascii_lowercase));
        pos += 1 + len;
        if name.len() > MAX_NAME_WIRE {
            return None;
        }
        if len == 0 {
            break;
        }
    }
    let fixed = query.get(pos..pos + 4)?;
    Some(Question {
        end: pos + 4,
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
    })
}

/// The reply to `query`, or `None` to drop it (malformed, not a query, or
/// not exactly one question).
pub fn respond(table: &NameTable, query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..HEADER_LEN)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    if flags & FLAG_QR != 0 || qdcount != 1 {
        return None;
    }
    let question = parse_question(query)?;

    let mut reply = Vec::with_capacity(MAX_UDP_REPLY);
    reply.extend_from_slice(&header[..2]);
    reply.extend_from_slice(&[0; 10]);
    reply.extend_from_slice(&query[HEADER_LEN..question.end]);

    let (rcode, answers) = if flags & OPCODE_MASK != 0 {
        // Only standard queries (opcode 0) are implemented.
        (RCODE_NOTIMP, Vec::new())
    } else if question.qclass != CLASS_IN && question.qclass != CLASS_ANY {
        (RCODE_REFUSED, Vec::new())
    } else {
        lookup(table, &question)
    };

    let mut truncated = false;
    let mut ancount: u16 = 0;
    for addr in answers {
        let rdata: Vec<u8> = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let rtype = if addr.is_ipv4() { TYPE_A } else { TYPE_AAAA };
        if reply.len() + 12 + rdata.len() > MAX_UDP_REPLY {
            truncated = true;
            break;
        }
        // 0xC00C: a compression pointer to the question's name at offset 12.
        reply.extend_from_slice(&[0xc0, 0x0c]);
        reply.extend_from_slice(&rtype.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        reply.extend_from_slice(&rdata);
        ancount += 1;
    }

    // Recursion is "available" in the sense that every name we know is
    // answered; stub resolvers that insist on RA then accept the reply.
    let mut reply_flags = FLAG_QR | FLAG_AA | FLAG_RA | (flags & (OPCODE_MASK | FLAG_RD));
    if truncated {
        reply_flags |= FLAG_TC;
    }
    reply_flags |= u16::from(rcode);
    reply[2..4].copy_from_slice(&reply_flags.to_be_bytes());
    reply[4..6].copy_from_slice(&1u16.to_be_bytes());
    reply[6..8].copy_from_slice(&ancount.to_be_bytes());
    Some(reply)
}

/// The rcode and answer addresses for a standard IN query.
fn lookup(table: &NameTable, question: &Question) -> (u8, Vec<IpAddr>) {
    let mut known = false;
    let mut answers = Vec::new();
    for (name, addr) in &table.entries {
        if *name != question.name {
            continue;
        }
        known = true;
        let wanted = match question.qtype {
            TYPE_A => addr.is_ipv4(),
            TYPE_AAAA => addr.is_ipv6(),
            TYPE_ANY => true,
            _ => false,
        };
        if wanted {
            answers.push(*addr);
        }
    }
    // A known name without records of the asked type is NOERROR with no
    // answers ("NODATA", RFC 2308 §2.2), not NXDOMAIN: resolvers asking
    // AAAA first must not conclude the name is gone.
    let rcode = if known { RCODE_NOERROR } else { RCODE_NXDOMAIN };
    (rcode, answers)
}

/// A standard recursive query for `name`/`qtype`, as a stub resolver sends it.
#[cfg(any(test, feature = "testing"))]
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&FLAG_RD.to_be_bytes());
    query.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&CLASS_IN.to_be_bytes());
    query
}

/// What a test needs from a reply.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    pub rcode: u8,
    pub addrs: Vec<IpAddr>,
}

/// Parse a reply as this server produces it (answers point at the question name).
#[cfg(any(test, feature = "testing"))]
pub fn parse_reply(reply: &[u8]) -> Option<Answer> {
    let id = u16::from_be_bytes([*reply.first()?, *reply.get(1)?]);
    let flags = u16::from_be_bytes([*reply.get(2)?, *reply.get(3)?]);
    let ancount = u16::from_be_bytes([*reply.get(6)?, *reply.get(7)?]);
    if flags & FLAG_QR == 0 {
        return None;
    }
    let mut pos = parse_question(reply)?.end;
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        let rr = reply.get(pos..pos + 12)?;
        if rr[..2] != [0xc0, 0x0c] {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([rr[10], rr[11]]));
        let rdata = reply.get(pos + 12..pos + 12 + rdlen)?;
        match rdlen {
            4 => addrs.push(IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
            16 => addrs.push(IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            _ => return None,
        }
        pos += 12 + rdlen;
    }
    Some(Answer {
        id,
        rcode: (flags & 0xf) as u8,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn table() -> NameTable {
        NameTable::new(&[
            (
                "peer.wgwrap.test".into(),
                IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)),
            ),
            (
                "peer.wgwrap.test.".into(),
                IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1)),
            ),
            (
                "v4only.test".into(),
                IpAddr::V4(Ipv4Addr::new(10, 77, 0, 9)),
            ),
        ])
    }

    fn ask(name: &str, qtype: u16) -> Answer {
        let reply = respond(&table(), &build_query(0x1234, name, qtype)).expect("a reply");
        parse_reply(&reply).expect("a parsable reply")
    }

    #[test]
    fn answers_a_and_aaaa() {
        let a = ask("peer.wgwrap.test", TYPE_A);
        assert_eq!((a.id, a.rcode), (0x1234, RCODE_NOERROR));
        assert_eq!(a.addrs, vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))]);
        let aaaa = ask("PEER.WgWrap.Test.", TYPE_AAAA);
        assert_eq!(aaaa.addrs, vec!["fd77::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(ask("peer.wgwrap.test", TYPE_ANY).addrs.len(), 2);
    }

    #[test]
    fn unknown_name_is_nxdomain_and_missing_type_is_nodata() {
        let nx = ask("nope.wgwrap.test", TYPE_A);
        assert_eq!((nx.rcode, nx.addrs.len()), (RCODE_NXDOMAIN, 0));
        let nodata = ask("v4only.test", TYPE_AAAA);
        assert_eq!((nodata.rcode, nodata.addrs.len()), (RCODE_NOERROR, 0));
        let mx = ask("peer.wgwrap.test", 15);
        assert_eq!((mx.rcode, mx.addrs.len()), (RCODE_NOERROR, 0));
    }

    #[test]
    fn reply_echoes_question_and_flags() {
        let query = build_query(7, "Peer.wgwrap.test", TYPE_A);
        let reply = respond(&table(), &query).unwrap();
        assert_eq!(
            &reply[12..query.len()],
            &query[12..],
            "question echoed byte for byte"
        );
        let flags = u16::from_be_bytes([reply[2], reply[3]]);
        assert_eq!(
            flags & (FLAG_QR | FLAG_AA | FLAG_RD),
            FLAG_QR | FLAG_AA | FLAG_RD
        );
        assert_eq!(&reply[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn edns_opt_record_is_tolerated() {
        let mut query = build_query(9, "peer.wgwrap.test", TYPE_A);
        query[11] = 1; // ARCOUNT = 1
        query.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let answer = parse_reply(&respond(&table(), &query).unwrap()).unwrap();
        assert_eq!(answer.addrs.len(), 1);
    }

    #[test]
    fn other_opcode_and_class() {
        let mut query = build_query(1, "peer.wgwrap.test", TYPE_A);
        query[2] |= 0x10; // opcode 2 (STATUS)
        let reply = respond(&table(), &query).unwrap();
        assert_eq!(reply[3] & 0xf, RCODE_NOTIMP);
        let mut query = build_query(1, "peer.wgwrap.test", TYPE_A);
        let n = query.len();
        query[n - 1] = 3; // class CH
        assert_eq!(respond(&table(), &query).unwrap()[3] & 0xf, RCODE_REFUSED);
    }

    #[test]
    fn malformed_queries_are_dropped() {
        let good = build_query(1, "peer.wgwrap.test", TYPE_A);
        let t = table();
        assert!(respond(&t, &[]).is_none());
        assert!(respond(&t, &good[..11]).is_none(), "short header");
        for cut in 12..good.len() {
            assert!(respond(&t, &good[..cut]).is_none(), "truncated at {cut}");
        }
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(respond(&t, &response).is_none(), "a response, not a query");
        let mut two = good.clone();
        two[5] = 2;
        assert!(respond(&t, &two).is_none(), "two questions");
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(
            respond(&t, &pointer).is_none(),
            "compression pointer in question"
        );
        let mut long = good[..12].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(respond(&t, &long).is_none(), "name over 255 bytes");
    }

    /// Random garbage (and random corruptions of a good query) never panic.
    #[test]
    fn fuzzed_input_never_panics() {
        let t = table();
        let good = build_query(1, "peer.wgwrap.test", TYPE_A);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut packet = if next() % 2 == 0 {
                good.clone()
            } else {
                (0..next() % 80).map(|_| next() as u8).collect()
            };
            for _ in 0..next() % 4 {
                if !packet.is_empty() {
                    let i = (next() as usize) % packet.len();
                    packet[i] = next() as u8;
                }
            }
            if let Some(reply) = respond(&t, &packet) {
                assert!(reply.len() <= MAX_UDP_REPLY);
            }
        }
    }

    #[test]
    fn name_encoding_rules() {
        assert_eq!(encode_name("A.b").unwrap(), b"\x01a\x01b\x00");
        assert!(encode_name("").is_none());
        assert!(encode_name(".").is_none());
        assert!(encode_name("a..b").is_none());
        assert!(encode_name("a b").is_none());
        assert!(encode_name(&"a".repeat(64)).is_none());
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(encode_name(&long).is_none(), "{} bytes", long.len());
        assert!(encode_name(&long[..253]).is_some());
    }
}
