//! Builds the static launcher (launcher/, its own Cargo workspace) with a
//! nested `cargo build` and hands its path to the CLI as
//! `WG_WRAP_LAUNCHER_BIN`, for `include_bytes!` in src/launcher.rs (and, since
//! `rustc-env` reaches every target of this package, in tests/launcher.rs).
//!
//! The nested build gets its own target directory under OUT_DIR: sharing
//! ours would deadlock on the build-directory lock this build already holds.

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

fn main() {
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

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("wg-wrap build.rs: {name} is not set by cargo"))
}
