//! `up --foreground` under a `Type=notify` systemd unit (e2e tier): the test plays
//! systemd's part with a datagram socket it owns, named by `$NOTIFY_SOCKET` as a path
//! and as an abstract `@name` (which lives in the sandbox's network namespace, as
//! systemd's would in the host's).

mod common;

use common::*;
use rustix::net::{recvmsg, sockopt, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, UCred};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Stdio;
use std::time::Duration;

/// One notification and the sender's credentials, as systemd sees them (it accepts
/// only the main PID's messages with the default `NotifyAccess=main`).
fn receive(socket: &UnixDatagram, timeout: Duration) -> (String, UCred) {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap_or_else(|e| panic!("no notification within {timeout:?}: {e}"));
    let cred = control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmCredentials(c) => Some(c),
            _ => None,
        })
        .expect("SCM_CREDENTIALS on the notification");
    let text = String::from_utf8(buf[..msg.bytes].to_vec()).expect("UTF-8 notification");
    (text, cred)
}

/// Start `up --foreground work` with `NOTIFY_SOCKET=addr`; check READY=1 comes from
/// the supervisor only once `exec` works, and STOPPING=1 on SIGTERM.
fn serve_and_stop(sb: &Sandbox, socket: &UnixDatagram, addr: &str) {
    sockopt::set_socket_passcred(socket, true).unwrap();
    let mut cmd = sb.wg_wrap(&["up", "--foreground", "work"]);
    cmd.env("NOTIFY_SOCKET", addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let fg = spawn_timeout(cmd, COMMAND_TIMEOUT);

    let (ready, cred) = receive(socket, Duration::from_secs(20));
    // What READY=1 promises: the session is usable now, no retrying needed.
    let state = std::fs::read_to_string(sb.profile_runtime_dir("work").join("state"))
        .expect("READY=1 arrived before the session state was written");
    let out = sb.run(sb.wg_wrap(&exec_args(
        "work",
        &["curl", "-sS", "--max-time", "10", "http://10.77.0.1/"],
    )));
    assert_success(&out);
    assert!(
        ready.starts_with("READY=1\n") && ready.contains("STATUS=session work is up\n"),
        "{ready:?}"
    );
    // Sent by systemd's main PID: the process systemd started, which became the
    // supervisor.
    assert!(
        state.contains(&format!("supervisor_pid={}\n", cred.pid.as_raw_nonzero())),
        "sender {cred:?}, state:\n{state}"
    );
    assert_eq!(cred.uid.as_raw(), sb.uid, "sender {cred:?}");

    signal(
        cred.pid.as_raw_nonzero().get() as u32,
        rustix::process::Signal::TERM,
    );
    let (stopping, _) = receive(socket, Duration::from_secs(20));
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    let out = fg.wait();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Nothing else was sent (the socket is non-blocking now: a leftover shows at once).
    socket.set_nonblocking(true).unwrap();
    let mut rest = [0u8; 64];
    assert!(
        socket.recv(&mut rest).is_err(),
        "unexpected extra notification"
    );
}

#[test]
fn foreground_notifies_a_path_socket() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let dir = sb.user_dir("systemd");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    // The test user sends; connecting needs write permission on the socket file.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    serve_and_stop(&sb, &socket, path.to_str().unwrap());
}

#[test]
fn foreground_notifies_an_abstract_socket() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    // Abstract names belong to a network namespace: bind in the sandbox's, where
    // wg-wrap starts (a short-lived thread enters it, the test's threads stay put).
    let name = format!("wg-wrap-test-notify-{}", sb.id);
    let netns = sb.netns_file();
    let bind_name = name.clone();
    let socket = std::thread::spawn(move || {
        let ns = std::fs::File::open(netns).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("enter the sandbox netns");
        let addr = SocketAddr::from_abstract_name(bind_name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket")
    })
    .join()
    .unwrap();
    serve_and_stop(&sb, &socket, &format!("@{name}"));
}

#[test]
fn an_unreachable_notify_socket_is_a_clear_error() {
    let sb = Sandbox::new();
    let (_peer, _) = sb.virtual_peer("work");
    let mut cmd = sb.wg_wrap(&["up", "--foreground", "work"]);
    cmd.env("NOTIFY_SOCKET", "/nonexistent/notify");
    let out = sb.run(cmd);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connect to systemd's NOTIFY_SOCKET=/nonexistent/notify"),
        "{}",
        describe(&out)
    );
    // No supervisor ran, so nothing is left.
    let left = sb.wait_no_processes(Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
