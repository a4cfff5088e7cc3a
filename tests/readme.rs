//! README's commands and every `--help` example, run as written (issue 12): a
//! command shown to users that does not work fails this test.
//!
//! # Which lines run
//!
//! - README.md: every fenced block whose info string is exactly `sh tested`
//!   (```` ```sh tested ````), all blocks in file order, one command per line, each
//!   continuing where the previous one left off. Plain ```` ```sh ```` blocks are not
//!   run: use them for commands no test can run as written (Set up, Install,
//!   Troubleshooting: `sudo apt install ./wg-wrap_*.deb` and the like).
//! - `wg-wrap --help` and `wg-wrap SUBCOMMAND --help` for every subcommand it lists:
//!   the lines after `Examples:` (2-4 of them), each run on its own from a fresh
//!   start (see [`Start`]).
//!
//! A line is a command as a POSIX shell reads it, limited to what this test can run
//! without a shell (tests run argument vectors, never shell strings): words,
//! `'…'` and `"…"` quoting without expansions, a `#` comment, `<` and `>`
//! redirections and `|` pipelines. Anything else (`$`, backquotes, `~`, `;`, `&`,
//! globs) fails the test: show a command this test can run, or put it in an untested
//! block. Every command in a pipeline must exit 0. Lines in [`RUNS_UNTIL_STOPPED`]
//! are started, must bring their session up, and must exit 0 on SIGTERM.
//!
//! # The world they run in
//!
//! A sandbox from tests/common, as the unprivileged test user, in `$HOME`, which
//! holds `work.conf` and `home.conf` (each for its own virtual peer: work's DNS
//! answers `intranet`, home's `nas`, both at the peer's tunnel address 10.77.0.1)
//! and `private.key`. Profiles live in `~/.config/wg-wrap/` (`WG_WRAP_CONFIG_DIR`
//! is unset, so README's path is the one used).

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use virtual_peer::{PeerConfig, VirtualPeer};

/// Commands that serve until stopped (for systemd).
const RUNS_UNTIL_STOPPED: &[&str] = &["wg-wrap up --foreground work"];

const README: &str = include_str!("../README.md");

/// One command of a pipeline.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stage {
    argv: Vec<String>,
    stdin: Option<String>,
    stdout: Option<String>,
}

/// Split `line` into a pipeline (see the module doc for the subset understood).
fn parse_line(line: &str) -> Result<Vec<Stage>, String> {
    #[derive(PartialEq)]
    enum Next {
        Word,
        In,
        Out,
    }
    let mut stages = vec![Stage::default()];
    let mut word: Option<String> = None;
    let mut next = Next::Word;
    let mut chars = line.chars().peekable();
    let finish = |word: &mut Option<String>, next: &mut Next, stages: &mut Vec<Stage>| {
        if let Some(w) = word.take() {
            let stage = stages.last_mut().unwrap();
            match next {
                Next::Word => stage.argv.push(w),
                Next::In => stage.stdin = Some(w),
                Next::Out => stage.stdout = Some(w),
            }
            *next = Next::Word;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut next, &mut stages),
            '#' if word.is_none() => break,
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('$' | '`' | '\\') if c == '"' => {
                            return Err(format!("expansion inside \"…\" in {line:?}"))
                        }
                        Some(other) => w.push(other),
                        None => return Err(format!("unterminated quote in {line:?}")),
                    }
                }
            }
            '<' | '>' | '|' => {
                finish(&mut word, &mut next, &mut stages);
                if next != Next::Word {
                    return Err(format!("a redirection without a file in {line:?}"));
                }
                match c {
                    '<' => next = Next::In,
                    '>' => next = Next::Out,
                    _ => stages.push(Stage::default()),
                }
            }
            '$' | '`' | '~' | ';' | '&' | '*' | '?' | '[' | '(' | ')' | '{' | '\\' => {
                return Err(format!(
                    "{c:?} in {line:?}: this test runs no shell; use a simpler command \
                     or an untested ```sh block"
                ))
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    finish(&mut word, &mut next, &mut stages);
    if next != Next::Word || stages.iter().any(|s| s.argv.is_empty()) {
        return Err(format!("an incomplete command in {line:?}"));
    }
    Ok(stages)
}

/// The command part of a line (no comment, no surrounding blanks), as
/// [`RUNS_UNTIL_STOPPED`] lists it.
fn command_part(line: &str) -> String {
    let words: Vec<String> = parse_line(line)
        .unwrap()
        .into_iter()
        .map(|s| s.argv.join(" "))
        .collect();
    words.join(" | ")
}

