//! wg-wrap: run chosen programs through a rootless userspace WireGuard tunnel.
//!
//! # Theory of operation
//!
//! `main` runs one command through these stages, in order:
//!
//!  1. **Parse** — clap turns argv into a [`Cli`]. `--help` and `--version` exit 0;
//!     a usage error exits 125 like every failure of wg-wrap's own.
//!  2. **Hidden entry points** — `__supervise` (the launcher re-executes this binary
//!     as the supervisor inside the new namespaces) and the test/bench helpers run
//!     before anything reads the user's settings: the supervisor gets everything it
//!     needs as inherited descriptors. So do `completions` and `man` (`docs`), which
//!     must work whatever state the config directory is in.
//!  3. **Settings** — the config and runtime directories from the environment
//!     (`dirs`), `config.toml` beside the profiles (`settings`), and how much to say
//!     (`-q`/`-v`, and whether stderr is a terminal: `progress`) form a `Ctx`.
//!  4. **Dispatch** — one arm per subcommand, each a call into the module that owns
//!     it (`commands` for up/exec/down/reload, `status`, `show`, `import`, `shell`,
//!     `keys`, `demo`).
//!  5. **Exit** — a command returns the status to exit with; `exec` and `shell`
//!     do not return on success: the process has become the launcher, which enters
//!     the session's namespaces and executes the user's command under the same PID,
//!     so the caller sees the command's own exit status. An error is printed once,
//!     as `wg-wrap: <what failed>: <why>`, and exits 125.
//!
//! # Stages of `up` and `exec`
//! 1. settings and directories (`settings`, `dirs`, `runtime`): the config directory,
//!    and the runtime directory, created private and opened by descriptor;
//! 2. the profile (`profile`): found, parsed by wgconf, endpoints resolved on the host;
//! 3. the session (`sessions`): under the profile lock, find the live one (proving it
//!    is the one its `state` file describes) or clean up a dead one and start a
//!    supervisor: the host UDP socket (`hostsock`) and the other descriptors
//!    (`supervisor::contract::handover`) handed to it (`spawn`) through the launcher
//!    (`launcher`), which creates the namespaces;
//! 4. registration: the process about to become the command is recorded in the
//!    session's `pids/` (`supervisor::contract::profile_dir`);
//! 5. exec: the CLI replaces itself with the launcher, which enters the session's
//!    namespaces and executes the user's command under the same PID.
//!
//! `down`, `status`, `list` and `reload` (`commands`, `status`) talk to a running
//! supervisor through its files and its control socket (`supervisor::contract`);
//! `demo` and `show` stand alone. The supervisor crate is used only through
//! `supervisor::contract` and, for `__supervise`, `supervisor::supervise`.

#![deny(unsafe_code)]

mod check;
mod commands;
mod demo;
mod dirs;
mod docs;
mod hostsock;
mod import;
mod keys;
mod launcher;
mod profile;
mod progress;
mod publish;
mod runtime;
mod sessions;
mod settings;
mod shell;
mod show;
mod spawn;
mod status;
mod waits;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for wg-wrap's own failures (as `env`, `nice`, `timeout` use it).
const EXIT_OWN_FAILURE: u8 = 125;
/// How long `up --wait` waits without `--wait-timeout` or `wait_timeout_secs`.
const DEFAULT_WAIT_SECS: u64 = 10;

