//! What the CLI and a running supervisor agree on.

#[cfg(target_os = "linux")]
pub mod profile_dir;
pub mod state;
