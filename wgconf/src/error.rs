//! Parse errors and warnings: each tied to a line, shown as `12: message`
//! or `path:12: message`.
//!
//! Every string echoed from the file goes through [`Echo`], which escapes
//! control characters and shortens long values; values of key fields are
//! never stored in an error at all.

use std::fmt;

use crate::endpoint::EndpointError;
use crate::key::KeyError;
use crate::net::NetError;

/// The two kinds of section in a WireGuard configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Interface,
    Peer,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Interface => "[Interface]",
            Section::Peer => "[Peer]",
        })
    }
}

/// One problem with the file. `line` is 1-based; 0 means the file as a
/// whole (for example, no `[Interface]` section at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ErrorKind,
}

/// What is wrong with a line (or a section, for the cross-checks).
///
/// `Display` writes the whole sentence, including the reason carried in a
/// variant such as `InvalidValue`; `source()` is therefore `None` on purpose,
/// so that printing an error chain (`{:#}`) does not repeat the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Neither blank, nor a comment, nor `[Section]`, nor `Key = Value`.
    /// The line is not echoed: it could be a pasted key.
    NotKeyValue,
    /// A `[...]` header other than `[Interface]` or `[Peer]`. `name` is `None`
    /// when too long to show safely (see [`ErrorKind::UnknownKey`]).
    UnknownSection { name: Option<String> },
    /// A `Key = Value` line before the first section header.
    KeyOutsideSection { key: Option<String> },
    /// A key that is not part of the format. `key` is `None` when it is long
    /// enough to be key material (a base64 key on a line of its own parses as
    /// a 43-character "key" followed by `=`).
    UnknownKey {
        key: Option<String>,
        section: Section,
    },
    /// A known key in the other section, such as `Endpoint` in `[Interface]`.
    WrongSection { key: &'static str, section: Section },
    /// `Key =` with nothing after it.
    EmptyValue { key: &'static str },
    /// `PrivateKey`, `PublicKey` or `PresharedKey` is malformed. Carries no
    /// part of the value.
    InvalidKey { key: &'static str, reason: KeyError },
    /// Any other malformed value; `value` is the offending list item.
    InvalidValue {
        key: &'static str,
        value: String,
        reason: ValueError,
    },
    /// No `[Interface]` section in the file (line 0).
    MissingInterface,
    /// `[Interface]` without `PrivateKey`.
    MissingPrivateKey,
    /// `[Interface]` without any `Address`.
    MissingAddress,
    /// `[Peer]` without `PublicKey`.
    MissingPublicKey,
}

/// Why a value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueError {
    Net(NetError),
    Endpoint(EndpointError),
    /// A `DNS` item that looks like an address (digits and dots, or a colon,
    /// which is how wg-quick tells servers from search domains) but is not.
    DnsServer,
    /// A `DNS` item that is neither an address nor a valid domain name.
    SearchDomain,
    /// Not a decimal number in `min..=max`.
    Number {
        min: u32,
        max: u32,
    },
    /// Not `off` nor a decimal number in `0..=max`.
    NumberOrOff {
        max: u32,
    },
    /// Not `off`, a decimal or a `0x` hex number up to `0xffffffff`.
    FwMark,
    /// Not `true` or `false`.
    Bool,
    /// Not `off`, `auto` or a table id/name without spaces or control
    /// characters.
    Table,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Net(e) => e.fmt(f),
            ValueError::Endpoint(e) => e.fmt(f),
            ValueError::DnsServer => f.write_str("not a valid IP address"),
            ValueError::SearchDomain => f.write_str("neither an IP address nor a search domain"),
            ValueError::Number { min, max } => {
                write!(f, "expected a number from {min} to {max}")
            }
            ValueError::NumberOrOff { max } => {
                write!(f, "expected off or a number from 0 to {max}")
            }
            ValueError::FwMark => f.write_str("expected off or a number from 0 to 0xffffffff"),
            ValueError::Bool => f.write_str("expected true or false"),
            ValueError::Table => {
                f.write_str("expected off, auto, or a table number or name without spaces")
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "(not shown: long enough to be key material)";
        match self {
            ErrorKind::NotKeyValue => {
                f.write_str("expected a [Section] header or Key = Value (line not shown)")
            }
            ErrorKind::UnknownSection { name: Some(name) } => {
                write!(f, "unknown section header {}", Echo(name))
            }
            ErrorKind::UnknownSection { name: None } => {
                write!(f, "unknown section header {HIDDEN}")
            }
            ErrorKind::KeyOutsideSection { key: Some(key) } => {
                write!(f, "{} before any [Interface] or [Peer] section", Echo(key))
            }
            ErrorKind::KeyOutsideSection { key: None } => {
                write!(f, "key before any [Interface] or [Peer] section {HIDDEN}")
            }
            ErrorKind::UnknownKey {
                key: Some(key),
                section,
            } => write!(f, "unknown key {} in {section}", Echo(key)),
            ErrorKind::UnknownKey { key: None, section } => {
                write!(f, "unknown key in {section} {HIDDEN}")
            }
            ErrorKind::WrongSection { key, section } => {
                let other = match section {
                    Section::Interface => Section::Peer,
                    Section::Peer => Section::Interface,
                };
                write!(f, "{key} belongs in {other}, not in {section}")
            }
            ErrorKind::EmptyValue { key } => write!(f, "missing value for {key}"),
            ErrorKind::InvalidKey { key, reason } => write!(f, "invalid {key}: {reason}"),
            ErrorKind::InvalidValue { key, value, reason } => {
                write!(f, "invalid {key} {}: {reason}", Echo(value))
            }
            ErrorKind::MissingInterface => f.write_str("no [Interface] section"),
            ErrorKind::MissingPrivateKey => f.write_str("[Interface] has no PrivateKey"),
            ErrorKind::MissingAddress => {
                f.write_str("[Interface] has no Address (wg-wrap needs the tunnel's own address)")
            }
            ErrorKind::MissingPublicKey => f.write_str("[Peer] has no PublicKey"),
        }
    }
}

impl std::error::Error for ErrorKind {}

/// Writes `12: message`, or just `message` for line 0.
fn write_located(
    f: &mut fmt::Formatter<'_>,
    path: Option<&str>,
    line: usize,
    message: &dyn fmt::Display,
) -> fmt::Result {
    match (path, line) {
        (Some(path), 0) => write!(f, "{path}: {message}"),
        (Some(path), line) => write!(f, "{path}:{line}: {message}"),
        (None, 0) => write!(f, "{message}"),
        (None, line) => write!(f, "{line}: {message}"),
    }
}

impl ParseError {
    /// `path:line: message`.
    pub fn display_with_path<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        WithPath(move |f: &mut fmt::Formatter<'_>| {
            write_located(f, Some(path), self.line, &self.kind)
        })
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, None, self.line, &self.kind)
    }
}

