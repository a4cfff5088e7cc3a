//! systemd's readiness protocol (sd_notify(3)) for `up --foreground` under a
//! `Type=notify` unit: `READY=1` once the tunnel is usable, `STOPPING=1` when the
//! session ends.
//!
//! The supervisor cannot open `$NOTIFY_SOCKET` itself: an abstract name (`@…`) lives in
//! the host's network namespace and a path may be hidden by the session's mounts. So
//! the CLI connects a datagram socket to it on the host, before isolation
//! (`contract::handover::connect_notify_socket`), and hands the connected descriptor in (`--notify-fd`); sending on a
//! connected unix socket needs neither the name nor the namespace any more. The
//! supervisor stays systemd's main PID (the launcher execs it without forking in the
//! foreground), so the default `NotifyAccess=main` accepts its messages.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

/// The supervisor's end: a socket the CLI connected on the host.
pub struct Notifier(UnixDatagram);

impl Notifier {
    pub fn new(fd: OwnedFd) -> Notifier {
        Notifier(UnixDatagram::from(fd))
    }

    /// The session is usable: the tunnel is configured, the data plane runs and the
    /// state file that `exec` looks for is written.
    pub fn ready(&self, profile: &str) -> io::Result<()> {
        self.send(&format!(
            "READY=1\nSTATUS=session {} is up\n",
            status_text(profile)
        ))
    }

    /// The session is ending (a stop signal, or `down` with nothing left to serve).
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\nSTATUS=stopping\n")
    }

    /// One datagram per state change, as sd_notify sends them.
    fn send(&self, message: &str) -> io::Result<()> {
        let sent = self.0.send(message.as_bytes())?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notification was truncated",
            ));
        }
        Ok(())
    }
}

/// The profile name as one line of STATUS= (it came from the user's command line).
fn status_text(profile: &str) -> String {
    profile
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::handover::connect_notify_socket as connect;
    use std::ffi::OsStr;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::time::Duration;

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = listener.recv(&mut buf).expect("a notification within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn check_protocol(listener: &UnixDatagram, addr: &OsStr) {
        let notifier = Notifier::new(connect(addr).unwrap());
        notifier.ready("work\nX=1").unwrap();
        assert_eq!(
            receive(listener),
            "READY=1\nSTATUS=session work?X=1 is up\n"
        );
        notifier.stopping().unwrap();
        assert_eq!(receive(listener), "STOPPING=1\nSTATUS=stopping\n");
    }

    #[test]
    fn path_socket() {
        let dir = std::env::temp_dir().join(format!("wg-wrap-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        check_protocol(&listener, path.as_os_str());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_socket() {
        let name = format!("wg-wrap-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        check_protocol(&listener, OsStr::new(&format!("@{name}")));
    }

    #[test]
    fn unusable_addresses_are_errors() {
        for bad in ["", "relative/notify", "vsock:2:1234"] {
            let err = connect(OsStr::new(bad)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        // Nobody listening: the CLI reports it instead of systemd timing out later.
        let err = connect(OsStr::new("/nonexistent/wg-wrap/notify")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
