//! Link flags for the launcher binary only (not for build scripts of its
//! dependencies, which `build.rustflags` in .cargo/config.toml would reach).

fn main() {
    // origin provides `_start`; do not link the C runtime's crt1.o/crti.o.
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rerun-if-changed=build.rs");
}
