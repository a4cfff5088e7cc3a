//! `[Peer]` values: keys, AllowedIPs as `wg` splits them, Endpoint and
//! PersistentKeepalive.

use crate::config::Peer;
use crate::endpoint::Endpoint;
use crate::error::{Echo, ErrorKind, ValueError};
use crate::net::{parse_decimal, IpNet};
use crate::parse::{Draft, Field};
use crate::values::{invalid, key, Findings};

/// `off` or 0..=65535, as config.c's `parse_persistent_keepalive`; 0 and
/// `off` both mean disabled.
fn keepalive(value: &str) -> Result<Option<u16>, ErrorKind> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match parse_decimal(value).map(u16::try_from) {
        Some(Ok(0)) => Ok(None),
        Some(Ok(n)) => Ok(Some(n)),
        _ => Err(invalid(
            Field::PersistentKeepalive,
            value,
            ValueError::NumberOrOff { max: 65535 },
        )),
    }
}

pub(crate) fn apply(draft: &mut Draft<Peer>, field: Field, value: &str, out: &mut Findings) {
    let peer = &mut draft.value;
    let result = match field {
        Field::PublicKey => key(field, value).map(|k| draft.key = Some(k)),
        Field::PresharedKey => key(field, value).map(|k| peer.preshared_key = Some(k)),
        Field::AllowedIps => {
            // config.c's strsep: every comma-separated item must parse, so an
            // empty item (`a,,b` or a trailing comma) is an error.
            for item in value.split(',') {
                match item.parse::<IpNet>() {
                    Ok(net) => {
                        if net != net.network() {
                            out.warnings.push(format!(
                                "AllowedIPs {net} has host bits set; it means {}",
                                net.network()
                            ));
                        }
                        peer.allowed_ips.push(net);
                    }
                    Err(e) => out.errors.push(invalid(field, item, ValueError::Net(e))),
                }
            }
            Ok(())
        }
        Field::Endpoint => value
            .parse()
            .map(|e: Endpoint| {
                if Endpoint::is_unbracketed_ipv6(value) {
                    out.warnings.push(format!(
                        "Endpoint {} read as {e}; write IPv6 endpoints in brackets",
                        Echo(value)
                    ));
                }
                peer.endpoint = Some(e);
            })
            .map_err(|e| invalid(field, value, ValueError::Endpoint(e))),
        Field::PersistentKeepalive => keepalive(value).map(|k| peer.persistent_keepalive = k),
        Field::PrivateKey
        | Field::Address
        | Field::Dns
        | Field::Mtu
        | Field::ListenPort
        | Field::FwMark
        | Field::Table
        | Field::PreUp
        | Field::PostUp
        | Field::PreDown
        | Field::PostDown
        | Field::SaveConfig => {
            unreachable!("Parser::line routes [Interface] keys to interface::apply")
        }
    };
    if let Err(e) = result {
        out.errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{peer, rejects, warnings, PSK, PUB2};

    #[test]
    fn public_and_preshared_keys() {
        let p = peer(&format!("PresharedKey = {PSK}")).unwrap().config;
        assert_eq!(p.peers[0].preshared_key.unwrap().to_base64(), PSK);
        assert_eq!(peer("").unwrap().config.peers[0].preshared_key, None);
        rejects(peer, 6, &[
            ("PresharedKey = abc=", "invalid PresharedKey: not 32 bytes of base64 (expected 44 characters, found 4)"),
            ("PresharedKey =", "missing value for PresharedKey"),
            ("PublicKey = 3txoXP5Xt/4tofBc/7XWZXODMR1Wpi+pKVbwNw75WX0", "invalid PublicKey: not 32 bytes of base64 (expected 44 characters, found 43)"),
            ("PublicKey = 3txoXP5Xt_4tofBc_7XWZXODMR1Wpi-pKVbwNw75WX0=", "invalid PublicKey: not 32 bytes of base64"),
        ]);
    }

    #[test]
    fn allowed_ips() {
        let good: &[(&str, &[&str])] = &[
            ("AllowedIPs = 0.0.0.0/0, ::/0", &["0.0.0.0/0", "::/0"]),
            ("AllowedIPs = 0.0.0.0/0,::0/0", &["0.0.0.0/0", "::/0"]),
            ("AllowedIPs = 10.0.0.1", &["10.0.0.1/32"]),
            ("AllowedIPs = fd00::1", &["fd00::1/128"]),
            ("allowed ips = 10.0.0.0 / 8", &["10.0.0.0/8"]),
        ];
        for (line, want) in good {
            let got = &peer(line).unwrap().config.peers[0].allowed_ips;
            let got: Vec<String> = got.iter().map(|a| a.to_string()).collect();
            assert_eq!(got, *want, "line {line:?}");
        }
        let p = peer("AllowedIPs = 10.0.0.1/24").unwrap();
        assert_eq!(p.config.peers[0].allowed_ips[0].to_string(), "10.0.0.0/24");
        assert_eq!(
            warnings(&p),
            ["6: AllowedIPs 10.0.0.1/24 has host bits set; it means 10.0.0.0/24"]
        );
        rejects(
            peer,
            6,
            &[
                (
                    "AllowedIPs = 10.0.0.0/33",
                    r#"invalid AllowedIPs "10.0.0.0/33": prefix length 33 exceeds 32"#,
                ),
                (
                    "AllowedIPs = ::/129",
                    r#"invalid AllowedIPs "::/129": prefix length 129 exceeds 128"#,
                ),
                (
                    "AllowedIPs = 10.0.0.0/8,",
                    r#"invalid AllowedIPs "": not an IP address"#,
                ),
                (
                    "AllowedIPs = 10.0.0.0/x",
                    r#"invalid AllowedIPs "10.0.0.0/x": prefix length is not a number"#,
                ),
                (
                    "AllowedIPs = vpn.example.com/32",
                    r#"invalid AllowedIPs "vpn.example.com/32": not an IP address"#,
                ),
                // wg strips all whitespace, so a space is not a separator here.
                (
                    "AllowedIPs = 10.0.0.0/8 10.1.0.0/16",
                    r#"invalid AllowedIPs "10.0.0.0/810.1.0.0/16": prefix length is not a number"#,
                ),
                ("AllowedIPs =", "missing value for AllowedIPs"),
            ],
        );
    }

    #[test]
    fn endpoint() {
        for (line, want) in [
            ("Endpoint = 1.2.3.4:51820", "1.2.3.4:51820"),
            ("Endpoint = [::1]:51820", "[::1]:51820"),
            ("Endpoint = vpn.example.com:51820", "vpn.example.com:51820"),
            ("Endpoint = [2001:db8::1]:443", "[2001:db8::1]:443"),
        ] {
            let p = peer(line).unwrap();
            assert_eq!(
                p.config.peers[0].endpoint.as_ref().unwrap().to_string(),
                want
            );
            assert_eq!(warnings(&p), Vec::<String>::new());
        }
        let p = peer("Endpoint = 2001:db8::1:51820").unwrap();
        assert_eq!(
            p.config.peers[0].endpoint.as_ref().unwrap().to_string(),
            "[2001:db8::1]:51820"
        );
        assert_eq!(
            warnings(&p),
            [
                r#"6: Endpoint "2001:db8::1:51820" read as [2001:db8::1]:51820; write IPv6 endpoints in brackets"#
            ]
        );
        rejects(
            peer,
            6,
            &[
                (
                    "Endpoint = 1.2.3.4",
                    r#"invalid Endpoint "1.2.3.4": missing :port"#,
                ),
                (
                    "Endpoint = :51820",
                    r#"invalid Endpoint ":51820": missing host before :port"#,
                ),
                (
                    "Endpoint = 1.2.3.4:0",
                    r#"invalid Endpoint "1.2.3.4:0": port is not a number from 1 to 65535"#,
                ),
                (
                    "Endpoint = [::1:51820",
                    r#"invalid Endpoint "[::1:51820": missing ] after IPv6 address"#,
                ),
                (
                    "Endpoint = [1.2.3.4]:1",
                    r#"invalid Endpoint "[1.2.3.4]:1": not an IPv6 address inside [ ]"#,
                ),
                (
                    "Endpoint = [fe80::1%eth0]:1",
                    r#"invalid Endpoint "[fe80::1%eth0]:1": IPv6 zone index (%...) is not supported"#,
                ),
                (
                    "Endpoint = 1.2.3:1",
                    r#"invalid Endpoint "1.2.3:1": not a valid IPv4 address"#,
                ),
                (
                    "Endpoint = bad_host!:1",
                    r#"invalid Endpoint "bad_host!:1": not a valid IP address or host name"#,
                ),
                ("Endpoint =", "missing value for Endpoint"),
            ],
        );
    }

    #[test]
    fn persistent_keepalive() {
        for (line, want) in [
            ("PersistentKeepalive = 25", Some(25)),
            ("PersistentKeepalive = 65535", Some(65535)),
            ("PersistentKeepalive = 0", None),
            ("PersistentKeepalive = off", None),
            ("PersistentKeepalive = Off", None),
        ] {
            assert_eq!(
                peer(line).unwrap().config.peers[0].persistent_keepalive,
                want,
                "line {line:?}"
            );
        }
        let why = "expected off or a number from 0 to 65535";
        rejects(
            peer,
            6,
            &[
                (
                    "PersistentKeepalive = 65536",
                    &format!(r#"invalid PersistentKeepalive "65536": {why}"#),
                ),
                (
                    "PersistentKeepalive = -1",
                    &format!(r#"invalid PersistentKeepalive "-1": {why}"#),
                ),
                (
                    "PersistentKeepalive = 25s",
                    &format!(r#"invalid PersistentKeepalive "25s": {why}"#),
                ),
                (
                    "PersistentKeepalive = on",
                    &format!(r#"invalid PersistentKeepalive "on": {why}"#),
                ),
            ],
        );
    }

    #[test]
    fn values_that_look_like_keys_are_not_echoed() {
        rejects(
            peer,
            6,
            &[(
                &format!("Endpoint = {PUB2}"),
                r#"invalid Endpoint "<redacted: looks like key material>": missing :port"#,
            )],
        );
    }
}
