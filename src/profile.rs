//! Profiles: finding the `.conf`, parsing it, and resolving endpoints on the host.

use anyhow::{bail, Context, Result};
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use wgconf::{Config, Endpoint};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRef {
    pub name: String,
    pub path: PathBuf,
    /// Named by a path (not looked up by name in the config directory).
    pub from_path: bool,
}

/// A profile argument is a path when it contains `/` or ends in `.conf` (the name is
/// then the file stem); otherwise it is a name looked up in the config directory.
pub fn resolve(arg: &str, config_dir: &Path) -> Result<ProfileRef> {
    let is_path = arg.contains('/') || arg.ends_with(".conf");
    let (name, path) = if is_path {
        let path = PathBuf::from(arg);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        (name, path)
    } else {
        (arg.to_owned(), config_dir.join(format!("{arg}.conf")))
    };
    check_name(&name).with_context(|| format!("profile {arg:?}"))?;
    Ok(ProfileRef {
        name,
        path,
        from_path: is_path,
    })
}

/// Profile names become directory names in the runtime dir: keep them boring.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
    if !ok {
        bail!("invalid profile name {name:?}: use 1-64 letters, digits and -_.@+, not starting with a dot");
    }
    Ok(())
}

/// Read and parse a profile; every error is reported with `file:line:`.
pub fn load(profile: &ProfileRef) -> Result<wgconf::Parsed> {
    let text = std::fs::read_to_string(&profile.path).map_err(|e| unreadable(profile, e))?;
    wgconf::parse(&text).map_err(|errors| {
        anyhow::anyhow!(
            "{}\nfix the lines above (`wg-wrap show {}` checks the file again)",
            errors.display_with_path(&profile.path.display().to_string()),
            profile.path.display()
        )
    })
}

/// Why a profile cannot be read, and what to do about it.
pub fn unreadable(profile: &ProfileRef, e: std::io::Error) -> anyhow::Error {
    let path = profile.path.display();
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "no profile {}: {path} does not exist (import a wg-quick file with `wg-wrap import \
             FILE {}`, or give the path of a .conf; `wg-wrap list` shows your profiles)",
            profile.name,
            profile.name
        )
    } else {
        anyhow::Error::from(e).context(format!(
            "cannot read profile {path} (it must be readable by you: `chmod 600` it)"
        ))
    }
}

/// Resolve hostname endpoints on the host network (never through the tunnel).
pub fn resolve_endpoints(config: &mut Config) -> Result<()> {
    for peer in &mut config.peers {
        if let Some(Endpoint::Host { host, port }) = &peer.endpoint {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()
                .with_context(|| {
                    format!(
                        "cannot resolve endpoint {host}:{port} on the host (check the \
                         profile's Endpoint and this machine's network and DNS)"
                    )
                })?
                .next()
                .with_context(|| {
                    format!("endpoint {host}:{port} has no address (check the profile's Endpoint)")
                })?;
            peer.endpoint = Some(Endpoint::Addr(addr));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let dir = Path::new("/cfg");
        assert_eq!(
            resolve("work", dir).unwrap(),
            ProfileRef {
                name: "work".into(),
                path: "/cfg/work.conf".into(),
                from_path: false,
            }
        );
        assert_eq!(
            resolve("./vpn/home.conf", dir).unwrap(),
            ProfileRef {
                name: "home".into(),
                path: "./vpn/home.conf".into(),
                from_path: true,
            }
        );
        assert_eq!(resolve("x.conf", dir).unwrap().name, "x");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in ["", "..", ".hidden", "a b", "a\nb", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(resolve("/etc/.conf", Path::new("/c")).is_err());
    }
}
