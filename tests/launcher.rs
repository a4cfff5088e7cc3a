//! The launcher with real syscalls: the binary embedded in wg-wrap is static
//! and small; `create` makes identity-mapped namespaces and hands the
//! supervisor exactly two ambient capabilities; `join` enters a running
//! namespace holder, refuses the wrong network namespace and reports exec
//! failures like a shell.
//!
//! The launcher runs as an unprivileged user: the current one, or, when the
//! tests run as root, `wgwrap-test` through
//! `setpriv --reuid=U --regid=G --clear-groups` (CI creates the user; these
//! tests fail if it is missing). The launcher bytes come from
//! src/launcher.rs, compiled in here with `#[path]`: build.rs's
//! `cargo:rustc-env=WG_WRAP_LAUNCHER_BIN` reaches integration tests too. One
//! test checks that `wg-wrap __dump-launcher` writes the same bytes.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags, SealFlags};
use rustix::io::FdFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

#[allow(dead_code)]
#[path = "../src/launcher.rs"]
mod launcher;

use launcher::{Launcher, EMBEDDED};

/// The unprivileged user the tests switch to when they run as root.
const TEST_USER: &str = "wgwrap-test";
/// How long any one launcher run may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// CAP_NET_ADMIN (12) | CAP_SYS_ADMIN (21), as /proc/PID/status shows them.
const SUPERVISOR_CAPS: &str = "0000000000201000";
const NO_CAPS: &str = "0000000000000000";

// ---------------------------------------------------------------- the binary

#[test]
fn embedded_launcher_is_static_and_small() {
    eprintln!("launcher size: {} bytes", EMBEDDED.len());
    assert!(
        EMBEDDED.len() < 64 * 1024,
        "launcher is {} bytes",
        EMBEDDED.len()
    );
    let kinds = program_header_types(EMBEDDED);
    assert!(!kinds.is_empty(), "no program headers");
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    assert!(
        !kinds.contains(&PT_INTERP),
        "launcher has PT_INTERP: not static"
    );
    assert!(
        !kinds.contains(&PT_DYNAMIC),
        "launcher has PT_DYNAMIC: needs relocation or libraries"
    );
}

#[test]
fn dump_launcher_subcommand_writes_the_embedded_bytes() {
    let dir = TempDir::new();
    let path = dir.path().join("launcher");
    let output = run(Command::new(env!("CARGO_BIN_EXE_wg-wrap"))
        .arg("__dump-launcher")
        .arg(&path));
    assert!(output.status.success(), "{output:?}");
    assert!(
        fs::read(&path).unwrap() == EMBEDDED,
        "dumped bytes differ from EMBEDDED"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // Never anything but a regular file: a FIFO (with a reader, so opening it does not
    // block) is refused and keeps its mode, as /dev/null would under root.
    let fifo = dir.path().join("fifo");
    assert!(run(Command::new("mkfifo").arg("-m").arg("0644").arg(&fifo))
        .status
        .success());
    let _reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&fifo)
        .unwrap();
    let output = run(Command::new(env!("CARGO_BIN_EXE_wg-wrap"))
        .arg("__dump-launcher")
        .arg(&fifo));
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert!(
        stderr(&output).contains("is not a regular file"),
        "{output:?}"
    );
    assert_eq!(
        fs::metadata(&fifo).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn embedded_launcher_runs_from_a_sealed_memfd() {
    let launcher = Launcher::embedded().unwrap();
    assert!(
        launcher.path().starts_with("/proc/self/fd"),
        "{:?}",
        launcher.path()
    );

    // Seals belong to the inode, so a second open shows them.
    let reopened = fs::File::open(launcher.path()).unwrap();
    let seals = rustix::fs::fcntl_get_seals(&reopened).unwrap();
    let wanted = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    assert!(seals.contains(wanted), "seals {seals:?}");

    // No arguments: usage, 125.
    let output = run(&mut launcher.command());
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert!(stderr(&output).starts_with("wg-wrap: usage:"), "{output:?}");

    // The real thing, unprivileged, straight from the memfd (a setpriv in
    // between would exec and close the close-on-exec memfd first).
    let user = unprivileged();
    let id = inheritable_file("/usr/bin/id");
    let mut command = launcher.command();
    command
        .arg("create")
        .arg(id.as_raw_fd().to_string())
        .args(["--", "id", "-u"]);
    if let Some((uid, gid)) = user.switch {
        command.uid(uid).gid(gid);
    }
    let output = run(&mut command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), format!("{}\n", user.uid));
}

#[test]
fn memfd_noexec_gives_a_clear_error() {
    const CHILD: &str = "WG_WRAP_TEST_MEMFD_NOEXEC_CHILD";
    if std::env::var_os(CHILD).is_some() {
        // In the private pid namespace below, with vm.memfd_noexec = 2.
        let error = format!(
            "{:#}",
            Launcher::embedded().err().expect("memfd was allowed")
        );
        assert!(error.contains("vm.memfd_noexec"), "{error}");
        assert!(error.contains("WG_WRAP_LAUNCHER"), "{error}");
        return;
    }
    // Setting the (per pid namespace) sysctl needs real root; a test that cannot run
    // fails rather than passing without having checked anything.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test sets vm.memfd_noexec in a private PID namespace, which needs root: \
         run the suite as root, as README's test command does"
    );
    let test_binary = std::env::current_exe().unwrap();
    let output = run(
        Command::new("unshare")
            .args(["--pid", "--fork", "--", "sh", "-c"])
            .arg(r#"echo 2 > /proc/sys/vm/memfd_noexec && exec "$0" --exact memfd_noexec_gives_a_clear_error --nocapture"#)
            .arg(test_binary)
            .env(CHILD, "1"),
    );
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains("1 passed"), "{output:?}");
}

