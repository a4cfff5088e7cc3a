//! What `wg setconf` makes of the `[Peer]` sections: one peer per
//! `PublicKey`, and each AllowedIPs prefix under exactly one peer.
//!
//! `wg setconf` (wireguard-tools `src/config.c`) sends every `[Peer]`
//! section to the device in file order, and the device (the kernel's
//! `set_peer`, wireguard-go's `IpcSet`) applies them one after another:
//!
//! - a section whose `PublicKey` was seen before updates that peer instead
//!   of adding one: `PresharedKey`, `Endpoint` and `PersistentKeepalive`
//!   replace the earlier values only when the section gives them;
//! - every section carries `WGPEER_REPLACE_ALLOWEDIPS`, so its AllowedIPs
//!   replace the peer's earlier ones, even when it lists none;
//! - inserting a prefix that another peer holds moves it to this peer
//!   (`allowedips.c` `add`, wireguard-go `trieEntry.insert`); inserting one
//!   the peer already holds moves it to the end of that peer's list
//!   (`list_move_tail`), which is the order `wg showconf` prints;
//! - the device stores prefixes with their host bits cleared;
//! - a section whose `PublicKey` is the interface's own (the one its
//!   `PrivateKey` gives) is ignored as a whole (the kernel's `set_peer`,
//!   wireguard-go's `peer.dummy`): usually the wrong key pasted.
//!
//! The parsed `Config` is that end state, so the data plane, `show` and
//! `status` all see the same thing; warnings name the lines involved.

use std::collections::HashMap;

use crate::config::Peer;
use crate::key::Key;
use crate::net::IpNet;
use crate::parse::{Draft, Field};

/// Who holds a prefix: the peer's index, and where it was listed (the
/// section's header line and the AllowedIPs line).
#[derive(Clone, Copy)]
struct Holder {
    peer: usize,
    section: usize,
    line: usize,
}

