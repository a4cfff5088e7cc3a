//! Additions for the leak tier (tests/leaks.rs): a fake host, decoys that count what
//! reaches them, and a packet counter on the sandbox's side of the tunnel.
//!
//! - [`FakeHost`]: a private mount namespace, made by the test as root, that wg-wrap
//!   runs in as if it were the host. Its `/run` is an empty tmpfs holding a fake
//!   systemd-resolved (`/run/systemd/resolve/stub-resolv.conf` and a listening
//!   `io.systemd.Resolve` socket) and a fake nscd (`/run/nscd/socket`); its
//!   `/etc/resolv.conf` is a symlink into the fake resolved's directory, as on
//!   systemd-resolved hosts, and its `/etc/nsswitch.conf` says `resolve`. The real
//!   host's files are never touched: everything is mounted in that namespace only.
//! - [`Decoys`]: a DNS server on the sandbox's loopback (127.0.0.53, 127.0.0.1, ::1;
//!   UDP and TCP port 53) and the two fake resolver sockets, each counting what
//!   reaches it.
//! - [`PacketCounter`]: a packet socket in the sandbox namespace that sees every
//!   packet on every one of its interfaces and sets aside the WireGuard flow to the
//!   virtual peer (and ICMP errors quoting it); everything else is a leak.
//! - [`Sandbox::add_lan`]: a "LAN" (a veth pair, 192.0.2.1/24 on `lan0`) that exists
//!   only in the sandbox namespace, so a wrapped program has a host address to aim at.
//!
//! Every thread started here stops when its owner is dropped; every process is
//! killed by PID.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The stub file the fake host's `/etc/resolv.conf` points at, by default.
pub const FAKE_STUB: &str = "# fake systemd-resolved stub (wg-wrap leak test)\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
/// The fake host's `hosts:` line: nss-resolve first, as Ubuntu ships it.
/// The `hosts:` line of the session's private nsswitch.conf (the supervisor's
/// `namespace::isolation::HOSTS_LINE`, spelled out: the supervisor keeps it private).
pub const SESSION_HOSTS_LINE: &str = "hosts:          files dns";
pub const FAKE_HOSTS_LINE: &str = "hosts: files resolve [!UNAVAIL=return] dns myhostname";
/// The fake host's LAN address (TEST-NET-1), only inside the sandbox namespace.
pub const LAN_ADDR: &str = "192.0.2.1";
/// An unassigned neighbour on that LAN.
pub const LAN_NEIGHBOUR: &str = "192.0.2.2";

const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";
const NSCD_SOCKET: &str = "/run/nscd/socket";

/// Mount a symlink over a file: `open_tree(AT_SYMLINK_NOFOLLOW)` of the link, then
/// `move_mount` onto the target (mount(8) always follows a bind source's symlink).
const BIND_SYMLINK_PY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
OPEN_TREE_CLONE, O_CLOEXEC, AT_SYMLINK_NOFOLLOW = 1, 0o2000000, 0x100
MOVE_MOUNT_F_EMPTY_PATH, AT_FDCWD = 4, -100
tree = libc.syscall(428, AT_FDCWD, sys.argv[1].encode(), OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW)
if tree < 0:
    sys.exit("open_tree: " + os.strerror(ctypes.get_errno()))
if libc.syscall(429, tree, b"", AT_FDCWD, sys.argv[2].encode(), MOVE_MOUNT_F_EMPTY_PATH) < 0:
    sys.exit("move_mount: " + os.strerror(ctypes.get_errno()))
"#;

impl Sandbox {
    /// Like [`Sandbox::command`], in the mount namespace `mnt` (a `/proc/PID/ns/mnt`
    /// path) as well; the working directory is the test user's home there too.
    pub fn command_in_mount_ns<S: AsRef<OsStr>>(
        &self,
        mnt: &str,
        program: &str,
        args: &[S],
    ) -> Command {
        self.user_command(Some(mnt), program, args)
    }

