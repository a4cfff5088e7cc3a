//! `wg-wrap check`'s session probe: the steps a supervisor takes to set up a session,
//! done once in throw-away namespaces, each reported on its own line.
//!
//! `wg-wrap check` starts this exactly as it starts a supervisor — through the
//! launcher's `create`, so the memfd exec, the AppArmor label a new user namespace
//! gets, the uid/gid maps and the ambient capabilities are all the real ones — and
//! reads the report from the probe's stdout. The launcher reports its own failures
//! (`wg-wrap: <step>: <ERRNO>`) on stderr before the probe ever runs.
//!
//! The report, one line each, stops at the first failure:
//! 1. `label <text>`: this process's AppArmor label, or `label -` without AppArmor;
//! 2. `ok tun` / `fail tun <errno>`: a TUN device (what needs `/dev/net/tun`);
//! 3. `ok netlink`, `ok address`, `ok link`: rtnetlink, an address on the device
//!    (TEST-NET-1: nothing is ever sent, the namespace has no way out), the link up;
//! 4. `ok mount`: a tmpfs mounted in the private mount namespace.
//!
//! Everything it makes disappears with the process: the namespaces have no other
//! member.

use crate::namespace::netlink::Rtnetlink;
use crate::namespace::netsetup::{NetOps, LOOPBACK_INDEX};
use rustix::mount::{mount, MountFlags};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use wgconf::IpNet;

/// The probe device's name (not the session's `wg0`, so nobody mistakes one for the
/// other in a log).
const DEVICE: &str = "wgprobe0";
/// Where the probe mounts its tmpfs: present on every system, and in this private
/// mount namespace covering it changes nothing anyone else sees.
const MOUNT_POINT: &str = "/tmp";

/// Run the probe, writing the report to `out`; returns the exit status (0: every step
/// worked, 1: one failed and was reported). With `label_only`, step 1 alone (what
/// `wg-wrap check` runs in a bare new user namespace to see the label it gets).
pub fn run(out: &mut dyn Write, label_only: bool) -> i32 {
    let label = read_label().unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(out, "label {}", label.trim());
    if label_only {
        return 0;
    }
    match steps(out) {
        Ok(()) => 0,
        Err((step, e)) => {
            let _ = writeln!(out, "fail {step} {}", e.raw_os_error().unwrap_or(0));
            1
        }
    }
}

fn steps(out: &mut dyn Write) -> Result<(), (&'static str, io::Error)> {
    let mut ok = |step: &str| {
        let _ = writeln!(out, "ok {step}");
    };
    let tun = tun_rs::DeviceBuilder::new()
        .name(DEVICE)
        .build_sync()
        .map_err(|e| ("tun", e))?;
    ok("tun");
    let index = tun.if_index().map_err(|e| ("tun", e))?;
    let mut netlink = Rtnetlink::open().map_err(|e| ("netlink", e))?;
    netlink
        .set_link_up(LOOPBACK_INDEX)
        .map_err(|e| ("netlink", e))?;
    ok("netlink");
    let addr =
        IpNet::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32).expect("a /32 is a valid prefix");
    netlink
        .add_address(index, addr)
        .map_err(|e| ("address", e))?;
    ok("address");
    netlink.set_link_up(index).map_err(|e| ("link", e))?;
    ok("link");
    mount(
        "tmpfs",
        MOUNT_POINT,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"size=4k",
    )
    .map_err(|e| ("mount", e.into()))?;
    ok("mount");
    Ok(())
}

/// This process's AppArmor label, if AppArmor is active. The LSM-specific file first
/// (Linux >= 5.8); `attr/current` belongs to whichever LSM is the major one, so it is
/// used only where the AppArmor directory does not exist.
fn read_label() -> Option<String> {
    let text = match std::fs::read_to_string("/proc/self/attr/apparmor/current") {
        Ok(text) => text,
        // Another LSM's context here (SELinux: `user:role:type:level`) is no label
        // of AppArmor's, which reads `unconfined` or `NAME (MODE)`.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::read_to_string("/proc/self/attr/current")
                .ok()
                .filter(|text| looks_like_apparmor(text.trim_end_matches(['\n', '\0'])))?
        }
        Err(_) => return None,
    };
    let text = text.trim_end_matches(['\n', '\0']);
    (!text.trim().is_empty()).then(|| text.to_owned())
}

fn looks_like_apparmor(label: &str) -> bool {
    label == "unconfined" || (label.ends_with(')') && label.contains(" ("))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_lsms_contexts_are_no_apparmor_labels() {
        assert!(looks_like_apparmor("unconfined"));
        assert!(looks_like_apparmor("wg-wrap (unconfined)"));
        assert!(looks_like_apparmor("unprivileged_userns (enforce)"));
        assert!(!looks_like_apparmor(
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"
        ));
        assert!(!looks_like_apparmor("system_u:system_r:kernel_t:s0"));
    }
}
