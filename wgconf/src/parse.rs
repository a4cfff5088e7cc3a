//! Lines to sections: comments, whitespace, headers, keys, cross-checks.
//! Values are checked in [`crate::values`].

use std::collections::HashMap;

use crate::config::{Interface, Parsed, Peer};
use crate::error::{showable, ErrorKind, ParseError, ParseErrors, Section, Warning};
use crate::key::Key;

/// A key the format knows, with its canonical spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    PrivateKey,
    Address,
    Dns,
    Mtu,
    ListenPort,
    FwMark,
    Table,
    PreUp,
    PostUp,
    PreDown,
    PostDown,
    SaveConfig,
    PublicKey,
    PresharedKey,
    AllowedIps,
    Endpoint,
    PersistentKeepalive,
}

/// How much of the text after `=` makes up the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Keys `wg setconf` reads: config.c deletes every whitespace character
    /// from the line before looking at it.
    Compact,
    /// Keys wg-quick's `parse_options` handles itself: leading and trailing
    /// whitespace trimmed, inner whitespace kept (list items are then split
    /// on commas and whitespace, as bash's `${value//,/ }` word-splitting
    /// does).
    Trimmed,
    /// Hooks: wg-quick takes `unstripped_value` from the raw line, so a `#`
    /// inside a hook is part of the command, not a comment.
    Raw,
}

impl Field {
    const ALL: [Field; 17] = [
        Field::PrivateKey,
        Field::Address,
        Field::Dns,
        Field::Mtu,
        Field::ListenPort,
        Field::FwMark,
        Field::Table,
        Field::PreUp,
        Field::PostUp,
        Field::PreDown,
        Field::PostDown,
        Field::SaveConfig,
        Field::PublicKey,
        Field::PresharedKey,
        Field::AllowedIps,
        Field::Endpoint,
        Field::PersistentKeepalive,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::PrivateKey => "PrivateKey",
            Field::Address => "Address",
            Field::Dns => "DNS",
            Field::Mtu => "MTU",
            Field::ListenPort => "ListenPort",
            Field::FwMark => "FwMark",
            Field::Table => "Table",
            Field::PreUp => "PreUp",
            Field::PostUp => "PostUp",
            Field::PreDown => "PreDown",
            Field::PostDown => "PostDown",
            Field::SaveConfig => "SaveConfig",
            Field::PublicKey => "PublicKey",
            Field::PresharedKey => "PresharedKey",
            Field::AllowedIps => "AllowedIPs",
            Field::Endpoint => "Endpoint",
            Field::PersistentKeepalive => "PersistentKeepalive",
        }
    }

    fn section(self) -> Section {
        match self {
            Field::PublicKey
            | Field::PresharedKey
            | Field::AllowedIps
            | Field::Endpoint
            | Field::PersistentKeepalive => Section::Peer,
            _ => Section::Interface,
        }
    }

    fn shape(self) -> Shape {
        match self {
            Field::Address | Field::Dns | Field::Mtu | Field::Table | Field::SaveConfig => {
                Shape::Trimmed
            }
            Field::PreUp | Field::PostUp | Field::PreDown | Field::PostDown => Shape::Raw,
            _ => Shape::Compact,
        }
    }

    /// Whether repeated lines add to a list rather than replace a value.
    pub(crate) fn accumulates(self) -> bool {
        matches!(
            self,
            Field::Address
                | Field::Dns
                | Field::AllowedIps
                | Field::PreUp
                | Field::PostUp
                | Field::PreDown
                | Field::PostDown
        )
    }

    /// Case-insensitive, like config.c's `strncasecmp` and wg-quick's
    /// `nocasematch`.
    fn lookup(key: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(key))
    }
}

/// The whitespace set of C's `isspace` in the C locale, which both
/// wireguard-tools (`char_is_space`) and wg-quick (`LC_ALL=C`) use. Unlike
/// `char::is_ascii_whitespace` it includes vertical tab.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

pub(crate) fn strip_spaces(s: &str) -> String {
    s.chars().filter(|&c| !is_space(c)).collect()
}

pub(crate) fn trim_spaces(s: &str) -> &str {
    s.trim_matches(is_space)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first header.
    Start,
    Interface,
    /// In the last peer of `Parser::peers`.
    Peer,
    /// After an unknown header (already reported); its keys are skipped so
    /// that one typo does not cascade into an error per line.
    Unknown,
}

/// A section being filled in. `value` holds an all-zero placeholder key
/// until the section's key line parses into `key`; `first_seen` tells the
/// cross-checks whether that line existed at all, so that a malformed key is
/// reported once, not again as missing.
pub(crate) struct Draft<T> {
    pub(crate) value: T,
    pub(crate) key: Option<Key>,
    first_seen: HashMap<Field, usize>,
    /// For a `[Peer]`: the line of each `allowed_ips` item, for warnings.
    pub(crate) item_lines: Vec<usize>,
}

