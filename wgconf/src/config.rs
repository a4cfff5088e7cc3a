//! The parsed configuration: plain data with public fields.

use std::net::IpAddr;

use crate::endpoint::Endpoint;
use crate::error::Warning;
use crate::key::Key;
use crate::net::IpNet;

/// A whole configuration file: one interface and its peers, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub interface: Interface,
    pub peers: Vec<Peer>,
}

/// The `[Interface]` section.
///
/// Keys that only make sense for wg-quick on the host (`FwMark`, `Table`,
/// `SaveConfig` and the four hooks) are parsed and kept so that
/// [`render`](crate::render) reproduces them, but wg-wrap does not act on
/// them; [`parse`](crate::parse) warns about each one it finds.
///
/// Hook commands in particular are never run. They typically call `ip`,
/// `iptables` or `resolvectl` to change the host's routing or DNS, which is
/// exactly what wg-wrap exists to avoid, and running shell text from a
/// profile would make every profile a script.
#[derive(Clone, Debug, PartialEq)]
pub struct Interface {
    pub private_key: Key,
    /// The tunnel's own addresses (`Address`), host bits kept.
    pub addresses: Vec<IpNet>,
    /// `DNS` items that are IP addresses: the resolvers to use.
    pub dns: Vec<IpAddr>,
    /// `DNS` items that are not IP addresses: search domains, as wg-quick
    /// splits them.
    pub dns_search: Vec<String>,
    /// 576..=65535 when parsed; `None` means choose automatically.
    pub mtu: Option<u16>,
    /// `None` when absent or 0: both mean "pick a random port".
    pub listen_port: Option<u16>,
    /// `None` when absent, `off` or 0. Ignored by wg-wrap.
    pub fwmark: Option<u32>,
    /// Ignored by wg-wrap: routes always go in the private namespace.
    pub table: Table,
    /// Hook commands, raw text in file order. Never run by wg-wrap.
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
    /// Ignored by wg-wrap, which never writes the file.
    pub save_config: bool,
    /// Line of the (first) `[Interface]` header; 0 if built in code.
    pub line: usize,
}

/// wg-quick's `Table` setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Table {
    /// Absent or `auto`: the main table, plus policy routing for default
    /// routes.
    #[default]
    Auto,
    /// `off`: add no routes.
    Off,
    /// A table number or a name from `rt_tables`, as written.
    Custom(String),
}

/// A peer: what `wg setconf` makes of the `[Peer]` sections with its
/// `PublicKey` (usually one; stage 7 of the crate documentation says how
/// repeated ones combine).
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    /// The prefixes this peer owns, host bits cleared (wg warns about them
    /// and the device clears them), each once and in no other peer's list:
    /// a prefix listed under several peers belongs to the last one. In the
    /// order `wg showconf` lists them.
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<Endpoint>,
    /// Seconds; `None` when absent, `off` or 0.
    pub persistent_keepalive: Option<u16>,
    /// Line of the (first) `[Peer]` header with this key; 0 if built in code.
    pub line: usize,
}

/// The result of a successful [`parse`](crate::parse).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub config: Config,
    /// In line order. Returned rather than printed: the caller decides.
    pub warnings: Vec<Warning>,
}

impl Interface {
    /// An interface with only a private key, every list empty and every
    /// option unset.
    pub fn new(private_key: Key) -> Interface {
        Interface {
            private_key,
            addresses: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            mtu: None,
            listen_port: None,
            fwmark: None,
            table: Table::Auto,
            pre_up: Vec::new(),
            post_up: Vec::new(),
            pre_down: Vec::new(),
            post_down: Vec::new(),
            save_config: false,
            line: 0,
        }
    }
}

impl Peer {
    /// A peer with only a public key and every option unset.
    pub fn new(public_key: Key) -> Peer {
        Peer {
            public_key,
            preshared_key: None,
            allowed_ips: Vec::new(),
            endpoint: None,
            persistent_keepalive: None,
            line: 0,
        }
    }
}
