//! Builds the static launcher (launcher/, its own Cargo workspace) with a
//! nested `cargo build` and hands its path to the CLI as
//! `WG_WRAP_LAUNCHER_BIN`, for `include_bytes!` in src/launcher.rs (and, since
//! `rustc-env` reaches every target of this package, in tests/launcher.rs).
//!
//! The nested build gets its own target directory under OUT_DIR: sharing
//! ours would deadlock on the build-directory lock this build already holds.
//!
//! For packagers (see dist/PACKAGING.md):
//! - `WG_WRAP_PREBUILT_LAUNCHER=/path` embeds that file instead of building;
//! - the nested build is `--offline` (and always `--locked`) when this build
//!   is: `CARGO_NET_OFFLINE=true`, `--offline`/`--frozen` on the cargo command
//!   line that runs us, or `WG_WRAP_LAUNCHER_OFFLINE=1` to force it;
//! - it remaps the source directory and `CARGO_HOME` out of the launcher
//!   (`--remap-path-prefix`), so two checkouts at different paths embed the
//!   same bytes. The outer build's own remapping is the packager's `RUSTFLAGS`
//!   (dist/build-package sets it).
//! - the unwinder is linked in (libgcc_eh) instead of loading libgcc_s.so.1,
//!   on linux-gnu; `WG_WRAP_SHARED_LIBGCC=1` keeps the shared one (see
//!   [`link_unwinder_statically`]).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The launcher's own settings (launcher/.cargo/config.toml, its profile and
/// build script) must be the only ones that apply, so variables that a user,
/// CI or a cargo wrapper (clippy, llvm-cov, ...) may set for *this* build are
/// removed from the nested build's environment.
fn cleared(name: &str) -> bool {
    matches!(
        name,
        "RUSTFLAGS"
            | "RUSTDOCFLAGS"
            | "CARGO_ENCODED_RUSTFLAGS"
            | "CARGO_ENCODED_RUSTDOCFLAGS"
            | "RUSTC_WRAPPER"
            | "RUSTC_WORKSPACE_WRAPPER"
            | "CARGO_TARGET_DIR"
            | "CARGO_INCREMENTAL"
    )
        // CARGO_BUILD_TARGET, CARGO_BUILD_RUSTFLAGS, CARGO_BUILD_TARGET_DIR, ...
        || name.starts_with("CARGO_BUILD_")
        // CARGO_PROFILE_RELEASE_LTO and the like.
        || name.starts_with("CARGO_PROFILE_")
        // CARGO_TARGET_<TRIPLE>_RUSTFLAGS (a cross linker setting stays).
        || (name.starts_with("CARGO_TARGET_") && name.ends_with("_RUSTFLAGS"))
}

/// Names a launcher binary to embed instead of building launcher/.
const PREBUILT: &str = "WG_WRAP_PREBUILT_LAUNCHER";
/// `1` forces the nested build offline.
const FORCE_OFFLINE: &str = "WG_WRAP_LAUNCHER_OFFLINE";
/// `1` links libgcc_s.so.1 as rustc does by default.
const SHARED_LIBGCC: &str = "WG_WRAP_SHARED_LIBGCC";

fn main() {
    link_unwinder_statically();
    println!("cargo:rerun-if-env-changed={PREBUILT}");
    println!("cargo:rerun-if-env-changed={FORCE_OFFLINE}");
    println!("cargo:rerun-if-env-changed=CARGO_NET_OFFLINE");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    if let Some(path) = env::var_os(PREBUILT).filter(|p| !p.is_empty()) {
        let path = std::path::absolute(&path).expect("the current directory");
        assert!(
            path.is_file(),
            "wg-wrap: {PREBUILT}={} is not a file (unset it to build launcher/)",
            path.display()
        );
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env=WG_WRAP_LAUNCHER_BIN={}", path.display());
        return;
    }
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let launcher_dir = manifest_dir.join("launcher");
    for input in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        ".cargo/config.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            launcher_dir.join(input).display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");

    // The launcher runs on the same machine as the CLI, so it is built for
    // the CLI's target (the host triple unless cross-compiling). An explicit
    // --target also keeps launcher/.cargo/config.toml's rustflags off the
    // build scripts of the launcher's dependencies.
    let target = env_var("TARGET");
    let target_dir = PathBuf::from(env_var("OUT_DIR")).join("launcher-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut build = Command::new(cargo);
    build
        // The working directory selects launcher/.cargo/config.toml.
        .current_dir(&launcher_dir)
        .args(["build", "--release", "--locked", "--target", &target])
        .arg("--target-dir")
        .arg(&target_dir);
    if offline() {
        build.arg("--offline");
    }
    // Appended to launcher/.cargo/config.toml's `build.rustflags` (cargo joins
    // config arrays), where RUSTFLAGS in the environment would replace them.
    let mut remaps = vec![format!("{}=/usr/src/wg-wrap", manifest_dir.display())];
    if let Some(home) = cargo_home() {
        remaps.push(format!("{}=/cargo", home.display()));
    }
    let flags: Vec<String> = remaps
        .iter()
        .map(|r| format!("{:?}", format!("--remap-path-prefix={r}")))
        .collect();
    build
        .arg("--config")
        .arg(format!("build.rustflags=[{}]", flags.join(", ")));
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if cleared(name) {
            build.env_remove(name);
        }
    }

    let output = build
        .output()
        .unwrap_or_else(|e| panic!("wg-wrap: cannot run cargo to build launcher/: {e}"));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "wg-wrap: building the launcher failed ({}): `cargo build --release --locked \
             --target {target}` in {}; its output is above",
            output.status,
            launcher_dir.display(),
        );
    }

    let binary = target_dir
        .join(&target)
        .join("release")
        .join("wg-wrap-launcher");
    assert!(
        Path::new(&binary).is_file(),
        "wg-wrap: the launcher build succeeded but {} is missing",
        binary.display()
    );
    println!("cargo:rustc-env=WG_WRAP_LAUNCHER_BIN={}", binary.display());
}

