//! The argument and environment vectors as the kernel laid them out on the
//! initial stack, and the decimal numbers the launcher reads from them.
//!
//! Nothing is copied: there is no allocator, and exec wants exactly these
//! NULL-terminated pointer arrays anyway.
#![allow(unsafe_code)]

use core::ffi::CStr;

/// This process's argv and envp.
///
/// Invariant: `argv[0..argc]` are NUL-terminated strings and `argv[argc]` is
/// NULL; `envp` is a NULL-terminated array of NUL-terminated strings; all of
/// it stays valid for the life of the process, and the strings unmodified.
/// The pointer array lies in this process's writable initial stack; only
/// [`Args::reexec_command`] changes it, and only to point at other
/// `'static` strings.
pub struct Args {
    argc: usize,
    argv: *mut *const u8,
    envp: *const *const u8,
}

/// A command to exec: a non-empty, NULL-terminated tail of [`Args`]'s argv,
/// plus the unchanged envp. Only [`Args::command`] makes one.
pub struct Command {
    argv: *const *const u8,
    envp: *const *const u8,
    name: &'static CStr,
}

impl Args {
    /// # Safety
    ///
    /// The arguments must be those the kernel passed to the program (as
    /// origin hands them to `origin_main`), satisfying the type's invariant.
    pub unsafe fn from_raw(argc: usize, argv: *mut *const u8, envp: *const *const u8) -> Self {
        Args { argc, argv, envp }
    }

    /// Argument `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&'static CStr> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: `i < argc`, so by the invariant `argv[i]` is a valid
        // NUL-terminated string that lives as long as the process.
        Some(unsafe { CStr::from_ptr((*self.argv.add(i)).cast()) })
    }

    /// The command made of arguments `i..`, if there is at least one.
    pub fn command(&self, i: usize) -> Option<Command> {
        let name = self.get(i)?;
        Some(Command {
            // In bounds (`i < argc`), and still NULL-terminated by `argv[argc]`.
            argv: self.argv.wrapping_add(i).cast_const(),
            envp: self.envp,
            name,
        })
    }

    /// The command `<name> <mode> -- <arguments i..>`, to execute this launcher
    /// again with the tail of its arguments: the two argv slots before
    /// `argv[i - 1]`, which must be `--`, are pointed at `name` and `mode`.
    /// Strings that [`Args::get`] returned stay valid (only pointers change),
    /// and so do [`Command`]s made earlier for index `i` or later.
    pub fn reexec_command(
        &mut self,
        i: usize,
        name: &'static CStr,
        mode: &'static CStr,
    ) -> Option<Command> {
        if i < 3 || i >= self.argc || self.get(i - 1) != Some(c"--") {
            return None;
        }
        // SAFETY: `i - 3` and `i - 2` are below `argc`, so both slots are in the
        // argv array, which the kernel placed in this process's writable stack
        // and nothing else reads concurrently (single-threaded). The new values
        // point at 'static NUL-terminated strings, so the invariant holds.
        unsafe {
            *self.argv.add(i - 3) = name.as_ptr().cast();
            *self.argv.add(i - 2) = mode.as_ptr().cast();
        }
        Some(Command {
            argv: self.argv.wrapping_add(i - 3).cast_const(),
            envp: self.envp,
            name,
        })
    }

    /// The value of environment variable `name`, if set.
    pub fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut entry = self.envp;
        loop {
            // SAFETY: by the invariant `envp` is NULL-terminated and we stop
            // at the NULL, so `entry` points into the array.
            let string = unsafe { *entry };
            if string.is_null() {
                return None;
            }
            // SAFETY: a non-NULL entry is a NUL-terminated string that lives
            // as long as the process (invariant).
            let string = unsafe { CStr::from_ptr(string.cast()) }.to_bytes();
            if let Some(value) = string.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")) {
                return Some(value);
            }
            entry = entry.wrapping_add(1);
        }
    }
}

impl Command {
    /// argv[0] of the command: the name searched for in PATH.
    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// The command's argv, NULL-terminated, as `execve` wants it.
    pub fn argv(&self) -> *const *const u8 {
        self.argv
    }

    /// The environment, NULL-terminated, as `execve` wants it.
    pub fn envp(&self) -> *const *const u8 {
        self.envp
    }
}

/// A plain decimal number: digits only, no sign, no overflow.
pub fn decimal(arg: &CStr) -> Option<u64> {
    let digits = arg.to_bytes();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}