// ------------------------------------------------------------------- create

#[test]
fn create_runs_the_command_as_the_caller() {
    let user = unprivileged();
    let bin = user.launcher_file();
    let id = inheritable_file("/usr/bin/id");
    let output = run(user
        .command(&bin)
        .arg("create")
        .arg(fd_arg(&id))
        .args(["--", "id", "-u"]));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), format!("{}\n", user.uid));
}

#[test]
fn create_maps_ids_and_hands_over_two_ambient_capabilities() {
    let user = unprivileged();
    let bin = user.launcher_file();
    let sh = inheritable_file("/bin/sh");
    let script = "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
                  grep -E '^Cap(Eff|Amb)' /proc/self/status; \
                  if [ -e /proc/$$/fd/$0 ]; then echo exe-fd-open; else echo exe-fd-closed; fi; \
                  grep -c ' / / .*shared:' /proc/self/mountinfo || true";
    let output = run(user
        .command(&bin)
        .arg("create")
        .arg(fd_arg(&sh))
        .args(["--", "sh", "-c", script])
        .arg(fd_arg(&sh)));
    assert!(output.status.success(), "{output:?}");
    let out = stdout(&output);
    let words: Vec<&str> = out.split_whitespace().collect();
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
    assert_eq!(&words[..6], [&*uid, &*uid, "1", &*gid, &*gid, "1"], "{out}");
    assert_eq!(words[6], "deny", "{out}");
    assert_eq!(
        &words[7..11],
        ["CapEff:", SUPERVISOR_CAPS, "CapAmb:", SUPERVISOR_CAPS],
        "{out}"
    );
    // The supervisor's own executable's descriptor was closed at exec.
    assert_eq!(words[11], "exe-fd-closed", "{out}");
    // `/` is private: no shared peer group left.
    assert_eq!(words.last(), Some(&"0"), "{out}");
}

#[test]
fn create_detach_returns_at_once_and_the_command_goes_on() {
    let user = unprivileged();
    let bin = user.launcher_file();
    let dir = user.temp_dir();
    let done = dir.path().join("done");
    let sh = inheritable_file("/bin/sh");
    // Waits (boundedly) for the test's go-ahead, then reports its PID and
    // its parent's PID at that moment.
    let script = r#"i=0; while [ ! -e "$0.go" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
                    read -r _ _ _ ppid _ < /proc/$$/stat
                    echo "$$ $ppid" > "$0.tmp" && mv "$0.tmp" "$0""#;
    let mut command = user.command(&bin);
    command
        .arg("create")
        .arg("--detach")
        .arg(fd_arg(&sh))
        .args(["--", "sh", "-c", script])
        .arg(&done);
    // Not piped: the detached child would hold the pipe open.
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let started = Instant::now();
    let child = command.spawn().unwrap();
    // setpriv execs the launcher: this is the launcher's PID.
    let launcher_pid = child.id();
    let status = wait_with_timeout(child);
    assert!(status.success(), "{status:?}");
    assert!(!done.exists(), "launcher waited for the command");
    fs::write(dir.path().join("done.go"), "").unwrap();

    let deadline = started + TIMEOUT;
    while !done.exists() {
        assert!(Instant::now() < deadline, "detached command never finished");
        sleep(Duration::from_millis(10));
    }
    let text = fs::read_to_string(&done).unwrap();
    let mut ids = text.split_whitespace().map(|n| n.parse::<u32>().unwrap());
    let (pid, ppid) = (ids.next().unwrap(), ids.next().unwrap());
    // The forked child ran the command and was reparented away from the
    // (already reaped) launcher.
    assert_ne!(pid, launcher_pid);
    assert_ne!(ppid, launcher_pid);
    // It exits by itself; make sure, by PID, without risking a recycled one.
    stop_if_alive(pid);
}

