//! A minimal stub resolver over a host UDP socket (see the [module docs](super)).

use super::Resolver;
use rand_core::{OsRng, RngCore};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How long each nameserver gets to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Where to send queries for `nameservers` from a socket of the given family.
fn server_addrs(nameservers: &[IpAddr], v6_socket: bool) -> Vec<SocketAddr> {
    nameservers
        .iter()
        .filter(|a| v6_socket || a.is_ipv4())
        .map(|a| crate::dataplane::socket_form(SocketAddr::new(*a, 53), v6_socket))
        .collect()
}

/// A stub resolver asking the host's nameservers through a host socket.
pub struct DnsClient {
    socket: UdpSocket,
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl DnsClient {
    /// `socket`: a UDP socket from the host's network namespace (any local port).
    pub fn new(socket: OwnedFd, nameservers: &[IpAddr]) -> io::Result<DnsClient> {
        let socket = UdpSocket::from(socket);
        let v6 = socket.local_addr()?.is_ipv6();
        Ok(DnsClient {
            servers: server_addrs(nameservers, v6),
            socket,
            timeout: QUERY_TIMEOUT,
        })
    }

    /// Ask `server` for A and AAAA at once; `None` if it did not answer both.
    fn ask(&self, server: SocketAddr, host: &str) -> io::Result<Option<Vec<IpAddr>>> {
        let ids = [OsRng.next_u32() as u16, OsRng.next_u32() as u16];
        let qtypes = [TYPE_A, TYPE_AAAA];
        for (id, qtype) in ids.iter().zip(qtypes) {
            let query = build_query(*id, host, qtype).ok_or(io::ErrorKind::InvalidInput)?;
            self.socket.send_to(&query, server)?;
        }
        let deadline = Instant::now() + self.timeout;
        let mut answers: [Option<Vec<IpAddr>>; 2] = [None, None];
        let mut buf = [0u8; 1500];
        while answers.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if crate::dataplane::canonical(from) != crate::dataplane::canonical(server) {
                continue;
            }
            for (k, (id, qtype)) in ids.iter().zip(qtypes).enumerate() {
                if answers[k].is_none() {
                    if let Some(addrs) = parse_answer(&buf[..n], *id, host, qtype) {
                        answers[k] = Some(addrs);
                    }
                }
            }
        }
        Ok(Some(answers.into_iter().flatten().flatten().collect()))
    }
}

impl Resolver for DnsClient {
    fn resolve(&mut self, host: &str) -> io::Result<Vec<IpAddr>> {
        let mut last = io::Error::new(io::ErrorKind::TimedOut, "no nameserver answered");
        for &server in &self.servers {
            match self.ask(server, host) {
                Ok(Some(addrs)) => return Ok(addrs),
                Ok(None) => {}
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn use_nameservers(&mut self, nameservers: &[IpAddr]) {
        if let Ok(local) = self.socket.local_addr() {
            self.servers = server_addrs(nameservers, local.is_ipv6());
        }
    }
}

/// A DNS query for `name` (recursion desired), or `None` for a name that cannot be
/// encoded.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(name, &mut q)?;
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(q)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(())
}

/// The addresses of type `qtype` in the answer to query `id` for `name`; `None` if
/// `msg` is not that answer or reports a failure (NXDOMAIN is an empty answer).
pub fn parse_answer(msg: &[u8], id: u16, name: &str, qtype: u16) -> Option<Vec<IpAddr>> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    // The question must be ours, name compared case-insensitively.
    let mut want = Vec::new();
    encode_name(name, &mut want)?;
    if qd != 1 {
        return None;
    }
    let q_end = 12 + want.len();
    if !msg.get(12..q_end)?.eq_ignore_ascii_case(&want)
        || msg.get(q_end..q_end + 4)? != [qtype.to_be_bytes(), CLASS_IN.to_be_bytes()].concat()
    {
        return None;
    }
    match rcode {
        0 => {}
        3 => return Some(Vec::new()),
        _ => return None,
    }
    let mut at = q_end + 4;
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let rr = msg.get(at..at + 10)?;
        let (rtype, class) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[2], rr[3]]),
        );
        let len = usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        let data = msg.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        // CNAME records lead to the name the address records that follow are for.
        match (rtype, class, len) {
            (TYPE_A, CLASS_IN, 4) if qtype == TYPE_A => {
                addrs.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?));
            }
            (TYPE_AAAA, CLASS_IN, 16) if qtype == TYPE_AAAA => {
                addrs.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?));
            }
            _ => {}
        }
    }
    Some(addrs)
}

/// The offset after a (possibly compressed) name starting at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query` with the given records (type, data), and a CNAME first.
    fn reply(query: &[u8], rcode: u8, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | rcode;
        r[7] = (records.len() + 1) as u8;
        // CNAME: name pointer to the question, rdata "x" + pointer.
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 12]);
        for (t, data) in records {
            r.extend_from_slice(&[1, b'x', 0xc0, 12]);
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(data);
        }
        r
    }

    #[test]
    fn answers_are_parsed_and_checked() {
        let q = build_query(0x1234, "VPN.example.com.", TYPE_A).unwrap();
        let r = reply(
            &q,
            0,
            &[
                (TYPE_A, vec![192, 0, 2, 1]),
                (TYPE_AAAA, vec![0; 16]),
                (TYPE_A, vec![192, 0, 2, 2]),
            ],
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "vpn.example.com", TYPE_A),
            Some(vec![
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap()
            ])
        );
        assert_eq!(
            parse_answer(&r, 0x1235, "vpn.example.com", TYPE_A),
            None,
            "wrong id"
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "other.example.com", TYPE_A),
            None,
            "wrong name"
        );
        assert_eq!(
            parse_answer(&r, 0x1234, "vpn.example.com", TYPE_AAAA),
            None,
            "wrong type"
        );
        assert_eq!(
            parse_answer(&reply(&q, 3, &[]), 0x1234, "vpn.example.com", TYPE_A),
            Some(vec![])
        );
        assert_eq!(
            parse_answer(&reply(&q, 2, &[]), 0x1234, "vpn.example.com", TYPE_A),
            None
        );
        assert_eq!(
            parse_answer(&r[..r.len() - 2], 0x1234, "vpn.example.com", TYPE_A),
            None,
            "truncated"
        );
        assert_eq!(build_query(1, "a..b", TYPE_A), None);
    }

    /// The client against a tiny DNS server on loopback: the first server never
    /// answers, the second does.
    #[test]
    fn dns_client_asks_the_next_server_when_one_is_silent() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let q = &buf[..n];
                let qtype = u16::from_be_bytes([q[n - 4], q[n - 3]]);
                let data = if qtype == TYPE_A {
                    vec![192, 0, 2, 44]
                } else {
                    "2001:db8::44"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets()
                        .to_vec()
                };
                server
                    .send_to(&reply(q, 0, &[(qtype, data)]), from)
                    .unwrap();
            }
        });
        let socket = OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        let mut client = DnsClient::new(socket, &[]).unwrap();
        client.timeout = Duration::from_millis(300);
        client.servers = vec![silent.local_addr().unwrap(), server_addr];
        let mut got = client.resolve("vpn.example.com").unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                "192.0.2.44".parse::<IpAddr>().unwrap(),
                "2001:db8::44".parse().unwrap()
            ]
        );
    }
}