impl<T> Draft<T> {
    fn new(value: T) -> Self {
        Draft {
            value,
            key: None,
            first_seen: HashMap::new(),
            item_lines: Vec::new(),
        }
    }

    pub(crate) fn seen(&self, field: Field) -> Option<usize> {
        self.first_seen.get(&field).copied()
    }
}

pub(crate) struct Parser {
    state: State,
    pub(crate) interface: Option<Draft<Interface>>,
    pub(crate) peers: Vec<Draft<Peer>>,
    pub(crate) errors: Vec<ParseError>,
    pub(crate) warnings: Vec<Warning>,
}

/// Parses a wg-quick configuration. See the crate documentation for the
/// rules; all line errors are collected, then the cross-checks run.
pub fn parse(text: &str) -> Result<Parsed, ParseErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        state: State::Start,
        interface: None,
        peers: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for (index, line) in text.split('\n').enumerate() {
        parser.line(index + 1, line);
    }
    parser.finish()
}

impl Parser {
    pub(crate) fn error(&mut self, line: usize, kind: ErrorKind) {
        self.errors.push(ParseError { line, kind });
    }

    pub(crate) fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Warning {
            line,
            message: message.into(),
        });
    }

    fn line(&mut self, no: usize, raw: &str) {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let uncommented = raw.split('#').next().unwrap_or("");
        let compact = strip_spaces(uncommented);
        if compact.is_empty() {
            return;
        }
        if compact.starts_with('[') {
            self.header(no, &compact);
            return;
        }
        let Some((key_part, value_part)) = uncommented.split_once('=') else {
            self.error(no, ErrorKind::NotKeyValue);
            return;
        };
        let key = strip_spaces(key_part);
        let section = match self.state {
            State::Unknown => return,
            State::Start => {
                let key = match Field::lookup(&key) {
                    Some(field) => Some(field.name().to_owned()),
                    None => showable(&key),
                };
                self.error(no, ErrorKind::KeyOutsideSection { key });
                return;
            }
            State::Interface => Section::Interface,
            State::Peer => Section::Peer,
        };
        let Some(field) = Field::lookup(&key) else {
            let key = showable(&key);
            self.error(no, ErrorKind::UnknownKey { key, section });
            return;
        };
        if field.section() != section {
            let key = field.name();
            self.error(no, ErrorKind::WrongSection { key, section });
            return;
        }
        let value = match field.shape() {
            Shape::Compact => strip_spaces(value_part),
            Shape::Trimmed => trim_spaces(value_part).to_owned(),
            // `uncommented` is a prefix of `raw`, so the first `=` is at the
            // same offset in both.
            Shape::Raw => trim_spaces(&raw[key_part.len() + 1..]).to_owned(),
        };
        self.note_seen(no, field);
        match section {
            Section::Interface => self.interface_value(no, field, &value),
            Section::Peer => self.peer_value(no, field, &value),
        }
    }

    /// Records where `field` first appeared in the current section and warns
    /// when a single-valued key is given again (the later value wins, as in
    /// `wg setconf` and wg-quick).
    fn note_seen(&mut self, no: usize, field: Field) {
        let seen = match self.state {
            State::Interface => self.interface.as_mut().map(|d| &mut d.first_seen),
            State::Peer => self.peers.last_mut().map(|d| &mut d.first_seen),
            State::Start | State::Unknown => None,
        };
        let Some(seen) = seen else { return };
        let first = *seen.entry(field).or_insert(no);
        if first != no && !field.accumulates() {
            self.warn(
                no,
                format!(
                    "{} given again (first on line {first}); this later value is used",
                    field.name()
                ),
            );
        }
    }

    fn header(&mut self, no: usize, compact: &str) {
        if compact.eq_ignore_ascii_case("[Interface]") {
            self.state = State::Interface;
            match &self.interface {
                None => {
                    let mut iface = Interface::new(Key::from_bytes([0; 32]));
                    iface.line = no;
                    self.interface = Some(Draft::new(iface));
                }
                Some(first) => {
                    let first = first.value.line;
                    self.warn(
                        no,
                        format!(
                            "second [Interface] section; its keys merge into the one on line {first}"
                        ),
                    );
                }
            }
        } else if compact.eq_ignore_ascii_case("[Peer]") {
            self.state = State::Peer;
            let mut peer = Peer::new(Key::from_bytes([0; 32]));
            peer.line = no;
            self.peers.push(Draft::new(peer));
        } else {
            self.state = State::Unknown;
            let name = showable(compact);
            self.error(no, ErrorKind::UnknownSection { name });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::IpNet;
    use crate::testutil::{errors, PRIV, PSK, PUB1, PUB2};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn minimal_config() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.2/32\n\n\
             [Peer]\nPublicKey = {PUB1}\nAllowedIPs = 0.0.0.0/0\n"
        );
        let parsed = parse(&text).unwrap();
        let c = parsed.config;
        assert_eq!(c.interface.private_key, Key::from_base64(PRIV).unwrap());
        assert_eq!(c.interface.addresses, vec![net("10.0.0.2/32")]);
        assert_eq!(c.interface.line, 1);
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].public_key, Key::from_base64(PUB1).unwrap());
        assert_eq!(c.peers[0].allowed_ips, vec![net("0.0.0.0/0")]);
        assert_eq!(c.peers[0].line, 5);
        assert_eq!(parsed.warnings, vec![]);
    }

    #[test]
    fn whitespace_comments_case_crlf_and_bom() {
        let text = format!(
            "\u{feff}# leading comment\r\n\
             [ interface ] # trailing comment\r\n\
             \t private key\t= {PRIV} # comment after a key\r\n\
             ADDRESS=10.0.0.2/32,  fd00::2/128\x0b\r\n\
             \r\n\
             [PEER]\r\n\
             publickey = {} \r\n\
             allowedips = 0.0.0.0 / 0 , ::0/0 #, 10.0.0.0/8\r\n\
             endpoint = vpn . example.com : 51820",
            PUB1.replace("/", " / ")
        );
        let c = parse(&text).unwrap().config;
        assert_eq!(c.interface.line, 2);
        assert_eq!(
            c.interface.addresses,
            vec![net("10.0.0.2/32"), net("fd00::2/128")]
        );
        assert_eq!(c.peers[0].public_key, Key::from_base64(PUB1).unwrap());
        assert_eq!(c.peers[0].allowed_ips, vec![net("0.0.0.0/0"), net("::/0")]);
        assert_eq!(c.peers[0].line, 6);
        assert_eq!(
            c.peers[0]
                .endpoint
                .as_ref()
                .map(|e| e.to_string())
                .as_deref(),
            Some("vpn.example.com:51820")
        );
    }

    #[test]
    fn lists_accumulate_across_lines() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.2/32\nAddress = fd00::2/128\n\
             DNS = 1.1.1.1\nDNS = example.com, 2606:4700:4700::1111\n\
             [Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.0.0.0/8\nAllowedIPs = 192.168.0.0/16,fd00::/64\n"
        );
        let c = parse(&text).unwrap().config;
        assert_eq!(
            c.interface.addresses,
            vec![net("10.0.0.2/32"), net("fd00::2/128")]
        );
        let dns: Vec<String> = c.interface.dns.iter().map(|d| d.to_string()).collect();
        assert_eq!(dns, ["1.1.1.1", "2606:4700:4700::1111"]);
        assert_eq!(c.interface.dns_search, ["example.com"]);
        assert_eq!(
            c.peers[0].allowed_ips,
            vec![net("10.0.0.0/8"), net("192.168.0.0/16"), net("fd00::/64")]
        );
    }

    #[test]
    fn many_peers_in_order() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\n\
             [Peer]\nPublicKey = {PUB1}\n[Peer]\nPublicKey = {PUB2}\n"
        );
        let c = parse(&text).unwrap().config;
        let lines: Vec<usize> = c.peers.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 6]);
        assert_eq!(c.peers[1].public_key, Key::from_base64(PUB2).unwrap());
    }

    #[test]
    fn collects_every_error_with_its_line() {
        let text = format!(
            "Address = 10.0.0.1/24\n\
             [Interface]\n\
             PrivateKey = {PRIV}\n\
             Address = 10.0.0.1/33, 10.0.0.300\n\
             Endpoint = 1.2.3.4:51820\n\
             Frobnicate = yes\n\
             this line has no equals sign\n\
             MTU = 9\n\
             [Peer]\n\
             PublicKey = not-a-key\n\
             AllowedIPs = 10.0.0.0/8,\n\
             PersistentKeepalive =\n\
             [Peer]\n\
             AllowedIPs = ::/0\n"
        );
        let want = [
            (1, r#""Address" before any [Interface] or [Peer] section"#),
            (
                4,
                r#"invalid Address "10.0.0.1/33": prefix length 33 exceeds 32"#,
            ),
            (4, r#"invalid Address "10.0.0.300": not an IP address"#),
            (5, "Endpoint belongs in [Peer], not in [Interface]"),
            (6, r#"unknown key "Frobnicate" in [Interface]"#),
            (
                7,
                "expected a [Section] header or Key = Value (line not shown)",
            ),
            (8, r#"invalid MTU "9": expected a number from 576 to 65535"#),
            (
                10,
                "invalid PublicKey: not 32 bytes of base64 (expected 44 characters, found 9)",
            ),
            (11, r#"invalid AllowedIPs "": not an IP address"#),
            (12, "missing value for PersistentKeepalive"),
            (13, "[Peer] has no PublicKey"),
        ];
        let got = errors(&text);
        let got: Vec<(usize, &str)> = got.iter().map(|(l, m)| (*l, m.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_section_does_not_cascade() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\n\
             [Peers]\nPublicKey = {PUB1}\nWhatever = 1\n[Peer]\nPublicKey = {PUB1}\n"
        );
        assert_eq!(
            errors(&text),
            [(4, r#"unknown section header "[Peers]""#.to_owned())]
        );
    }

    #[test]
    fn errors_never_echo_key_material() {
        // A key with a typo, a key on a line of its own, a key where an
        // endpoint belongs, and a colon instead of `=`.
        let bad = &PRIV[..43].replace('H', "#");
        let text = format!(
            "{PRIV}\n[Interface]\nPrivateKey = {}\n{PRIV}\nAddress = 10.0.0.1/24\n\
             [Peer]\nPublicKey = {PUB1}x\nPresharedKey = {PSK}{PSK}\nEndpoint = {PUB2}\n\
             PublicKey: {PUB2}\nPrivateKey = {PRIV}\n[{PRIV}]\n",
            &bad
        );
        let err = parse(&text).unwrap_err();
        let shown = format!("{err}\n{err:?}\n{}", err.display_with_path("p"));
        for key in [PRIV, PUB1, PUB2, PSK] {
            for window in key.as_bytes().windows(12) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(!shown.contains(window), "{window:?} leaked in:\n{shown}");
            }
        }
        assert_eq!(err.errors().len(), 9, "{shown}");
    }

    #[test]
    fn debug_redacts_keys() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\n\
             [Peer]\nPublicKey = {PUB1}\nPresharedKey = {PSK}\n"
        );
        let shown = format!("{:?}", parse(&text).unwrap());
        assert!(shown.contains("Key(<redacted>)"));
        for key in [PRIV, PUB1, PSK] {
            assert!(!shown.contains(&key[..12]));
        }
    }

    #[test]
    fn repeated_single_values_warn_and_the_later_wins() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\nMTU = 1400\nMTU = 1380\n\
             [Peer]\nPublicKey = {PUB1}\nEndpoint = 1.2.3.4:1\nEndpoint = 5.6.7.8:2\n"
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.config.interface.mtu, Some(1380));
        assert_eq!(
            parsed.config.peers[0]
                .endpoint
                .as_ref()
                .unwrap()
                .to_string(),
            "5.6.7.8:2"
        );
        let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "5: MTU given again (first on line 4); this later value is used",
                "9: Endpoint given again (first on line 8); this later value is used",
            ]
        );
    }

    #[test]
    fn second_interface_section_merges_with_a_warning() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\n[Peer]\nPublicKey = {PUB1}\n\
             [Interface]\nAddress = 10.0.0.1/24\n"
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.config.interface.line, 1);
        assert_eq!(parsed.config.interface.addresses.len(), 1);
        assert_eq!(
            parsed.warnings[0].to_string(),
            "5: second [Interface] section; its keys merge into the one on line 1"
        );
    }

    /// Found by the fuzz target's first run: an escape written before a
    /// 39-character base64 run (`\t` in Display, `\0` in Debug) made a
    /// 40-character run in the output. The bound the fuzz target checks is
    /// therefore 40; a key needs 43.
    #[test]
    fn escapes_next_to_base64_runs_stay_below_key_length() {
        fn longest_run(s: &str) -> usize {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
                .map(str::len)
                .max()
                .unwrap_or(0)
        }
        let run = "+".repeat(39);
        let text = format!("[Interface]\nTable = a\t{run}\nMTU = \0{run}\n");
        let err = parse(&text).unwrap_err();
        let shown = format!("{err}\n{err:?}");
        assert_eq!(longest_run(&shown), 40, "{shown}");
        let text = format!("[Interface]\nMTU = x{run}\n");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.contains("<redacted: looks like key material>"),
            "{shown}"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_errors() {
        let text = "[Interface]\nMTU = 1\x1b[31m\n[Bad\x07]\nFoo\x1b = 1\n";
        let shown = parse(text).unwrap_err().to_string();
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{shown}"
        );
        assert!(shown.contains(r#"invalid MTU "1\u{1b}[31m""#), "{shown}");
    }
}