impl std::error::Error for ParseError {}

/// Every error found in one pass over the file, in line order. Never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseErrors(pub(crate) Vec<ParseError>);

impl ParseErrors {
    pub fn errors(&self) -> &[ParseError] {
        &self.0
    }

    /// One `path:line: message` per line, without a trailing newline.
    pub fn display_with_path<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        WithPath(move |f: &mut fmt::Formatter<'_>| {
            for (i, e) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str("\n")?;
                }
                write!(f, "{}", e.display_with_path(path))?;
            }
            Ok(())
        })
    }
}

impl fmt::Display for ParseErrors {
    /// One `line: message` per line, without a trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

impl IntoIterator for ParseErrors {
    type Item = ParseError;
    type IntoIter = std::vec::IntoIter<ParseError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Something accepted but worth telling the user: a setting wg-wrap ignores,
/// a value that was later overridden, an ambiguous spelling. `line` 0 means
/// the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

impl Warning {
    /// `path:line: message`.
    pub fn display_with_path<'a>(&'a self, path: &'a str) -> impl fmt::Display + 'a {
        WithPath(move |f: &mut fmt::Formatter<'_>| {
            write_located(f, Some(path), self.line, &self.message)
        })
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, None, self.line, &self.message)
    }
}

struct WithPath<F>(F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for WithPath<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// Longest echoed value, in characters; more is cut and marked with `…`.
const ECHO_MAX: usize = 64;

/// A string from the file, shown in double quotes with `"`, `\`, control
/// characters and bidirectional-text overrides escaped, so that a hostile
/// file cannot rewrite the terminal or reorder the message.
pub(crate) struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, c) in self.0.chars().enumerate() {
            if i == ECHO_MAX {
                f.write_str("…")?;
                break;
            }
            if c == '"' || c == '\\' || c.is_control() || is_invisible(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("\"")
    }
}