#[derive(Parser)]
#[command(
    name = "wg-wrap",
    version,
    about = "Run programs through a rootless WireGuard tunnel",
    after_help = "Examples:
  wg-wrap import home.conf                       # check a wg-quick file, copy it to ~/.config/wg-wrap/
  wg-wrap exec work -- curl http://intranet/     # run one command through the tunnel
  wg-wrap up --wait work                         # keep the tunnel up; wait for a handshake
  wg-wrap shell work                             # your $SHELL inside the tunnel"
)]
struct Cli {
    /// Say nothing but warnings and errors.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 100
    )]
    quiet: bool,
    /// While waiting, also show handshakes, endpoints and the supervisor's log lines.
    #[arg(short, long, global = true, display_order = 101)]
    verbose: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the tunnel for PROFILE and keep it up until `down`.
    #[command(after_help = "Examples:
  wg-wrap up work                                # ~/.config/wg-wrap/work.conf
  wg-wrap up --wait-timeout 30 ./home.conf       # a path works too; wait up to 30 s for a handshake
  wg-wrap up -p 8080:80 work                     # localhost:8080 reaches port 80 inside the tunnel
  wg-wrap up --foreground work                   # for a systemd unit: runs until stopped")]
    Up {
        /// A profile name (looked up as NAME.conf in the config dir) or a path to a .conf.
        profile: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        publish: PublishArgs,
        /// Run the supervisor in the foreground (for systemd); ^C or SIGTERM stops it.
        #[arg(long, conflicts_with_all = ["wait", "wait_timeout"])]
        foreground: bool,
    },
    /// Run a command inside PROFILE's tunnel (starting it for the command if needed).
    #[command(after_help = "Examples:
  wg-wrap exec work -- curl http://intranet/     # exit status is curl's
  wg-wrap exec ./home.conf -- ping -c 1 nas      # a path works too
  wg-wrap exec work -- getent hosts intranet     # names resolve through the profile's DNS")]
    Exec {
        /// A profile name or a path to a .conf.
        profile: String,
        #[command(flatten)]
        publish: PublishArgs,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Open your $SHELL inside PROFILE's tunnel, with WG_WRAP_PROFILE set.
    #[command(after_help = "Examples:
  wg-wrap shell work                             # exit the shell to leave the tunnel
  wg-wrap shell                                  # the one running (or the only) profile
  wg-wrap shell ./home.conf                      # a path works too")]
    Shell {
        /// A profile name or a path; without it, the one running session or the one profile.
        profile: Option<String>,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Release `up`'s hold; the session ends when its last wrapped process exits.
    #[command(after_help = "Examples:
  wg-wrap down work                              # ends once the last wrapped process exits
  wg-wrap down --now work                        # wrapped processes get TERM, then KILL")]
    Down {
        /// A profile name or a path to a .conf.
        profile: String,
        /// End the session now: wrapped processes get SIGTERM, then SIGKILL.
        #[arg(long)]
        now: bool,
    },
    /// Show sessions and their peers, like `wg show`.
    #[command(after_help = "Examples:
  wg-wrap status                                 # every running session
  wg-wrap status work                            # one session
  wg-wrap status work --json                     # for scripts")]
    Status {
        /// A profile name or a path to a .conf (default: every running session).
        profile: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One line per profile: running sessions first, then the other profiles.
    #[command(after_help = "Examples:
  wg-wrap list                                   # name, supervisor, age, handshake
  wg-wrap list --json                            # for scripts")]
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print PROFILE as wg-wrap reads it (keys hidden) with its warnings; exit 1 and
    /// list every error if it is invalid.
    #[command(after_help = "Examples:
  wg-wrap show work                              # ~/.config/wg-wrap/work.conf
  wg-wrap show ./home.conf                       # any file, before importing it")]
    Show {
        /// A profile name or a path to a .conf.
        profile: String,
    },
    /// Apply peer and key changes from PROFILE's file to its running session.
    #[command(after_help = "Examples:
  wg-wrap reload work                            # after editing ~/.config/wg-wrap/work.conf
  wg-wrap reload --quiet work                    # say nothing unless it fails")]
    Reload {
        /// A profile name or a path to a .conf.
        profile: String,
    },
    /// Check a wg-quick file and copy it into the config dir as profile NAME (mode 0600).
    #[command(after_help = "Examples:
  wg-wrap import home.conf                       # becomes profile home
  wg-wrap import home.conf home-vpn              # under another name
  wg-wrap import --force work.conf               # replace an existing profile")]
    Import {
        /// The wg-quick style file.
        file: PathBuf,
        /// The profile name (default: the file name without `.conf`).
        name: Option<String>,
        /// Replace an existing profile of that name.
        #[arg(long)]
        force: bool,
    },
    /// Print a new private key (like `wg genkey`).
    #[command(after_help = "Examples:
  wg-wrap genkey > private.key                   # keep it private: umask 077 first
  wg-wrap genkey | tee private.key | wg-wrap pubkey")]
    Genkey,
    /// Read a private key on stdin, print its public key (like `wg pubkey`).
    #[command(after_help = "Examples:
  wg-wrap pubkey < private.key > public.key
  wg-wrap genkey | wg-wrap pubkey")]
    Pubkey,
    /// Print a new preshared key (like `wg genpsk`).
    #[command(after_help = "Examples:
  wg-wrap genpsk > preshared.key                 # for PresharedKey on both sides
  wg-wrap genpsk")]
    Genpsk,
    /// Check that wg-wrap can work here (and with PROFILE, that the profile can); one
    /// line per check with the fix for each problem; exit 1 if something blocks it.
    #[command(after_help = "Examples:
  wg-wrap check                                  # this machine and user
  wg-wrap check work                             # also the profile: parse, DNS
  wg-wrap check work --connect --json            # also a real handshake; for scripts")]
    Check {
        /// A profile name or a path to a .conf.
        profile: Option<String>,
        /// Also start a session for PROFILE, wait for the handshake, and end it.
        #[arg(long, requires = "profile")]
        connect: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Try wg-wrap against a built-in virtual peer on loopback (no VPN server needed).
    #[command(after_help = "Examples:
  wg-wrap demo                                   # fetch the virtual peer's greeting
  wg-wrap demo -- ping -c 1 10.77.0.1            # any command, inside the demo tunnel")]
    Demo {
        /// Command to run in the tunnel (default: fetch the peer's greeting).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:
  wg-wrap completions bash > wg-wrap.bash        # then: source wg-wrap.bash
  wg-wrap completions zsh > _wg-wrap             # into a directory on $fpath
  wg-wrap completions fish > wg-wrap.fish        # into ~/.config/fish/completions/")]
    Completions {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff); `wg-wrap man | man -l -` shows it.
    #[command(after_help = "Examples:
  wg-wrap man > wg-wrap.1                        # then: man -l wg-wrap.1
  wg-wrap man | grep -c ^.SH                     # plain roff: count its sections")]
    Man,
    #[command(flatten)]
    Hidden(Hidden),
}

/// `up`'s waiting options.
#[derive(Args)]
struct WaitArgs {
    /// Also wait for the first completed handshake (default 10 s, or the settings
    /// file's wait_timeout_secs).
    #[arg(long)]
    wait: bool,
    /// Wait for the first handshake at most SECS seconds (implies --wait).
    #[arg(long, value_name = "SECS")]
    wait_timeout: Option<u64>,
}

impl WaitArgs {
    fn timeout(&self, settings: &settings::Settings) -> Option<Duration> {
        let default = || settings.wait_timeout_secs.unwrap_or(DEFAULT_WAIT_SECS);
        match (self.wait, self.wait_timeout) {
            (_, Some(secs)) => Some(Duration::from_secs(secs)),
            (true, None) => Some(Duration::from_secs(default())),
            (false, None) => None,
        }
    }
}

/// `-p` on `up`, `exec` and `shell`.
#[derive(Args)]
struct PublishArgs {
    /// Make NS_PORT inside reachable at HOST_IP:HOST_PORT (default 127.0.0.1) on the
    /// host; repeatable. Lives with the session (up) or the command (exec, shell).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOST_IP:]HOST_PORT:NS_PORT[/tcp|/udp]",
        value_parser = publish::parse_spec
    )]
    specs: Vec<supervisor::contract::publish::PublishSpec>,
}

/// Entry points for wg-wrap's own processes, tests and benchmarks; not in `--help`.
#[derive(Subcommand)]
enum Hidden {
    #[command(name = "__supervise", hide = true)]
    Supervise(SuperviseArgs),
    #[command(name = "__probe", hide = true)]
    Probe {
        #[arg(long)]
        label: bool,
    },
    #[command(name = "__http-get", hide = true)]
    HttpGet { addr: String, path: String },
    #[command(name = "__virtual-peer", hide = true)]
    VirtualPeer { listen: String, profile: PathBuf },
    #[command(name = "__dump-launcher", hide = true)]
    DumpLauncher { path: PathBuf },
}

/// The descriptors the launcher hands to the supervisor, by number.
#[derive(Args)]
struct SuperviseArgs {
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
    /// FD=SPEC: a host listener for `up --foreground -p SPEC`.
    #[arg(long = "publish-fd")]
    publish_fds: Vec<String>,
    #[arg(long)]
    notify_fd: Option<i32>,
    #[arg(long)]
    profile: String,
}

/// Stage 1's fast path for the form scripts and desktop launchers run most:
/// `exec PROFILE -- COMMAND...`, with no option anywhere before the `--`. For that
/// shape clap's answer is known, and building clap's whole command tree first was the
/// largest single cost of a join into a running session (0.1-0.2 ms of ~2 ms,
/// `bench/join-ab.sh`). Anything else, including every malformed form, goes to clap; a
/// differential test holds the two to the same result.
fn plain_exec(args: &[OsString]) -> Option<Cli> {
    let [_, exec, profile, dashes, command @ ..] = args else {
        return None;
    };
    let profile = profile.to_str()?;
    if exec != "exec" || dashes != "--" || command.is_empty() {
        return None;
    }
    if profile.is_empty() || profile.starts_with('-') {
        return None;
    }
    Some(Cli {
        quiet: false,
        verbose: false,
        command: Cmd::Exec {
            profile: profile.to_owned(),
            publish: PublishArgs { specs: Vec::new() },
            command: command.to_vec(),
        },
    })
}

fn main() -> ExitCode {
    // Stage 1: parse.
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match plain_exec(&args) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse_from(args),
    };
    let cli = match parsed {
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
    // Stages 2-4.
    let result = match cli.command {
        Cmd::Hidden(hidden) => run_hidden(hidden),
        // Before the settings: these must work whatever state the config dir is in.
        Cmd::Completions { shell } => docs::completions(Cli::command(), shell),
        Cmd::Man => docs::man(Cli::command()),
        command => settings(cli.quiet, cli.verbose).and_then(|ctx| dispatch(&ctx, command)),
    };
    // Stage 5: exit.
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("wg-wrap: {e:#}");
            ExitCode::from(EXIT_OWN_FAILURE)
        }
    }
}

