//! WireGuard keys: 32 opaque bytes, written as 44 characters of standard
//! base64 ending in one `=`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A Curve25519 private or public key, or a preshared key.
///
/// `Debug` prints `Key(<redacted>)` so that a whole [`Config`](crate::Config)
/// can be logged without leaking the private key. There is deliberately no
/// `Display`: writing a key out takes an explicit [`Key::to_base64`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

/// Why a string is not a key. Neither variant carries any of the input, so
/// the error can be shown without leaking key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not 44 characters long (the length is not secret).
    WrongLength { len: usize },
    /// 44 characters, but not canonical standard base64 of 32 bytes.
    NotBase64,
}

/// Length of a key in base64: 32 bytes -> 43 characters + one `=`.
const BASE64_LEN: usize = 44;

impl Key {
    /// Decodes the format `wg genkey` prints. Like wireguard-tools'
    /// `key_from_base64`, this requires exactly 44 characters, the `=` pad and
    /// zero trailing bits, so every key has exactly one spelling.
    pub fn from_base64(s: &str) -> Result<Key, KeyError> {
        if s.len() != BASE64_LEN {
            return Err(KeyError::WrongLength { len: s.len() });
        }
        // The decoder wants room for its 33-byte estimate of 44 characters.
        let mut buf = [0u8; 33];
        match STANDARD.decode_slice(s, &mut buf) {
            Ok(32) => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&buf[..32]);
                Ok(Key(key))
            }
            // The decoder's own errors name the offending byte and offset;
            // they are dropped so that no fragment of a key is ever shown.
            _ => Err(KeyError::NotBase64),
        }
    }

    /// The canonical 44-character base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::WrongLength { len } => write!(
                f,
                "not 32 bytes of base64 (expected {BASE64_LEN} characters, found {len})"
            ),
            KeyError::NotBase64 => f.write_str("not 32 bytes of base64"),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    #[test]
    fn round_trips_base64() {
        let key = Key::from_base64(GOOD).unwrap();
        assert_eq!(key.to_base64(), GOOD);
        assert_eq!(Key::from_bytes(*key.as_bytes()), key);
    }

    #[test]
    fn rejects_malformed_keys() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::WrongLength { len: 0 }),
            (&GOOD[..43], KeyError::WrongLength { len: 43 }),
            // 44 characters but no padding: would be 33 bytes.
            (
                "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmkA",
                KeyError::NotBase64,
            ),
            // Non-zero trailing bits: `k` -> `l` changes only discarded bits.
            (
                "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=",
                KeyError::NotBase64,
            ),
            // URL-safe alphabet is not what wg uses.
            (
                "yAnz5TF-lXXJte14tji3zlMNq-hd2rYUIgJBgB3fBmk=",
                KeyError::NotBase64,
            ),
            (
                "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fB==",
                KeyError::WrongLength { len: 43 },
            ),
            (
                "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm==",
                KeyError::NotBase64,
            ),
            (
                "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmké",
                KeyError::WrongLength { len: 45 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Key::from_base64(input), Err(*want), "input {input:?}");
        }
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let key = Key::from_base64(GOOD).unwrap();
        assert_eq!(format!("{key:?}"), "Key(<redacted>)");
        assert_eq!(format!("{:?}", Some(key)), "Some(Key(<redacted>))");
        let bad = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=";
        let err = Key::from_base64(bad).unwrap_err();
        assert!(!err.to_string().contains("yAnz"));
        assert!(!format!("{err:?}").contains("yAnz"));
    }
}
