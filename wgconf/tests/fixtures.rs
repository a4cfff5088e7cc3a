//! Runs every `fixtures/NAME.conf` through `wgconf::parse`.
//!
//! - If it fails, the errors (one `NAME.conf:LINE: message` per line) must
//!   equal `NAME.err`; names starting with `err-` must fail.
//! - If it parses, `render` must equal `NAME.out`, the warnings must equal
//!   `NAME.warn` (absent means none), and the rendering must parse back to
//!   the same configuration.
//!
//! `WGCONF_BLESS=1 cargo test -p wgconf --test fixtures` rewrites the
//! expected files; review the diff before keeping it.

use std::fs;
use std::path::{Path, PathBuf};

fn check(path: &Path, actual: Option<String>, bless: bool, failures: &mut Vec<String>) {
    if bless {
        match &actual {
            Some(text) => fs::write(path, text).unwrap(),
            None if path.exists() => fs::remove_file(path).unwrap(),
            None => {}
        }
        return;
    }
    let expected = fs::read_to_string(path).ok();
    if expected != actual {
        failures.push(format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            expected.as_deref().unwrap_or("<no file>"),
            actual.as_deref().unwrap_or("<no file>"),
        ));
    }
}

fn without_lines(mut c: wgconf::Config) -> wgconf::Config {
    c.interface.line = 0;
    for p in &mut c.peers {
        p.line = 0;
    }
    c
}

#[test]
fn fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bless = std::env::var_os("WGCONF_BLESS").is_some();
    let mut confs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    confs.sort();
    assert!(confs.len() >= 30, "fixtures missing from {}", dir.display());

    let mut failures = Vec::new();
    for conf in &confs {
        let name = conf.file_name().unwrap().to_str().unwrap();
        let text = fs::read_to_string(conf).unwrap();
        let (err, out, warn) = match wgconf::parse(&text) {
            Err(errors) => {
                if !name.starts_with("err-") {
                    failures.push(format!("{name} should parse:\n{errors}"));
                }
                (
                    Some(format!("{}\n", errors.display_with_path(name))),
                    None,
                    None,
                )
            }
            Ok(parsed) => {
                if name.starts_with("err-") {
                    failures.push(format!("{name} should not parse"));
                }
                let rendered = wgconf::render(&parsed.config);
                let again = wgconf::parse(&rendered).expect("rendered text parses");
                assert_eq!(
                    without_lines(again.config.clone()),
                    without_lines(parsed.config.clone()),
                    "{name}: round trip"
                );
                assert_eq!(wgconf::render(&again.config), rendered, "{name}: canonical");
                let warn: String = parsed
                    .warnings
                    .iter()
                    .map(|w| format!("{}\n", w.display_with_path(name)))
                    .collect();
                (None, Some(rendered), (!warn.is_empty()).then_some(warn))
            }
        };
        check(&conf.with_extension("err"), err, bless, &mut failures);
        check(&conf.with_extension("out"), out, bless, &mut failures);
        check(&conf.with_extension("warn"), warn, bless, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