    /// Like [`Sandbox::command_in_mount_ns`] but as root, with only the marker and
    /// `PATH` in the environment.
    pub fn root_command_in_mount_ns<S: AsRef<OsStr>>(
        &self,
        mnt: &str,
        program: &str,
        args: &[S],
    ) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path()))
            .arg(format!("--mount={mnt}"))
            .arg("--wdns=/")
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("WG_WRAP_TEST_ID", &self.id)
            .stdin(Stdio::null());
        cmd
    }

    /// Start a virtual peer from the demo setup changed by `change`, and write
    /// profile `name` for it.
    pub fn virtual_peer_with(
        &self,
        name: &str,
        change: impl FnOnce(&mut PeerConfig, &mut ClientSide),
    ) -> (VirtualPeer, ClientSide) {
        let (mut config, mut client) = PeerConfig::demo();
        change(&mut config, &mut client);
        let peer = VirtualPeer::start(config, self.bind_udp("127.0.0.1:0")).unwrap();
        self.write_profile(name, &client.wg_quick_conf(peer.local_addr()));
        (peer, client)
    }

    /// A TCP listener bound inside the sandbox namespace.
    pub fn bind_tcp(&self, addr: &str) -> TcpListener {
        let ns = self.netns_path();
        let addr = addr.to_owned();
        in_netns(&ns, move || {
            TcpListener::bind(&addr).expect("bind TCP in the sandbox")
        })
    }

    /// Give the sandbox namespace a "LAN": a veth pair `lan0`/`lan1`, `lan0` with
    /// 192.0.2.1/24. IPv6 is off on both, so the kernel itself sends nothing there.
    pub fn add_lan(&self) {
        let script = format!(
            "set -e; ip link add lan0 type veth peer name lan1; \
             for d in lan0 lan1; do echo 1 > /proc/sys/net/ipv6/conf/$d/disable_ipv6; done; \
             ip addr add {LAN_ADDR}/24 dev lan0; ip link set lan1 up; ip link set lan0 up"
        );
        let out = run_timeout(self.root_command("sh", &["-c", &script]), COMMAND_TIMEOUT);
        assert_success(&out);
    }

    /// Packets (received, sent) by an interface of the sandbox namespace.
    pub fn interface_packets(&self, dev: &str) -> (u64, u64) {
        let text = std::fs::read_to_string(format!("/proc/{}/net/dev", self.holder.id())).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
            .unwrap_or_else(|| panic!("no interface {dev} in the sandbox:\n{text}"));
        let fields: Vec<u64> = line
            .split_once(':')
            .unwrap()
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        (fields[1], fields[9])
    }

    /// The supervisor PID recorded in profile `name`'s state file.
    pub fn supervisor_pid_of(&self, name: &str) -> u32 {
        let text = std::fs::read_to_string(self.profile_runtime_dir(name).join("state"))
            .expect("no session state");
        text.lines()
            .find_map(|l| l.strip_prefix("supervisor_pid="))
            .expect("no supervisor_pid in the state")
            .parse()
            .unwrap()
    }

    /// Write a file the test user can read into the sandbox root; returns its path.
    pub fn write_shared(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

/// A private mount namespace that plays the host for wg-wrap (see the module docs).
pub struct FakeHost {
    holder: Child,
    dir: PathBuf,
}

impl FakeHost {
    pub fn new(sb: &Sandbox) -> FakeHost {
        // --pdeathsig: a killed test binary takes this holder with it.
        let holder = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "unshare", "--mount"])
            .args(["--propagation", "private", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the mount namespace holder");
        let host = FakeHost {
            holder,
            dir: sb.root.join("fake-host"),
        };
        host.wait_for_own_mntns();
        std::fs::create_dir_all(&host.dir).unwrap();
        std::fs::set_permissions(&host.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = host.dir.join("resolv.conf-link");
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &link).unwrap();
        let nsswitch = host.dir.join("nsswitch.conf");
        let real = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let mut text = String::from("# fake host nsswitch.conf (wg-wrap leak test)\n");
        for line in real
            .lines()
            .filter(|l| !l.trim_start().starts_with("hosts"))
        {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(FAKE_HOSTS_LINE);
        text.push('\n');
        std::fs::write(&nsswitch, text).unwrap();
        std::fs::set_permissions(&nsswitch, std::fs::Permissions::from_mode(0o644)).unwrap();
        let py = host.dir.join("bind-symlink.py");
        std::fs::write(&py, BIND_SYMLINK_PY).unwrap();

        host.root_sh(&format!(
            "set -e; mount -t tmpfs -o mode=0755 wgwrap-fake-run /run; \
             mkdir -p /run/systemd/resolve /run/nscd; \
             mount --bind {nsswitch} /etc/nsswitch.conf; \
             python3 {py} {link} /etc/resolv.conf; \
             test -L /etc/resolv.conf",
            nsswitch = nsswitch.display(),
            py = py.display(),
            link = link.display(),
        ));
        host.set_resolv_conf(FAKE_STUB);
        host
    }

    fn wait_for_own_mntns(&self) {
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(theirs) = std::fs::read_link(self.mnt_ns().trim_end_matches('/')) {
                if theirs != ours {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the fake host's mount namespace did not appear"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `/proc/PID/ns/mnt` of the fake host.
    pub fn mnt_ns(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// A path inside the fake host, reachable from the test's own mount namespace.
    pub fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.holder.id()))
    }

    /// Run a shell script as root in the fake host's mount namespace (network: the
    /// test's own; the scripts here only mount and write files).
    pub fn root_sh(&self, script: &str) {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.mnt_ns()))
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null());
        let out = run_timeout(cmd, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "fake host setup failed: {script}\n{}",
            describe(&out)
        );
    }

    /// Put the sandbox's runtime directory on a nosuid,nodev tmpfs in the fake host,
    /// as `/run/user/<uid>` is on systemd hosts: the kernel locks those flags in the
    /// copy of the mounts a session's namespace gets.
    pub fn runtime_dir_on_tmpfs(&self, sb: &Sandbox) {
        self.root_sh(&format!(
            "mount -t tmpfs -o nosuid,nodev,mode=0700,uid={},gid={} wgwrap-fake-xdg {}",
            sb.uid,
            sb.gid,
            sb.runtime_dir.display()
        ));
    }

    /// What the fake host's `/etc/resolv.conf` (a symlink to the stub) says.
    pub fn set_resolv_conf(&self, text: &str) {
        let path = self.path("/run/systemd/resolve/stub-resolv.conf");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Make `/etc/resolv.conf` disappear from the fake host: an overlay over its
    /// `/etc` whose upper layer whites the file out. The overlay is checked before
    /// anything is removed, so the real file can never be the one removed.
    pub fn remove_resolv_conf(&self) {
        let upper = self.dir.join("etc-upper");
        let work = self.dir.join("etc-work");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        self.root_sh(&format!(
            "set -e; mount -t overlay wgwrap-fake-etc -o lowerdir=/etc,upperdir={},workdir={} /etc; \
             test \"$(stat -f -c %T /etc)\" = overlayfs; \
             rm /etc/resolv.conf; test ! -e /etc/resolv.conf",
            upper.display(),
            work.display()
        ));
    }

    /// A command in the fake host (and the sandbox network) as the test user.
    pub fn command<S: AsRef<OsStr>>(&self, sb: &Sandbox, program: &str, args: &[S]) -> Command {
        sb.command_in_mount_ns(&self.mnt_ns(), program, args)
    }

    /// wg-wrap run in the fake host as the test user.
    pub fn wg_wrap<S: AsRef<OsStr>>(&self, sb: &Sandbox, args: &[S]) -> Command {
        let exe = sb.wg_wrap.to_str().unwrap().to_owned();
        self.command(sb, &exe, args)
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// How many times each decoy was reached from inside a wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoyCounts {
    /// DNS queries (UDP datagrams and TCP connections) to port 53 on the sandbox's
    /// loopback. Only a process on the host side can send them, so every one counts.
    pub dns: usize,
    /// Connections to the fake systemd-resolved socket from outside the sandbox's
    /// network namespace, i.e. from a wrapped program.
    pub resolved: usize,
    /// The same for the fake nscd socket.
    pub nscd: usize,
}

/// Who connected to a fake resolver socket.
#[derive(Debug, Clone)]
pub struct UnixConnection {
    pub socket: &'static str,
    pub pid: Option<u32>,
    /// `/proc/PID/comm`, or why it could not be read.
    pub comm: String,
    /// Not in the sandbox's network namespace: a wrapped program (or a process
    /// gone before it could be checked, counted as one to be safe).
    pub wrapped: bool,
}

/// The decoys of the module docs; they stop when dropped.
pub struct Decoys {
    dns: Arc<AtomicUsize>,
    unix: Arc<Mutex<Vec<UnixConnection>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Decoys {
    pub fn start(sb: &Sandbox, host: &FakeHost) -> Decoys {
        let mut decoys = Decoys {
            dns: Arc::default(),
            unix: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        for addr in ["127.0.0.53:53", "127.0.0.1:53", "[::1]:53"] {
            let socket = sb.bind_udp(addr);
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let (count, stop) = (decoys.dns.clone(), decoys.stop.clone());
            decoys.threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        count.fetch_add(1, Ordering::SeqCst);
                        if n >= 12 {
                            // Answer REFUSED, so a leaking lookup ends quickly.
                            buf[2] |= 0x80;
                            buf[3] = (buf[3] & 0xf0) | 5;
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                }
            }));
        }
        for addr in ["127.0.0.53:53", "127.0.0.1:53"] {
            let listener = sb.bind_tcp(addr);
            listener.set_nonblocking(true).unwrap();
            let (count, stop) = (decoys.dns.clone(), decoys.stop.clone());
            decoys.threads.push(poll_accept(
                move || {
                    listener.accept()?;
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                },
                stop,
            ));
        }
        let sandbox_netns = std::fs::metadata(sb.netns_path()).unwrap().ino();
        for path in [RESOLVED_SOCKET, NSCD_SOCKET] {
            let outside = host.path(path);
            let listener = UnixListener::bind(&outside)
                .unwrap_or_else(|e| panic!("bind {}: {e}", outside.display()));
            std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o666)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let (seen, stop) = (decoys.unix.clone(), decoys.stop.clone());
            decoys.threads.push(poll_accept(
                move || {
                    let (stream, _) = listener.accept()?;
                    let pid = rustix::net::sockopt::socket_peercred(&stream)
                        .ok()
                        .map(|c| c.pid.as_raw_nonzero().get() as u32);
                    let comm = pid
                        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
                        .map_or_else(|| "(gone)".to_owned(), |c| c.trim().to_owned());
                    let netns = pid.and_then(|p| {
                        std::fs::metadata(format!("/proc/{p}/ns/net"))
                            .ok()
                            .map(|m| m.ino())
                    });
                    seen.lock().unwrap().push(UnixConnection {
                        socket: path,
                        pid,
                        comm,
                        wrapped: netns != Some(sandbox_netns),
                    });
                    Ok(())
                },
                stop,
            ));
        }
        decoys
    }

    /// What reached the decoys from wrapped programs.
    pub fn counts(&self) -> DecoyCounts {
        let unix = self.unix.lock().unwrap();
        let wrapped = |socket: &str| {
            unix.iter()
                .filter(|c| c.wrapped && c.socket == socket)
                .count()
        };
        DecoyCounts {
            dns: self.dns.load(Ordering::SeqCst),
            resolved: wrapped(RESOLVED_SOCKET),
            nscd: wrapped(NSCD_SOCKET),
        }
    }

    /// What reached the decoys from anywhere (for controls run on the fake host).
    pub fn all_counts(&self) -> DecoyCounts {
        let unix = self.unix.lock().unwrap();
        let all = |socket: &str| unix.iter().filter(|c| c.socket == socket).count();
        DecoyCounts {
            dns: self.dns.load(Ordering::SeqCst),
            resolved: all(RESOLVED_SOCKET),
            nscd: all(NSCD_SOCKET),
        }
    }

    /// Every connection to a fake resolver socket, for messages.
    pub fn unix_connections(&self) -> Vec<UnixConnection> {
        self.unix.lock().unwrap().clone()
    }
}

