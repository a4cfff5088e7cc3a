//! What the user sees while wg-wrap waits, and how much of it.
//!
//! A wait that takes longer than [`QUIET_PERIOD`] is announced: on a terminal as a
//! spinner line on stderr that is redrawn in place and erased when the wait ends; on
//! anything else (a pipe, a log file, systemd's journal) as one plain line, because
//! carriage returns and escape codes only garble a log. `--quiet` shows neither and
//! drops informational messages; `--verbose` adds the events seen while waiting
//! (handshakes, endpoints, the supervisor's log lines), printed as plain lines above
//! the spinner.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Waits shorter than this are not worth a message.
const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// How often the spinner moves.
const FRAME: Duration = Duration::from_millis(100);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    Quiet,
    #[default]
    Normal,
    Verbose,
}

/// The user's choice of verbosity plus what stderr is.
#[derive(Debug, Clone, Copy)]
pub struct Feedback {
    pub verbosity: Verbosity,
    pub stderr_is_terminal: bool,
}

impl Default for Feedback {
    fn default() -> Feedback {
        Feedback::new(Verbosity::Normal)
    }
}

impl Feedback {
    pub fn new(verbosity: Verbosity) -> Feedback {
        Feedback {
            verbosity,
            stderr_is_terminal: std::io::stderr().is_terminal(),
        }
    }

    /// An informational message on stdout ("work is up"); `--quiet` drops it.
    pub fn info(&self, message: &str) {
        if self.verbosity > Verbosity::Quiet {
            println!("wg-wrap: {message}");
        }
    }

    pub fn verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// Start a wait described by `what` ("waiting for a handshake with work").
    pub fn wait(&self, what: impl Into<String>, timeout: Duration) -> Waiting {
        Waiting {
            feedback: *self,
            what: what.into(),
            timeout,
            started: Instant::now(),
            shown: false,
            last_frame: None,
            frame: 0,
            out: Box::new(std::io::stderr()),
        }
    }
}

/// One wait in progress; call [`Waiting::tick`] from the wait's loop and drop it (or
/// call [`Waiting::finish`]) when the wait ends.
pub struct Waiting {
    feedback: Feedback,
    what: String,
    timeout: Duration,
    started: Instant,
    /// Whether the plain line or a spinner frame has been written.
    shown: bool,
    last_frame: Option<Instant>,
    frame: usize,
    out: Box<dyn Write>,
}

impl Waiting {
    fn spinner(&self) -> bool {
        self.feedback.stderr_is_terminal
    }

    /// Show or advance the progress line, if the wait has lasted long enough.
    pub fn tick(&mut self) {
        if self.feedback.verbosity == Verbosity::Quiet || self.started.elapsed() < QUIET_PERIOD {
            return;
        }
        if !self.spinner() {
            if !self.shown {
                let line = format!(
                    "wg-wrap: {} (up to {} s)...\n",
                    self.what,
                    self.timeout.as_secs()
                );
                let _ = self.out.write_all(line.as_bytes());
                self.shown = true;
            }
            return;
        }
        if self.last_frame.is_some_and(|t| t.elapsed() < FRAME) {
            return;
        }
        self.last_frame = Some(Instant::now());
        self.frame = (self.frame + 1) % SPINNER.len();
        self.draw();
    }

    fn draw(&mut self) {
        let line = format!(
            "\r\x1b[K{} {} ({} s of {} s)",
            SPINNER[self.frame],
            self.what,
            self.started.elapsed().as_secs(),
            self.timeout.as_secs()
        );
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
        self.shown = true;
    }

    /// A `--verbose` event: a plain line, above the spinner when there is one.
    pub fn event(&mut self, line: &str) {
        if !self.feedback.verbose() {
            return;
        }
        let erase = if self.spinner() && self.shown {
            "\r\x1b[K"
        } else {
            ""
        };
        let _ = writeln!(self.out, "{erase}wg-wrap: {line}");
        if self.spinner() && self.shown {
            self.draw();
        }
    }

    /// End the wait: erase the spinner line.
    pub fn finish(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        if self.spinner() && self.shown {
            let _ = self.out.write_all(b"\r\x1b[K");
            let _ = self.out.flush();
            self.shown = false;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn waiting(verbosity: Verbosity, terminal: bool, sink: &Sink) -> Waiting {
        let feedback = Feedback {
            verbosity,
            stderr_is_terminal: terminal,
        };
        let mut w = feedback.wait("waiting for x", Duration::from_secs(5));
        w.out = Box::new(sink.clone());
        // As if the wait had been going for a while.
        w.started -= QUIET_PERIOD * 2;
        w
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_line_once_without_a_terminal() {
        let sink = Sink::default();
        let mut w = waiting(Verbosity::Verbose, false, &sink);
        w.tick();
        w.tick();
        w.event("peer A: handshake");
        w.finish();
        assert_eq!(
            text(&sink),
            "wg-wrap: waiting for x (up to 5 s)...\nwg-wrap: peer A: handshake\n"
        );
    }

    #[test]
    fn spinner_on_a_terminal_is_erased_at_the_end() {
        let sink = Sink::default();
        let mut w = waiting(Verbosity::Normal, true, &sink);
        w.tick();
        w.event("not shown without --verbose");
        drop(w);
        let t = text(&sink);
        assert!(t.starts_with("\r\x1b[K"), "{t:?}");
        assert!(t.contains("waiting for x (2 s of 5 s)"), "{t:?}");
        assert!(t.ends_with("\r\x1b[K"), "{t:?}");
        assert!(!t.contains("not shown"), "{t:?}");
    }

    #[test]
    fn quiet_shows_nothing_and_short_waits_nothing() {
        let sink = Sink::default();
        let mut w = waiting(Verbosity::Quiet, true, &sink);
        w.tick();
        w.finish();
        let mut w = Feedback {
            verbosity: Verbosity::Normal,
            stderr_is_terminal: false,
        }
        .wait("short", Duration::from_secs(5));
        w.out = Box::new(sink.clone());
        w.tick();
        w.finish();
        assert_eq!(text(&sink), "");
    }
}