#[test]
fn create_rejects_bad_usage_and_fds() {
    let user = unprivileged();
    let bin = user.launcher_file();
    for args in [
        &["create"][..],
        &["create", "--detach"],
        &["create", "x", "--", "id"],
        &["create", "0", "id"],
        &["create", "0", "--"],
        &["join", "1", "2", "3"],
        &["frobnicate"],
    ] {
        let output = run(user.command(&bin).args(args));
        assert_eq!(output.status.code(), Some(125), "{args:?}: {output:?}");
        assert!(
            stderr(&output).starts_with("wg-wrap: usage:"),
            "{args:?}: {output:?}"
        );
    }
    let output = run(user.command(&bin).args(["create", "987", "--", "id"]));
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    assert_eq!(stderr(&output), "wg-wrap: exe-fd: EBADF\n");
}

// --------------------------------------------------------------------- join

#[test]
fn join_runs_the_command_unprivileged_in_the_namespace() {
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let script = "id -u; readlink /proc/self/ns/net /proc/self/ns/user; \
                  grep -E '^Cap(Eff|Amb)' /proc/self/status; \
                  if [ -e /proc/$$/fd/$0 ]; then echo pidfd-open; else echo pidfd-closed; fi";
    let pidfd = fd_arg(&holder.pidfd);
    let output = run(&mut holder.join(&user, &bin, "/", &["sh", "-c", script, &pidfd]));
    assert!(output.status.success(), "{output:?}");
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], user.uid.to_string(), "{out}");
    assert_eq!(lines[1], holder.ns_link("net"), "{out}");
    assert_eq!(lines[2], holder.ns_link("user"), "{out}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["CapEff:", NO_CAPS],
        "{out}"
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["CapAmb:", NO_CAPS],
        "{out}"
    );
    assert_eq!(lines[5], "pidfd-closed", "{out}");
}

#[test]
fn join_as_root_still_runs_the_command_without_capabilities() {
    // A root caller maps root to root inside; the command must not keep the
    // namespace's capabilities (it could change routes or reach the supervisor).
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it checks what a root caller gets"
    );
    let root = User {
        uid: 0,
        gid: 0,
        switch: None,
    };
    let holder = Holder::start(&root);
    let bin = root.launcher_file();
    let script = "id -u; grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status";
    let output = run(&mut holder.join(&root, &bin, "/", &["sh", "-c", script]));
    assert!(output.status.success(), "{output:?}");
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    for line in &lines[1..] {
        assert_eq!(line.split_whitespace().nth(1), Some(NO_CAPS), "{out}");
    }
}

#[test]
fn join_restores_the_working_directory() {
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let dir = user.temp_dir();
    let mut command = holder.join(&user, &bin, dir.path().to_str().unwrap(), &["pwd"]);
    command.current_dir("/");
    let output = run(&mut command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), format!("{}\n", dir.path().display()));
}

#[test]
fn join_refuses_another_network_namespace() {
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let ours = fs::metadata("/proc/self/ns/net").unwrap();
    for (dev, ino) in [
        (holder.net_dev, holder.net_ino + 1),
        (ours.dev(), ours.ino()),
    ] {
        let mut command = user.command(&bin);
        command
            .arg("join")
            .arg(fd_arg(&holder.pidfd))
            .arg(dev.to_string())
            .arg(ino.to_string())
            .args(["/", "--", "id", "-u"]);
        let output = run(&mut command);
        assert_eq!(output.status.code(), Some(125), "{output:?}");
        assert_eq!(
            stderr(&output),
            "wg-wrap: join: network namespace mismatch\n"
        );
        assert_eq!(stdout(&output), "");
    }
}

