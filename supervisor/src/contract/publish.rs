//! Port publishing as the CLI and a supervisor agree on it: the `-p` spec
//! (`[HOST_IP:]HOST_PORT:NS_PORT[/tcp|/udp]`, the podman/docker form), the `publish`
//! control request that hands host listeners over with SCM_RIGHTS, and what `status`
//! reports about them.
//!
//! The request is one `sendmsg` on the control socket: the line `publish session` (the
//! ports live with the session: `up`) or `publish command` (they live as long as the
//! requesting process, whose PID the supervisor takes from SO_PEERCRED: `exec`), then a
//! JSON list of the specs, with one listening socket per spec attached in the same
//! order. The answer is a [`PublishReply`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Most ports one request may carry (well below the kernel's SCM_MAX_FD of 253).
pub const MAX_PORTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `-p` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishSpec {
    /// Where the listener is bound on the host (default 127.0.0.1).
    pub host_ip: IpAddr,
    pub host_port: u16,
    /// The port inside the namespace, reached on its loopback: 127.0.0.1, or ::1 when
    /// `host_ip` is IPv6.
    pub ns_port: u16,
    pub proto: Proto,
}

/// Why a `-p` argument was refused; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

const FORM: &str =
    "expected [HOST_IP:]HOST_PORT:NS_PORT[/tcp|/udp], e.g. 8080:80 or 0.0.0.0:5353:53/udp";

fn port(text: &str, what: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(0) => Err(SpecError(format!(
            "{what} 0 is not a port: give a port from 1 to 65535 ({FORM})"
        ))),
        Ok(p) => Ok(p),
        Err(_) => Err(SpecError(format!(
            "{what} {text:?} is not a port from 1 to 65535 ({FORM})"
        ))),
    }
}

impl FromStr for PublishSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<PublishSpec, SpecError> {
        let (rest, proto) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Proto::Tcp),
            Some((rest, "udp")) => (rest, Proto::Udp),
            Some((_, other)) => {
                return Err(SpecError(format!(
                    "unknown protocol {other:?}: use /tcp or /udp ({FORM})"
                )))
            }
            None => (s, Proto::Tcp),
        };
        let (host_ip, ports) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, ports) = v6.split_once("]:").ok_or_else(|| {
                SpecError(format!(
                    "unclosed IPv6 address: write it as [::1]:HOST_PORT:NS_PORT ({FORM})"
                ))
            })?;
            let ip: Ipv6Addr = addr
                .parse()
                .map_err(|_| SpecError(format!("{addr:?} is not an IPv6 address ({FORM})")))?;
            (IpAddr::V6(ip), ports)
        } else {
            match rest.matches(':').count() {
                1 => (IpAddr::V4(Ipv4Addr::LOCALHOST), rest),
                2 => {
                    let (addr, ports) = rest.split_once(':').unwrap_or_default();
                    let ip: Ipv4Addr = addr.parse().map_err(|_| {
                        SpecError(format!("{addr:?} is not an IPv4 address ({FORM})"))
                    })?;
                    (IpAddr::V4(ip), ports)
                }
                0 => {
                    return Err(SpecError(format!(
                        "both ports are needed: HOST_PORT:NS_PORT ({FORM})"
                    )))
                }
                _ => {
                    return Err(SpecError(format!(
                        "put an IPv6 HOST_IP in brackets, e.g. [::1]:8080:80 ({FORM})"
                    )))
                }
            }
        };
        let (host_port, ns_port) = ports.split_once(':').ok_or_else(|| {
            SpecError(format!("both ports are needed: HOST_PORT:NS_PORT ({FORM})"))
        })?;
        Ok(PublishSpec {
            host_ip,
            host_port: port(host_port, "HOST_PORT")?,
            ns_port: port(ns_port, "NS_PORT")?,
            proto,
        })
    }
}

impl fmt::Display for PublishSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(
            f,
            "{}:{}/{proto}",
            SocketAddr::new(self.host_ip, self.host_port),
            self.ns_port
        )
    }
}

impl PublishSpec {
    pub fn host_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }

    /// Where the supervisor connects inside the namespace.
    pub fn ns_addr(&self) -> SocketAddr {
        let lo = match self.host_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(lo, self.ns_port)
    }
}

impl Serialize for PublishSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublishSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublishSpec, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who a published port lives with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The session (`up`): until it ends.
    Session,
    /// The requesting process (`exec`): until it exits.
    Command,
}

impl Owner {
    pub fn word(self) -> &'static str {
        match self {
            Owner::Session => "session",
            Owner::Command => "command",
        }
    }

    pub fn from_word(word: &str) -> Option<Owner> {
        match word {
            "session" => Some(Owner::Session),
            "command" => Some(Owner::Command),
            _ => None,
        }
    }
}

