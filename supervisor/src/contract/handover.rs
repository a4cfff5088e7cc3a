//! What the CLI hands a new supervisor: the inherited descriptors ([`Args`]) and the
//! endpoint re-resolution [`Handover`] text, which a `reload` carries too.

use base64::Engine;
use std::fmt;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

/// Takes ownership of a descriptor inherited from the CLI (see [`Args`]).
pub use crate::sys::take_inherited_fd;

/// What the CLI hands over, all as inherited descriptors.
pub struct Args {
    /// A sealed memfd with the profile rendered by wgconf, endpoints already resolved.
    pub config: OwnedFd,
    /// The UDP socket, opened on the host before isolation.
    pub udp: OwnedFd,
    /// Write end of the readiness pipe: "ready\n" followed by zero or more
    /// "warning: …\n" lines, or "error: …\n"; then closed.
    /// Absent in the foreground (`up --foreground`), where errors go to stderr.
    pub ready: Option<OwnedFd>,
    /// The profile lock, held by the CLI that started us in the foreground; released
    /// once the session is usable (so no other command can start a second one).
    pub lock: Option<OwnedFd>,
    /// The runtime `profiles/` directory.
    pub profiles: OwnedFd,
    /// The listening control socket, an abstract unix socket the CLI bound in the
    /// host's network namespace (out of reach of wrapped programs).
    pub control: OwnedFd,
    /// The id in the control socket's name, recorded in `state` for the CLI.
    pub control_id: u64,
    pub profile: String,
    /// `up --foreground` under systemd: `$NOTIFY_SOCKET`, connected on the host.
    pub notify: Option<OwnedFd>,
    /// Host listeners for `up --foreground -p`, published for the whole session
    /// (other commands hand theirs over the control socket once the session runs).
    pub published: Vec<(crate::contract::publish::PublishSpec, OwnedFd)>,
}

/// `--publish-fd FD=SPEC`: an inherited listener and the `-p` spec it is for.
pub fn parse_publish_fd(
    text: &str,
) -> Result<(std::os::fd::RawFd, crate::contract::publish::PublishSpec), String> {
    let (fd, spec) = text.split_once('=').ok_or("expected FD=SPEC")?;
    let fd = fd
        .parse()
        .map_err(|_| format!("{fd:?} is not a descriptor number"))?;
    Ok((fd, spec.parse().map_err(|e| format!("{e}"))?))
}

/// A peer whose Endpoint was a hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEndpoint {
    pub public_key: [u8; 32],
    pub host: String,
    pub port: u16,
}

/// What the CLI hands over, as text: one `nameserver ADDRESS` line per host
/// nameserver, one `endpoint PUBLIC_KEY_BASE64 HOST PORT` line per hostname endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    pub nameservers: Vec<IpAddr>,
    pub endpoints: Vec<NamedEndpoint>,
}

/// A line of a [`Handover`] text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverError {
    pub line: usize,
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "endpoint re-resolution handover, line {}: not understood",
            self.line
        )
    }
}

impl std::error::Error for HandoverError {}

impl Handover {
    /// What the CLI needs to hand over for `config` (call it before replacing the
    /// hostnames with addresses), with the nameservers of the host's resolv.conf.
    pub fn for_profile(config: &wgconf::Config, host_resolv_conf: &str) -> Handover {
        let endpoints = config
            .peers
            .iter()
            .filter_map(|p| match &p.endpoint {
                Some(wgconf::Endpoint::Host { host, port }) => Some(NamedEndpoint {
                    public_key: *p.public_key.as_bytes(),
                    host: host.clone(),
                    port: *port,
                }),
                _ => None,
            })
            .collect();
        Handover {
            nameservers: nameservers(host_resolv_conf),
            endpoints,
        }
    }

    pub fn render(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut text = String::new();
        for ns in &self.nameservers {
            text.push_str(&format!("nameserver {ns}\n"));
        }
        for e in &self.endpoints {
            text.push_str(&format!(
                "endpoint {} {} {}\n",
                b64.encode(e.public_key),
                e.host,
                e.port
            ));
        }
        text
    }

