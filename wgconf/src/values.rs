//! What every key's value goes through: the empty-value rule, the typed
//! checkers shared by both sections, and the redaction of echoed text.
//! Section-specific keys live in `interface.rs` and `peer.rs`.

use crate::error::{ErrorKind, ValueError};
use crate::key::Key;
use crate::net::parse_decimal;
use crate::parse::{Field, Parser};

/// What one line produced besides the value itself.
#[derive(Default)]
pub(crate) struct Findings {
    pub(crate) errors: Vec<ErrorKind>,
    pub(crate) warnings: Vec<String>,
}

/// A value to show in an error. Anything containing a run of 40 or more
/// base64 characters is replaced: it may be a key pasted into the wrong line.
pub(crate) fn echo(value: &str) -> String {
    let mut run = 0;
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            run += 1;
            if run >= 40 {
                return "<redacted: looks like key material>".to_owned();
            }
        } else {
            run = 0;
        }
    }
    value.to_owned()
}

pub(crate) fn invalid(field: Field, value: &str, reason: ValueError) -> ErrorKind {
    ErrorKind::InvalidValue {
        key: field.name(),
        value: echo(value),
        reason,
    }
}

pub(crate) fn key(field: Field, value: &str) -> Result<Key, ErrorKind> {
    Key::from_base64(value).map_err(|reason| ErrorKind::InvalidKey {
        key: field.name(),
        reason,
    })
}

pub(crate) fn number(field: Field, value: &str, min: u32, max: u32) -> Result<u32, ErrorKind> {
    match parse_decimal(value) {
        Some(n) if (u64::from(min)..=u64::from(max)).contains(&n) => Ok(n as u32),
        _ => Err(invalid(field, value, ValueError::Number { min, max })),
    }
}

fn empty_allowed(field: Field) -> bool {
    // wg-quick accepts `Address =` and `DNS =` as no-ops and keeps empty
    // hooks; `wg setconf` rejects every other key without a value.
    matches!(
        field,
        Field::Address
            | Field::Dns
            | Field::PreUp
            | Field::PostUp
            | Field::PreDown
            | Field::PostDown
    )
}

impl Parser {
    pub(crate) fn interface_value(&mut self, no: usize, field: Field, value: &str) {
        self.apply(no, field, value, |p, out| {
            if let Some(draft) = p.interface.as_mut() {
                crate::interface::apply(draft, field, value, out);
            }
        });
    }

    pub(crate) fn peer_value(&mut self, no: usize, field: Field, value: &str) {
        self.apply(no, field, value, |p, out| {
            if let Some(draft) = p.peers.last_mut() {
                crate::peer::apply(draft, field, value, out);
                let items = draft.value.allowed_ips.len();
                draft.item_lines.resize(items, no);
            }
        });
    }

    fn apply(
        &mut self,
        no: usize,
        field: Field,
        value: &str,
        f: impl FnOnce(&mut Parser, &mut Findings),
    ) {
        if value.is_empty() && !empty_allowed(field) {
            self.error(no, ErrorKind::EmptyValue { key: field.name() });
            return;
        }
        let mut out = Findings::default();
        f(self, &mut out);
        for e in out.errors {
            self.error(no, e);
        }
        for w in out.warnings {
            self.warn(no, w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_redacts_runs_of_base64() {
        assert_eq!(echo("vpn.example.com:51820"), "vpn.example.com:51820");
        assert_eq!(echo(&"a".repeat(39)), "a".repeat(39));
        assert_eq!(echo(&"a".repeat(40)), "<redacted: looks like key material>");
        assert_eq!(
            echo("x:p845mBKgS80hB8l3pTFt8BYEizUZ/je/XA3j3m/bebQ="),
            "<redacted: looks like key material>"
        );
    }
}
