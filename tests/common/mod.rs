//! The e2e harness.
//!
//! Every test gets a [`Sandbox`]: a throw-away network namespace (held by a `sleep`
//! process started with `unshare --net`), private config and runtime directories owned
//! by the unprivileged test user, and a marker in the environment of every process it
//! starts.  wg-wrap runs inside that namespace as the test user, so even a broken
//! wg-wrap can reach nothing but the namespace's loopback, where the virtual peer
//! listens.  On drop (also after a failed assertion) every process carrying the marker
//! and the holder are killed by PID and the directories removed.
//!
//! Building the namespace and dropping to another user needs root; without it the
//! tests fail and say so (CI runs them as root through `.ci/run`).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use virtual_peer::{ClientSide, PeerConfig, VirtualPeer};

pub const TEST_USER: &str = "wgwrap-test";
pub const WG_WRAP: &str = env!("CARGO_BIN_EXE_wg-wrap");
/// Upper bound for any single command a test runs.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn id_of(flag: &str, user: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "the unprivileged test user {user:?} does not exist: create it (`useradd --system {user}`; .ci/run does this)"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

pub struct Sandbox {
    pub id: String,
    /// A copy of the wg-wrap binary the test user can execute wherever the build
    /// tree lives (CI may clone below a directory only root can enter).
    pub wg_wrap: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub root: PathBuf,
    pub config_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub home: PathBuf,
    holder: Child,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        assert!(
            rustix::process::geteuid().is_root(),
            "e2e tests need root: they build a throw-away network namespace and drop to the \
             unprivileged user {TEST_USER:?} with setpriv. Run them via `.ci/run` or as root."
        );
        let uid = id_of("-u", TEST_USER);
        let gid = id_of("-g", TEST_USER);
        let tun = std::fs::metadata("/dev/net/tun").expect("/dev/net/tun is missing");
        assert!(
            tun.permissions().mode() & 0o006 == 0o006,
            "/dev/net/tun is not usable by unprivileged users (mode {:o}); most distros ship it 0666: `chmod 0666 /dev/net/tun` (.ci/run does this)",
            tun.permissions().mode() & 0o777
        );
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let root = PathBuf::from(format!("/tmp/wg-wrap-e2e-{id}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mk = |name: &str| {
            let p = root.join(name);
            std::fs::create_dir(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
            p
        };
        let config_dir = mk("config");
        let runtime_dir = mk("runtime");
        let home = mk("home");
        let wg_wrap = root.join("wg-wrap");
        std::fs::copy(WG_WRAP, &wg_wrap).expect("copy the wg-wrap binary");
        std::fs::set_permissions(&wg_wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        wait_until_executable(&wg_wrap);
        // --pdeathsig: a killed test binary takes its namespace holder with it.
        let holder = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "--",
                "unshare",
                "--net",
                "--",
                "sleep",
                "3600",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the namespace holder");
        let sandbox = Sandbox {
            id,
            wg_wrap,
            uid,
            gid,
            root,
            config_dir,
            runtime_dir,
            home,
            holder,
        };
        sandbox.wait_for_own_netns();
        let lo = Command::new("nsenter")
            .arg(format!("--net={}", sandbox.netns_path()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(lo.success(), "bring lo up in the sandbox");
        sandbox
    }

    fn netns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    fn wait_for_own_netns(&self) {
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(theirs) = std::fs::read_link(self.netns_path()) {
                if theirs != ours {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox netns did not appear"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A UDP socket bound inside the sandbox namespace.
    pub fn bind_udp(&self, addr: &str) -> UdpSocket {
        let path = self.netns_path();
        let addr = addr.to_owned();
        // A short-lived thread enters the namespace, so the test's threads stay put.
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the sandbox netns");
            UdpSocket::bind(addr).expect("bind in the sandbox")
        })
        .join()
        .unwrap()
    }

    /// Start a virtual peer on the sandbox loopback and write profile `name` for it.
    pub fn virtual_peer(&self, name: &str) -> (VirtualPeer, ClientSide) {
        let (config, client) = PeerConfig::demo();
        let peer = VirtualPeer::start(config, self.bind_udp("127.0.0.1:0")).unwrap();
        self.write_profile(name, &client.wg_quick_conf(peer.local_addr()));
        (peer, client)
    }

    pub fn write_profile(&self, name: &str, text: &str) -> PathBuf {
        let path = self.config_dir.join(format!("{name}.conf"));
        std::fs::write(&path, text).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A directory owned by the test user (for cwd tests).
    pub fn user_dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
        p
    }

    /// A command running inside the sandbox namespace as the test user.
    pub fn command<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Command {
        self.user_command(None, program, args)
    }

    /// [`Sandbox::command`], also in the mount namespace `mnt` (a `/proc/PID/ns/mnt`
    /// path) when given; the working directory is the test user's home either way.
    pub fn user_command<S: AsRef<OsStr>>(
        &self,
        mnt: Option<&str>,
        program: &str,
        args: &[S],
    ) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path()));
        if let Some(mnt) = mnt {
            cmd.arg(format!("--mount={mnt}"))
                .arg(format!("--wdns={}", self.home.display()));
        }
        cmd.arg("--")
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("WG_WRAP_CONFIG_DIR", &self.config_dir)
            .env("WG_WRAP_RUNTIME_DIR", &self.runtime_dir)
            .env("WG_WRAP_TEST_ID", &self.id)
            .current_dir(&self.home)
            .stdin(Stdio::null());
        cmd
    }

    pub fn wg_wrap<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let exe = self.wg_wrap.to_str().unwrap().to_owned();
        self.command(&exe, args)
    }

    /// Run to completion (with a timeout), capturing output.
    pub fn run(&self, cmd: Command) -> Output {
        run_timeout(cmd, COMMAND_TIMEOUT)
    }

    /// PIDs of every process this sandbox started that is still alive.
    pub fn marked_pids(&self) -> Vec<u32> {
        let needle = format!("WG_WRAP_TEST_ID={}", self.id);
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Wait until no marked process remains; returns the survivors otherwise.
    pub fn wait_no_processes(&self, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.marked_pids();
            if pids.is_empty() || Instant::now() >= deadline {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn profile_runtime_dir(&self, name: &str) -> PathBuf {
        self.runtime_dir.join("profiles").join(name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pid in self.marked_pids() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Wait until a freshly copied program can be executed. A child that another test
/// thread forked while the copy was open for writing holds that descriptor until it
/// executes, and until then exec of the copy fails with ETXTBSY. Once one exec
/// works, no writer is left and none can appear.
fn wait_until_executable(program: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(program).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(26) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("cannot execute {}: {e}", program.display()),
            Ok(_) => return,
        }
    }
}

/// Run a command with a timeout; a command that overruns is killed and the test fails.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_output(child, timeout)
}

/// Collect a child's output (draining its pipes meanwhile) with a timeout; a child
/// that overruns is killed by PID and the test fails.
pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(timeout).is_err() {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
        let out = waiter.join().unwrap().unwrap();
        panic!(
            "command timed out after {timeout:?} (pid {pid})\n{}",
            describe(&out)
        );
    }
    waiter.join().unwrap().unwrap()
}

/// `exec PROFILE -- CMD...` as an argument vector.
pub fn exec_args<'a>(profile: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["exec", profile, "--"];
    v.extend_from_slice(cmd);
    v
}

/// Send `sig` to `pid` (a process this test started or looked up).
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
        .unwrap_or_else(|e| panic!("signal {sig:?} to pid {pid}: {e}"));
}

pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?} (signal {:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "command failed\n{}", describe(out));
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn root_path(p: &Path) -> String {
    p.display().to_string()
}

// Additions for the interop tier (tests/interop.rs): the sandbox namespace seen from
// root, so a test can give it an outer network (a veth to another namespace) and
// change that network while wg-wrap runs.
impl Sandbox {
    /// PID of the process holding the sandbox's network namespace (what
    /// `ip link set DEV netns PID` takes).
    pub fn netns_pid(&self) -> u32 {
        self.holder.id()
    }

    /// `/proc/PID/ns/net` of the sandbox namespace.
    pub fn netns_file(&self) -> String {
        self.netns_path()
    }

    /// A command run as root (not the test user) inside the sandbox namespace.
    pub fn root_command<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path()))
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// The supervisor log of profile `name` while its session lives.
    pub fn supervisor_log(&self, name: &str) -> String {
        let path = self.profile_runtime_dir(name).join("supervisor.log");
        match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(no supervisor log at {}: {e})", path.display()),
        }
    }
}

