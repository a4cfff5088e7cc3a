//! What the CLI and a running supervisor agree on: the only part of this crate the
//! CLI uses (with the [`crate::supervise`] entry point).
//!
//! - [`state`]: the files in a profile's runtime directory (`state`, `hold`,
//!   `pids/<pid>` registrations) and the processes they name;
//! - [`profile_dir`]: safe, locked access to that directory;
//! - [`control`]: the control socket's requests and answers;
//! - [`handover`]: what a new supervisor inherits from the CLI that starts it;
//! - [`publish`]: `-p` specs, and the listeners handed to a supervisor for them.

#[cfg(target_os = "linux")]
pub mod control;
#[cfg(target_os = "linux")]
pub mod handover;
#[cfg(target_os = "linux")]
pub mod profile_dir;
pub mod publish;
pub mod state;
