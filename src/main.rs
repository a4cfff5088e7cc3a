//! wg-wrap: run chosen programs through a rootless userspace WireGuard tunnel.
//!
//! The CLI validates the profile, opens the host UDP socket, starts (or finds) the
//! session's supervisor through the launcher, registers the process it is about to
//! become, and finally replaces itself with the launcher, which enters the session's
//! namespaces and executes the user's command under the same PID.

#![deny(unsafe_code)]

mod commands;
mod demo;
mod dirs;
mod docs;
mod hostsock;
mod launcher;
mod profile;
mod runtime;
mod sessions;
mod settings;
mod show;
mod spawn;
mod status;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for wg-wrap's own failures (as `env`, `nice`, `timeout` use it).
const EXIT_OWN_FAILURE: u8 = 125;

#[derive(Parser)]
#[command(
    name = "wg-wrap",
    version,
    about = "Run programs through a rootless WireGuard tunnel"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the tunnel for PROFILE and keep it up until `down`.
    Up {
        /// A profile name (looked up as NAME.conf in the config dir) or a path to a .conf.
        profile: String,
        /// Also wait for the first completed handshake (SECS, default 10 or the
        /// settings file's wait_timeout_secs).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "")]
        wait: Option<String>,
        /// Run the supervisor in the foreground (for systemd); ^C or SIGTERM stops it.
        #[arg(long)]
        foreground: bool,
    },
    /// Run a command inside PROFILE's tunnel (starting it for the command if needed).
    Exec {
        profile: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Release `up`'s hold; the session ends when its last wrapped process exits.
    Down {
        profile: String,
        /// End the session now: wrapped processes get SIGTERM, then SIGKILL.
        #[arg(long)]
        now: bool,
    },
    /// Show sessions and their peers, like `wg show`.
    Status {
        profile: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One line per running session.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print PROFILE as wg-wrap reads it (keys hidden) with its warnings; exit 1 and
    /// list every error if it is invalid.
    Show { profile: String },
    /// Apply peer and key changes from PROFILE's file to its running session.
    Reload { profile: String },
    /// Try wg-wrap against a built-in virtual peer on loopback (no VPN server needed).
    Demo {
        /// Command to run in the tunnel (default: fetch the peer's greeting).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff); `wg-wrap man | man -l -` shows it.
    Man,
    #[command(name = "__supervise", hide = true)]
    Supervise {
        #[arg(long)]
        config_fd: i32,
        #[arg(long)]
        udp_fd: i32,
        #[arg(long)]
        ready_fd: Option<i32>,
        #[arg(long)]
        lock_fd: Option<i32>,
        #[arg(long)]
        profiles_fd: i32,
        #[arg(long)]
        control_fd: i32,
        #[arg(long)]
        control_id: u64,
        #[arg(long)]
        reresolve_fd: Option<i32>,
        #[arg(long)]
        dns_socket_fd: Option<i32>,
        #[arg(long)]
        notify_fd: Option<i32>,
        #[arg(long)]
        profile: String,
    },
    #[command(name = "__http-get", hide = true)]
    HttpGet { addr: String, path: String },
    #[command(name = "__virtual-peer", hide = true)]
    VirtualPeer {
        listen: String,
        profile: std::path::PathBuf,
    },
    #[command(name = "__dump-launcher", hide = true)]
    DumpLauncher { path: std::path::PathBuf },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not failures; usage errors are wg-wrap's own.
            return if e.use_stderr() {
                ExitCode::from(EXIT_OWN_FAILURE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("wg-wrap: {e:#}");
            ExitCode::from(EXIT_OWN_FAILURE)
        }
    }
}

fn run(cmd: Cmd) -> Result<i32> {
    // Before the settings: these must work whatever state the config dir is in.
    match cmd {
        Cmd::Completions { shell } => return docs::completions(Cli::command(), shell),
        Cmd::Man => return docs::man(Cli::command()),
        _ => {}
    }
    if let Cmd::Supervise {
        config_fd,
        udp_fd,
        ready_fd,
        lock_fd,
        profiles_fd,
        control_fd,
        control_id,
        reresolve_fd,
        dns_socket_fd,
        notify_fd,
        profile,
    } = cmd
    {
        use supervisor::sys::take_inherited_fd;
        let args = supervisor::run::Args {
            config: take_inherited_fd(config_fd).context("--config-fd")?,
            udp: take_inherited_fd(udp_fd).context("--udp-fd")?,
            ready: ready_fd
                .map(take_inherited_fd)
                .transpose()
                .context("--ready-fd")?,
            lock: lock_fd
                .map(take_inherited_fd)
                .transpose()
                .context("--lock-fd")?,
            profiles: take_inherited_fd(profiles_fd).context("--profiles-fd")?,
            control: take_inherited_fd(control_fd).context("--control-fd")?,
            control_id,
            profile,
            notify: notify_fd
                .map(take_inherited_fd)
                .transpose()
                .context("--notify-fd")?,
        };
        let reresolve = match (reresolve_fd, dns_socket_fd) {
            (Some(names), Some(socket)) => Some(
                supervisor::resolve::Reresolve::from_fds(
                    take_inherited_fd(names).context("--reresolve-fd")?,
                    take_inherited_fd(socket).context("--dns-socket-fd")?,
                )
                .context("read the endpoint re-resolution handover")?,
            ),
            _ => None,
        };
        return Ok(supervisor::run::run_with(args, reresolve));
    }
    let dirs = dirs::Dirs::from_env();
    let settings = settings::Settings::load(&dirs.config)?;
    let ctx = commands::Ctx {
        dirs: dirs.with_settings(&settings),
        settings,
    };
    let runtime = || runtime::Runtime::open(&ctx.dirs);
    match cmd {
        Cmd::Up {
            profile,
            wait,
            foreground,
        } => {
            let wait = match wait.as_deref() {
                None => None,
                Some("") => Some(ctx.settings.wait_timeout_secs.unwrap_or(10)),
                Some(s) => Some(
                    s.parse::<u64>()
                        .with_context(|| format!("--wait {s:?}: not a number of seconds"))?,
                ),
            };
            let opts = commands::UpOptions {
                wait: wait.map(Duration::from_secs),
                foreground,
            };
            commands::up(&ctx, &profile, &opts).map(|()| 0)
        }
        Cmd::Down { profile, now } => commands::down(&ctx, &profile, now).map(|()| 0),
        Cmd::Exec { profile, command } => commands::exec(&ctx, &profile, &command).map(|()| 0),
        Cmd::Status { profile, json } => status::status(&runtime()?, profile.as_deref(), json),
        Cmd::List { json } => status::list(&runtime()?, json),
        Cmd::Show { profile } => show::run(&profile::resolve(&profile, &ctx.dirs.config)?),
        Cmd::Reload { profile } => commands::reload(&ctx, &profile),
        Cmd::Demo { command } => demo::run(&ctx.dirs, &command),
        Cmd::Supervise { .. } | Cmd::Completions { .. } | Cmd::Man => {
            unreachable!("handled above")
        }
        Cmd::HttpGet { addr, path } => demo::http_get(&addr, &path),
        Cmd::VirtualPeer { listen, profile } => demo::serve_virtual_peer(&listen, &profile),
        Cmd::DumpLauncher { path } => launcher::dump_embedded(&path).map(|()| 0),
    }
}
