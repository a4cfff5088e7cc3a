//! Shared test data and helpers. The keys were made up for these tests
//! (32 random bytes each) and belong to nothing.

use crate::config::{Config, Parsed};
use crate::parse::parse;

pub(crate) const PRIV: &str = "H2sTECwLcPPnglErrs7EjLxIs3y5WKZuB85YYONIzPQ=";
pub(crate) const PUB1: &str = "x+jXKAZ6X+umPABw0a728/x5l54zuiFbdZsPFuTwsdA=";
pub(crate) const PUB2: &str = "p845mBKgS80hB8l3pTFt8BYEizUZ/je/XA3j3m/bebQ=";
pub(crate) const PSK: &str = "3txoXP5Xt/4tofBc/7XWZXODMR1Wpi+pKVbwNw75WX0=";

/// `(line, message)` for every error, or a panic if the text parsed.
pub(crate) fn errors(text: &str) -> Vec<(usize, String)> {
    match parse(text) {
        Ok(p) => panic!("parsed unexpectedly: {:?}", p.config),
        Err(e) => e
            .errors()
            .iter()
            .map(|e| (e.line, e.kind.to_string()))
            .collect(),
    }
}

/// `line` fields differ between a file and its rendering by design.
pub(crate) fn without_lines(mut c: Config) -> Config {
    c.interface.line = 0;
    for p in &mut c.peers {
        p.line = 0;
    }
    c
}

/// Parses `line` as line 4, inside `[Interface]`.
pub(crate) fn iface(line: &str) -> Result<Parsed, Vec<String>> {
    run(&format!(
        "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.9.9.9/32\n{line}\n[Peer]\nPublicKey = {PUB1}\n"
    ))
}

/// Parses `line` as line 6, inside `[Peer]`.
pub(crate) fn peer(line: &str) -> Result<Parsed, Vec<String>> {
    run(&format!(
        "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.9.9.9/32\n[Peer]\nPublicKey = {PUB1}\n{line}\n"
    ))
}

pub(crate) fn run(text: &str) -> Result<Parsed, Vec<String>> {
    parse(text).map_err(|e| e.errors().iter().map(|e| e.to_string()).collect())
}

/// Checks that every bad line gives exactly the one error `want`.
pub(crate) fn rejects(
    f: fn(&str) -> Result<Parsed, Vec<String>>,
    line_no: usize,
    cases: &[(&str, &str)],
) {
    for (line, want) in cases {
        match f(line) {
            Ok(p) => panic!("{line:?} parsed: {:?}", p.config),
            Err(got) => assert_eq!(got, [format!("{line_no}: {want}")], "line {line:?}"),
        }
    }
}

pub(crate) fn warnings(p: &Parsed) -> Vec<String> {
    p.warnings.iter().map(|w| w.to_string()).collect()
}
