//! Messages on stderr and the exit statuses that go with them.
//!
//! Each message is assembled in a fixed buffer and written with one
//! `write(2)`, so it is not interleaved with other output. Nothing is printed
//! on success.

use rustix::io::Errno;

/// The launcher itself failed (usage, a namespace step, a mismatch).
pub const FAILURE: i32 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// Names of the errnos the launcher's syscalls can return.
const ERRNO_NAMES: &[(Errno, &str)] = &[
    (Errno::PERM, "EPERM"),
    (Errno::NOENT, "ENOENT"),
    (Errno::SRCH, "ESRCH"),
    (Errno::INTR, "EINTR"),
    (Errno::IO, "EIO"),
    (Errno::TOOBIG, "E2BIG"),
    (Errno::NOEXEC, "ENOEXEC"),
    (Errno::BADF, "EBADF"),
    (Errno::AGAIN, "EAGAIN"),
    (Errno::NOMEM, "ENOMEM"),
    (Errno::ACCESS, "EACCES"),
    (Errno::FAULT, "EFAULT"),
    (Errno::BUSY, "EBUSY"),
    (Errno::NOTDIR, "ENOTDIR"),
    (Errno::ISDIR, "EISDIR"),
    (Errno::INVAL, "EINVAL"),
    (Errno::NFILE, "ENFILE"),
    (Errno::MFILE, "EMFILE"),
    (Errno::TXTBSY, "ETXTBSY"),
    (Errno::NOSPC, "ENOSPC"),
    (Errno::ROFS, "EROFS"),
    (Errno::NAMETOOLONG, "ENAMETOOLONG"),
    (Errno::NOSYS, "ENOSYS"),
    (Errno::LOOP, "ELOOP"),
    (Errno::USERS, "EUSERS"),
    (Errno::OPNOTSUPP, "EOPNOTSUPP"),
    (Errno::LIBBAD, "ELIBBAD"),
];

/// A message under construction; longer ones are cut short.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Self {
        let mut line = Line {
            buf: [0; 512],
            len: 0,
        };
        line.text(b"wg-wrap: ");
        line
    }

    fn text(&mut self, text: &[u8]) -> &mut Self {
        // Keep one byte for the newline.
        let room = self.buf.len() - 1 - self.len;
        let n = text.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
        self
    }

    /// A string from the user (a command name): control characters and
    /// non-ASCII bytes are shown as `\xNN` so they cannot drive the terminal.
    fn untrusted(&mut self, text: &[u8]) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in text {
            if b == b'\\' || !(b' '..=b'~').contains(&b) {
                self.text(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            } else {
                self.text(&[b]);
            }
        }
        self
    }

    fn number(&mut self, n: u64) -> &mut Self {
        self.text(decimal(&mut [0; 20], n))
    }

    fn errno(&mut self, errno: Errno) -> &mut Self {
        match ERRNO_NAMES.iter().find(|(e, _)| *e == errno) {
            Some((_, name)) => self.text(name.as_bytes()),
            None => self
                .text(b"errno ")
                .number(u64::from(errno.raw_os_error().unsigned_abs())),
        }
    }

    fn print(&mut self) {
        self.buf[self.len] = b'\n';
        // Nothing sensible is left to do if stderr is gone.
        let _ = rustix::io::write(crate::sys::stderr(), &self.buf[..=self.len]);
    }
}

/// `n` in decimal, written at the end of `buf`.
pub fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Ends the process with `status`, without running anything else.
pub fn exit(status: i32) -> ! {
    rustix::runtime::exit_group(status)
}

/// `wg-wrap: <step>: <ERRNO>`, exit 125.
pub fn fail(step: &[u8], errno: Errno) -> ! {
    Line::new().text(step).text(b": ").errno(errno).print();
    exit(FAILURE)
}

/// `wg-wrap: <what>`, exit 125.
pub fn failed(what: &[u8]) -> ! {
    Line::new().text(what).print();
    exit(FAILURE)
}

/// The shell's report of a failed exec: `wg-wrap: <cmd>: command not found`
/// (127) when a PATH search found nothing, otherwise
/// `wg-wrap: exec <cmd>: <ERRNO>`, 127 for ENOENT and 126 for the rest.
pub fn exec_failed(name: &[u8], searched: bool, errno: Errno) -> ! {
    let mut line = Line::new();
    if searched && errno == Errno::NOENT {
        line.untrusted(name).text(b": command not found").print();
        exit(NOT_FOUND)
    }
    line.text(b"exec ")
        .untrusted(name)
        .text(b": ")
        .errno(errno)
        .print();
    exit(if errno == Errno::NOENT {
        NOT_FOUND
    } else {
        CANNOT_EXECUTE
    })
}

/// Bad launcher command line: this is an internal interface, so one terse
/// line is enough.
pub fn usage() -> ! {
    failed(
        b"usage: wg-wrap-launcher create [--detach] <exe-fd> -- <argv0> [args...] | \
          join <pidfd> <netns-dev> <netns-ino> <cwd> -- <argv0> [args...] | \
          exec -- <argv0> [args...]",
    )
}