/// Call `accept` until `stop`; it must not block (a non-blocking listener) and
/// counts what it accepts itself.
fn poll_accept(
    mut accept: impl FnMut() -> std::io::Result<()> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if accept().is_err() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
}

impl Drop for Decoys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One packet seen in the sandbox namespace.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    /// e.g. `udp 127.0.0.1:40000 -> 127.0.0.1:51820 (148 bytes)`.
    pub desc: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Part of the WireGuard flow to the virtual peer, or an ICMP error about it.
    pub tunnel: bool,
}

/// Every packet on every interface of the sandbox namespace (see the module docs).
pub struct PacketCounter {
    seen: Arc<Mutex<Vec<Packet>>>,
    /// When the thread last found the socket's queue empty: every packet the kernel
    /// queued before then has been counted.
    drained_at: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacketCounter {
    /// Start counting; `wg_port` is the virtual peer's UDP port.
    pub fn start(sb: &Sandbox, wg_port: u16) -> PacketCounter {
        let ns = sb.netns_path();
        let socket: OwnedFd = in_netns(&ns, || {
            rustix::net::socket(
                rustix::net::AddressFamily::PACKET,
                rustix::net::SocketType::DGRAM,
                Some(rustix::net::eth::ALL),
            )
            .expect("open a packet socket in the sandbox")
        });
        // Room for a burst of tunnel traffic, so nothing else is dropped behind it.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, 64 << 20);
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(50)),
        )
        .unwrap();
        let seen: Arc<Mutex<Vec<Packet>>> = Arc::default();
        let drained_at = Arc::new(Mutex::new(Instant::now()));
        let stop: Arc<AtomicBool> = Arc::default();
        let (seen2, drained2, stop2) = (seen.clone(), drained_at.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, _)) =
                    rustix::net::recv(&socket, &mut buf[..], rustix::net::RecvFlags::DONTWAIT)
                else {
                    // Queue empty: note it, then wait for more (the receive timeout).
                    *drained2.lock().unwrap() = Instant::now();
                    let _ =
                        rustix::net::recv(&socket, &mut [0u8; 0][..], rustix::net::RecvFlags::PEEK);
                    continue;
                };
                let packet = classify(&buf[..n], wg_port);
                seen2.lock().unwrap().push(packet);
            }
        });
        PacketCounter {
            seen,
            drained_at,
            stop,
            thread: Some(thread),
        }
    }

    /// Wait until every packet queued so far has been counted: the counting thread may
    /// run late on a loaded machine, and an assertion must not read a half-drained
    /// queue (it would miss leaks, or see nothing at all).
    fn settle(&self) {
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(30);
        while *self.drained_at.lock().unwrap() <= asked {
            assert!(
                Instant::now() < deadline,
                "the packet counter did not drain its socket within 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every packet so far that is not part of the tunnel.
    pub fn leaks(&self) -> Vec<Packet> {
        self.settle();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| !p.tunnel)
            .cloned()
            .collect()
    }

    /// Every packet seen after `t`.
    pub fn since(&self, t: Instant) -> Vec<Packet> {
        self.settle();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.at > t)
            .cloned()
            .collect()
    }

    /// How many packets so far, of the tunnel and not.
    pub fn total(&self) -> usize {
        self.settle();
        self.seen.lock().unwrap().len()
    }
}