/// Stage 2: the hidden entry points, before any settings are read.
fn run_hidden(hidden: Hidden) -> Result<i32> {
    match hidden {
        Hidden::Supervise(args) => supervise(args),
        Hidden::Probe { label } => Ok(supervisor::probe(&mut std::io::stdout().lock(), label)),
        Hidden::HttpGet { addr, path } => demo::http_get(&addr, &path),
        Hidden::VirtualPeer { listen, profile } => demo::serve_virtual_peer(&listen, &profile),
        Hidden::DumpLauncher { path } => launcher::dump_embedded(&path).map(|()| 0),
    }
}

/// Become the supervisor of a session, with the descriptors the launcher passed.
fn supervise(a: SuperviseArgs) -> Result<i32> {
    use supervisor::contract::handover::{parse_publish_fd, take_inherited_fd, Args};
    let optional = |fd: Option<i32>, what: &str| {
        fd.map(take_inherited_fd)
            .transpose()
            .with_context(|| what.to_owned())
    };
    let args = Args {
        config: take_inherited_fd(a.config_fd).context("--config-fd")?,
        udp: take_inherited_fd(a.udp_fd).context("--udp-fd")?,
        ready: optional(a.ready_fd, "--ready-fd")?,
        lock: optional(a.lock_fd, "--lock-fd")?,
        profiles: take_inherited_fd(a.profiles_fd).context("--profiles-fd")?,
        control: take_inherited_fd(a.control_fd).context("--control-fd")?,
        control_id: a.control_id,
        profile: a.profile,
        notify: optional(a.notify_fd, "--notify-fd")?,
        published: a
            .publish_fds
            .iter()
            .map(|text| {
                let (fd, spec) = parse_publish_fd(text)
                    .map_err(|e| anyhow::anyhow!("--publish-fd {text}: {e}"))?;
                Ok((spec, take_inherited_fd(fd).context("--publish-fd")?))
            })
            .collect::<Result<_>>()?,
    };
    let reresolve = match (a.reresolve_fd, a.dns_socket_fd) {
        (Some(names), Some(socket)) => Some((
            take_inherited_fd(names).context("--reresolve-fd")?,
            take_inherited_fd(socket).context("--dns-socket-fd")?,
        )),
        _ => None,
    };
    supervisor::supervise(args, reresolve).context("read the endpoint re-resolution handover")
}

