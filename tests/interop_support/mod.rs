//! The interop rig: wg-wrap against a WireGuard implementation no one here wrote,
//! wireguard-go or boringtun-cli ([`Implementation`]).
//!
//! Topology, built per test and torn down on drop (also after a failed assertion):
//!
//! ```text
//!  client netns (common::Sandbox)                server netns (ServerNs)
//!  ┌──────────────────────────────┐              ┌─────────────────────────────────┐
//!  │ wg-wrap, as user wgwrap-test │              │ the peer, interface wgpeer      │
//!  │  └ private user+mount+net ns │              │   10.99.0.1/24  fd99::1/64      │
//!  │     wg0 10.99.0.2 fd99::2    │              │ services (threads of this test) │
//!  │ vc 192.0.2.2/24              │══ veth ══════│ vs 192.0.2.1/24                 │
//!  │    2001:db8::2/64            │              │    2001:db8::1/64               │
//!  │                              │              │    198.51.100.1/24 (roaming)    │
//!  └──────────────────────────────┘              └─────────────────────────────────┘
//! ```
//!
//! Stages, in order: the client sandbox and the server namespaces (each held by a
//! `sleep` started with `unshare`, nothing named); the veth pair, created in the server
//! namespace with its peer end moved straight into the client's by PID; outer
//! addresses (TEST-NET-1, TEST-NET-2, 2001:db8::/32, without DAD); the peer in the
//! server's network namespace and in a mount namespace of its own whose tmpfs
//! `/var/run/wireguard` holds its UAPI socket (`ip netns exec` would share that
//! directory between all tests); its key and peer set with `wg setconf`/`wg set` run in
//! the same namespaces; tunnel addresses on its interface; the services bound to those
//! addresses. The test then writes the client profile and drives `wg-wrap` as the
//! unprivileged user.
//!
//! The holders and the peer carry `PR_SET_PDEATHSIG` (via `setpriv --pdeathsig`),
//! so even a test binary killed outright leaves neither processes nor namespaces: the
//! signal follows the test thread that started them, which is also the thread that
//! owns (and drops) them.

#![allow(dead_code)]

pub mod services;

use crate::common::*;
use services::Services;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SERVER_OUTER_V4: &str = "192.0.2.1";
pub const CLIENT_OUTER_V4: &str = "192.0.2.2";
pub const SERVER_OUTER_V6: &str = "2001:db8::1";
pub const CLIENT_OUTER_V6: &str = "2001:db8::2";
/// The "other network" the client roams to (TEST-NET-2), also reachable on `vs`.
pub const SERVER_ROAM_V4: &str = "198.51.100.1";
pub const CLIENT_ROAM_V4: &str = "198.51.100.2";
pub const SERVER_TUNNEL_V4: &str = "10.99.0.1";
pub const CLIENT_TUNNEL_V4: &str = "10.99.0.2";
pub const SERVER_TUNNEL_V6: &str = "fd99::1";
pub const CLIENT_TUNNEL_V6: &str = "fd99::2";
pub const SERVER_PORT: u16 = 51820;
/// Veth ends, named inside their own namespaces only.
pub const CLIENT_VETH: &str = "vc";
pub const SERVER_VETH: &str = "vs";
/// How long a handshake may take to show up at the peer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Stdin that yields `text` and then end-of-file. Written up front into a pipe (the
/// inputs here are far below the pipe's capacity), so waiting on the command keeps its
/// timeout.
pub fn feed(text: &str) -> Stdio {
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    assert!(text.len() < 16 * 1024, "input too large for a pipe buffer");
    std::fs::File::from(writer)
        .write_all(text.as_bytes())
        .expect("fill the pipe");
    Stdio::from(reader)
}

/// Feed `script` to `cmd` (an `ip -batch -`) and require success.
pub fn ip_batch(mut cmd: Command, script: &str, what: &str) {
    cmd.stdin(feed(script));
    let out = run_timeout(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{what} failed\n{script}\n{}",
        describe(&out)
    );
}