/// Characters that are not `is_control` but still hide or reorder text:
/// zero-width and bidirectional marks, embeddings and isolates, the line
/// and paragraph separators, and a BOM that is not at the start of the file.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Names longer than this are not echoed: no key name in the format is
/// longer than 19 characters, and a base64 key is 43 or 44.
const NAME_MAX: usize = 24;

/// `Some(name)` if `name` is short enough to show without risking leaking a
/// pasted key, else `None`.
pub(crate) fn showable(name: &str) -> Option<String> {
    (name.chars().count() <= NAME_MAX).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let e = ParseError {
            line: 12,
            kind: ErrorKind::InvalidValue {
                key: "AllowedIPs",
                value: "10.0.0.0/33".into(),
                reason: ValueError::Net(NetError::PrefixTooLong {
                    prefix: 33,
                    max: 32,
                }),
            },
        };
        assert_eq!(
            e.to_string(),
            r#"12: invalid AllowedIPs "10.0.0.0/33": prefix length 33 exceeds 32"#
        );
        assert_eq!(
            e.display_with_path("work.conf").to_string(),
            r#"work.conf:12: invalid AllowedIPs "10.0.0.0/33": prefix length 33 exceeds 32"#
        );
        let whole = ParseError {
            line: 0,
            kind: ErrorKind::MissingInterface,
        };
        let errors = ParseErrors(vec![whole, e]);
        assert_eq!(
            errors.display_with_path("w.conf").to_string(),
            "w.conf: no [Interface] section\n\
             w.conf:12: invalid AllowedIPs \"10.0.0.0/33\": prefix length 33 exceeds 32"
        );
        assert_eq!(
            errors.to_string(),
            "no [Interface] section\n\
             12: invalid AllowedIPs \"10.0.0.0/33\": prefix length 33 exceeds 32"
        );
        let w = Warning {
            line: 3,
            message: "FwMark ignored".into(),
        };
        assert_eq!(w.to_string(), "3: FwMark ignored");
        assert_eq!(w.display_with_path("a").to_string(), "a:3: FwMark ignored");
    }

    #[test]
    fn echo_escapes_and_truncates() {
        let cases = [
            ("plain", "\"plain\""),
            ("a\u{1b}[2Jb", "\"a\\u{1b}[2Jb\""),
            ("tab\there", "\"tab\\there\""),
            ("q\"b\\", "\"q\\\"b\\\\\""),
            ("rtl\u{202e}x", "\"rtl\\u{202e}x\""),
            ("bom\u{feff}x\u{2028}", "\"bom\\u{feff}x\\u{2028}\""),
            ("ünï", "\"ünï\""),
        ];
        for (input, want) in cases {
            assert_eq!(Echo(input).to_string(), want, "input {input:?}");
        }
        let long = "x".repeat(100);
        assert_eq!(Echo(&long).to_string(), format!("\"{}…\"", "x".repeat(64)));
    }

    #[test]
    fn long_names_are_hidden() {
        assert_eq!(showable("Foo").as_deref(), Some("Foo"));
        assert_eq!(
            showable("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk"),
            None
        );
    }
}
