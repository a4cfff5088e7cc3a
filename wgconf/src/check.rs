//! The end of the pass: checks that need the whole file (every section has
//! its key), warnings of the same kind, and assembling the `Config`, whose
//! peers are what `wg setconf` makes of the sections (`merge.rs`).

use crate::config::{Config, Parsed};
use crate::error::{ErrorKind, ParseErrors};
use crate::merge::merge;
use crate::parse::{Draft, Field, Parser};

impl Parser {
    /// Runs the cross-checks, sorts errors and warnings by line (stable, so
    /// one line's errors keep their order) and builds the `Config` if
    /// nothing was wrong.
    pub(crate) fn finish(mut self) -> Result<Parsed, ParseErrors> {
        let mut late = Vec::new();
        match &self.interface {
            None => late.push((0, ErrorKind::MissingInterface)),
            Some(iface) => {
                let line = iface.value.line;
                if iface.seen(Field::PrivateKey).is_none() {
                    late.push((line, ErrorKind::MissingPrivateKey));
                }
                // `Address =` alone is a no-op, so count addresses, not
                // lines; but a malformed Address was reported already.
                let bad_address = self.errors.iter().any(|e| {
                    matches!(e.kind, ErrorKind::InvalidValue { key, .. } if key == Field::Address.name())
                });
                if iface.value.addresses.is_empty() && !bad_address {
                    late.push((line, ErrorKind::MissingAddress));
                }
            }
        }
        for peer in &self.peers {
            if peer.seen(Field::PublicKey).is_none() {
                late.push((peer.value.line, ErrorKind::MissingPublicKey));
            }
        }
        for (line, kind) in late {
            self.error(line, kind);
        }
        self.cross_warnings();

        // Stable: errors on one line stay in the order they were found.
        self.errors.sort_by_key(|e| e.line);
        // A missing interface or key was reported by the checks above.
        let keys_parsed = self.peers.iter().all(|p| p.key.is_some());
        let private_key = match self.interface.as_ref().and_then(|d| d.key) {
            Some(key) if keys_parsed && self.errors.is_empty() => key,
            _ => return Err(ParseErrors(self.errors)),
        };
        let (peers, found) = merge(&private_key, std::mem::take(&mut self.peers));
        for (line, message) in found {
            self.warn(line, message);
        }
        self.warnings.sort_by_key(|w| w.line);
        let Some(Draft {
            value: mut interface,
            ..
        }) = self.interface
        else {
            unreachable!("the private key came from the interface")
        };
        interface.private_key = private_key;
        Ok(Parsed {
            config: Config { interface, peers },
            warnings: self.warnings,
        })
    }

    /// Warnings that need the whole file.
    pub(crate) fn cross_warnings(&mut self) {
        if self.peers.is_empty() {
            self.warn(
                0,
                "no [Peer] sections: nothing is reachable through the tunnel",
            );
        }
        if let Some(iface) = &self.interface {
            let has_v6 = iface.value.addresses.iter().any(|a| !a.is_ipv4());
            if let (Some(mtu), Some(line), true) = (iface.value.mtu, iface.seen(Field::Mtu), has_v6)
            {
                if mtu < 1280 {
                    self.warn(
                        line,
                        format!("MTU {mtu} is below 1280, the minimum for IPv6"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse;
    use crate::testutil::{errors, iface, warnings, PRIV, PUB1};

    #[test]
    fn cross_checks_name_the_section_header() {
        assert_eq!(
            errors("# nothing\n"),
            [(0, "no [Interface] section".to_owned())]
        );
        assert_eq!(
            errors(&format!("\n[Peer]\nPublicKey = {PUB1}\n")),
            [(0, "no [Interface] section".to_owned())]
        );
        assert_eq!(
            errors("\n\n[Interface]\nListenPort = 51820\n"),
            [
                (3, "[Interface] has no PrivateKey".to_owned()),
                (
                    3,
                    "[Interface] has no Address (wg-wrap needs the tunnel's own address)"
                        .to_owned()
                ),
            ]
        );
    }

    /// Found by fuzzing: `Address =` counted as an address, so the file
    /// parsed, but its rendering (which has no Address line) did not.
    #[test]
    fn empty_address_line_is_not_an_address() {
        let text =
            format!("[Interface]\nPrivateKey = {PRIV}\nAddress =\n\n[Peer]\nPublicKey = {PUB1}\n");
        assert_eq!(
            errors(&text),
            [(
                1,
                "[Interface] has no Address (wg-wrap needs the tunnel's own address)".to_owned()
            )]
        );
        // A malformed Address is reported once, not again as missing.
        let text = format!("[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/33\n");
        assert_eq!(errors(&text).len(), 1);
    }

    #[test]
    fn a_bad_key_is_reported_once() {
        let text = "[Interface]\nPrivateKey = short\nAddress = 10.0.0.1/24\n\
                    [Peer]\nPublicKey = short\n";
        let got = errors(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].1.starts_with("invalid PrivateKey"));
        assert!(got[1].1.starts_with("invalid PublicKey"));
    }

    #[test]
    fn no_peers_is_a_warning() {
        let text = format!("[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\n");
        let parsed = parse(&text).unwrap();
        assert!(parsed.config.peers.is_empty());
        assert_eq!(
            parsed.warnings[0].to_string(),
            "no [Peer] sections: nothing is reachable through the tunnel"
        );
    }

    #[test]
    fn small_mtu_with_ipv6_warns() {
        let p = iface("Address = fd00::2/64\nMTU = 1000").unwrap();
        assert_eq!(
            warnings(&p),
            ["5: MTU 1000 is below 1280, the minimum for IPv6"]
        );
        assert_eq!(
            warnings(&iface("MTU = 1000").unwrap()),
            Vec::<String>::new()
        );
    }
}
