//! `[Interface]` values: addresses and DNS as wg-quick splits them, the
//! numbers `wg` checks, and the wg-quick settings wg-wrap only warns about.

use std::net::IpAddr;

use crate::config::{Interface, Table};
use crate::endpoint::is_valid_host;
use crate::error::{ErrorKind, ValueError};
use crate::net::parse_decimal;
use crate::parse::{is_space, Draft, Field};
use crate::values::{invalid, key, number, Findings};

/// wg-quick list items: bash word-splits `${value//,/ }`, so commas and
/// whitespace both separate and empty items vanish.
fn quick_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || is_space(c))
        .filter(|item| !item.is_empty())
}

/// `off`, decimal, or `0x` hex (lower-case `x` only, as config.c checks),
/// up to `u32::MAX`; 0 and `off` both mean no mark.
fn fwmark(value: &str) -> Result<Option<u32>, ErrorKind> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let n = match value.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() => hex.chars().try_fold(0u64, |n, c| {
            let digit = c.to_digit(16)?;
            Some(n.saturating_mul(16).saturating_add(u64::from(digit)))
        }),
        _ => parse_decimal(value),
    };
    match n.map(u32::try_from) {
        Some(Ok(0)) => Ok(None),
        Some(Ok(n)) => Ok(Some(n)),
        _ => Err(invalid(Field::FwMark, value, ValueError::FwMark)),
    }
}

fn table(value: &str) -> Result<Table, ErrorKind> {
    if value.eq_ignore_ascii_case("auto") {
        Ok(Table::Auto)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(Table::Off)
    } else if value.chars().any(|c| c.is_control() || is_space(c)) {
        Err(invalid(Field::Table, value, ValueError::Table))
    } else {
        Ok(Table::Custom(value.to_owned()))
    }
}

/// wg-quick's `read_bool`, matched case-insensitively as `nocasematch` is on
/// while it runs.
fn boolean(field: Field, value: &str) -> Result<bool, ErrorKind> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(field, value, ValueError::Bool))
    }
}

enum DnsItem {
    Server(IpAddr),
    Search(String),
}

/// wg-quick's split: `^[0-9.]+$` or anything with a colon is a server,
/// anything else a search domain. Both are then checked properly.
fn dns_item(item: &str) -> Result<DnsItem, ErrorKind> {
    let looks_like_ip = item.contains(':') || item.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_like_ip {
        item.parse()
            .map(DnsItem::Server)
            .map_err(|_| invalid(Field::Dns, item, ValueError::DnsServer))
    } else if is_valid_host(item) {
        Ok(DnsItem::Search(item.to_owned()))
    } else {
        Err(invalid(Field::Dns, item, ValueError::SearchDomain))
    }
}

fn ignored(field: Field) -> String {
    match field {
        Field::FwMark => {
            "FwMark ignored: wg-wrap changes no host routing, so no mark is needed".to_owned()
        }
        Field::Table => {
            "Table ignored: wg-wrap always puts routes in the program's private network namespace"
                .to_owned()
        }
        Field::SaveConfig => {
            "SaveConfig ignored: wg-wrap never writes the configuration file".to_owned()
        }
        _ => format!(
            "{} not run: wg-wrap never runs hook commands from a profile",
            field.name()
        ),
    }
}