/// Folds the sections, which must all have a parsed key, into peers in
/// order of first appearance. `private_key` is the interface's. Returns the
/// peers and `(line, message)` warnings.
pub(crate) fn merge(
    private_key: &Key,
    sections: Vec<Draft<Peer>>,
) -> (Vec<Peer>, Vec<(usize, String)>) {
    let own = Key::from_bytes(x25519_dalek::x25519(
        *private_key.as_bytes(),
        x25519_dalek::X25519_BASEPOINT_BYTES,
    ));
    let mut peers: Vec<Peer> = Vec::new();
    let mut by_key: HashMap<Key, usize> = HashMap::new();
    let mut holders: HashMap<IpNet, Holder> = HashMap::new();
    let mut warnings = Vec::new();
    for draft in sections {
        let Some(key) = draft.key else {
            unreachable!("Parser::finish merges only when every [Peer] has a key")
        };
        let section = &draft.value;
        if key == own {
            warnings.push((
                section.line,
                "[Peer] has this interface's own public key (the one its PrivateKey gives); \
                 WireGuard ignores such a section, and so does wg-wrap: put the other \
                 side's public key here"
                    .to_owned(),
            ));
            continue;
        }
        let i = match by_key.get(&key) {
            None => {
                let mut peer = Peer::new(key);
                peer.preshared_key = section.preshared_key;
                peer.endpoint = section.endpoint.clone();
                peer.persistent_keepalive = section.persistent_keepalive;
                peer.line = section.line;
                by_key.insert(key, peers.len());
                peers.push(peer);
                peers.len() - 1
            }
            Some(&i) => {
                let peer = &mut peers[i];
                if draft.seen(Field::PresharedKey).is_some() {
                    peer.preshared_key = section.preshared_key;
                }
                if draft.seen(Field::Endpoint).is_some() {
                    peer.endpoint = section.endpoint.clone();
                }
                if draft.seen(Field::PersistentKeepalive).is_some() {
                    peer.persistent_keepalive = section.persistent_keepalive;
                }
                let mut message = format!(
                    "[Peer] has the same PublicKey as the [Peer] on line {}; as with wg setconf, \
                     both set one peer, in file order: values given here replace the earlier \
                     ones, and this section's AllowedIPs replace all of the earlier ones",
                    peer.line
                );
                if section.allowed_ips.is_empty() && !peer.allowed_ips.is_empty() {
                    message.push_str(" (it lists none, so the peer is left with none)");
                }
                warnings.push((section.line, message));
                i
            }
        };
        // WGPEER_REPLACE_ALLOWEDIPS: the section starts the peer's list afresh.
        for net in std::mem::take(&mut peers[i].allowed_ips) {
            holders.remove(&net);
        }
        for (net, &line) in section.allowed_ips.iter().zip(&draft.item_lines) {
            let net = net.network();
            let this = Holder {
                peer: i,
                section: section.line,
                line,
            };
            if let Some(before) = holders.insert(net, this) {
                peers[before.peer].allowed_ips.retain(|n| *n != net);
                if before.peer != i {
                    warnings.push((
                        line,
                        format!(
                            "AllowedIPs {net} is also listed on line {} for the [Peer] on line \
                             {}; this later [Peer] on line {} gets it, as in WireGuard",
                            before.line, before.section, section.line
                        ),
                    ));
                }
            }
            peers[i].allowed_ips.push(net);
        }
    }
    (peers, warnings)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{run, warnings, PRIV, PSK, PUB1, PUB2};
    use crate::Key;

    fn head() -> String {
        format!("[Interface]\nPrivateKey = {PRIV}\nAddress = 10.0.0.1/24\n")
    }

    fn nets(p: &crate::Peer) -> Vec<String> {
        p.allowed_ips.iter().map(|n| n.to_string()).collect()
    }

    /// Checked against `wg setconf` + `wg showconf` on wireguard-go
    /// (wireguard-tools v1.0.20210914); the differential test in
    /// `tests/wg_semantics.rs` keeps checking it.
    #[test]
    fn a_repeated_peer_is_one_peer_set_in_file_order() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.1.0.0/16, 10.2.0.0/16\n\
             Endpoint = 192.0.2.1:1000\nPersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {PUB2}\nAllowedIPs = 10.3.0.0/16\n\
             [Peer]\nPublicKey = {PUB1}\nEndpoint = 192.0.2.2:2000\nPresharedKey = {PSK}\n\
             AllowedIPs = 10.4.0.0/16\n",
            head()
        );
        let p = run(&text).unwrap();
        let peers = &p.config.peers;
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].line, 4);
        assert_eq!(nets(&peers[0]), ["10.4.0.0/16"]);
        assert_eq!(
            peers[0].endpoint.as_ref().unwrap().to_string(),
            "192.0.2.2:2000"
        );
        assert_eq!(peers[0].persistent_keepalive, Some(25));
        assert_eq!(peers[0].preshared_key.unwrap().to_base64(), PSK);
        assert_eq!(nets(&peers[1]), ["10.3.0.0/16"]);
        assert_eq!(
            warnings(&p),
            [
                "12: [Peer] has the same PublicKey as the [Peer] on line 4; as with wg setconf, \
              both set one peer, in file order: values given here replace the earlier ones, \
              and this section's AllowedIPs replace all of the earlier ones"
            ]
        );
    }

    #[test]
    fn a_repeated_peer_without_allowed_ips_is_left_with_none() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.1.0.0/16\nPersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {PUB1}\nPersistentKeepalive = off\n",
            head()
        );
        let p = run(&text).unwrap();
        assert_eq!(p.config.peers.len(), 1);
        assert!(p.config.peers[0].allowed_ips.is_empty());
        assert_eq!(p.config.peers[0].persistent_keepalive, None);
        assert!(
            warnings(&p)[0].ends_with("(it lists none, so the peer is left with none)"),
            "{:?}",
            warnings(&p)
        );
    }

    #[test]
    fn a_prefix_belongs_to_the_last_peer_that_lists_it() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.0.0.0/24, 10.9.0.0/16\n\
             [Peer]\nPublicKey = {PUB2}\nAllowedIPs = 10.0.1.0/24\nAllowedIPs = 10.0.0.7/24\n",
            head()
        );
        let p = run(&text).unwrap();
        assert_eq!(nets(&p.config.peers[0]), ["10.9.0.0/16"]);
        assert_eq!(nets(&p.config.peers[1]), ["10.0.1.0/24", "10.0.0.0/24"]);
        assert!(warnings(&p).contains(
            &"10: AllowedIPs 10.0.0.0/24 is also listed on line 6 for the [Peer] on line 4; \
              this later [Peer] on line 7 gets it, as in WireGuard"
                .to_owned()
        ));
    }

    /// The device keeps one entry per prefix; listing it again moves it to
    /// the end of the peer's list (`list_move_tail`), as `wg showconf` shows.
    #[test]
    fn a_prefix_listed_twice_for_one_peer_is_kept_once_at_its_last_place() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\n\
             AllowedIPs = 10.0.0.1/8, 10.0.0.0/8, 10.2.0.0/16, 10.3.0.0/16, 10.2.0.0/16\n",
            head()
        );
        let p = run(&text).unwrap();
        assert_eq!(
            nets(&p.config.peers[0]),
            ["10.0.0.0/8", "10.3.0.0/16", "10.2.0.0/16"]
        );
        assert!(warnings(&p).iter().all(|w| !w.contains("also listed")));
    }

    /// Checked against wireguard-go as above: the section is skipped whole,
    /// so its AllowedIPs take nothing from other peers.
    #[test]
    fn a_peer_with_the_interfaces_own_key_is_ignored() {
        let private = Key::from_base64(PRIV).unwrap();
        let own = Key::from_bytes(x25519_dalek::x25519(
            *private.as_bytes(),
            x25519_dalek::X25519_BASEPOINT_BYTES,
        ))
        .to_base64();
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.0.0.0/8\n\
             [Peer]\nPublicKey = {own}\nAllowedIPs = 10.0.0.0/8\n",
            head()
        );
        let p = run(&text).unwrap();
        assert_eq!(p.config.peers.len(), 1);
        assert_eq!(nets(&p.config.peers[0]), ["10.0.0.0/8"]);
        assert_eq!(
            warnings(&p),
            [
                "7: [Peer] has this interface's own public key (the one its PrivateKey gives); \
              WireGuard ignores such a section, and so does wg-wrap: put the other side's \
              public key here"
            ]
        );
    }

    /// A prefix taken by a later peer and then claimed again by a later
    /// section of the first peer goes back to it.
    #[test]
    fn a_prefix_can_move_back() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.0.0.0/8\n\
             [Peer]\nPublicKey = {PUB2}\nAllowedIPs = 10.0.0.0/8\n\
             [Peer]\nPublicKey = {PUB1}\nAllowedIPs = 10.0.0.0/8\n",
            head()
        );
        let p = run(&text).unwrap();
        assert_eq!(nets(&p.config.peers[0]), ["10.0.0.0/8"]);
        assert!(p.config.peers[1].allowed_ips.is_empty());
        let w = warnings(&p);
        assert!(w.iter().any(|w| w.starts_with(
            "9: AllowedIPs 10.0.0.0/8 is also listed on line 6 for the [Peer] on line 4"
        )));
        assert!(w.iter().any(|w| w.starts_with(
            "12: AllowedIPs 10.0.0.0/8 is also listed on line 9 for the [Peer] on line 7"
        )));
    }
}