#[test]
fn join_reports_exec_failures_like_a_shell() {
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let dir = user.temp_dir();
    let cwd = dir.path().to_str().unwrap();
    let not_executable = dir.path().join("not-executable");
    fs::write(&not_executable, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();
    let not_a_program = dir.path().join("not-a-program");
    fs::write(&not_a_program, "\x7fELF? no\n").unwrap();
    fs::set_permissions(&not_a_program, fs::Permissions::from_mode(0o755)).unwrap();
    wait_until_executable(&not_a_program);

    let cases: &[(&[&str], Option<&str>, i32, &str)] = &[
        (
            &["wg-wrap-no-such-command"],
            None,
            127,
            "wg-wrap: wg-wrap-no-such-command: command not found\n",
        ),
        (
            &["./no-such-file"],
            None,
            127,
            "wg-wrap: exec ./no-such-file: ENOENT\n",
        ),
        (
            &["./not-executable"],
            None,
            126,
            "wg-wrap: exec ./not-executable: EACCES\n",
        ),
        // Found only as a non-executable file in PATH: EACCES, as execvp.
        (
            &["not-executable"],
            Some(cwd),
            126,
            "wg-wrap: exec not-executable: EACCES\n",
        ),
        (
            &["./not-a-program"],
            None,
            126,
            "wg-wrap: exec ./not-a-program: ENOEXEC\n",
        ),
        (
            &["bad\x1bname"],
            None,
            127,
            "wg-wrap: bad\\x1bname: command not found\n",
        ),
    ];
    for &(argv, path, code, message) in cases {
        let mut command = holder.join(&user, &bin, cwd, argv);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let output = run(&mut command);
        assert_eq!(output.status.code(), Some(code), "{argv:?}: {output:?}");
        assert_eq!(stderr(&output), message, "{argv:?}");
    }
}

#[test]
fn join_passes_argv_and_environment_intact() {
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let mut command = holder.join(
        &user,
        &bin,
        "/",
        &["printf", "[%s]\\n", "a b", "", "'q'", "--", "-x", "\"d\""],
    );
    command.env("WG_WRAP_TEST_VAR", "v a l=ue");
    let output = run(&mut command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "[a b]\n[]\n['q']\n[--]\n[-x]\n[\"d\"]\n");

    // No PATH at all: the default one finds printenv.
    let mut command = holder.join(&user, &bin, "/", &["printenv", "WG_WRAP_TEST_VAR"]);
    command
        .env("WG_WRAP_TEST_VAR", "v a l=ue")
        .env_remove("PATH");
    let output = run(&mut command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "v a l=ue\n");
}

#[test]
fn join_works_nested_inside_the_session() {
    // A command already in the session (no capabilities left) runs wg-wrap
    // again: setns(USER) is EINVAL, setns(NET|MNT) EPERM, and the launcher
    // goes on because it already is in the right network namespace.
    let user = unprivileged();
    let holder = Holder::start(&user);
    let bin = user.launcher_file();
    let inner_pidfd = pidfd_of(holder.child.id());
    let script = r#""$0" join "$1" "$2" "$3" / -- sh -c 'id -u; readlink /proc/self/ns/net'"#;
    let output = run(&mut holder.join(
        &user,
        &bin,
        "/",
        &[
            "sh",
            "-c",
            script,
            bin.to_str().unwrap(),
            &fd_arg(&inner_pidfd),
            &holder.net_dev.to_string(),
            &holder.net_ino.to_string(),
        ],
    ));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout(&output),
        format!("{}\n{}\n", user.uid, holder.ns_link("net"))
    );
}

#[test]
fn join_leaves_an_unconfined_mode_apparmor_profile_through_a_trampoline() {
    // This kernel may have no AppArmor: the label files are faked with bind mounts
    // over this child's own /proc/PID/attr files (the PID survives the exec), in a
    // mount namespace of its own. That needs root.
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it bind-mounts fake AppArmor label files"
    );
    let root = User {
        uid: 0,
        gid: 0,
        switch: None,
    };
    let holder = Holder::start(&root);
    let bin = root.launcher_file();
    let dir = TempDir::new();
    let argv = ["sh", "-c", r#"printf '[%s]' "$0" "$@""#, "zero", "a b", ""];
    for (label, leaves) in [
        ("wg-wrap (unconfined)\n", true),
        ("unconfined\n", false),
        ("wg-wrap (enforce)\n", false),
    ] {
        let current = dir.path().join("current");
        let exec = dir.path().join("exec");
        fs::write(&current, label).unwrap();
        fs::write(&exec, "").unwrap();
        let mut command = holder.join(&root, &bin, "/", &argv);
        with_fake_label_files(&mut command, &current, &exec);
        let output = run(&mut command);
        assert!(output.status.success(), "{label:?}: {output:?}");
        assert_eq!(stdout(&output), "[zero][a b][]", "{label:?}");
        let requested = fs::read_to_string(&exec).unwrap();
        if leaves {
            assert_eq!(requested, "exec unconfined", "{label:?}");
        } else {
            assert_eq!(requested, "", "{label:?}");
        }
    }
}

