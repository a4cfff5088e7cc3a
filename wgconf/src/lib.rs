//! Parse and render wg-quick style WireGuard configuration files.
//!
//! # Theory of operation
//!
//! [`parse`] takes the text of a file and returns a [`Config`] plus
//! [`Warning`]s, or every [`ParseError`] found. It does no I/O, no DNS and
//! reads no environment. It matches `wg setconf` (wireguard-tools
//! `src/config.c`) and wg-quick (`parse_options` in `src/wg-quick/linux.bash`)
//! in these stages:
//!
//! 1. **Lines.** A leading UTF-8 BOM is dropped; lines end at `\n`, with an
//!    optional `\r` before it. Line numbers count from 1.
//! 2. **Comments and whitespace.** Everything from the first `#` is a
//!    comment. Whitespace (C `isspace`) is insignificant in headers and key
//!    names, which are case-insensitive.
//! 3. **Classification.** A blank line is skipped; a line starting with `[`
//!    must be `[Interface]` or `[Peer]`; anything else must be `Key = Value`.
//! 4. **Value extraction**, three ways, because wg-quick handles some keys
//!    itself and hands the rest to `wg`:
//!    - `wg` keys (`PrivateKey`, `ListenPort`, `FwMark`, all `[Peer]` keys):
//!      every whitespace character is removed, as config.c does.
//!    - wg-quick keys (`Address`, `DNS`, `MTU`, `Table`, `SaveConfig`):
//!      trimmed; lists split on commas and whitespace.
//!    - hooks (`PreUp`, `PostUp`, `PreDown`, `PostDown`): the raw text after
//!      the first `=`, trimmed, *including* any `#` — wg-quick reads hooks
//!      from the unstripped line.
//! 5. **Per-key checks** (`values.rs`, `interface.rs`, `peer.rs`). Each
//!    error is recorded with its line and parsing goes on, so one pass
//!    reports everything. Values are echoed escaped; key values never are.
//! 6. **Cross-checks** at the end (`check.rs`): an `[Interface]` exists and
//!    has a `PrivateKey` and an `Address`; each `[Peer]` has a `PublicKey`.
//!    These errors carry the line of the section header.
//! 7. **Peers as `wg setconf` leaves them** (`merge.rs`): sections with the
//!    same `PublicKey` set one peer in file order (each section's AllowedIPs
//!    replace the earlier ones), a prefix listed under several peers belongs
//!    to the last, host bits are cleared. `show`, `status` and the data
//!    plane all use this one result; warnings name the lines involved.
//! 8. **Warnings** for what is accepted but not acted on: wg-wrap runs
//!    programs in a private network namespace and never touches the host's
//!    routing, firewall or DNS, so `FwMark`, `Table`, `SaveConfig` and the
//!    hooks are kept but ignored (hooks are never run; see [`Interface`]).
//!
//! [`render`] writes a [`Config`] back as canonical text: for any `Config`
//! that `parse` returned, `parse(&render(&c))` gives `c` again except for the
//! `line` fields. The fuzz target in `fuzz/` checks this on arbitrary input.
//!
//! Choices where the tools are loose or silent:
//! - `ListenPort = 0` (random port) is stored as `None`, like an absent one;
//!   `PersistentKeepalive` and `FwMark` treat `0` and `off` the same way.
//! - `MTU` must be 576..=65535; a warning notes values below 1280 when the
//!   interface has IPv6 addresses.
//! - Single-valued keys given twice: the later value wins, with a warning.
//! - Values `wg` accepts only through `getaddrinfo`, `inet_aton` or
//!   `htons` are refused: ports above 65535 (they wrap), with a sign or
//!   named after a service, endpoint port 0, IPv4 endpoints in legacy forms
//!   (`1.2.3`, `01.2.3.4`, `0x7f.1`, `3221225985`) or in brackets. The
//!   differential test `tests/wg_semantics.rs` lists and checks them.
//! - Unbracketed IPv6 endpoints (`2001:db8::1:51820`) are split at the last
//!   colon as `wg` does, with a warning. Host-name endpoints are kept
//!   unresolved.
//! - `Address =` and `DNS =` with nothing after them are no-ops (wg-quick),
//!   other empty values are errors (`wg`).

#![forbid(unsafe_code)]

mod check;
mod config;
mod endpoint;
mod error;
mod interface;
mod key;
mod merge;
mod net;
mod parse;
mod peer;
mod render;
#[cfg(test)]
mod roundtrip;
#[cfg(test)]
mod testutil;
mod values;

pub use config::{Config, Interface, Parsed, Peer, Table};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{ErrorKind, ParseError, ParseErrors, Section, ValueError, Warning};
pub use key::{Key, KeyError};
pub use net::{IpNet, NetError};
pub use parse::parse;
pub use render::render;
