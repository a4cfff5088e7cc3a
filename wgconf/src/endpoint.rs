//! `Endpoint`: where a peer is reached, as an address or an unresolved name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::net::parse_decimal;

/// A peer's `Endpoint`. Host names are kept as written: resolving them is
/// I/O, and belongs to whoever opens the socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `1.2.3.4:51820` or `[2001:db8::1]:51820`.
    Addr(SocketAddr),
    /// `vpn.example.com:51820`. `host` is a syntactically valid DNS name
    /// when the value came from [`Endpoint::from_str`].
    Host { host: String, port: u16 },
}

/// Why a string is not an `Endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointError {
    /// No `:port` after the host.
    MissingPort,
    /// Empty host before `:port`.
    MissingHost,
    /// The port is not a number from 1 to 65535.
    InvalidPort,
    /// `[` without a closing `]`.
    UnclosedBracket,
    /// Inside `[...]` there must be an IPv6 address.
    NotIpv6,
    /// `fe80::1%eth0`: zone indices name host interfaces, which do not exist
    /// inside wg-wrap's namespace.
    ZoneIndex,
    /// Not a dotted-quad IPv4 address, but a form `getaddrinfo` reads as
    /// one (`1.2.3` as 1.2.0.3, `0x7f.1` as 127.0.0.1; we refuse to guess),
    /// or a name whose last label is all digits.
    InvalidIpv4,
    /// Not a valid DNS name (letters, digits, `-`, `_`, dot-separated labels
    /// of 1-63 characters, at most 253 in all).
    InvalidHost,
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Addr(addr) => addr.port(),
            Endpoint::Host { port, .. } => *port,
        }
    }

    /// Whether the text was an IPv6 address without brackets, such as
    /// `2001:db8::1:51820`. wireguard-tools accepts this by splitting at the
    /// last colon, so we do too, but it reads ambiguously.
    pub(crate) fn is_unbracketed_ipv6(text: &str) -> bool {
        !text.starts_with('[') && text.matches(':').count() > 1
    }
}

fn parse_port(s: &str) -> Result<u16, EndpointError> {
    if s.is_empty() {
        return Err(EndpointError::MissingPort);
    }
    match parse_decimal(s).map(u16::try_from) {
        Some(Ok(port)) if port != 0 => Ok(port),
        _ => Err(EndpointError::InvalidPort),
    }
}

fn parse_ipv6(s: &str) -> Result<Ipv6Addr, EndpointError> {
    if s.contains('%') {
        return Err(EndpointError::ZoneIndex);
    }
    s.parse().map_err(|_| EndpointError::NotIpv6)
}