pub(crate) fn apply(draft: &mut Draft<Interface>, field: Field, value: &str, out: &mut Findings) {
    let iface = &mut draft.value;
    let mut check = |r: Result<(), ErrorKind>| {
        if let Err(e) = r {
            out.errors.push(e);
        }
    };
    match field {
        Field::PrivateKey => check(key(field, value).map(|k| draft.key = Some(k))),
        Field::Address => {
            for item in quick_items(value) {
                check(
                    item.parse()
                        .map(|net| iface.addresses.push(net))
                        .map_err(|e| invalid(field, item, ValueError::Net(e))),
                );
            }
        }
        Field::Dns => {
            for item in quick_items(value) {
                check(dns_item(item).map(|d| match d {
                    DnsItem::Server(ip) => iface.dns.push(ip),
                    DnsItem::Search(s) => iface.dns_search.push(s),
                }));
            }
        }
        // 576 is the smallest datagram every IPv4 host must accept
        // (RFC 791); wg-quick itself passes any value to `ip link`.
        Field::Mtu => check(number(field, value, 576, 65535).map(|n| iface.mtu = Some(n as u16))),
        // 0 asks the kernel for a random port, the same as no ListenPort.
        Field::ListenPort => check(
            number(field, value, 0, 65535)
                .map(|n| iface.listen_port = (n != 0).then_some(n as u16)),
        ),
        Field::FwMark => check(fwmark(value).map(|m| iface.fwmark = m)),
        Field::Table => check(table(value).map(|t| iface.table = t)),
        Field::SaveConfig => check(boolean(field, value).map(|b| iface.save_config = b)),
        Field::PreUp => iface.pre_up.push(value.to_owned()),
        Field::PostUp => iface.post_up.push(value.to_owned()),
        Field::PreDown => iface.pre_down.push(value.to_owned()),
        Field::PostDown => iface.post_down.push(value.to_owned()),
        Field::PublicKey
        | Field::PresharedKey
        | Field::AllowedIps
        | Field::Endpoint
        | Field::PersistentKeepalive => {
            unreachable!("Parser::line routes [Peer] keys to peer::apply")
        }
    }
    let ignored_setting = match field {
        Field::FwMark => iface.fwmark.is_some(),
        Field::Table => iface.table != Table::Auto,
        Field::SaveConfig => iface.save_config,
        Field::PreUp | Field::PostUp | Field::PreDown | Field::PostDown => true,
        _ => false,
    };
    if ignored_setting && out.errors.is_empty() {
        out.warnings.push(ignored(field));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{iface, rejects, run, warnings, PRIV, PUB1};

    #[test]
    fn private_key() {
        let k = iface("").unwrap().config.interface.private_key;
        assert_eq!(k.to_base64(), PRIV);
        rejects(
            iface,
            4,
            &[
                (
                    "PrivateKey = abc",
                    "invalid PrivateKey: not 32 bytes of base64 (expected 44 characters, found 3)",
                ),
                (
                    "PrivateKey = H2sTECwLcPPnglErrs7EjLxIs3y5WKZuB85YYONIzPQA",
                    "invalid PrivateKey: not 32 bytes of base64",
                ),
                (
                    "PrivateKey = H2sTECwLcPPnglErrs7EjLxIs3y5WKZuB85YYONIzPR=",
                    "invalid PrivateKey: not 32 bytes of base64",
                ),
                ("PrivateKey =", "missing value for PrivateKey"),
            ],
        );
    }

    #[test]
    fn address() {
        let good: &[(&str, &[&str])] = &[
            ("Address = 10.0.0.2/24", &["10.0.0.2/24"]),
            ("Address = 10.0.0.2", &["10.0.0.2/32"]),
            ("Address = fd00::2", &["fd00::2/128"]),
            (
                "Address = 10.0.0.2/24,fd00::2/64",
                &["10.0.0.2/24", "fd00::2/64"],
            ),
            // wg-quick word-splits, so spaces separate too.
            (
                "Address = 10.0.0.2/24 fd00::2/64",
                &["10.0.0.2/24", "fd00::2/64"],
            ),
            ("Address = 10.0.0.2/24, , ,", &["10.0.0.2/24"]),
            ("Address =", &[]),
        ];
        for (line, want) in good {
            let got = iface(line).unwrap().config.interface.addresses;
            let got: Vec<String> = got[1..].iter().map(|a| a.to_string()).collect();
            assert_eq!(got, *want, "line {line:?}");
        }
        rejects(
            iface,
            4,
            &[
                (
                    "Address = 10.0.0.2/33",
                    r#"invalid Address "10.0.0.2/33": prefix length 33 exceeds 32"#,
                ),
                (
                    "Address = fd00::2/129",
                    r#"invalid Address "fd00::2/129": prefix length 129 exceeds 128"#,
                ),
                (
                    "Address = 10.0.0/24",
                    r#"invalid Address "10.0.0/24": not an IP address"#,
                ),
                (
                    "Address = 10.0.0.2/",
                    r#"invalid Address "10.0.0.2/": prefix length is not a number"#,
                ),
            ],
        );
        // Word-splitting makes `10.0.0.2/ 24` two bad items, as in wg-quick.
        assert_eq!(
            iface("Address = 10.0.0.2/ 24").unwrap_err(),
            [
                r#"4: invalid Address "10.0.0.2/": prefix length is not a number"#,
                r#"4: invalid Address "24": not an IP address"#,
            ]
        );
    }

    #[test]
    fn dns() {
        let good: &[(&str, &[&str], &[&str])] = &[
            ("DNS = 10.64.0.1", &["10.64.0.1"], &[]),
            ("DNS = 1.1.1.1, 1.0.0.1", &["1.1.1.1", "1.0.0.1"], &[]),
            ("DNS = 2606:4700:4700::1111", &["2606:4700:4700::1111"], &[]),
            (
                "DNS = 10.0.0.1,,corp.example.com lan",
                &["10.0.0.1"],
                &["corp.example.com", "lan"],
            ),
            ("DNS =", &[], &[]),
        ];
        for (line, servers, search) in good {
            let i = iface(line).unwrap().config.interface;
            let got: Vec<String> = i.dns.iter().map(|d| d.to_string()).collect();
            assert_eq!(got, *servers, "line {line:?}");
            assert_eq!(i.dns_search, *search, "line {line:?}");
        }
        rejects(
            iface,
            4,
            &[
                (
                    "DNS = 1.2.3",
                    r#"invalid DNS "1.2.3": not a valid IP address"#,
                ),
                (
                    "DNS = 10.0.0.256",
                    r#"invalid DNS "10.0.0.256": not a valid IP address"#,
                ),
                (
                    "DNS = fe80::1%eth0",
                    r#"invalid DNS "fe80::1%eth0": not a valid IP address"#,
                ),
                (
                    "DNS = exa$mple.com",
                    r#"invalid DNS "exa$mple.com": neither an IP address nor a search domain"#,
                ),
                (
                    "DNS = a..b",
                    r#"invalid DNS "a..b": neither an IP address nor a search domain"#,
                ),
            ],
        );
    }

    #[test]
    fn mtu() {
        for (line, want) in [
            ("MTU = 576", 576),
            ("MTU = 1420", 1420),
            ("mtu=01420", 1420),
            ("MTU = 65535", 65535),
        ] {
            assert_eq!(
                iface(line).unwrap().config.interface.mtu,
                Some(want),
                "line {line:?}"
            );
        }
        assert_eq!(iface("").unwrap().config.interface.mtu, None);
        let range = "expected a number from 576 to 65535";
        rejects(
            iface,
            4,
            &[
                ("MTU = 575", &format!(r#"invalid MTU "575": {range}"#)),
                ("MTU = 65536", &format!(r#"invalid MTU "65536": {range}"#)),
                ("MTU = +1420", &format!(r#"invalid MTU "+1420": {range}"#)),
                ("MTU = 1420.0", &format!(r#"invalid MTU "1420.0": {range}"#)),
                ("MTU = auto", &format!(r#"invalid MTU "auto": {range}"#)),
                ("MTU = 14 20", &format!(r#"invalid MTU "14 20": {range}"#)),
                ("MTU =", "missing value for MTU"),
            ],
        );
    }

    #[test]
    fn listen_port() {
        for (line, want) in [
            ("ListenPort = 51820", Some(51820)),
            ("ListenPort = 1", Some(1)),
            ("ListenPort = 65535", Some(65535)),
            ("ListenPort = 0", None),
            ("ListenPort = 518 20", Some(51820)),
        ] {
            assert_eq!(
                iface(line).unwrap().config.interface.listen_port,
                want,
                "line {line:?}"
            );
        }
        let range = "expected a number from 0 to 65535";
        rejects(
            iface,
            4,
            &[
                (
                    "ListenPort = 65536",
                    &format!(r#"invalid ListenPort "65536": {range}"#),
                ),
                (
                    "ListenPort = -1",
                    &format!(r#"invalid ListenPort "-1": {range}"#),
                ),
                // wg resolves service names with getaddrinfo; we do no lookups.
                (
                    "ListenPort = wireguard",
                    &format!(r#"invalid ListenPort "wireguard": {range}"#),
                ),
            ],
        );
    }

    #[test]
    fn fwmark() {
        for (line, want) in [
            ("FwMark = off", None),
            ("FwMark = OFF", None),
            ("FwMark = 0", None),
            ("FwMark = 0x0", None),
            ("FwMark = 1234", Some(1234)),
            ("FwMark = 0x4d2", Some(1234)),
            ("FwMark = 0x4D2", Some(1234)),
            ("FwMark = 0xffffffff", Some(u32::MAX)),
            ("FwMark = 4294967295", Some(u32::MAX)),
        ] {
            assert_eq!(
                iface(line).unwrap().config.interface.fwmark,
                want,
                "line {line:?}"
            );
        }
        let why = "expected off or a number from 0 to 0xffffffff";
        rejects(
            iface,
            4,
            &[
                ("FwMark = 0X10", &format!(r#"invalid FwMark "0X10": {why}"#)),
                ("FwMark = 0x", &format!(r#"invalid FwMark "0x": {why}"#)),
                ("FwMark = 0xg", &format!(r#"invalid FwMark "0xg": {why}"#)),
                (
                    "FwMark = 4294967296",
                    &format!(r#"invalid FwMark "4294967296": {why}"#),
                ),
                (
                    "FwMark = 0x100000000",
                    &format!(r#"invalid FwMark "0x100000000": {why}"#),
                ),
                ("FwMark = -1", &format!(r#"invalid FwMark "-1": {why}"#)),
                ("FwMark = on", &format!(r#"invalid FwMark "on": {why}"#)),
            ],
        );
    }

    #[test]
    fn table() {
        for (line, want) in [
            ("Table = auto", Table::Auto),
            ("Table = Auto", Table::Auto),
            ("Table = off", Table::Off),
            ("Table = 1234", Table::Custom("1234".into())),
            ("Table = main", Table::Custom("main".into())),
        ] {
            assert_eq!(
                iface(line).unwrap().config.interface.table,
                want,
                "line {line:?}"
            );
        }
        let why = "expected off, auto, or a table number or name without spaces";
        rejects(
            iface,
            4,
            &[
                (
                    "Table = two words",
                    &format!(r#"invalid Table "two words": {why}"#),
                ),
                (
                    "Table = a\x01b",
                    &format!(r#"invalid Table "a\u{{1}}b": {why}"#),
                ),
                ("Table =", "missing value for Table"),
            ],
        );
    }

    #[test]
    fn save_config() {
        for (line, want) in [
            ("SaveConfig = true", true),
            ("SaveConfig = TRUE", true),
            ("SaveConfig = false", false),
        ] {
            assert_eq!(
                iface(line).unwrap().config.interface.save_config,
                want,
                "line {line:?}"
            );
        }
        rejects(
            iface,
            4,
            &[
                (
                    "SaveConfig = yes",
                    r#"invalid SaveConfig "yes": expected true or false"#,
                ),
                (
                    "SaveConfig = 1",
                    r#"invalid SaveConfig "1": expected true or false"#,
                ),
            ],
        );
    }

    #[test]
    fn hooks_keep_raw_text() {
        let cases = [
            (
                "PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE",
                "iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE",
            ),
            // wg-quick reads hooks from the unstripped line: `#` stays.
            ("PostUp =   echo 'a  b' # not a comment  ", "echo 'a  b' # not a comment"),
            ("Post Up = x=1 y==2", "x=1 y==2"),
            ("PostUp =", ""),
        ];
        for (line, want) in cases {
            assert_eq!(
                iface(line).unwrap().config.interface.post_up,
                [want],
                "line {line:?}"
            );
        }
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\nPreUp = a\nPostUp = b\n\
             PreDown = c\nPostDown = d\nPreUp = e\n[Peer]\nPublicKey = {PUB1}\n"
        );
        let p = run(&text).unwrap();
        let i = &p.config.interface;
        assert_eq!(
            (&i.pre_up[..], &i.post_up[..]),
            (&["a".to_owned(), "e".to_owned()][..], &["b".to_owned()][..])
        );
        assert_eq!(
            (&i.pre_down[..], &i.post_down[..]),
            (&["c".to_owned()][..], &["d".to_owned()][..])
        );
        assert_eq!(
            warnings(&p),
            [
                "4: PreUp not run: wg-wrap never runs hook commands from a profile",
                "5: PostUp not run: wg-wrap never runs hook commands from a profile",
                "6: PreDown not run: wg-wrap never runs hook commands from a profile",
                "7: PostDown not run: wg-wrap never runs hook commands from a profile",
                "8: PreUp not run: wg-wrap never runs hook commands from a profile",
            ]
        );
    }

    #[test]
    fn ignored_settings_warn_only_when_set() {
        let cases = [
            ("FwMark = 0x1", Some("4: FwMark ignored: wg-wrap changes no host routing, so no mark is needed")),
            ("FwMark = off", None),
            ("Table = off", Some("4: Table ignored: wg-wrap always puts routes in the program's private network namespace")),
            ("Table = 42", Some("4: Table ignored: wg-wrap always puts routes in the program's private network namespace")),
            ("Table = auto", None),
            ("SaveConfig = true", Some("4: SaveConfig ignored: wg-wrap never writes the configuration file")),
            ("SaveConfig = false", None),
        ];
        for (line, want) in cases {
            let got = warnings(&iface(line).unwrap());
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "line {line:?}");
        }
    }
}
