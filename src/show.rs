//! `show PROFILE`: the profile as wg-wrap understands it, keys redacted.

use crate::profile::ProfileRef;
use anyhow::Result;
use std::os::unix::fs::PermissionsExt;

/// Exit status when the profile has errors (they are the user's, not wg-wrap's).
const EXIT_INVALID: i32 = 1;

/// wg-quick's warning: a profile holds a private key, so group and others must not
/// be able to read it.
pub fn permission_warning(profile: &ProfileRef) -> Option<String> {
    let mode = std::fs::metadata(&profile.path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by group or others (mode {:o}) but holds a private key: chmod 600 it",
            profile.path.display(),
            mode & 0o777
        )
    })
}

/// The canonical rendering with private and preshared keys replaced.
pub fn redacted(config: &wgconf::Config) -> String {
    wgconf::render(config)
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            if key.eq_ignore_ascii_case("PrivateKey") || key.eq_ignore_ascii_case("PresharedKey") {
                format!("{key} = (hidden)\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

pub fn run(profile: &ProfileRef) -> Result<i32> {
    let text = std::fs::read_to_string(&profile.path)
        .map_err(|e| crate::profile::unreadable(profile, e))?;
    let path = profile.path.display().to_string();
    if let Some(w) = permission_warning(profile) {
        eprintln!("wg-wrap: warning: {w}");
    }
    match wgconf::parse(&text) {
        Ok(parsed) => {
            println!("# profile {} ({path})", profile.name);
            print!("{}", redacted(&parsed.config));
            for w in &parsed.warnings {
                println!("# warning: {}", w.display_with_path(&path));
            }
            Ok(0)
        }
        Err(errors) => {
            eprintln!("{}", errors.display_with_path(&path));
            Ok(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hidden_public_keys_shown() {
        let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.2/24\n\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nPresharedKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.0.0.0/24\n";
        let out = redacted(&wgconf::parse(text).unwrap().config);
        assert!(!out.contains("yAnz5TF"), "{out}");
        assert!(!out.contains("TrMvSoP4"), "{out}");
        assert!(
            out.contains("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="),
            "{out}"
        );
        assert_eq!(out.matches("(hidden)").count(), 2, "{out}");
    }
}
