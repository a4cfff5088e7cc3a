//! What the peer is told (`PeerConfig`) and what its client needs to know
//! about it (`ClientSide`), plus the throw-away demo setup.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::keys::{generate_keypair, public_key, to_base64};

/// Everything a [`VirtualPeer`](crate::VirtualPeer) needs.
#[derive(Clone)]
pub struct PeerConfig {
    /// This peer's static secret.
    pub private_key: [u8; 32],
    /// The one client allowed (the wg-wrap side).
    pub client_public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    /// This peer's IPv4 tunnel address and the prefix of its subnet, e.g. 10.77.0.1/24.
    pub tunnel_v4: Option<(Ipv4Addr, u8)>,
    /// This peer's IPv6 tunnel address and prefix, e.g. fd77::1/64.
    pub tunnel_v6: Option<(Ipv6Addr, u8)>,
    /// Names answered by the DNS server on port 53 (A for IPv4, AAAA for IPv6
    /// entries; a name may appear several times).
    pub dns_names: Vec<(String, IpAddr)>,
    /// Seconds between keepalives sent to the client, as WireGuard's PersistentKeepalive.
    pub persistent_keepalive: Option<u16>,
}

/// Hand-written so that `{:?}` never prints key material.
impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &to_base64(&public_key(&self.private_key)))
            .field("client_public_key", &to_base64(&self.client_public_key))
            .field("preshared_key", &self.preshared_key.map(|_| "(set)"))
            .field("tunnel_v4", &self.tunnel_v4)
            .field("tunnel_v6", &self.tunnel_v6)
            .field("dns_names", &self.dns_names)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .finish()
    }
}

/// Why a [`PeerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Neither `tunnel_v4` nor `tunnel_v6` is set: the peer would have nothing to serve on.
    NoTunnelAddress,
    /// A tunnel prefix longer than the address (over 32 for IPv4, 128 for IPv6).
    InvalidPrefix { addr: IpAddr, prefix: u8 },
    /// A tunnel address that cannot be an interface's own unicast address.
    InvalidTunnelAddress(IpAddr),
    /// A DNS name that cannot be encoded (empty label, label over 63 bytes,
    /// name over 253 bytes, or a byte outside printable ASCII).
    InvalidDnsName(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoTunnelAddress => f.write_str("no tunnel address (IPv4 or IPv6) given"),
            ConfigError::InvalidPrefix { addr, prefix } => {
                write!(
                    f,
                    "invalid prefix length /{prefix} for tunnel address {addr}"
                )
            }
            ConfigError::InvalidTunnelAddress(addr) => {
                write!(f, "{addr} cannot be a tunnel address")
            }
            ConfigError::InvalidDnsName(name) => {
                write!(f, "invalid DNS name {:?}", name.escape_debug().to_string())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl PeerConfig {
    /// Throw-away demo setup: fresh random keys for both sides, 10.77.0.1/24 +
    /// fd77::1/64, DNS name "peer.wgwrap.test" -> both addresses.
    pub fn demo() -> (PeerConfig, ClientSide) {
        let (peer_private, peer_public) = generate_keypair();
        let (client_private, client_public) = generate_keypair();
        let peer_v4 = Ipv4Addr::new(10, 77, 0, 1);
        let peer_v6 = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
        let config = PeerConfig {
            private_key: peer_private,
            client_public_key: client_public,
            preshared_key: None,
            tunnel_v4: Some((peer_v4, 24)),
            tunnel_v6: Some((peer_v6, 64)),
            dns_names: vec![
                (DEMO_DNS_NAME.to_owned(), IpAddr::V4(peer_v4)),
                (DEMO_DNS_NAME.to_owned(), IpAddr::V6(peer_v6)),
            ],
            persistent_keepalive: None,
        };
        let client = ClientSide {
            private_key: client_private,
            public_key: client_public,
            peer_public_key: peer_public,
            preshared_key: None,
            address_v4: Some((Ipv4Addr::new(10, 77, 0, 2), 24)),
            address_v6: Some((Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2), 64)),
            dns: vec![IpAddr::V4(peer_v4), IpAddr::V6(peer_v6)],
        };
        (config, client)
    }

    /// Check the config the way [`VirtualPeer::start`](crate::VirtualPeer::start) does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tunnel_v4.is_none() && self.tunnel_v6.is_none() {
            return Err(ConfigError::NoTunnelAddress);
        }
        if let Some((addr, prefix)) = self.tunnel_v4 {
            if prefix > 32 {
                return Err(ConfigError::InvalidPrefix {
                    addr: addr.into(),
                    prefix,
                });
            }
            if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
                return Err(ConfigError::InvalidTunnelAddress(addr.into()));
            }
        }
        if let Some((addr, prefix)) = self.tunnel_v6 {
            if prefix > 128 {
                return Err(ConfigError::InvalidPrefix {
                    addr: addr.into(),
                    prefix,
                });
            }
            if addr.is_unspecified() || addr.is_multicast() {
                return Err(ConfigError::InvalidTunnelAddress(addr.into()));
            }
        }
        for (name, _) in &self.dns_names {
            if crate::dns::encode_name(name).is_none() {
                return Err(ConfigError::InvalidDnsName(name.clone()));
            }
        }
        Ok(())
    }

    /// The peer's tunnel addresses, IPv4 first.
    pub fn tunnel_addrs(&self) -> Vec<IpAddr> {
        let v4 = self.tunnel_v4.map(|(a, _)| IpAddr::V4(a));
        let v6 = self.tunnel_v6.map(|(a, _)| IpAddr::V6(a));
        v4.into_iter().chain(v6).collect()
    }
}

/// The name [`PeerConfig::demo`] serves over DNS.
pub const DEMO_DNS_NAME: &str = "peer.wgwrap.test";

