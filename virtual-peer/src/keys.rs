//! Curve25519 keys as WireGuard uses them, and their base64 text form.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use rand_core::{OsRng, RngCore};

/// A fresh `(private, public)` pair. The private key is clamped exactly like
/// `wg genkey` does, so `wg pubkey` on its base64 prints our public key.
pub fn generate_keypair() -> ([u8; 32], [u8; 32]) {
    let mut private = [0u8; 32];
    OsRng.fill_bytes(&mut private);
    clamp(&mut private);
    let public = public_key(&private);
    (private, public)
}

/// The public key belonging to `private` (what `wg pubkey` prints).
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    // x25519-dalek clamps internally, so clamped and unclamped forms of one
    // secret give the same public key.
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

/// Standard base64 with padding: the 44-character form of wg(8) and
/// wg-quick configuration files.
pub fn to_base64(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Curve25519 clamping (RFC 7748 §5), as in wireguard-tools' `curve25519_clamp_secret`.
fn clamp(key: &mut [u8; 32]) {
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's private key and the public key derived from it.
    #[test]
    fn public_key_matches_rfc7748_vector() {
        let private = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(public_key(&private), public);
    }

    #[test]
    fn generated_keys_are_clamped_and_consistent() {
        let (private, public) = generate_keypair();
        assert_eq!(private[0] & 7, 0);
        assert_eq!(private[31] & 0xc0, 0x40);
        assert_eq!(public_key(&private), public);
        assert_ne!(generate_keypair().0, private);
    }

    #[test]
    fn base64_is_wg_form() {
        let text = to_base64(&[0u8; 32]);
        assert_eq!(text, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