#[test]
fn exec_mode_runs_the_command_like_execvp() {
    let user = unprivileged();
    let bin = user.launcher_file();
    let output = run(user.command(&bin).args([
        "exec",
        "--",
        "sh",
        "-c",
        r#"printf '[%s]' "$@""#,
        "sh",
        "x y",
    ]));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "[x y]");
    let output = run(user
        .command(&bin)
        .args(["exec", "--", "wg-wrap-no-such-command"]));
    assert_eq!(output.status.code(), Some(127), "{output:?}");
    let output = run(user.command(&bin).args(["exec", "sh"]));
    assert_eq!(output.status.code(), Some(125), "{output:?}");
}

/// Make the child see `current` and `exec` as its AppArmor attr files: in a mount
/// namespace of its own, bind them over /proc/self/attr/apparmor/{current,exec} or,
/// where that directory does not exist, /proc/self/attr/{current,exec}.
// pre_exec is unsafe: the child fakes its label files in its own mount namespace.
#[allow(unsafe_code)]
fn with_fake_label_files(command: &mut Command, current: &Path, exec: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dir = if Path::new("/proc/self/attr/apparmor").exists() {
        "/proc/self/attr/apparmor"
    } else {
        "/proc/self/attr"
    };
    let cstr = |p: &[u8]| CString::new(p).unwrap();
    let mounts = [
        (
            cstr(current.as_os_str().as_bytes()),
            cstr(format!("{dir}/current").as_bytes()),
        ),
        (
            cstr(exec.as_os_str().as_bytes()),
            cstr(format!("{dir}/exec").as_bytes()),
        ),
    ];
    // SAFETY: between fork and exec the closure makes only syscalls on strings
    // prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            rustix::mount::mount_change(
                c"/",
                rustix::mount::MountPropagationFlags::REC
                    | rustix::mount::MountPropagationFlags::PRIVATE,
            )?;
            for (source, target) in &mounts {
                rustix::mount::mount_bind(source.as_c_str(), target.as_c_str())?;
            }
            Ok(())
        });
    }
}

// ------------------------------------------------------------------ helpers

/// Who the launcher runs as.
struct User {
    uid: u32,
    gid: u32,
    /// Some((uid, gid)) when the tests run as root and must switch.
    switch: Option<(u32, u32)>,
}

fn unprivileged() -> User {
    if !rustix::process::geteuid().is_root() {
        return User {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            switch: None,
        };
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == TEST_USER)
        .unwrap_or_else(|| {
            panic!(
                "running as root, these tests need the unprivileged user {TEST_USER:?}, which \
                 does not exist: create it (useradd --system {TEST_USER}) or run as a normal user"
            )
        });
    let (uid, gid) = (entry[2].parse().unwrap(), entry[3].parse().unwrap());
    User {
        uid,
        gid,
        switch: Some((uid, gid)),
    }
}

impl User {
    /// A command that runs `program` as this user.
    fn command(&self, program: &Path) -> Command {
        match self.switch {
            None => Command::new(program),
            Some((uid, gid)) => {
                // Found now: the command's own PATH may be set for the launcher.
                let mut command = Command::new(which("setpriv"));
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(program)
                    // Root's PATH has entries this user may not search (like
                    // /root/.cargo/bin), which make execvp answer EACCES.
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin");
                command
            }
        }
    }

    /// A temporary directory this user can use.
    fn temp_dir(&self) -> TempDir {
        let dir = TempDir::new();
        if let Some((uid, gid)) = self.switch {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        dir
    }

    /// The embedded launcher as a file this user can run.
    fn launcher_file(&self) -> LauncherFile {
        let dir = TempDir::new();
        let path = dir.path().join("wg-wrap-launcher");
        launcher::dump_embedded(&path).unwrap();
        wait_until_executable(&path);
        LauncherFile { _dir: dir, path }
    }
}

/// Wait until a freshly written file is no longer open for writing anywhere. A child
/// that another test thread forked while the file was open holds that descriptor
/// until it executes, and until then exec of the file fails with ETXTBSY (seen in
/// CI). Once an exec gets past that check (whether it then runs or fails for another
/// reason), no writer is left and none can appear.
fn wait_until_executable(program: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match Command::new(program)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Err(e) if e.raw_os_error() == Some(26) => {
                assert!(
                    Instant::now() < deadline,
                    "{} stays busy: {e}",
                    program.display()
                );
                sleep(Duration::from_millis(5));
            }
            _ => return,
        }
    }
}