/// Output of a diagnostic command (stdout and stderr), never failing: it is only ever
/// used to build a failure message.
pub fn capture(mut cmd: Command) -> String {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(child) = child else {
        return format!("(could not run {cmd:?})\n");
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(out)) => format!("{}{}", clip(&out.stdout), clip(&out.stderr)),
        Ok(Err(e)) => format!("({cmd:?}: {e})\n"),
        Err(_) => {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
            format!("({cmd:?} timed out)\n")
        }
    }
}

/// Run a root command that must succeed (set-up steps); panics with its output.
pub fn must(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null());
    let out = run_timeout(cmd, COMMAND_TIMEOUT);
    assert!(out.status.success(), "{what} failed\n{}", describe(&out));
    out
}

fn wg_tool(args: &[&str], input: Option<&str>) -> String {
    let mut cmd = Command::new("wg");
    cmd.args(args).stdin(feed(input.unwrap_or_default()));
    let out = run_timeout(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "wg {args:?} failed\n{}",
        describe(&out)
    );
    stdout(&out).trim().to_owned()
}

/// A key pair made by `wg genkey` / `wg pubkey`, base64 as wg-quick files hold them.
#[derive(Clone)]
pub struct Keys {
    pub private: String,
    pub public: String,
}

impl Keys {
    pub fn generate() -> Keys {
        let private = wg_tool(&["genkey"], None);
        let public = wg_tool(&["pubkey"], Some(&private));
        Keys { private, public }
    }
}

pub fn genpsk() -> String {
    wg_tool(&["genpsk"], None)
}

/// Where wg and wireguard-go keep UAPI sockets. The server namespace mounts its own
/// tmpfs here, so concurrent tests (and test binaries) never see each other's sockets
/// and a crashed test leaves no stale socket behind.
const WG_RUN_DIR: &str = "/var/run/wireguard";

/// The server side: a network namespace and a mount namespace with a private
/// [`WG_RUN_DIR`], both held by a `sleep` (see the module docs on its lifetime).
pub struct ServerNs {
    holder: Child,
}

