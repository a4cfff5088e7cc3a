//! Arbitrary bytes through `parse`, and whatever parses through `render`
//! and `parse` again. Checks: no panic; errors are non-empty and never show
//! anything shaped like key material; the rendering parses back to the same
//! configuration (ignoring line numbers) and renders identically.
//!
//! Few mutated inputs are free of errors, so a failed parse is "repaired"
//! (erroneous lines dropped, missing keys supplied, using the errors' line
//! numbers) and parsed again, up to a few times. This takes odd but valid
//! values that the fuzzer found to the round-trip check.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use wgconf::{ErrorKind, Key, ParseErrors};

/// The longest run of base64 characters in `s`. A key is 43 of them plus
/// `=`. The parser replaces any echoed value holding a run of 40, so a run
/// in its output is at most 39 characters, plus one more when an escape
/// such as `\t` or `\0` (Debug) puts a letter or digit right before it.
fn longest_base64_run(s: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

fn without_lines(mut c: wgconf::Config) -> wgconf::Config {
    c.interface.line = 0;
    for p in &mut c.peers {
        p.line = 0;
    }
    c
}

/// A key that no fuzz input is likely to contain, distinct per line.
fn made_up_key(line: usize) -> String {
    let mut bytes = [0xa5u8; 32];
    bytes[..8].copy_from_slice(&(line as u64).to_le_bytes());
    Key::from_bytes(bytes).to_base64()
}

/// Drops the lines with errors and fills in what the cross-checks missed.
fn repair(text: &str, errors: &ParseErrors) -> String {
    let mut prefix = String::new();
    let mut drop = BTreeSet::new();
    let mut insert: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for e in errors.errors() {
        match e.kind {
            ErrorKind::MissingInterface => {
                prefix = format!(
                    "[Interface]\nPrivateKey = {}\nAddress = 10.0.0.1/32\n",
                    made_up_key(0)
                );
            }
            ErrorKind::MissingPrivateKey => insert
                .entry(e.line)
                .or_default()
                .push(format!("PrivateKey = {}", made_up_key(0))),
            ErrorKind::MissingAddress => insert
                .entry(e.line)
                .or_default()
                .push("Address = 10.0.0.1/32".to_owned()),
            ErrorKind::MissingPublicKey => insert
                .entry(e.line)
                .or_default()
                .push(format!("PublicKey = {}", made_up_key(e.line))),
            _ => {
                drop.insert(e.line);
            }
        }
    }
    let mut out = prefix;
    for (i, line) in text.split('\n').enumerate() {
        if !drop.contains(&(i + 1)) {
            out.push_str(line);
            out.push('\n');
        }
        for extra in insert.get(&(i + 1)).into_iter().flatten() {
            out.push_str(extra);
            out.push('\n');
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut text = String::from_utf8_lossy(data).into_owned();
    for _ in 0..4 {
        match wgconf::parse(&text) {
            Err(errors) => {
                assert!(!errors.errors().is_empty());
                let shown = format!(
                    "{errors}\n{errors:?}\n{}",
                    errors.display_with_path("f.conf")
                );
                assert!(
                    longest_base64_run(&shown) <= 40,
                    "error output may contain key material:\n{shown}"
                );
                text = repair(&text, &errors);
            }
            Ok(parsed) => {
                for w in &parsed.warnings {
                    let _ = w.to_string();
                }
                let rendered = wgconf::render(&parsed.config);
                let again = match wgconf::parse(&rendered) {
                    Ok(again) => again,
                    Err(e) => panic!("rendered config does not parse:\n{e}\n---\n{rendered}"),
                };
                assert_eq!(
                    without_lines(again.config.clone()),
                    without_lines(parsed.config),
                    "round trip changed the config:\n{rendered}"
                );
                assert_eq!(
                    wgconf::render(&again.config),
                    rendered,
                    "render is not canonical"
                );
                return;
            }
        }
    }
});
