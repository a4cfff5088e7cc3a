//! `wg-wrap completions SHELL` and `wg-wrap man`: the shell completion scripts and the
//! manual page, generated from the same clap definition that parses the command line,
//! so they cannot drift from it. Packages install their output (see dist/PACKAGING.md);
//! people who build from source can write them wherever their shell looks.

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::io::Write;

/// Write the completion script for `shell` to standard output.
pub fn completions(cmd: clap::Command, shell: Shell) -> Result<i32> {
    write_stdout(&render_completions(cmd, shell))
}

fn render_completions(cmd: clap::Command, shell: Shell) -> Vec<u8> {
    // clap_complete offers hidden subcommands too; the internal ones (`__supervise`,
    // ...) must not show up when a user presses Tab, so they are left out here.
    let mut visible = clap::Command::new("wg-wrap")
        // Same as `#[command(version)]`: only -V/--version's presence matters here.
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut out = Vec::new();
    let name = visible.get_name().to_owned();
    clap_complete::aot::generate(shell, &mut visible, name, &mut out);
    out
}

/// Write the manual page (roff, section 1) to standard output; `man -l -` shows it.
pub fn man(cmd: clap::Command) -> Result<i32> {
    write_stdout(&render_man(cmd)?)
}

/// One page for the whole program: clap_mangen's own SUBCOMMANDS section points to a
/// page per subcommand (`wg-wrap-up(1)`, ...), which we do not ship, so every visible
/// subcommand gets its synopsis, description and options under COMMANDS instead.
fn render_man(mut cmd: clap::Command) -> Result<Vec<u8>> {
    // Sets the subcommands' bin names ("wg-wrap up"), which their synopses show.
    cmd.build();
    let mut out = Vec::new();
    (|| -> std::io::Result<()> {
        // No date: the page must not change between two builds of the same source.
        let man = clap_mangen::Man::new(cmd.clone());
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        out.extend_from_slice(b".SH COMMANDS\n");
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_man = clap_mangen::Man::new(sub.clone());
            out.extend_from_slice(format!(".SS {}\n", sub.get_name()).as_bytes());
            out.extend(section_body(|w| sub_man.render_synopsis_section(w))?);
            out.extend(section_body(|w| sub_man.render_description_section(w))?);
            out.extend(section_body(|w| sub_man.render_options_section(w))?);
        }
        out.extend_from_slice(FILES.as_bytes());
        Ok(())
    })()
    .context("render the manual page")?;
    Ok(out)
}

/// What clap_mangen renders for one section, without its `.SH` heading lines (the
/// page's own `.SS` names the subcommand).
fn section_body(
    render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    render(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with(".SH ")).collect();
    let mut body = body.join("\n");
    if !body.is_empty() {
        body.insert_str(0, ".PP\n");
        body.push('\n');
    }
    Ok(body.into_bytes())
}

/// Hand-written sections: where wg-wrap looks for things (see src/dirs.rs).
const FILES: &str = r#".SH FILES
.TP
\fI$XDG_CONFIG_HOME/wg\-wrap/NAME.conf\fR (default \fI~/.config/wg\-wrap\fR; \fB$WG_WRAP_CONFIG_DIR\fR wins)
Profiles, in the format \fBwg\-quick\fR(8) reads.
.TP
\fI$XDG_CONFIG_HOME/wg\-wrap/config.toml\fR
Defaults: \fBruntime_dir\fR, \fBmtu\fR, \fBwait_timeout_secs\fR.
.TP
\fI$XDG_RUNTIME_DIR/wg\-wrap/\fR (\fB$WG_WRAP_RUNTIME_DIR\fR wins)
Session state.
.TP
\fI/usr/lib/systemd/user/wg\-wrap@.service\fR
Keeps a profile up for the user: \fBsystemctl \-\-user enable \-\-now wg\-wrap@NAME\fR.
.SH SEE ALSO
\fBwg\-quick\fR(8), \fBwg\fR(8), \fBunshare\fR(1)
"#;

fn write_stdout(bytes: &[u8]) -> Result<i32> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("write to standard output")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_page_lists_the_commands_but_not_the_internal_ones() {
        let page = String::from_utf8(render_man(crate::Cli::command()).unwrap()).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH wg-wrap 1"), "{page}");
        for visible in ["up", "exec", "down", "status", "completions", "man"] {
            assert!(
                page.contains(&format!(".SS {visible}\n")),
                "{visible}: {page}"
            );
        }
        // Options of a subcommand, and no references to per-subcommand pages.
        assert!(page.contains("\\-\\-foreground"), "{page}");
        assert!(!page.contains("wg\\-wrap\\-up(1)"), "{page}");
        assert!(!page.contains("__supervise"), "{page}");
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script =
                String::from_utf8(render_completions(crate::Cli::command(), shell)).unwrap();
            assert!(script.contains("reload"), "{shell}: {script}");
            assert!(!script.contains("__supervise"), "{shell}: {script}");
        }
    }
}
