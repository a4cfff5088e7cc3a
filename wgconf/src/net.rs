//! `IpNet`: an address with a prefix length, as written in `Address` and
//! `AllowedIPs`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP address with a prefix length: `10.0.0.2/24`, `fd00::/64`.
///
/// The address keeps its host bits (an interface `Address` needs them);
/// [`IpNet::network`] clears them. The prefix is at most 32 for IPv4 and 128
/// for IPv6; no other invariant is enforced.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not an `IpNet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The part before `/` is neither an IPv4 nor an IPv6 address.
    InvalidAddress,
    /// The part after `/` is empty or not a decimal number.
    InvalidPrefix,
    /// The prefix is longer than the address (saturates at `u32::MAX`).
    PrefixTooLong { prefix: u32, max: u8 },
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, NetError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(NetError::PrefixTooLong {
                prefix: prefix.into(),
                max,
            });
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same prefix with the host bits zeroed: `10.0.0.2/24` ->
    /// `10.0.0.0/24`.
    pub fn network(&self) -> IpNet {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        };
        IpNet {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether `ip` is inside this network. An address of the other family
    /// never is (IPv4-mapped IPv6 addresses are not special-cased).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Parses a non-empty run of ASCII digits, saturating instead of overflowing.
/// Unlike `u32::from_str` this refuses a leading `+`, as wg's checks do.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

impl FromStr for IpNet {
    type Err = NetError;

    /// `addr` or `addr/prefix`; a bare address is a host route (/32 or
    /// /128), as in wireguard-tools' `parse_allowedips`.
    fn from_str(s: &str) -> Result<IpNet, NetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| NetError::InvalidAddress)?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let n = parse_decimal(p).ok_or(NetError::InvalidPrefix)?;
                match u8::try_from(n) {
                    Ok(n) if n <= max => n,
                    _ => {
                        return Err(NetError::PrefixTooLong {
                            prefix: u32::try_from(n).unwrap_or(u32::MAX),
                            max,
                        })
                    }
                }
            }
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::InvalidAddress => f.write_str("not an IP address"),
            NetError::InvalidPrefix => f.write_str("prefix length is not a number"),
            NetError::PrefixTooLong { prefix, max } => {
                write!(f, "prefix length {prefix} exceeds {max}")
            }
        }
    }
}

impl std::error::Error for NetError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let cases = [
            ("10.0.0.1/24", "10.0.0.1/24"),
            ("10.0.0.1", "10.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("::0/0", "::/0"),
            ("fd00::1", "fd00::1/128"),
            ("FD00::1/064", "fd00::1/64"),
            ("::ffff:1.2.3.4/128", "::ffff:1.2.3.4/128"),
        ];
        for (input, want) in cases {
            assert_eq!(net(input).to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_nets() {
        let cases = [
            ("", NetError::InvalidAddress),
            ("10.0.0/8", NetError::InvalidAddress),
            ("010.0.0.1/8", NetError::InvalidAddress),
            ("fe80::1%eth0", NetError::InvalidAddress),
            ("vpn.example.com/32", NetError::InvalidAddress),
            ("10.0.0.0/", NetError::InvalidPrefix),
            ("10.0.0.0/+8", NetError::InvalidPrefix),
            ("10.0.0.0/8/8", NetError::InvalidPrefix),
            ("10.0.0.0/-1", NetError::InvalidPrefix),
            (
                "10.0.0.0/33",
                NetError::PrefixTooLong {
                    prefix: 33,
                    max: 32,
                },
            ),
            (
                "::/129",
                NetError::PrefixTooLong {
                    prefix: 129,
                    max: 128,
                },
            ),
            (
                "::/300",
                NetError::PrefixTooLong {
                    prefix: 300,
                    max: 128,
                },
            ),
            (
                "::/99999999999999999999999",
                NetError::PrefixTooLong {
                    prefix: u32::MAX,
                    max: 128,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<IpNet>(), Err(want), "input {input:?}");
        }
        assert_eq!(
            NetError::PrefixTooLong {
                prefix: 33,
                max: 32
            }
            .to_string(),
            "prefix length 33 exceeds 32"
        );
    }

    #[test]
    fn new_validates_prefix() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(IpNet::new(v4, 32).unwrap().prefix(), 32);
        assert!(IpNet::new(v4, 33).is_err());
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(IpNet::new(v6, 128).is_ok());
        assert!(IpNet::new(v6, 129).is_err());
    }

    #[test]
    fn network_and_contains() {
        assert_eq!(net("10.1.2.3/8").network(), net("10.0.0.0/8"));
        assert_eq!(net("10.1.2.3/0").network(), net("0.0.0.0/0"));
        assert_eq!(net("10.1.2.3/32").network(), net("10.1.2.3/32"));
        assert_eq!(net("fd00::1:2/112").network(), net("fd00::1:0/112"));
        assert_eq!(net("fd00::1:2/96").network(), net("fd00::/96"));
        assert_eq!(net("fd00::1/0").network(), net("::/0"));

        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(!net("::/0").contains(ip("1.2.3.4")));
        assert!(net("fd00::/64").contains(ip("fd00::abcd")));
        assert!(!net("fd00::/64").contains(ip("fd00:0:0:1::1")));
        assert!(net("10.0.0.7/32").contains(ip("10.0.0.7")));
        assert!(!net("10.0.0.7/32").contains(ip("10.0.0.8")));
        assert!(net("10.0.0.0/8").is_ipv4());
        assert!(!net("::/0").is_ipv4());
    }
}
