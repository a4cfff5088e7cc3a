//! `Config` back to canonical wg-quick text.

use std::fmt::Write as _;

use crate::config::{Config, Table};

/// Writes `config` as a wg-quick file: `[Interface]` first, then each
/// `[Peer]` separated by a blank line; keys in a fixed order with their
/// canonical spelling; lists comma-separated on one line; unset options
/// omitted. The output contains the private key.
///
/// `parse(&render(&c))` equals `c` apart from `line` fields for every `c`
/// that [`parse`](crate::parse) can return. A `Config` built in code with
/// values `parse` would reject (a hook containing a newline, an `Endpoint`
/// host with a colon, `ListenPort = Some(0)`) renders as text that does not
/// read back the same.
pub fn render(config: &Config) -> String {
    let mut out = String::new();
    let iface = &config.interface;
    out.push_str("[Interface]\n");
    line(&mut out, "PrivateKey", iface.private_key.to_base64());
    list(&mut out, "Address", iface.addresses.iter());
    let dns = iface.dns.iter().map(|d| d.to_string());
    list(&mut out, "DNS", dns.chain(iface.dns_search.iter().cloned()));
    if let Some(mtu) = iface.mtu {
        line(&mut out, "MTU", mtu);
    }
    if let Some(port) = iface.listen_port {
        line(&mut out, "ListenPort", port);
    }
    if let Some(mark) = iface.fwmark {
        line(&mut out, "FwMark", format_args!("{mark:#x}"));
    }
    match &iface.table {
        Table::Auto => {}
        Table::Off => line(&mut out, "Table", "off"),
        Table::Custom(name) => line(&mut out, "Table", name),
    }
    if iface.save_config {
        line(&mut out, "SaveConfig", "true");
    }
    for (key, hooks) in [
        ("PreUp", &iface.pre_up),
        ("PostUp", &iface.post_up),
        ("PreDown", &iface.pre_down),
        ("PostDown", &iface.post_down),
    ] {
        for hook in hooks {
            line(&mut out, key, hook);
        }
    }
    for peer in &config.peers {
        out.push_str("\n[Peer]\n");
        line(&mut out, "PublicKey", peer.public_key.to_base64());
        if let Some(psk) = &peer.preshared_key {
            line(&mut out, "PresharedKey", psk.to_base64());
        }
        list(&mut out, "AllowedIPs", peer.allowed_ips.iter());
        if let Some(endpoint) = &peer.endpoint {
            line(&mut out, "Endpoint", endpoint);
        }
        if let Some(secs) = peer.persistent_keepalive {
            line(&mut out, "PersistentKeepalive", secs);
        }
    }
    out
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{key} = {value}");
}

fn list<T: std::fmt::Display>(out: &mut String, key: &str, items: impl Iterator<Item = T>) {
    let mut first = true;
    for item in items {
        if first {
            let _ = write!(out, "{key} = {item}");
            first = false;
        } else {
            let _ = write!(out, ", {item}");
        }
    }
    if !first {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::testutil::{without_lines, PRIV, PSK, PUB1, PUB2};

    #[test]
    fn renders_canonical_text() {
        let text = format!(
            "[interface]\nprivatekey={PRIV}\naddress=10.0.0.2/24 fd00::2/64\ndns=10.64.0.1,example.com\n\
             mtu=1420\nlistenport=51820\nfwmark=1234\ntable=off\nsaveconfig=TRUE\n\
             postup = iptables -A FORWARD -i %i -j ACCEPT # kept\npreup=echo a\n\
             [peer]\npublickey={PUB1}\npresharedkey={PSK}\nallowedips=0.0.0.0/0,::0/0\n\
             endpoint=[2001:db8::1]:51820\npersistentkeepalive=25\n\
             [peer]\npublickey={PUB2}\n"
        );
        let want = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.2/24, fd00::2/64\n\
             DNS = 10.64.0.1, example.com\nMTU = 1420\nListenPort = 51820\nFwMark = 0x4d2\n\
             Table = off\nSaveConfig = true\nPreUp = echo a\n\
             PostUp = iptables -A FORWARD -i %i -j ACCEPT # kept\n\n\
             [Peer]\nPublicKey = {PUB1}\nPresharedKey = {PSK}\nAllowedIPs = 0.0.0.0/0, ::/0\n\
             Endpoint = [2001:db8::1]:51820\nPersistentKeepalive = 25\n\n\
             [Peer]\nPublicKey = {PUB2}\n"
        );
        let config = parse(&text).unwrap().config;
        let rendered = render(&config);
        assert_eq!(rendered, want);
        let again = parse(&rendered).unwrap().config;
        assert_eq!(without_lines(again), without_lines(config));
    }
}
