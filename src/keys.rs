//! `genkey`, `pubkey` and `genpsk`: WireGuard keys, byte for byte as `wg` makes them.
//!
//! The text form is standard base64 with padding (44 characters) and a newline. A
//! private key is clamped like wireguard-tools' `curve25519_clamp_secret`, so `wg
//! pubkey` and `wg-wrap pubkey` agree on every key either tool generates. `pubkey`
//! reads exactly as `wg pubkey` does: 44 characters, then only whitespace or NULs.

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

/// Exit status for a key that cannot be read (as `wg pubkey` uses).
pub const EXIT_BAD_KEY: i32 = 1;
const KEY_LEN: usize = 32;
const BASE64_LEN: usize = 44;

/// Why `pubkey` refused its input; the wording follows `wg`'s messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Format,
    Trailing,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::Format => f.write_str(
                "Key is not the correct length or format: give 44 base64 characters \
                 ending in '=', as `wg-wrap genkey` prints them",
            ),
            KeyError::Trailing => {
                f.write_str("Trailing characters found after key: give exactly one key on stdin")
            }
        }
    }
}

impl std::error::Error for KeyError {}

fn random_key() -> Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    let mut filled = 0;
    while filled < KEY_LEN {
        match rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("getrandom"),
        }
    }
    Ok(key)
}

/// Curve25519 clamping (RFC 7748 §5), as `wg genkey` applies it.
fn clamp(key: &mut [u8; KEY_LEN]) {
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
}

/// The text form of `key`, newline included.
fn encode(key: &[u8; KEY_LEN]) -> String {
    format!("{}\n", STANDARD.encode(key))
}

/// Parse `wg pubkey`'s input: 44 base64 characters, then nothing but whitespace or
/// NUL bytes. The base64 engine rejects non-zero padding bits, as `wg` does.
pub fn parse_private(input: &[u8]) -> Result<[u8; KEY_LEN], KeyError> {
    if input.len() < BASE64_LEN {
        return Err(KeyError::Format);
    }
    let (text, rest) = input.split_at(BASE64_LEN);
    // `wg` checks the trailing bytes first (it reads them before decoding).
    if rest
        .iter()
        .any(|&b| b != 0 && !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
    {
        return Err(KeyError::Trailing);
    }
    if text[BASE64_LEN - 1] != b'=' || text.contains(&0) {
        return Err(KeyError::Format);
    }
    let bytes = STANDARD.decode(text).map_err(|_| KeyError::Format)?;
    bytes.try_into().map_err(|_| KeyError::Format)
}

/// The public key of `private` in text form.
pub fn public_of(private: &[u8; KEY_LEN]) -> String {
    encode(&PublicKey::from(&StaticSecret::from(*private)).to_bytes())
}

/// `wg genkey`'s warning: a private key written to a file others can read.
fn warn_if_stdout_world_readable() {
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return;
    };
    if meta.is_file() && meta.permissions().mode() & 0o007 != 0 {
        eprintln!(
            "wg-wrap: warning: writing a key to a file others can read: set `umask 077` \
             and try again"
        );
    }
}

fn print(text: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write the key to stdout")?;
    Ok(0)
}

pub fn genkey() -> Result<i32> {
    warn_if_stdout_world_readable();
    let mut key = random_key()?;
    clamp(&mut key);
    print(&encode(&key))
}

pub fn genpsk() -> Result<i32> {
    warn_if_stdout_world_readable();
    print(&encode(&random_key()?))
}

pub fn pubkey() -> Result<i32> {
    // A key and some whitespace; anything much longer is not a key.
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_to_end(&mut input)
        .context("read a private key from stdin")?;
    match parse_private(&input) {
        Ok(private) => print(&public_of(&private)),
        Err(e) => {
            eprintln!("wg-wrap: {e}");
            Ok(EXIT_BAD_KEY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1 Alice, as `wg pubkey` prints it.
    const ALICE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const ALICE_PUB: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n";

    #[test]
    fn rfc7748_vector() {
        assert_eq!(
            public_of(&parse_private(ALICE.as_bytes()).unwrap()),
            ALICE_PUB
        );
        let with_ws = format!("{ALICE}\n \t\0\n");
        assert_eq!(
            public_of(&parse_private(with_ws.as_bytes()).unwrap()),
            ALICE_PUB
        );
    }

    #[test]
    fn bad_input_is_refused_like_wg() {
        let cases: &[(&[u8], KeyError)] = &[
            (b"", KeyError::Format),
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC=\n",
                KeyError::Format,
            ),
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=x",
                KeyError::Trailing,
            ),
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= =",
                KeyError::Trailing,
            ),
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCoA\n",
                KeyError::Format,
            ),
            // Non-zero padding bits in the last character.
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCp=\n",
                KeyError::Format,
            ),
            (
                b"dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25L!o=\n",
                KeyError::Format,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_private(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn generated_keys_are_clamped_and_round_trip() {
        let mut key = random_key().unwrap();
        clamp(&mut key);
        assert_eq!(key[0] & 7, 0);
        assert_eq!(key[31] & 0xc0, 0x40);
        let text = encode(&key);
        assert_eq!(text.len(), BASE64_LEN + 1);
        assert_eq!(parse_private(text.as_bytes()).unwrap(), key);
    }
}