/// Whether `getaddrinfo` would read `host` as an IPv4 address in one of
/// `inet_aton`'s legacy forms (`1.2.3` is 1.2.0.3, `010.1` octal, `0x7f.1`
/// hex, `3221225985` one number) or, failing that, it is no host name either
/// because its last label is all digits (RFC 3696 section 2). `wg` would
/// silently connect to such an address; we refuse to guess.
fn looks_numeric(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let number = |part: &str| {
        let hex = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X"));
        match hex {
            Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
            None => !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    let last = name.rsplit('.').next().unwrap_or("");
    name.split('.').all(number) || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn is_valid_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// Splits like wireguard-tools' `parse_endpoint`: `[...]` brackets an
    /// IPv6 address, otherwise the port follows the last colon.
    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(EndpointError::UnclosedBracket)?;
            let port = after.strip_prefix(':').ok_or(EndpointError::MissingPort)?;
            let ip = parse_ipv6(host)?;
            let port = parse_port(port)?;
            return Ok(Endpoint::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
        }
        let (host, port) = s.rsplit_once(':').ok_or(EndpointError::MissingPort)?;
        let port = parse_port(port)?;
        if host.is_empty() {
            return Err(EndpointError::MissingHost);
        }
        if host.contains(':') {
            let ip = parse_ipv6(host)?;
            return Ok(Endpoint::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Endpoint::Addr(SocketAddr::new(IpAddr::V4(ip), port)));
        }
        if looks_numeric(host) {
            return Err(EndpointError::InvalidIpv4);
        }
        if !is_valid_host(host) {
            return Err(EndpointError::InvalidHost);
        }
        Ok(Endpoint::Host {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    /// The form `from_str` reads back: `1.2.3.4:51820`, `[::1]:51820`,
    /// `vpn.example.com:51820`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(SocketAddr::V4(a)) => write!(f, "{}:{}", a.ip(), a.port()),
            // Not `SocketAddrV6`'s Display, which would add a `%scope`.
            Endpoint::Addr(SocketAddr::V6(a)) => write!(f, "[{}]:{}", a.ip(), a.port()),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointError::MissingPort => "missing :port",
            EndpointError::MissingHost => "missing host before :port",
            EndpointError::InvalidPort => "port is not a number from 1 to 65535",
            EndpointError::UnclosedBracket => "missing ] after IPv6 address",
            EndpointError::NotIpv6 => "not an IPv6 address inside [ ]",
            EndpointError::ZoneIndex => "IPv6 zone index (%...) is not supported",
            EndpointError::InvalidIpv4 => "not a valid IPv4 address",
            EndpointError::InvalidHost => "not a valid IP address or host name",
        })
    }
}

impl std::error::Error for EndpointError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Endpoint {
        Endpoint::Addr(s.parse().unwrap())
    }

    fn host(h: &str, port: u16) -> Endpoint {
        Endpoint::Host {
            host: h.to_owned(),
            port,
        }
    }

    #[test]
    fn every_accepted_form() {
        let cases = [
            ("1.2.3.4:51820", addr("1.2.3.4:51820"), "1.2.3.4:51820"),
            ("[::1]:51820", addr("[::1]:51820"), "[::1]:51820"),
            (
                "[2001:DB8::1]:1",
                addr("[2001:db8::1]:1"),
                "[2001:db8::1]:1",
            ),
            (
                "[::ffff:1.2.3.4]:65535",
                addr("[::ffff:1.2.3.4]:65535"),
                "[::ffff:1.2.3.4]:65535",
            ),
            // wireguard-tools splits at the last colon when there are no brackets.
            (
                "2001:db8::1:51820",
                addr("[2001:db8::1]:51820"),
                "[2001:db8::1]:51820",
            ),
            (
                "vpn.example.com:51820",
                host("vpn.example.com", 51820),
                "vpn.example.com:51820",
            ),
            (
                "VPN.Example.com.:51820",
                host("VPN.Example.com.", 51820),
                "VPN.Example.com.:51820",
            ),
            ("localhost:1", host("localhost", 1), "localhost:1"),
            (
                "se-got_wg-001:51820",
                host("se-got_wg-001", 51820),
                "se-got_wg-001:51820",
            ),
            (
                "1.2.3.4.nip.io:51820",
                host("1.2.3.4.nip.io", 51820),
                "1.2.3.4.nip.io:51820",
            ),
            ("1.2.3.4:051820", addr("1.2.3.4:51820"), "1.2.3.4:51820"),
        ];
        for (input, want, shown) in cases {
            let got: Endpoint = input.parse().unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got, want, "input {input:?}");
            assert_eq!(got.to_string(), shown, "input {input:?}");
            assert_eq!(
                shown.parse::<Endpoint>().unwrap(),
                want,
                "reparse {shown:?}"
            );
            assert_eq!(got.port(), want.port());
        }
    }

    #[test]
    fn rejected_forms() {
        use EndpointError::*;
        let long_label = format!("{}.com:1", "a".repeat(64));
        let long_name = format!("{}com:1", "abcdefgh.".repeat(29));
        let cases: Vec<(&str, EndpointError)> = vec![
            ("", MissingPort),
            ("1.2.3.4", MissingPort),
            ("1.2.3.4:", MissingPort),
            (":51820", MissingHost),
            ("1.2.3.4:0", InvalidPort),
            ("1.2.3.4:65536", InvalidPort),
            ("1.2.3.4:+1", InvalidPort),
            ("1.2.3.4:http", InvalidPort),
            ("[::1]", MissingPort),
            ("[::1]51820", MissingPort),
            ("[::1]:", MissingPort),
            ("[::1:51820", UnclosedBracket),
            ("[1.2.3.4]:51820", NotIpv6),
            ("[vpn.example.com]:51820", NotIpv6),
            ("[fe80::1%eth0]:51820", ZoneIndex),
            ("fe80::1%eth0:51820", ZoneIndex),
            ("2001:db8:::1:51820", NotIpv6),
            ("1.2.3:51820", InvalidIpv4),
            ("1.2.3.256:51820", InvalidIpv4),
            ("01.2.3.4:51820", InvalidIpv4),
            ("0x7f.1:1", InvalidIpv4),
            ("0X7F.0.0.1:1", InvalidIpv4),
            ("3221225985:1", InvalidIpv4),
            ("1.2.3.4.:1", InvalidIpv4),
            ("vpn.example.42:1", InvalidIpv4),
            ("vpn..example.com:51820", InvalidHost),
            ("vpn.example.com..:51820", InvalidHost),
            ("vpn example.com:51820", InvalidHost),
            ("vpn/example:51820", InvalidHost),
            ("vpn.exämple.com:51820", InvalidHost),
            (&long_label, InvalidHost),
            (&long_name, InvalidHost),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Endpoint>(), Err(want), "input {input:?}");
        }
    }
}