/// The body of a `publish` request: the JSON list of specs, one per descriptor that
/// arrived with it (`descriptors` of them; `truncated`: the kernel cut some off).
pub(crate) fn parse_request_body(
    text: &str,
    descriptors: usize,
    truncated: bool,
) -> Result<Vec<PublishSpec>, String> {
    let specs: Vec<PublishSpec> =
        serde_json::from_str(text).map_err(|e| format!("bad publish request: {e}"))?;
    if truncated || specs.len() != descriptors {
        return Err(format!(
            "{} port(s) but {descriptors} descriptor(s) arrived (at most {MAX_PORTS} per request)",
            specs.len(),
        ));
    }
    Ok(specs)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReply {
    pub ok: bool,
    pub error: Option<String>,
}

/// A published port as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub spec: PublishSpec,
    /// The process it lives with (`exec -p`); `None`: the session (`up -p`).
    pub owner_pid: Option<u32>,
    /// Open TCP connections, or UDP flows (client addresses seen within the idle
    /// timeout).
    pub connections: u64,
    /// Connections (or flows) since it was published.
    pub total_connections: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PublishSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn specs_parse_like_podman() {
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let cases = [
            (
                "8080:80",
                lo4,
                8080,
                80,
                Proto::Tcp,
                "127.0.0.1:8080:80/tcp",
            ),
            (
                "8080:80/tcp",
                lo4,
                8080,
                80,
                Proto::Tcp,
                "127.0.0.1:8080:80/tcp",
            ),
            (
                "5353:53/udp",
                lo4,
                5353,
                53,
                Proto::Udp,
                "127.0.0.1:5353:53/udp",
            ),
            (
                "0.0.0.0:8080:80",
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                8080,
                80,
                Proto::Tcp,
                "0.0.0.0:8080:80/tcp",
            ),
            (
                "[::1]:8080:80",
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                8080,
                80,
                Proto::Tcp,
                "[::1]:8080:80/tcp",
            ),
            (
                "[::]:9000:9000/udp",
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                9000,
                9000,
                Proto::Udp,
                "[::]:9000:9000/udp",
            ),
        ];
        for (text, ip, hp, np, proto, shown) in cases {
            let s = spec(text);
            assert_eq!(
                (s.host_ip, s.host_port, s.ns_port, s.proto),
                (ip, hp, np, proto),
                "{text}"
            );
            assert_eq!(s.to_string(), shown);
            assert_eq!(spec(shown), s, "round trip of {shown}");
        }
        assert_eq!(spec("[::1]:8080:80").ns_addr(), "[::1]:80".parse().unwrap());
        assert_eq!(
            spec("0.0.0.0:8080:80").ns_addr(),
            "127.0.0.1:80".parse().unwrap()
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("8080", "both ports"),
            ("8080:0", "NS_PORT 0 is not a port"),
            ("0:80", "HOST_PORT 0 is not a port"),
            ("8080:70000", "NS_PORT \"70000\""),
            ("http:80", "HOST_PORT \"http\""),
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("localhost:8080:80", "\"localhost\" is not an IPv4 address"),
            ("::1:8080:80", "in brackets"),
            ("[::1:8080:80", "unclosed IPv6"),
            ("[nope]:8080:80", "not an IPv6 address"),
            ("", "both ports"),
            ("1.2.3.4:8080", "HOST_PORT \"1.2.3.4\""),
        ];
        for (text, want) in cases {
            let err = text.parse::<PublishSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains("HOST_PORT:NS_PORT"), "{text:?}: {err}");
        }
    }

    #[test]
    fn publish_request_bodies_are_checked_against_the_descriptors() {
        let body = r#"["8080:80","[::1]:5353:53/udp"]"#;
        assert_eq!(
            parse_request_body(body, 2, false),
            Ok(vec![spec("8080:80"), spec("[::1]:5353:53/udp")])
        );
        assert_eq!(parse_request_body("[]", 0, false), Ok(vec![]));
        assert_eq!(
            parse_request_body(body, 1, false),
            Err(format!(
                "2 port(s) but 1 descriptor(s) arrived (at most {MAX_PORTS} per request)"
            ))
        );
        assert_eq!(
            parse_request_body(body, 3, false),
            Err(format!(
                "2 port(s) but 3 descriptor(s) arrived (at most {MAX_PORTS} per request)"
            ))
        );
        // Cut-off descriptors fail the request even when the counts happen to match.
        assert_eq!(
            parse_request_body(body, 2, true),
            Err(format!(
                "2 port(s) but 2 descriptor(s) arrived (at most {MAX_PORTS} per request)"
            ))
        );
        for garbage in [
            "",
            "[",
            "{}",
            r#""8080:80""#,
            r#"["8080:0"]"#,
            r#"["8080:80/sctp"]"#,
            r#"[8080]"#,
            r#"["8080:80"] trailing"#,
            "\u{0}\u{ff}",
        ] {
            let err = parse_request_body(garbage, 1, false).unwrap_err();
            assert!(
                err.starts_with("bad publish request: "),
                "{garbage:?}: {err}"
            );
        }
        let err = parse_request_body(r#"["8080:0"]"#, 1, false).unwrap_err();
        assert!(err.contains("NS_PORT 0 is not a port"), "{err}");
    }

    #[test]
    fn status_round_trips_through_json() {
        let p = PublishedPort {
            spec: spec("[::1]:8080:80/udp"),
            owner_pid: Some(7),
            connections: 2,
            total_connections: 5,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"[::1]:8080:80/udp\""), "{json}");
        assert_eq!(serde_json::from_str::<PublishedPort>(&json).unwrap(), p);
    }
}
