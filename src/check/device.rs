//! `/dev/net/tun`: present, a character device, and readable and writable by the
//! user (most desktop distributions ship it 0666; some servers 0600).

use super::Check;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A udev rule that keeps the device usable across reboots.
pub const UDEV_RULE_FILE: &str = "/etc/udev/rules.d/60-wg-wrap-tun.rules";
pub const UDEV_RULE: &str = r#"KERNEL=="tun", MODE="0666""#;

/// What `stat` says about the device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Missing(PathBuf),
    Present {
        path: PathBuf,
        is_char_device: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl Node {
    pub fn read(path: &Path) -> Node {
        match std::fs::metadata(path) {
            Err(_) => Node::Missing(path.to_owned()),
            Ok(m) => Node::Present {
                path: path.to_owned(),
                is_char_device: m.file_type().is_char_device(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            },
        }
    }
}

/// The permission bits `uid` (member of `gids`) gets, as the kernel picks them:
/// owner, else group, else others; root passes anyway.
fn may_read_write(mode: u32, owner: u32, group: u32, uid: u32, gids: &[u32]) -> bool {
    if uid == 0 {
        return true;
    }
    let bits = if owner == uid {
        mode >> 6
    } else if gids.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    bits & 0o6 == 0o6
}

fn chmod_fix(path: &Path) -> String {
    format!(
        "sudo chmod 0666 {}, and keep it across reboots with a udev rule: echo '{UDEV_RULE}' | \
         sudo tee {UDEV_RULE_FILE}",
        path.display()
    )
}

pub fn check(node: &Node, uid: u32, gids: &[u32]) -> Check {
    match node {
        Node::Missing(path) => Check::error(
            "tun",
            format!("{} does not exist (no TUN support loaded)", path.display()),
            "sudo modprobe tun, and load it at boot: echo tun | sudo tee /etc/modules-load.d/tun.conf",
        ),
        Node::Present {
            path,
            is_char_device: false,
            ..
        } => Check::error(
            "tun",
            format!("{} is not a character device", path.display()),
            format!(
                "remove whatever is at {} and load the tun module: sudo modprobe tun",
                path.display()
            ),
        ),
        Node::Present {
            path,
            mode,
            uid: owner,
            gid: group,
            ..
        } if !may_read_write(*mode, *owner, *group, uid, gids) => Check::error(
            "tun",
            format!(
                "{} is mode {mode:04o} (owner uid {owner}, gid {group}): you (uid {uid}) cannot \
                 open it to create a TUN device",
                path.display()
            ),
            chmod_fix(path),
        ),
        Node::Present { path, mode, .. } => Check::ok(
            "tun",
            format!("{} is usable (mode {mode:04o})", path.display()),
        ),
    }
}

/// The fix for a TUN device the probe could not create.
pub fn probe_fix() -> String {
    chmod_fix(Path::new("/dev/net/tun"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::host::tests::FakeRoots;
    use crate::check::Status;

    fn node(mode: u32, uid: u32, gid: u32) -> Node {
        Node::Present {
            path: "/dev/net/tun".into(),
            is_char_device: true,
            mode,
            uid,
            gid,
        }
    }

    #[test]
    fn permission_bits() {
        assert_eq!(check(&node(0o666, 0, 0), 1000, &[1000]).status, Status::Ok);
        let c = check(&node(0o600, 0, 0), 1000, &[1000]);
        assert_eq!(c.status, Status::Error);
        assert!(c.message.contains("mode 0600"), "{c:?}");
        let fix = c.fix.unwrap();
        assert!(fix.contains("sudo chmod 0666 /dev/net/tun"), "{fix}");
        assert!(fix.contains(r#"KERNEL=="tun", MODE="0666""#), "{fix}");
        // Group access counts for members only.
        assert_eq!(
            check(&node(0o660, 0, 108), 1000, &[1000, 108]).status,
            Status::Ok
        );
        assert_eq!(
            check(&node(0o660, 0, 108), 1000, &[1000]).status,
            Status::Error
        );
        // Owner bits decide for the owner, even if others may.
        assert_eq!(
            check(&node(0o066, 1000, 0), 1000, &[1000]).status,
            Status::Error
        );
        // Root may open it whatever the mode.
        assert_eq!(check(&node(0o600, 0, 0), 0, &[0]).status, Status::Ok);
    }

    #[test]
    fn from_a_fake_dev_tree() {
        let fake = FakeRoots::new();
        let path = fake.roots.dev.join("net/tun");
        let missing = check(&Node::read(&path), 1000, &[]);
        assert_eq!(missing.status, Status::Error);
        assert!(missing.fix.unwrap().contains("modprobe tun"));
        // A regular file where the device should be.
        fake.write("dev/net/tun", "");
        let c = check(&Node::read(&path), 1000, &[]);
        assert_eq!(c.status, Status::Error);
        assert!(c.message.contains("not a character device"), "{c:?}");
    }
}