impl Drop for PacketCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ports of a TCP or UDP header.
fn ports(proto: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    if (proto == 6 || proto == 17) && l4.len() >= 4 {
        (
            Some(u16::from_be_bytes([l4[0], l4[1]])),
            Some(u16::from_be_bytes([l4[2], l4[3]])),
        )
    } else {
        (None, None)
    }
}

/// (protocol, source, destination, layer-4 bytes) of an IPv4 or IPv6 packet.
fn ip_parts(p: &[u8]) -> Option<(u8, IpAddr, IpAddr, &[u8])> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            Some((p[9], src.into(), dst.into(), p.get(ihl..)?))
        }
        6 if p.len() >= 40 => {
            let src: [u8; 16] = p[8..24].try_into().ok()?;
            let dst: [u8; 16] = p[24..40].try_into().ok()?;
            Some((
                p[6],
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                &p[40..],
            ))
        }
        _ => None,
    }
}

fn classify(p: &[u8], wg_port: u16) -> Packet {
    let at = Instant::now();
    let Some((proto, src, dst, l4)) = ip_parts(p) else {
        return Packet {
            at,
            desc: format!(
                "non-IP frame ({} bytes) {:02x?}",
                p.len(),
                &p[..p.len().min(16)]
            ),
            src_port: None,
            dst_port: None,
            tunnel: false,
        };
    };
    let (sport, dport) = ports(proto, l4);
    let wg = |s: Option<u16>, d: Option<u16>| s == Some(wg_port) || d == Some(wg_port);
    let mut tunnel = proto == 17 && wg(sport, dport);
    // An ICMP error (type < 128 for ICMPv6; unreachable, time exceeded, parameter
    // problem for ICMP) quoting a tunnel datagram is about the tunnel.
    let is_error = match proto {
        1 => matches!(l4.first(), Some(3 | 11 | 12)),
        58 => l4.first().is_some_and(|t| *t < 128),
        _ => false,
    };
    if is_error {
        if let Some((inner, _, _, inner_l4)) = l4.get(8..).and_then(ip_parts) {
            let (s, d) = ports(inner, inner_l4);
            tunnel = inner == 17 && wg(s, d);
        }
    }
    let proto_name = match proto {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmpv6".to_owned(),
        other => format!("proto {other}"),
    };
    let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    Packet {
        at,
        desc: format!(
            "{proto_name} {src}{} -> {dst}{} ({} bytes)",
            port(sport),
            port(dport),
            p.len()
        ),
        src_port: sport,
        dst_port: dport,
        tunnel,
    }
}