impl ServerNs {
    pub fn new() -> ServerNs {
        // The holder execs `sleep` only once the tmpfs is mounted: its name says when
        // the namespaces are ready.
        let holder = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .args(["unshare", "--net", "--mount", "--propagation", "private"])
            .args(["--", "sh", "-c"])
            .arg(format!(
                "mkdir -p {WG_RUN_DIR} && mount -t tmpfs -o mode=0700 wg-wrap-interop {WG_RUN_DIR} \
                 && exec sleep 3600"
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("start the namespace holder");
        let mut ns = ServerNs { holder };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = ns.holder.try_wait() {
                panic!("the server namespace holder failed ({status})");
            }
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", ns.pid()));
            if comm.is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server namespaces did not appear"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        must(ns.command("ip", &["link", "set", "lo", "up"]), "lo up");
        ns
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    pub fn net_path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// `nsenter` options that enter the server's network and mount namespaces.
    pub fn nsenter_args(&self) -> [String; 2] {
        [
            format!("--net={}", self.net_path()),
            format!("--mount=/proc/{}/ns/mnt", self.holder.id()),
        ]
    }

    /// A command run as root in the server's network and mount namespaces.
    pub fn command<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(self.nsenter_args())
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `f` on a short-lived thread that has entered the server's network namespace:
    /// sockets it creates belong there, while the test's own threads stay where they are.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.net_path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the server netns");
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for ServerNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// One peer line of `wg show IF dump`.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub public_key: String,
    pub endpoint: Option<String>,
    /// Unix seconds; 0 = never.
    pub latest_handshake: u64,
    /// From the peer's point of view: what it received from wg-wrap.
    pub rx: u64,
    /// What it sent to wg-wrap.
    pub tx: u64,
}

/// The WireGuard implementations wg-wrap is tested against. Both are driven through
/// the same UAPI with the stock `wg` tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implementation {
    /// Debian's wireguard-go, the Go reference implementation.
    WireguardGo,
    /// Cloudflare's boringtun-cli from crates.io (`.ci/setup` builds it). It shares
    /// wg-wrap's Noise and timer code (the boringtun crate) but not its device, socket,
    /// roaming or UAPI code.
    BoringtunCli,
}

impl Implementation {
    pub fn name(self) -> &'static str {
        match self {
            Implementation::WireguardGo => "wireguard-go",
            Implementation::BoringtunCli => "boringtun-cli",
        }
    }

    /// The command line that runs it in the foreground, logging to stdout/stderr.
    fn argv(self, ifname: &str) -> Vec<String> {
        let args: &[&str] = match self {
            Implementation::WireguardGo => &["wireguard-go", "-f"],
            // As root it would otherwise switch to $SUDO_UID's user and lose its UAPI
            // socket's directory.
            Implementation::BoringtunCli => &[
                "boringtun-cli",
                "--foreground",
                "--disable-drop-privileges",
                "--verbosity",
                "info",
            ],
        };
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.push(ifname.to_owned());
        argv
    }

    /// What its `wg show transfer` counts. wireguard-go (like the kernel) counts
    /// WireGuard messages on the wire: handshakes, keepalives and each data message's
    /// 32 bytes of header and tag plus padding. boringtun counts only the plaintext IP
    /// packets it encrypted or decrypted (`Tunn::encapsulate`/`decapsulate`), so
    /// keepalives and handshakes leave its counters where they were.
    pub fn counts_wire_bytes(self) -> bool {
        self == Implementation::WireguardGo
    }

    /// When the handshake in `state` completed, in Unix seconds (`None`: never).
    /// wireguard-go reports a Unix time as the UAPI says; boringtun reports the time
    /// *since* the handshake in the same field.
    pub fn handshake_unix(self, state: &PeerState, now_unix: u64) -> Option<u64> {
        match self {
            Implementation::WireguardGo => {
                (state.latest_handshake != 0).then_some(state.latest_handshake)
            }
            // Within the first second it reads 0, like "never".
            Implementation::BoringtunCli => (state.latest_handshake != 0)
                .then(|| now_unix.saturating_sub(state.latest_handshake)),
        }
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The real peer, running in the server namespace.
pub struct RealPeer {
    pub implementation: Implementation,
    child: Child,
    pub ifname: String,
    /// `nsenter` arguments that enter the server's namespaces.
    enter: [String; 2],
    log: PathBuf,
}

impl RealPeer {
    pub fn start(implementation: Implementation, ns: &ServerNs, log: PathBuf) -> RealPeer {
        // The server namespace has its own WG_RUN_DIR, so one name fits all tests.
        let ifname = "wgpeer".to_owned();
        let logfile = std::fs::File::create(&log).unwrap();
        let enter = ns.nsenter_args();
        // PR_SET_PDEATHSIG survives nsenter's exec of the peer.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .args(&enter)
            .arg("--")
            .args(implementation.argv(&ifname));
        let name = implementation.name();
        let child = cmd
            .env("LOG_LEVEL", "verbose")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e} (install it: sudo .ci/setup)"));
        let mut wg = RealPeer {
            implementation,
            child,
            ifname,
            enter,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = wg.child.try_wait() {
                panic!(
                    "{name} exited at start ({status}; is it installed? sudo .ci/setup):\n{}",
                    wg.log_tail()
                );
            }
            if wg.wg(&["show", &wg.ifname]).status.success() {
                return wg;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not open its UAPI socket within 10 s:\n{}",
                wg.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn name(&self) -> &'static str {
        self.implementation.name()
    }

    /// `wg` run inside the server's namespaces (where its UAPI socket is).
    fn wg_command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(&self.enter)
            .args(["--", "wg"])
            .stdin(Stdio::null());
        cmd
    }

    /// `wg ARGS` inside the server namespace.
    pub fn wg(&self, args: &[&str]) -> Output {
        let mut cmd = self.wg_command();
        cmd.args(args);
        run_timeout(cmd, COMMAND_TIMEOUT)
    }

    /// `wg setconf IF` with `conf` fed on stdin (keys never touch the disk).
    pub fn setconf(&self, conf: &str) {
        let mut cmd = self.wg_command();
        cmd.args(["setconf", &self.ifname, "/dev/stdin"])
            .stdin(feed(conf));
        let out = run_timeout(cmd, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "wg setconf failed\n{}",
            describe(&out)
        );
    }

    /// `wg show IF` as a human reads it (keys other than public ones are hidden).
    pub fn show(&self) -> String {
        let out = self.wg(&["show", &self.ifname]);
        format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
    }

    /// Every peer's state, from `wg show IF dump`.
    pub fn peers(&self) -> Vec<PeerState> {
        let out = self.wg(&["show", &self.ifname, "dump"]);
        assert!(
            out.status.success(),
            "wg show dump failed\n{}",
            describe(&out)
        );
        stdout(&out)
            .lines()
            .skip(1)
            .map(|line| {
                // public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
                let f: Vec<&str> = line.split('\t').collect();
                assert!(f.len() >= 8, "unexpected `wg show dump` line: {line:?}");
                PeerState {
                    public_key: f[0].to_owned(),
                    endpoint: (f[2] != "(none)").then(|| f[2].to_owned()),
                    latest_handshake: f[4].parse().unwrap(),
                    rx: f[5].parse().unwrap(),
                    tx: f[6].parse().unwrap(),
                }
            })
            .collect()
    }

    pub fn peer(&self, public_key: &str) -> PeerState {
        self.peers()
            .into_iter()
            .find(|p| p.public_key == public_key)
            .unwrap_or_else(|| panic!("{} has no peer {public_key}:\n{}", self.name(), self.show()))
    }

    /// The last lines of the peer's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for RealPeer {
    fn drop(&mut self) {
        // TERM first: the peer then closes its interface and UAPI socket.
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the peer knows wg-wrap.
#[derive(Clone)]
pub struct ServerPeer {
    pub public_key: String,
    pub preshared_key: Option<String>,
    pub allowed_ips: String,
    /// Where to dial wg-wrap (only when wg-wrap listens).
    pub endpoint: Option<String>,
}

/// wg-wrap's profile.
#[derive(Clone)]
pub struct ClientProfile {
    pub private_key: String,
    pub address: String,
    pub listen_port: Option<u16>,
    pub peer_public_key: String,
    pub preshared_key: Option<String>,
    pub allowed_ips: String,
    pub endpoint: Option<String>,
    pub persistent_keepalive: Option<u16>,
}

impl ClientProfile {
    pub fn render(&self) -> String {
        let mut s = String::new();
        writeln!(s, "[Interface]").unwrap();
        writeln!(s, "PrivateKey = {}", self.private_key).unwrap();
        writeln!(s, "Address = {}", self.address).unwrap();
        if let Some(port) = self.listen_port {
            writeln!(s, "ListenPort = {port}").unwrap();
        }
        writeln!(s, "\n[Peer]").unwrap();
        writeln!(s, "PublicKey = {}", self.peer_public_key).unwrap();
        if let Some(psk) = &self.preshared_key {
            writeln!(s, "PresharedKey = {psk}").unwrap();
        }
        writeln!(s, "AllowedIPs = {}", self.allowed_ips).unwrap();
        if let Some(endpoint) = &self.endpoint {
            writeln!(s, "Endpoint = {endpoint}").unwrap();
        }
        if let Some(k) = self.persistent_keepalive {
            writeln!(s, "PersistentKeepalive = {k}").unwrap();
        }
        s
    }
}

/// The whole topology. Fields drop in order: wg-wrap's processes first, then the
/// services, the peer and finally the server namespace.
pub struct Rig {
    pub client: Sandbox,
    pub services: Services,
    pub wg: RealPeer,
    pub server: ServerNs,
    pub server_keys: Keys,
    pub client_keys: Keys,
    /// Output of the last wg-wrap command, for failure messages.
    last: std::cell::RefCell<String>,
}

pub const PROFILE: &str = "interop";

impl Rig {
    /// Topology, the peer and services up; the peer has its key and listen port but no
    /// peer yet ([`Rig::configure_server`]), and no profile is written.
    pub fn new(implementation: Implementation) -> Rig {
        let client = Sandbox::new();
        let server = ServerNs::new();
        ip_batch(
            server.command("ip", &["-batch", "-"]),
            &format!(
                "link add {SERVER_VETH} type veth peer name {CLIENT_VETH} netns {}\n\
                 addr add {SERVER_OUTER_V4}/24 dev {SERVER_VETH}\n\
                 addr add {SERVER_ROAM_V4}/24 dev {SERVER_VETH}\n\
                 addr add {SERVER_OUTER_V6}/64 dev {SERVER_VETH} nodad\n\
                 link set {SERVER_VETH} up\n",
                client.netns_pid()
            ),
            "server outer network",
        );
        must(
            client.root_command(
                "sh",
                &[
                    "-c",
                    &format!(
                        "ip addr add {CLIENT_OUTER_V4}/24 dev {CLIENT_VETH} && \
                         ip addr add {CLIENT_OUTER_V6}/64 dev {CLIENT_VETH} nodad && \
                         ip link set {CLIENT_VETH} up"
                    ),
                ],
            ),
            "client outer network",
        );

        let log = client.root.join(format!("{}.log", implementation.name()));
        let wg = RealPeer::start(implementation, &server, log);
        let server_keys = Keys::generate();
        let client_keys = Keys::generate();
        wg.setconf(&format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {SERVER_PORT}\n",
            server_keys.private
        ));
        ip_batch(
            server.command("ip", &["-batch", "-"]),
            &format!(
                "addr add {SERVER_TUNNEL_V4}/24 dev {ifname}\n\
                 addr add {SERVER_TUNNEL_V6}/64 dev {ifname} nodad\n\
                 link set {ifname} up\n",
                ifname = wg.ifname
            ),
            "the peer's tunnel addresses",
        );

        let services = server.within(|| {
            let http = [SERVER_TUNNEL_V4, SERVER_TUNNEL_V6]
                .iter()
                .map(|a| {
                    TcpListener::bind((a.parse::<std::net::IpAddr>().unwrap(), services::HTTP_PORT))
                        .expect("bind HTTP in the server netns")
                })
                .collect();
            let echo = [SERVER_TUNNEL_V4, SERVER_TUNNEL_V6]
                .iter()
                .map(|a| {
                    UdpSocket::bind((a.parse::<std::net::IpAddr>().unwrap(), services::ECHO_PORT))
                        .expect("bind UDP echo in the server netns")
                })
                .collect();
            (http, echo)
        });
        let services = Services::start(services.0, services.1);
        Rig {
            client,
            services,
            wg,
            server,
            server_keys,
            client_keys,
            last: Default::default(),
        }
    }

    /// The happy-path peer entry for the peer.
    pub fn server_peer(&self) -> ServerPeer {
        ServerPeer {
            public_key: self.client_keys.public.clone(),
            preshared_key: None,
            allowed_ips: format!("{CLIENT_TUNNEL_V4}/32, {CLIENT_TUNNEL_V6}/128"),
            endpoint: None,
        }
    }

    /// Give the peer its one peer (`wg setconf` replaces the whole configuration). The
    /// endpoint goes in here too: boringtun's UAPI refuses `wg set … endpoint` (it does
    /// not know the `update_only` key that `wg set` sends).
    pub fn configure_server(&self, peer: &ServerPeer) {
        let mut conf = format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {SERVER_PORT}\n\n[Peer]\nPublicKey = {}\nAllowedIPs = {}\n",
            self.server_keys.private, peer.public_key, peer.allowed_ips
        );
        if let Some(psk) = &peer.preshared_key {
            writeln!(conf, "PresharedKey = {psk}").unwrap();
        }
        if let Some(endpoint) = &peer.endpoint {
            writeln!(conf, "Endpoint = {endpoint}").unwrap();
        }
        self.wg.setconf(&conf);
    }

    /// The happy-path profile for wg-wrap, dialling the server's IPv4 outer address.
    pub fn client_profile(&self) -> ClientProfile {
        ClientProfile {
            private_key: self.client_keys.private.clone(),
            address: format!("{CLIENT_TUNNEL_V4}/32, {CLIENT_TUNNEL_V6}/128"),
            listen_port: None,
            peer_public_key: self.server_keys.public.clone(),
            preshared_key: None,
            allowed_ips: "10.99.0.0/24, fd99::/64".into(),
            endpoint: Some(format!("{SERVER_OUTER_V4}:{SERVER_PORT}")),
            persistent_keepalive: None,
        }
    }

    pub fn write_profile(&self, profile: &ClientProfile) {
        self.client.write_profile(PROFILE, &profile.render());
    }

    /// Both sides configured for the happy path.
    pub fn happy(implementation: Implementation) -> Rig {
        let rig = Rig::new(implementation);
        rig.configure_server(&rig.server_peer());
        rig.write_profile(&rig.client_profile());
        rig
    }

    fn remember(&self, what: &str, out: &Output) {
        *self.last.borrow_mut() = format!(
            "{what}: status {:?} (signal {:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            clip(&out.stdout),
            clip(&out.stderr)
        );
    }

    /// `wg-wrap up` (the session then lives, with its log, until `down` or drop).
    pub fn up(&self) {
        let out = self.client.run(self.client.wg_wrap(&["up", PROFILE]));
        self.remember("wg-wrap up", &out);
        self.check(out.status.success(), "wg-wrap up");
    }

    pub fn down(&self) {
        let out = self.client.run(self.client.wg_wrap(&["down", PROFILE]));
        self.remember("wg-wrap down", &out);
        self.check(out.status.success(), "wg-wrap down");
    }

    /// The `wg-wrap exec PROFILE -- argv` command, to run or spawn.
    pub fn exec_command(&self, argv: &[&str]) -> Command {
        let mut args = vec!["exec", PROFILE, "--"];
        args.extend_from_slice(argv);
        self.client.wg_wrap(&args)
    }

    /// Run `wg-wrap exec PROFILE -- argv` and keep its output for failure messages.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let out = self.client.run(self.exec_command(argv));
        self.remember(&format!("wg-wrap exec {PROFILE} -- {argv:?}"), &out);
        out
    }

    /// Like [`Rig::exec`], asserting success.
    pub fn exec_ok(&self, argv: &[&str]) -> Output {
        let out = self.exec(argv);
        self.check(
            out.status.success(),
            &format!("{argv:?} through the tunnel"),
        );
        out
    }

    pub fn record(&self, what: &str, out: &Output) {
        self.remember(what, out);
    }

    /// Everything both sides can tell about the session, for failure messages.
    pub fn diagnostics(&self) -> String {
        const NS_STATE: &str = "ip -br addr; ip route; ip -6 route; ip neigh; \
                                ss -uanpm; cat /proc/net/udp /proc/net/udp6";
        let processes: String = self
            .client
            .marked_pids()
            .iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                format!(
                    "{}\n",
                    stat.split(' ').take(3).collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        format!(
            "--- last wg-wrap command\n{}\n\
             --- peer: wg show {} ({})\n{}\n\
             --- {} log (last lines)\n{}\n\
             --- wg-wrap status {PROFILE}\n{}\
             --- wg-wrap supervisor.log\n{}\n\
             --- wg-wrap's processes (pid comm state)\n{}\
             --- client namespace (wg-wrap's host side)\n{}\
             --- server namespace\n{}\
             --- server services\n{}\n",
            self.last.borrow(),
            self.wg.ifname,
            self.wg.name(),
            self.wg.show(),
            self.wg.name(),
            self.wg.log_tail(),
            capture(self.client.wg_wrap(&["status", PROFILE])),
            self.client.supervisor_log(PROFILE),
            processes,
            capture(self.client.root_command("sh", &["-c", NS_STATE])),
            capture(self.server.command(
                "sh",
                &["-c", &format!("ip -s link show {SERVER_VETH}; {NS_STATE}")]
            )),
            self.services.log(),
        )
    }

    /// Assert with both sides' view in the message.
    #[track_caller]
    pub fn check(&self, ok: bool, what: &str) {
        if !ok {
            self.fail(what);
        }
    }

    /// Fail the test with both sides' view in the message.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}: failed\n{}", self.diagnostics());
    }

    /// The peer's view of wg-wrap.
    pub fn client_on_server(&self) -> PeerState {
        self.wg.peer(&self.client_keys.public)
    }

    /// Wait until the peer reports a completed handshake with wg-wrap. (boringtun's
    /// UAPI reports the time *since* the handshake where `wg` expects a Unix time, so
    /// its `latest-handshake` reads 0 for the first second.)
    pub fn wait_handshake(&self) -> PeerState {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let state = self.client_on_server();
            if state.latest_handshake != 0 {
                return state;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "no handshake at {} within {HANDSHAKE_TIMEOUT:?}",
                    self.wg.name()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// UDP datagrams (received, sent) by sockets in the server namespace, IPv4 and IPv6
    /// together (`/proc/net/snmp` and `snmp6` describe the reader's network namespace;
    /// a datagram counts as received when it is read). Outside the UDP echo service,
    /// only the peer's WireGuard sockets use UDP there.
    pub fn server_udp_datagrams(&self) -> (u64, u64) {
        let out = must(
            self.server
                .command("cat", &["/proc/net/snmp", "/proc/net/snmp6"]),
            "read the server's UDP counters",
        );
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        let v4 = lines
            .windows(2)
            .find(|w| w[0].starts_with("Udp: ") && w[1].starts_with("Udp: "))
            .map(|w| {
                let names = w[0].split_whitespace();
                let values = w[1].split_whitespace();
                names.zip(values).collect::<Vec<_>>()
            })
            .expect("Udp lines in /proc/net/snmp");
        let field = |v4_name: &str, v6_name: &str| -> u64 {
            let a: u64 = v4
                .iter()
                .find(|(n, _)| *n == v4_name)
                .and_then(|(_, v)| v.parse().ok())
                .expect("a Udp counter in /proc/net/snmp");
            let b: u64 = lines
                .iter()
                .find_map(|l| l.strip_prefix(v6_name))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Udp6 counter in /proc/net/snmp6");
            a + b
        };
        (
            field("InDatagrams", "Udp6InDatagrams"),
            field("OutDatagrams", "Udp6OutDatagrams"),
        )
    }

    /// wg-wrap's `status --json` document for [`PROFILE`], and the whole output.
    pub fn status_json(&self) -> (serde_json::Value, String) {
        let out = self
            .client
            .run(self.client.wg_wrap(&["status", "--json", PROFILE]));
        self.remember("wg-wrap status --json", &out);
        let text = stdout(&out);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let ours = doc["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == PROFILE);
        match ours {
            Some(ours) if out.status.success() => (ours.clone(), text),
            _ => self.fail(&format!("wg-wrap status --json lists {PROFILE}")),
        }
    }

    /// The UDP port wg-wrap's WireGuard socket is bound to in the client namespace:
    /// the `listen_port` of `status --json`, checked against the sockets `ss` lists
    /// there (the other one is re-resolution's DNS socket).
    pub fn client_udp_port(&self) -> u16 {
        let Some(port) = self.status_json().0["listen_port"].as_u64() else {
            self.fail("wg-wrap status --json shows its listening port");
        };
        let out = must(
            self.client.root_command("ss", &["-Hnlu"]),
            "list UDP sockets in the client namespace",
        );
        let text = stdout(&out);
        let ports: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|local| local.rsplit_once(':'))
            .filter_map(|(_, port)| port.parse().ok())
            .collect();
        self.check(
            ports.contains(&port),
            &format!("wg-wrap's listening port {port} is among the client namespace's UDP sockets:\n{text}"),
        );
        port as u16
    }
}
