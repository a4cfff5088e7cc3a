//! User defaults from `config.toml` in the config directory (beside the profiles).
//!
//! Every key is optional; an unknown key is an error naming its line, so a typo never
//! silently does nothing.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SETTINGS_FILE: &str = "config.toml";

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Runtime state directory (overridden by `$WG_WRAP_RUNTIME_DIR`).
    pub runtime_dir: Option<PathBuf>,
    /// MTU for profiles that do not set one (wg-wrap's own default is 1420).
    pub mtu: Option<u16>,
    /// How long `up --wait` waits for the first handshake, in seconds (default 10).
    pub wait_timeout_secs: Option<u64>,
}

impl Settings {
    /// Load `dir/config.toml`; a missing file means all defaults.
    pub fn load(dir: &Path) -> Result<Settings> {
        let path = dir.join(SETTINGS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Settings::parse(&text).with_context(|| {
            format!(
                "invalid settings in {} (fix the key named below; README's Profiles section lists \
                 the keys)",
                path.display()
            )
        })
    }

    pub fn parse(text: &str) -> Result<Settings> {
        let settings: Settings = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(mtu) = settings.mtu {
            anyhow::ensure!(
                (576..=65535).contains(&mtu),
                "mtu = {mtu}: must be between 576 and 65535"
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys() {
        let s =
            Settings::parse("runtime_dir = \"/r\"\nmtu = 1380\nwait_timeout_secs = 3\n").unwrap();
        assert_eq!(
            s,
            Settings {
                runtime_dir: Some("/r".into()),
                mtu: Some(1380),
                wait_timeout_secs: Some(3)
            }
        );
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = Settings::parse("mtu = 1400\n\nruntme_dir = \"/x\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("runtme_dir"), "{text}");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Settings::parse("mtu = 100\n").is_err());
        assert!(Settings::parse("mtu = \"big\"\n").is_err());
    }
}
