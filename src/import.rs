//! `import FILE [NAME]`: check a wg-quick file and copy it into the config directory.
//!
//! Nothing changes unless the whole file parses: every error is printed (with file
//! and line), and the config directory is not even created. The copy is the file's
//! own bytes (comments kept), written to a private temporary file beside the target
//! and renamed over it, so a reader never sees half a profile; without `--force` the
//! rename refuses to replace an existing profile (RENAME_NOREPLACE), so two imports
//! racing for one name cannot both win.

use crate::profile;
use anyhow::{bail, Context, Result};
use rustix::fs::{Mode, OFlags, RenameFlags};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Exit status when the file has errors (they are the user's, like `show`'s).
const EXIT_INVALID: i32 = 1;

pub fn run(
    feedback: &crate::progress::Feedback,
    config_dir: &Path,
    file: &Path,
    name: Option<&str>,
    force: bool,
) -> Result<i32> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned(),
    };
    profile::check_name(&name).with_context(|| {
        format!(
            "cannot import {} under that name: give another as `wg-wrap import {} NAME`",
            file.display(),
            file.display()
        )
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let shown = file.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{shown}: not a text file (invalid UTF-8 at byte {})",
            e.valid_up_to()
        )
    })?;
    let parsed = match wgconf::parse(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            eprintln!("{}", errors.display_with_path(&shown));
            eprintln!("wg-wrap: nothing imported: fix the lines above and import again");
            return Ok(EXIT_INVALID);
        }
    };
    for w in &parsed.warnings {
        eprintln!("wg-wrap: warning: {}", w.display_with_path(&shown));
    }
    let target = config_dir.join(format!("{name}.conf"));
    if !force && target.exists() {
        bail!(
            "profile {name} already exists ({}): `wg-wrap import --force {} {name}` replaces it",
            target.display(),
            file.display()
        );
    }
    write_private(config_dir, &name, &bytes, force)?;
    feedback.info(&format!(
        "imported {} as profile {name} ({}); start it with `wg-wrap up {name}`",
        file.display(),
        target.display()
    ));
    Ok(0)
}

/// Write `NAME.conf` in `dir` (created 0700 if missing) with mode 0600, atomically.
fn write_private(dir: &Path, name: &str, bytes: &[u8], replace: bool) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the config directory {}", dir.display()))?;
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the config directory {}", dir.display()))?;
    let final_name = format!("{name}.conf");
    let tmp_name = format!(".{name}.conf.import-{}", std::process::id());
    // O_EXCL + NOFOLLOW: never write through something planted under the temporary name.
    let tmp = rustix::fs::openat(
        dir_fd.as_fd(),
        tmp_name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )
    .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::from(tmp);
        // The umask may have taken bits away, never added them: set the mode exactly.
        rustix::fs::fchmod(&file, Mode::RUSR | Mode::WUSR)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(
            &dir_fd,
            tmp_name.as_str(),
            &dir_fd,
            final_name.as_str(),
            flags,
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST => {
                anyhow::anyhow!("profile {name} appeared while importing: `--force` replaces it")
            }
            e => anyhow::Error::from(e),
        })?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir_fd, tmp_name.as_str(), rustix::fs::AtFlags::empty());
    }
    result.with_context(|| format!("cannot write {}", dir.join(&final_name).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(cfg: &Path, src: &Path, name: Option<&str>, force: bool) -> Result<i32> {
        run(&crate::progress::Feedback::default(), cfg, src, name, force)
    }
    use std::os::unix::fs::PermissionsExt;

    const GOOD: &str = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.0.0.2/24\n\n# kept\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 10.0.0.0/24\n";

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("wg-wrap-import-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn copies_private_refuses_overwrite_and_forces() {
        let d = scratch("copy");
        let src = d.join("vpn.conf");
        std::fs::write(&src, GOOD).unwrap();
        let cfg = d.join("cfg/nested");
        assert_eq!(import(&cfg, &src, None, false).unwrap(), 0);
        let dst = cfg.join("vpn.conf");
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), GOOD);
        assert_eq!(
            std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o700
        );

        std::fs::write(&src, GOOD.replace("# kept", "# new")).unwrap();
        let err = import(&cfg, &src, None, false).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&dst).unwrap(), GOOD);
        assert_eq!(import(&cfg, &src, None, true).unwrap(), 0);
        assert!(std::fs::read_to_string(&dst).unwrap().contains("# new"));
        // Under another name; no temporary files left.
        assert_eq!(import(&cfg, &src, Some("home"), false).unwrap(), 0);
        let mut names: Vec<_> = std::fs::read_dir(&cfg)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["home.conf", "vpn.conf"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn invalid_file_or_name_changes_nothing() {
        let d = scratch("bad");
        let src = d.join("bad.conf");
        std::fs::write(&src, GOOD.replace("10.0.0.0/24", "10.0.0.0/33")).unwrap();
        let cfg = d.join("cfg");
        assert_eq!(import(&cfg, &src, None, false).unwrap(), EXIT_INVALID);
        assert!(
            !cfg.exists(),
            "the config dir was created for an invalid file"
        );
        std::fs::write(&src, GOOD).unwrap();
        for name in ["..", "a/b", ".x", ""] {
            assert!(import(&cfg, &src, Some(name), false).is_err(), "{name:?}");
        }
        assert!(!cfg.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