    pub fn parse(text: &str) -> Result<Handover, HandoverError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut h = Handover::default();
        for (n, line) in text.lines().enumerate() {
            let err = HandoverError { line: n + 1 };
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["nameserver", addr] => h.nameservers.push(addr.parse().map_err(|_| err)?),
                ["endpoint", key, host, port] => {
                    let key = b64
                        .decode(key)
                        .ok()
                        .and_then(|k| <[u8; 32]>::try_from(k).ok());
                    let (Some(public_key), Ok(port)) = (key, port.parse()) else {
                        return Err(err);
                    };
                    h.endpoints.push(NamedEndpoint {
                        public_key,
                        host: (*host).to_owned(),
                        port,
                    });
                }
                _ => return Err(err),
            }
        }
        Ok(h)
    }
}
/// The `nameserver` entries of a resolv.conf text, in order; an entry that is not an
/// IP address (after dropping an IPv6 `%scope`) is returned as its raw text.
pub fn host_nameservers(text: &str) -> Vec<Result<IpAddr, String>> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next().unwrap_or(""))
        })
        .map(|raw| {
            let addr = raw.split('%').next().unwrap_or(raw);
            addr.parse().map_err(|_| raw.to_owned())
        })
        .collect()
}

/// The `nameserver` addresses of a resolv.conf text (scope suffixes like `%eth0`
/// dropped, entries that are not addresses skipped), in order.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    host_nameservers(resolv_conf)
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// systemd's readiness protocol for `up --foreground` (see `session/notify.rs` for why the
/// CLI, not the supervisor, connects the socket).
/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A datagram socket connected to `addr`, a `$NOTIFY_SOCKET` value: a path, or an
/// abstract name written with a leading `@`. Close-on-exec; the CLI clears that for
/// the one exec that hands it to the supervisor.
pub fn connect_notify_socket(addr: &std::ffi::OsStr) -> std::io::Result<OwnedFd> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = addr.as_bytes();
    let socket = UnixDatagram::unbound()?;
    match bytes.first() {
        Some(b'/') => socket.connect(std::path::Path::new(addr))?,
        Some(b'@') => socket.connect_addr(&SocketAddr::from_abstract_name(&bytes[1..])?)?,
        // systemd >= 254 may also hand out `vsock:CID:PORT`, meant for VMs.
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an absolute path or an @abstract socket name",
            ))
        }
    }
    Ok(OwnedFd::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(k: u8, host: &str) -> NamedEndpoint {
        NamedEndpoint {
            public_key: [k; 32],
            host: host.into(),
            port: 51820,
        }
    }

    #[test]
    fn handover_round_trips_and_reads_resolv_conf() {
        let text = "# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch x\nnameserver bogus\n";
        let h = Handover {
            nameservers: nameservers(text),
            endpoints: vec![named(7, "vpn.example.com")],
        };
        assert_eq!(
            h.nameservers,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(Handover::parse(&h.render()).unwrap(), h);
        assert_eq!(
            Handover::parse("nameserver 1.2.3.4\nbogus line\n"),
            Err(HandoverError { line: 2 })
        );
        let config = wgconf::parse(
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.9.0.2/24\n\
             [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.0.0.0/8\nEndpoint = vpn.example.com:443\n\
             [Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.1.0.0/16\nEndpoint = 192.0.2.1:51820\n",
        )
        .unwrap()
        .config;
        let h = Handover::for_profile(&config, "nameserver 10.0.0.53\n");
        assert_eq!(h.endpoints.len(), 1);
        assert_eq!(
            (h.endpoints[0].host.as_str(), h.endpoints[0].port),
            ("vpn.example.com", 443)
        );
        assert_eq!(h.nameservers, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn nameserver_parsing() {
        let text = "; comment\n# nameserver 1.1.1.1\nnameserver 10.0.0.1\n  nameserver\tfe80::1%eth0  \nnameserverx 9.9.9.9\nnameserver bogus\n";
        assert_eq!(
            host_nameservers(text),
            [
                Ok("10.0.0.1".parse().unwrap()),
                Ok("fe80::1".parse().unwrap()),
                Err("bogus".to_owned())
            ]
        );
    }
}