/// Lines of README's ```sh tested blocks, with their line numbers.
fn readme_lines() -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    // Inside a fenced block: whether it is a tested one.
    let mut block: Option<bool> = None;
    for (i, line) in README.lines().enumerate() {
        let trimmed = line.trim();
        match block {
            None if trimmed.starts_with("```") => block = Some(trimmed == "```sh tested"),
            Some(_) if trimmed.starts_with("```") => block = None,
            Some(true) if !trimmed.is_empty() && !trimmed.starts_with('#') => {
                lines.push((i + 1, line.to_owned()))
            }
            _ => {}
        }
    }
    lines
}

/// What the sandbox looks like for the commands.
struct World {
    sb: Sandbox,
    _peers: Vec<VirtualPeer>,
    config_dir: PathBuf,
}

/// A virtual peer whose DNS also answers `name` with its tunnel address; writes
/// `$HOME/FILE` for it.
fn peer_with_name(sb: &Sandbox, file: &str, name: &str) -> VirtualPeer {
    let (mut config, client) = PeerConfig::demo();
    config
        .dns_names
        .push((name.to_owned(), IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))));
    let peer = VirtualPeer::start(config, sb.bind_udp("127.0.0.1:0")).unwrap();
    user_file(sb, file, &client.wg_quick_conf(peer.local_addr()));
    peer
}

