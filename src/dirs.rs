//! Where profiles and runtime state live. All of it comes from the environment so
//! tests (and users) can point wg-wrap anywhere; nothing reads the real home directly.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Where `NAME.conf` profiles are looked up.
    pub config: PathBuf,
    /// The root of runtime state (`profiles/<name>/…` below it).
    pub runtime: PathBuf,
    /// Whether `runtime` is the `/tmp` fallback (it then needs stricter checks).
    pub runtime_is_fallback: bool,
    /// Whether `$WG_WRAP_RUNTIME_DIR` chose `runtime` (it beats the settings file).
    runtime_from_env: bool,
}

impl Dirs {
    pub fn from_env() -> Dirs {
        Dirs::from_vars(|k| std::env::var_os(k), rustix::process::getuid().as_raw())
    }

    /// The resolution rules, with the environment injected.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Dirs {
        let nonempty = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let config = nonempty("WG_WRAP_CONFIG_DIR")
            .or_else(|| nonempty("XDG_CONFIG_HOME").map(|p| p.join("wg-wrap")))
            .or_else(|| nonempty("HOME").map(|p| p.join(".config/wg-wrap")))
            .unwrap_or_else(|| PathBuf::from(".config/wg-wrap"));
        let runtime_from_env = nonempty("WG_WRAP_RUNTIME_DIR").is_some();
        let (runtime, runtime_is_fallback) = match nonempty("WG_WRAP_RUNTIME_DIR") {
            Some(p) => (p, false),
            None => match nonempty("XDG_RUNTIME_DIR") {
                Some(p) => (p.join("wg-wrap"), false),
                // cron, su and CI often have no XDG_RUNTIME_DIR: a private per-uid
                // directory whose ownership and mode are checked before use.
                None => (PathBuf::from(format!("/tmp/wg-wrap-{uid}")), true),
            },
        };
        Dirs {
            config,
            runtime,
            runtime_is_fallback,
            runtime_from_env,
        }
    }

    /// Apply `runtime_dir` from the settings file unless the environment chose one.
    pub fn with_settings(mut self, settings: &crate::settings::Settings) -> Dirs {
        if let (false, Some(dir)) = (self.runtime_from_env, &settings.runtime_dir) {
            self.runtime = dir.clone();
            self.runtime_is_fallback = false;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dirs(vars: &[(&str, &str)]) -> Dirs {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Dirs::from_vars(|k| map.get(k).cloned(), 1000)
    }

    #[test]
    fn explicit_overrides_win() {
        let d = dirs(&[
            ("WG_WRAP_CONFIG_DIR", "/c"),
            ("WG_WRAP_RUNTIME_DIR", "/r"),
            ("XDG_CONFIG_HOME", "/x"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(d.config, PathBuf::from("/c"));
        assert_eq!(d.runtime, PathBuf::from("/r"));
    }

    #[test]
    fn xdg_then_home() {
        let d = dirs(&[
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/home/u"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(d.config, PathBuf::from("/x/wg-wrap"));
        assert_eq!(d.runtime, PathBuf::from("/run/user/1000/wg-wrap"));
        let d = dirs(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "")]);
        assert_eq!(d.config, PathBuf::from("/home/u/.config/wg-wrap"));
    }

    #[test]
    fn settings_runtime_dir_loses_only_to_the_environment() {
        let settings = crate::settings::Settings {
            runtime_dir: Some("/s".into()),
            ..Default::default()
        };
        let d = dirs(&[("XDG_RUNTIME_DIR", "/run/user/1000")]).with_settings(&settings);
        assert_eq!(d.runtime, PathBuf::from("/s"));
        let d = dirs(&[("WG_WRAP_RUNTIME_DIR", "/e")]).with_settings(&settings);
        assert_eq!(d.runtime, PathBuf::from("/e"));
    }

    #[test]
    fn tmp_fallback_without_xdg_runtime_dir() {
        let d = dirs(&[("HOME", "/home/u")]);
        assert_eq!(d.runtime, PathBuf::from("/tmp/wg-wrap-1000"));
        assert!(d.runtime_is_fallback);
    }
}