/// Every `wg-wrap` command starts a process, and `exec` into a running session is
/// mostly start-up, so the loader's work counts (issue 15: join <= 1.3x nsenter).
/// rustc's std asks for the unwinder as `-lgcc_s`, and libgcc_s.so.1 costs a
/// library load plus a constructor (`__cpu_indicator_init`) whose CPUID
/// instructions each exit to the hypervisor in a VM: ~0.1 ms of a ~1 ms start
/// (hyperfine minimums, 5 rounds; the binary then also loses the libgcc-s1
/// package dependency). The same unwinder ships as the static libgcc_eh.a with
/// gcc, and rustc has no switch for it (rust-lang/rust#29527), so `-lgcc_s`
/// finds, first in the search path, a linker script of that name that links
/// libgcc_eh instead. Unwinding across shared libraries no longer needs the
/// shared libgcc with GNU ld, gold or lld (frames are found through
/// `dl_iterate_phdr`/`_dl_find_object`), and nothing of ours unwinds into C code.
///
/// `cfg(wg_wrap_unwinder = "static" | "shared" | "unavailable")` tells the tests
/// which it is (nothing outside linux-gnu): "shared" when asked for, "unavailable"
/// when the linker driver has no libgcc_eh.a (a clang set up with LLVM's libunwind,
/// say), in which case the build falls back to the shared library with a warning.
fn link_unwinder_statically() {
    println!("cargo:rerun-if-env-changed={SHARED_LIBGCC}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    println!(
        "cargo::rustc-check-cfg=cfg(wg_wrap_unwinder, values(\"static\", \"shared\", \"unavailable\"))"
    );
    let is = |name: &str, value: &str| env::var(name).is_ok_and(|v| v == value);
    if !is("CARGO_CFG_TARGET_OS", "linux") || !is("CARGO_CFG_TARGET_ENV", "gnu") {
        return;
    }
    let unwinder = |kind: &str| println!("cargo:rustc-cfg=wg_wrap_unwinder=\"{kind}\"");
    if is(SHARED_LIBGCC, "1") {
        return unwinder("shared");
    }
    // rustc links through `cc` unless told otherwise (cargo then passes the linker on).
    let driver = env::var_os("RUSTC_LINKER").unwrap_or_else(|| "cc".into());
    // Prints the bare name when it has no such file.
    let found = Command::new(&driver)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|path| PathBuf::from(path.trim()))
        .is_some_and(|path| path.is_absolute() && path.is_file());
    if !found {
        println!(
            "cargo:warning=wg-wrap: {} has no libgcc_eh.a, so the unwinder stays the \
             shared libgcc_s.so.1 (install gcc for the faster start-up, or set \
             {SHARED_LIBGCC}=1 to choose this)",
            Path::new(&driver).display()
        );
        return unwinder("unavailable");
    }
    let dir = PathBuf::from(env_var("OUT_DIR")).join("static-libgcc");
    std::fs::create_dir_all(&dir).expect("wg-wrap build.rs: create OUT_DIR/static-libgcc");
    // The linker reads a file that is neither an object nor an archive as a
    // script, whatever its name.
    std::fs::write(dir.join("libgcc_s.a"), "INPUT(-lgcc_eh)\n")
        .expect("wg-wrap build.rs: write OUT_DIR/static-libgcc/libgcc_s.a");
    println!("cargo:rustc-link-search=native={}", dir.display());
    unwinder("static");
}

/// Whether the cargo that runs us was told not to touch the network. Cargo
/// does not tell build scripts, so besides the environment (which the nested
/// cargo inherits anyway) we read the command line of our parent: cargo runs
/// build scripts directly.
fn offline() -> bool {
    let truthy = |name| env::var(name).is_ok_and(|v| v == "1" || v == "true");
    if truthy(FORCE_OFFLINE) || truthy("CARGO_NET_OFFLINE") {
        return true;
    }
    let parent = std::os::unix::process::parent_id();
    std::fs::read(format!("/proc/{parent}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == b"--offline" || arg == b"--frozen")
    })
}

/// Where cargo keeps the registry sources whose paths end up in panic
/// messages: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .and_then(|h| std::path::absolute(h).ok())
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("wg-wrap build.rs: {name} is not set by cargo"))
}