fn user_file(sb: &Sandbox, name: &str, text: &str) {
    let path = sb.home.join(name);
    std::fs::write(&path, text).unwrap();
    std::os::unix::fs::chown(&path, Some(sb.uid), Some(sb.gid)).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

impl World {
    fn new() -> World {
        let sb = Sandbox::new();
        let peers = vec![
            peer_with_name(&sb, "work.conf", "intranet"),
            peer_with_name(&sb, "home.conf", "nas"),
        ];
        let (_, client) = PeerConfig::demo();
        user_file(
            &sb,
            "private.key",
            &format!("{}\n", virtual_peer::key_to_base64(&client.private_key)),
        );
        let config_dir = sb.home.join(".config/wg-wrap");
        World {
            sb,
            _peers: peers,
            config_dir,
        }
    }

    /// A program run as the user in `$HOME`, with README's config dir.
    fn command(&self, argv: &[String]) -> Command {
        let program = if argv[0] == "wg-wrap" {
            self.sb.wg_wrap.display().to_string()
        } else {
            argv[0].clone()
        };
        let mut cmd = self.sb.command(&program, &argv[1..]);
        cmd.env_remove("WG_WRAP_CONFIG_DIR");
        cmd
    }

    fn wg_wrap(&self, args: &[&str]) -> Output {
        let argv: Vec<String> = std::iter::once("wg-wrap")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        self.sb.run(self.command(&argv))
    }

    /// Run one line; panics (naming `origin`) unless every command in it exits 0.
    fn run_line(&self, origin: &str, line: &str) {
        let stages = parse_line(line).unwrap_or_else(|e| panic!("{origin}: {e}"));
        if RUNS_UNTIL_STOPPED.contains(&command_part(line).as_str()) {
            return self.run_until_stopped(origin, &stages[0]);
        }
        let mut children: Vec<Child> = Vec::new();
        for stage in &stages {
            let mut cmd = self.command(&stage.argv);
            cmd.stderr(Stdio::piped());
            match (&stage.stdin, children.last_mut()) {
                (Some(file), _) => {
                    cmd.stdin(std::fs::File::open(self.sb.home.join(file)).unwrap());
                }
                (None, Some(prev)) => {
                    cmd.stdin(Stdio::from(prev.stdout.take().unwrap()));
                }
                (None, None) => {}
            }
            match &stage.stdout {
                Some(file) => {
                    let path = self.sb.home.join(file);
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .unwrap();
                    std::os::unix::fs::chown(&path, Some(self.sb.uid), Some(self.sb.gid)).unwrap();
                    cmd.stdout(f);
                }
                None => {
                    cmd.stdout(Stdio::piped());
                }
            }
            children.push(cmd.spawn().expect("spawn"));
        }
        // Last first: it drains the pipeline.
        let outs: Vec<Output> = children
            .into_iter()
            .rev()
            .map(|c| wait_output(c, COMMAND_TIMEOUT))
            .collect();
        for out in &outs {
            assert!(
                out.status.success(),
                "{origin}: `{line}` failed\n{}",
                describe(out)
            );
        }
    }

    fn run_until_stopped(&self, origin: &str, stage: &Stage) {
        let profile = stage.argv.last().unwrap().clone();
        let mut cmd = self.command(&stage.argv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.is_up(&profile) {
            if Instant::now() > deadline {
                signal(pid, rustix::process::Signal::KILL);
                panic!(
                    "{origin}: {:?} never brought {profile} up\n{}",
                    stage.argv,
                    describe(&wait_output(child, COMMAND_TIMEOUT))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(pid, rustix::process::Signal::TERM);
        let out = wait_output(child, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "{origin}: {:?} did not stop cleanly on SIGTERM\n{}",
            stage.argv,
            describe(&out)
        );
        assert!(
            !self.is_up(&profile),
            "{origin}: {profile} still up after SIGTERM"
        );
    }

    fn is_up(&self, profile: &str) -> bool {
        let out = self.wg_wrap(&["status", profile, "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        doc["profiles"].as_array().is_some_and(|p| !p.is_empty())
    }

    /// Back to the start state for help examples: nothing running, only `work`
    /// imported, stray key files gone; then `up work` for the commands that need a
    /// session to act on.
    fn reset(&self, start: Start) {
        for name in ["work", "home"] {
            let out = self.wg_wrap(&["down", "--now", "-q", name]);
            assert_success(&out);
        }
        let _ = std::fs::remove_dir_all(&self.config_dir);
        let out = self.wg_wrap(&["import", "work.conf"]);
        assert_success(&out);
        if start == Start::Up {
            assert_success(&self.wg_wrap(&["up", "work"]));
        }
    }
}

/// Where a help text's examples start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// `work` imported, nothing running.
    Imported,
    /// `work` imported and up.
    Up,
}

fn start_for(subcommand: &str) -> Start {
    match subcommand {
        "down" | "reload" | "status" => Start::Up,
        _ => Start::Imported,
    }
}

/// The subcommands `wg-wrap --help` lists (without `help`).
fn subcommands(world: &World) -> Vec<String> {
    let out = world.wg_wrap(&["--help"]);
    assert_success(&out);
    let text = stdout(&out);
    let section = text
        .split("Commands:\n")
        .nth(1)
        .expect("no Commands: section in --help");
    section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The example lines of a help text.
fn examples(help: &str) -> Vec<String> {
    help.split("Examples:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_line_parser_understands_its_subset_and_refuses_the_rest() {
    let s = parse_line("wg-wrap genkey | tee 'a b' | wg-wrap pubkey > pub.key  # c").unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].argv, ["tee", "a b"]);
    assert_eq!(s[2].stdout.as_deref(), Some("pub.key"));
    let s = parse_line("wg-wrap pubkey <private.key").unwrap();
    assert_eq!(s[0].stdin.as_deref(), Some("private.key"));
    assert_eq!(
        command_part("  wg-wrap up --foreground work   # for systemd"),
        "wg-wrap up --foreground work"
    );
    for bad in [
        "echo $HOME",
        "cp a ~/b",
        "a; b",
        "a && b",
        "a &",
        "ls *.conf",
        "echo \"$x\"",
        "a >",
        "a | ",
        "'open",
    ] {
        assert!(parse_line(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn readme_commands_run_as_written() {
    let lines = readme_lines();
    assert!(
        lines.len() >= 10,
        "README has only {} tested lines: are its ```sh tested blocks gone?",
        lines.len()
    );
    let world = World::new();
    for (number, line) in &lines {
        world.run_line(&format!("README.md:{number}"), line);
    }
    for entry in RUNS_UNTIL_STOPPED {
        assert!(
            lines.iter().any(|(_, l)| command_part(l) == *entry),
            "RUNS_UNTIL_STOPPED names {entry:?}, which README no longer shows"
        );
    }
}

#[test]
fn help_examples_run_as_written() {
    let world = World::new();
    let mut helps = vec![(String::new(), vec!["--help".to_owned()])];
    for sub in subcommands(&world) {
        helps.push((sub.clone(), vec![sub, "--help".to_owned()]));
    }
    for (sub, args) in helps {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = world.wg_wrap(&args);
        assert_success(&out);
        let help = stdout(&out);
        let lines = examples(&help);
        let origin = format!("`wg-wrap {}`", args.join(" "));
        assert!(
            (2..=4).contains(&lines.len()),
            "{origin} must end with 2-4 examples, has {}:\n{help}",
            lines.len()
        );
        assert!(
            help.trim_end().ends_with(lines.last().unwrap().as_str()),
            "{origin}: the examples must come last:\n{help}"
        );
        for line in &lines {
            assert!(line.starts_with("wg-wrap "), "{origin}: {line:?}");
            world.reset(start_for(&sub));
            world.run_line(&origin, line);
        }
    }
}