/// Stage 3: where things are, the user's defaults, and how much to say.
fn settings(quiet: bool, verbose: bool) -> Result<commands::Ctx> {
    let dirs = dirs::Dirs::from_env();
    let settings = settings::Settings::load(&dirs.config)?;
    let verbosity = match (quiet, verbose) {
        (true, _) => progress::Verbosity::Quiet,
        (false, true) => progress::Verbosity::Verbose,
        (false, false) => progress::Verbosity::Normal,
    };
    Ok(commands::Ctx {
        dirs: dirs.with_settings(&settings),
        settings,
        feedback: progress::Feedback::new(verbosity),
    })
}

/// Stage 4: one call per subcommand into the module that owns it.
fn dispatch(ctx: &commands::Ctx, command: Cmd) -> Result<i32> {
    let runtime = || runtime::Runtime::open(&ctx.dirs);
    match command {
        Cmd::Up {
            profile,
            wait,
            publish,
            foreground,
        } => {
            let opts = commands::UpOptions {
                wait: wait.timeout(&ctx.settings),
                foreground,
                publish: publish.specs,
            };
            commands::up(ctx, &profile, &opts).map(|()| 0)
        }
        Cmd::Down { profile, now } => commands::down(ctx, &profile, now).map(|()| 0),
        Cmd::Exec {
            profile,
            publish,
            command,
        } => commands::exec(ctx, &profile, &publish.specs, &command).map(|()| 0),
        Cmd::Shell { profile, publish } => {
            shell::run(ctx, profile.as_deref(), &publish.specs).map(|()| 0)
        }
        Cmd::Status { profile, json } => {
            // A path names its file's profile, as everywhere else; names are checked.
            let name = profile
                .map(|p| profile::resolve(&p, &ctx.dirs.config).map(|r| r.name))
                .transpose()?;
            status::status(&runtime()?, name.as_deref(), json)
        }
        Cmd::List { json } => status::list(&runtime()?, &ctx.dirs.config, json),
        Cmd::Show { profile } => show::run(&profile::resolve(&profile, &ctx.dirs.config)?),
        Cmd::Reload { profile } => commands::reload(ctx, &profile),
        Cmd::Import { file, name, force } => import::run(
            &ctx.feedback,
            &ctx.dirs.config,
            &file,
            name.as_deref(),
            force,
        ),
        Cmd::Genkey => keys::genkey(),
        Cmd::Pubkey => keys::pubkey(),
        Cmd::Genpsk => keys::genpsk(),
        Cmd::Demo { command } => demo::run(&ctx.dirs, &ctx.feedback, &command),
        Cmd::Check {
            profile,
            connect,
            json,
        } => check::run(ctx, profile.as_deref(), connect, json),
        Cmd::Hidden(hidden) => run_hidden(hidden),
        Cmd::Completions { .. } | Cmd::Man => unreachable!("handled before the settings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wg-wrap").chain(args.iter().copied()))
    }

    /// `--help`, the man page and the completions all show these: none may be blank
    /// (`--json` and status's PROFILE were).
    #[test]
    fn every_visible_argument_is_described() {
        let cli = Cli::command();
        let mut blank = Vec::new();
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str())
                {
                    blank.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(blank.is_empty(), "arguments without help: {blank:?}");
    }

    fn up_wait(args: &[&str], settings: &settings::Settings) -> (String, Option<Duration>) {
        match parse(args).unwrap().command {
            Cmd::Up { profile, wait, .. } => (profile, wait.timeout(settings)),
            _ => panic!("not up"),
        }
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Whatever `plain_exec` takes, clap parses to the same; everything else it
    /// leaves to clap.
    #[test]
    fn the_exec_fast_path_agrees_with_clap() {
        let taken: &[&[&str]] = &[
            &["exec", "work", "--", "true"],
            &[
                "exec",
                "./home.conf",
                "--",
                "curl",
                "-v",
                "--",
                "-p",
                "1:2",
                "",
            ],
            &["exec", "help", "--", "--help"],
            &["exec", "work", "--", "-q"],
            &["exec", "w o r k", "--", "sh", "-c", "exit 7"],
        ];
        for args in taken {
            let argv: Vec<OsString> = std::iter::once("wg-wrap")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            let fast = plain_exec(&argv).unwrap_or_else(|| panic!("not taken: {args:?}"));
            let slow = parse(args).unwrap();
            assert_eq!((fast.quiet, fast.verbose), (slow.quiet, slow.verbose));
            match (fast.command, slow.command) {
                (
                    Cmd::Exec {
                        profile: p1,
                        publish: s1,
                        command: c1,
                    },
                    Cmd::Exec {
                        profile: p2,
                        publish: s2,
                        command: c2,
                    },
                ) => {
                    assert_eq!(p1, p2, "{args:?}");
                    assert!(s1.specs.is_empty() && s2.specs.is_empty(), "{args:?}");
                    assert_eq!(c1, c2, "{args:?}");
                }
                _ => panic!("clap did not parse {args:?} as exec"),
            }
        }
        let left: &[&[&str]] = &[
            &["exec", "work", "true"],
            &["exec", "-p", "80:80", "work", "--", "true"],
            &["exec", "work", "-p", "80:80", "--", "true"],
            &["exec", "-q", "work", "--", "true"],
            &["-v", "exec", "work", "--", "true"],
            &["exec", "work", "--"],
            &["exec", "--", "work", "--", "true"],
            &["exec", "", "--", "true"],
            &["exec", "--help"],
            &["shell", "work", "--", "true"],
        ];
        for args in left {
            let argv: Vec<OsString> = std::iter::once("wg-wrap")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            assert!(plain_exec(&argv).is_none(), "taken: {args:?}");
        }
        // Not UTF-8: clap's error, not ours.
        use std::os::unix::ffi::OsStringExt;
        let argv = vec![
            OsString::from("wg-wrap"),
            OsString::from("exec"),
            OsString::from_vec(vec![0xff, b'w']),
            OsString::from("--"),
            OsString::from("true"),
        ];
        assert!(plain_exec(&argv).is_none());
    }

    #[test]
    fn wait_is_a_flag_so_the_profile_may_follow_it() {
        let none = settings::Settings::default();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            up_wait(&["up", "--wait", "work"], &none),
            ("work".into(), secs(10))
        );
        assert_eq!(
            up_wait(&["up", "work", "--wait"], &none),
            ("work".into(), secs(10))
        );
        assert_eq!(up_wait(&["up", "work"], &none), ("work".into(), None));
        assert_eq!(
            up_wait(&["up", "--wait-timeout", "30", "work"], &none),
            ("work".into(), secs(30))
        );
        let mine = settings::Settings {
            wait_timeout_secs: Some(20),
            ..Default::default()
        };
        assert_eq!(up_wait(&["up", "--wait", "work"], &mine).1, secs(20));
        assert_eq!(
            up_wait(&["up", "--wait", "--wait-timeout", "5", "work"], &mine).1,
            secs(5)
        );
    }

    #[test]
    fn publish_is_repeatable_on_up_exec_and_shell() {
        let shown = |specs: &[supervisor::contract::publish::PublishSpec]| -> Vec<String> {
            specs.iter().map(|s| s.to_string()).collect()
        };
        match parse(&[
            "up",
            "-p",
            "8080:80",
            "--publish",
            "[::1]:53:5353/udp",
            "work",
        ])
        .unwrap()
        .command
        {
            Cmd::Up { publish, .. } => assert_eq!(
                shown(&publish.specs),
                ["127.0.0.1:8080:80/tcp", "[::1]:53:5353/udp"]
            ),
            _ => panic!("not up"),
        }
        match parse(&["exec", "-p", "8080:80", "work", "--", "cmd", "-p", "1:2"])
            .unwrap()
            .command
        {
            Cmd::Exec {
                publish, command, ..
            } => {
                assert_eq!(shown(&publish.specs), ["127.0.0.1:8080:80/tcp"]);
                assert_eq!(command, ["cmd", "-p", "1:2"]);
            }
            _ => panic!("not exec"),
        }
        match parse(&["shell", "-p", "0.0.0.0:9000:9000"])
            .unwrap()
            .command
        {
            Cmd::Shell { publish, profile } => {
                assert_eq!(shown(&publish.specs), ["0.0.0.0:9000:9000/tcp"]);
                assert_eq!(profile, None);
            }
            _ => panic!("not shell"),
        }
        let err = parse(&["up", "-p", "8080:0", "work"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("NS_PORT 0"), "{err}");
    }

    #[test]
    fn contradictions_are_usage_errors() {
        for args in [
            &["up", "--foreground", "--wait", "work"][..],
            &["up", "--foreground", "--wait-timeout", "3", "work"],
            &["-q", "-v", "up", "work"],
            &["up", "--wait-timeout", "soon", "work"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert!(parse(&["down", "-q", "work"]).unwrap().quiet);
    }
}