/// A command started in the background that must finish within a deadline.
pub struct Running {
    pid: u32,
    started: Instant,
    timeout: Duration,
    what: String,
    done: std::sync::mpsc::Receiver<std::io::Result<Output>>,
}

/// Start `cmd` with its output captured; [`Running::wait`] collects it.
pub fn spawn_timeout(mut cmd: Command, timeout: Duration) -> Running {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    Running {
        pid,
        started: Instant::now(),
        timeout,
        what,
        done,
    }
}

impl Running {
    /// Wait for the command; one that overruns its deadline is killed and the test fails.
    pub fn wait(self) -> Output {
        let left = self.timeout.saturating_sub(self.started.elapsed());
        match self.done.recv_timeout(left) {
            Ok(out) => out.expect("wait for the command"),
            Err(_) => {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(self.pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
                let out = self.done.recv().unwrap().unwrap();
                panic!(
                    "command timed out after {:?}: {}\nstdout: {}\nstderr: {}",
                    self.timeout,
                    self.what,
                    clip(&out.stdout),
                    clip(&out.stderr)
                );
            }
        }
    }
}

/// Captured output for a message: text up to its first 4 KiB, binary by its size.
pub fn clip(bytes: &[u8]) -> String {
    const MAX: usize = 4096;
    let head = &bytes[..bytes.len().min(MAX)];
    // Binary (a download) says nothing read as text; a multi-byte character cut at
    // MAX is still text.
    if std::str::from_utf8(head).is_err_and(|e| e.error_len().is_some()) {
        return format!("({} bytes of binary data)", bytes.len());
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        format!("{text}... ({} bytes in all)", bytes.len())
    } else {
        text
    }
}

// The leak tier's fake host, decoys and packet counter (tests/leaks.rs).
/// Run `f` on a short-lived thread inside the network namespace at `ns` (a
/// `/proc/PID/ns/net` path); threads it starts stay there too.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("enter the sandbox netns");
        f()
    })
    .join()
    .unwrap()
}

pub mod leak;