struct LauncherFile {
    _dir: TempDir,
    path: PathBuf,
}

impl std::ops::Deref for LauncherFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A process holding a user+net+mount namespace of the unprivileged user,
/// killed (by its own handle, so by PID) when dropped.
struct Holder {
    child: Child,
    pidfd: OwnedFd,
    net_dev: u64,
    net_ino: u64,
}

impl Holder {
    fn start(user: &User) -> Holder {
        let child = user
            .command(Path::new("unshare"))
            .args([
                "--user",
                "--map-current-user",
                "--net",
                "--mount",
                "--",
                "sleep",
                "30",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // setpriv and unshare exec, so the PID is the holder's from here on.
        let mut holder = Holder {
            pidfd: pidfd_of(child.id()),
            child,
            net_dev: 0,
            net_ino: 0,
        };
        // Ready once it runs `sleep`: unshare has then written the id maps
        // and made its mounts private.
        let ours = fs::read_link("/proc/self/ns/user").unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let user_ns = fs::read_link(holder.proc_path("ns/user")).ok();
            let comm = fs::read_to_string(holder.proc_path("comm")).unwrap_or_default();
            if user_ns.is_some_and(|ns| ns != ours) && comm == "sleep\n" {
                break;
            }
            if let Some(status) = holder.child.try_wait().unwrap() {
                panic!("namespace holder exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "namespace holder never got ready"
            );
            sleep(Duration::from_millis(5));
        }
        let net = fs::metadata(holder.proc_path("ns/net")).unwrap();
        holder.net_dev = net.dev();
        holder.net_ino = net.ino();
        holder
    }

    fn proc_path(&self, rest: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{rest}", self.child.id()))
    }

    fn ns_link(&self, kind: &str) -> String {
        fs::read_link(self.proc_path(&format!("ns/{kind}")))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `launcher join <pidfd> <dev> <ino> <cwd> -- argv...` as `user`.
    fn join(&self, user: &User, launcher: &Path, cwd: &str, argv: &[&str]) -> Command {
        let mut command = user.command(launcher);
        command
            .arg("join")
            .arg(fd_arg(&self.pidfd))
            .arg(self.net_dev.to_string())
            .arg(self.net_ino.to_string())
            .arg(cwd)
            .arg("--")
            .args(argv);
        command
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pidfd for `pid` that a child inherits (pidfd_open always sets
/// close-on-exec).
fn pidfd_of(pid: u32) -> OwnedFd {
    let pid = Pid::from_raw(pid as i32).unwrap();
    let fd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).unwrap();
    rustix::io::fcntl_setfd(&fd, FdFlags::empty()).unwrap();
    fd
}

/// `path` opened read-only without close-on-exec, to pass down by number.
/// (Children of other tests inherit it too; that is harmless.)
fn inheritable_file(path: &str) -> OwnedFd {
    rustix::fs::open(path, OFlags::RDONLY, Mode::empty()).unwrap()
}

/// `program` found in this process's PATH.
fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} not found in PATH"))
}

fn fd_arg(fd: &impl AsFd) -> String {
    fd.as_fd().as_raw_fd().to_string()
}

/// Waits up to [`TIMEOUT`] for `pid` to exit by itself, then kills it,
/// through a pidfd so that a recycled PID is never hit.
fn stop_if_alive(pid: u32) {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, PidfdFlags::empty()) else {
        return; // already gone
    };
    // A pidfd becomes readable when its process exits.
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0) == 0 {
        let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
        panic!("detached command {pid:?} did not exit by itself");
    }
}

/// Runs `command` to completion with piped output, killing it on timeout.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Read while waiting, in case a command writes more than a pipe holds.
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let status = wait_with_timeout(child);
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

fn wait_with_timeout(mut child: Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not finish within {TIMEOUT:?}", child.id());
        }
        sleep(Duration::from_millis(5));
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `p_type` of each ELF64 little-endian program header.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not ELF");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect()
}

/// A directory under the system temp dir (mode 0755), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "wg-wrap-launcher-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
