//! Arbitrary bytes through `parse`, and whatever parses through `render`
//! and `parse` again. Checks: no panic; errors are non-empty and never show
//! anything shaped like key material; the rendering parses back to the same
//! configuration (ignoring line numbers) and renders identically.

#![no_main]

use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match wgconf::parse(&text) {
        Err(errors) => {
            assert!(!errors.errors().is_empty());
            let shown = format!("{errors}\n{errors:?}\n{}", errors.display_with_path("f.conf"));
            assert!(
                longest_base64_run(&shown) <= 40,
                "error output may contain key material:\n{shown}"
            );
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
            assert_eq!(wgconf::render(&again.config), rendered, "render is not canonical");
        }
    }
});