/// What the wg-wrap side needs to talk to this peer.
#[derive(Clone)]
pub struct ClientSide {
    pub private_key: [u8; 32],
    pub public_key: [u8; 32],
    pub peer_public_key: [u8; 32],
    /// Must equal the peer's `PeerConfig::preshared_key`.
    pub preshared_key: Option<[u8; 32]>,
    /// e.g. 10.77.0.2/24
    pub address_v4: Option<(Ipv4Addr, u8)>,
    /// e.g. fd77::2/64
    pub address_v6: Option<(Ipv6Addr, u8)>,
    /// The peer's tunnel addresses, where its DNS server listens.
    pub dns: Vec<IpAddr>,
}

/// Hand-written so that `{:?}` never prints the private key.
impl fmt::Debug for ClientSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSide")
            .field("public_key", &to_base64(&self.public_key))
            .field("peer_public_key", &to_base64(&self.peer_public_key))
            .field("preshared_key", &self.preshared_key.map(|_| "(set)"))
            .field("address_v4", &self.address_v4)
            .field("address_v6", &self.address_v6)
            .field("dns", &self.dns)
            .finish()
    }
}

impl ClientSide {
    /// A wg-quick .conf text for the client with `Endpoint = endpoint`
    /// (AllowedIPs = the peer's tunnel subnets, which are the client's own
    /// address prefixes: both sides share one subnet). It contains the
    /// client's private key: write it to a file only the user can read.
    pub fn wg_quick_conf(&self, endpoint: SocketAddr) -> String {
        let join = |items: Vec<String>| items.join(", ");
        let addresses: Vec<String> = self
            .address_v4
            .map(|(a, p)| format!("{a}/{p}"))
            .into_iter()
            .chain(self.address_v6.map(|(a, p)| format!("{a}/{p}")))
            .collect();
        let mut text = String::new();
        // `write!` into a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(text, "[Interface]");
        let _ = writeln!(text, "PrivateKey = {}", to_base64(&self.private_key));
        if !addresses.is_empty() {
            let _ = writeln!(text, "Address = {}", join(addresses));
        }
        if !self.dns.is_empty() {
            let _ = writeln!(
                text,
                "DNS = {}",
                join(self.dns.iter().map(|a| a.to_string()).collect())
            );
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "[Peer]");
        let _ = writeln!(text, "PublicKey = {}", to_base64(&self.peer_public_key));
        if let Some(psk) = &self.preshared_key {
            let _ = writeln!(text, "PresharedKey = {}", to_base64(psk));
        }
        let allowed: Vec<String> = self
            .address_v4
            .map(|(a, p)| (IpAddr::V4(a), p))
            .into_iter()
            .chain(self.address_v6.map(|(a, p)| (IpAddr::V6(a), p)))
            .map(|(a, p)| format!("{}/{p}", network_of(a, p)))
            .collect();
        let _ = writeln!(text, "AllowedIPs = {}", join(allowed));
        // SocketAddr's Display brackets IPv6 hosts, as wg-quick expects.
        let _ = writeln!(text, "Endpoint = {endpoint}");
        text
    }
}

/// The network address of `addr/prefix` (host bits cleared).
pub fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_sides_match() {
        let (peer, client) = PeerConfig::demo();
        peer.validate().unwrap();
        assert_eq!(public_key(&peer.private_key), client.peer_public_key);
        assert_eq!(peer.client_public_key, client.public_key);
        assert_eq!(public_key(&client.private_key), client.public_key);
        assert_eq!(client.dns, peer.tunnel_addrs());
    }

    #[test]
    fn wg_quick_conf_text() {
        let (_, client) = PeerConfig::demo();
        let text = client.wg_quick_conf("[::1]:51820".parse().unwrap());
        let expected = format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.77.0.2/24, fd77::2/64\nDNS = 10.77.0.1, fd77::1\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.77.0.0/24, fd77::/64\nEndpoint = [::1]:51820\n",
            to_base64(&client.private_key),
            to_base64(&client.peer_public_key)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn debug_hides_private_keys() {
        let (peer, client) = PeerConfig::demo();
        let shown = format!("{peer:?} {client:?}");
        assert!(!shown.contains(&to_base64(&peer.private_key)));
        assert!(!shown.contains(&to_base64(&client.private_key)));
    }

    #[test]
    fn validation_errors() {
        let (mut peer, _) = PeerConfig::demo();
        peer.tunnel_v4 = Some((Ipv4Addr::new(10, 0, 0, 1), 33));
        assert!(matches!(
            peer.validate(),
            Err(ConfigError::InvalidPrefix { prefix: 33, .. })
        ));
        peer.tunnel_v4 = None;
        peer.tunnel_v6 = None;
        assert_eq!(peer.validate(), Err(ConfigError::NoTunnelAddress));
        peer.tunnel_v4 = Some((Ipv4Addr::UNSPECIFIED, 24));
        assert!(matches!(
            peer.validate(),
            Err(ConfigError::InvalidTunnelAddress(_))
        ));
        peer.tunnel_v4 = Some((Ipv4Addr::new(10, 0, 0, 1), 24));
        peer.dns_names = vec![("bad..name".into(), Ipv4Addr::LOCALHOST.into())];
        assert!(matches!(
            peer.validate(),
            Err(ConfigError::InvalidDnsName(_))
        ));
    }

    #[test]
    fn network_masks() {
        assert_eq!(
            network_of("10.77.0.9".parse().unwrap(), 24),
            "10.77.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("10.77.0.9".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("10.77.0.9".parse().unwrap(), 32),
            "10.77.0.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("fd77::2".parse().unwrap(), 64),
            "fd77::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("fd77::2".parse().unwrap(), 128),
            "fd77::2".parse::<IpAddr>().unwrap()
        );
    }
}
