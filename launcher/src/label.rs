//! AppArmor labels as `/proc/PID/attr/apparmor/current` shows them, and the one
//! decision the launcher takes on them.
//!
//! Pure code without `crate::` or `std`: `wg-wrap check` includes this file too
//! (`#[path]`), which is where its unit tests run (the launcher has no test harness).
//!
//! The kernel prints a label as `unconfined` (no profile) or `NAME (MODE)`, where
//! MODE is `enforce`, `complain`, `kill`, `unconfined` (a profile declared
//! `flags=(unconfined)`), `user`, or `mixed` for a stack `A//&B` whose parts differ.

/// One label, as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label<'a> {
    /// No profile at all.
    Unconfined,
    /// `NAME (MODE)`.
    Profile { name: &'a [u8], mode: &'a [u8] },
}

/// Parses the text of `attr/apparmor/current` (a trailing newline or NUL is fine).
/// `None` for anything else, e.g. an SELinux context read from `attr/current`.
pub fn parse(text: &[u8]) -> Option<Label<'_>> {
    let text = trim(text);
    if text == b"unconfined" {
        return Some(Label::Unconfined);
    }
    let open = text.iter().rposition(|&b| b == b'(')?;
    let (name, mode) = (&text[..open], &text[open + 1..]);
    let name = name.strip_suffix(b" ")?;
    let mode = mode.strip_suffix(b")")?;
    if name.is_empty() || mode.is_empty() || !mode.iter().all(u8::is_ascii_lowercase) {
        return None;
    }
    Some(Label::Profile { name, mode })
}

impl Label<'_> {
    /// Whether one of the profiles in this label (a stack `A//&B` names several)
    /// is `name`.
    pub fn has_profile(&self, wanted: &[u8]) -> bool {
        match self {
            Label::Unconfined => false,
            Label::Profile { name, .. } => name.split(|&b| b == b'&').any(|part| {
                let part = part.strip_suffix(b"//").unwrap_or(part);
                let part = part.strip_prefix(b"//").unwrap_or(part);
                part == wanted
            }),
        }
    }
}

/// Whether the command the launcher is about to run should first return to plain
/// `unconfined`: true exactly for a profile in `unconfined` mode, such as the
/// `wg-wrap` profile the packages install (`flags=(unconfined) { userns, }`).
///
/// Such a profile keeps its label across an exec unless another profile attaches
/// to the new program's path, so every wrapped program would inherit its exemption
/// from the user-namespace restriction. Plain `unconfined` is what the command
/// would have outside wg-wrap. A confining profile (enforce, complain, ...) is
/// left alone: its own exec rules decide, and it could not be left anyway.
pub fn leave_before_exec(current: &[u8]) -> bool {
    matches!(parse(current), Some(Label::Profile { name, mode: b"unconfined" }) if name != b"unconfined")
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\0' | b' '] = text {
        text = rest;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_formats() {
        assert_eq!(parse(b"unconfined\n"), Some(Label::Unconfined));
        assert_eq!(
            parse(b"wg-wrap (unconfined)\n"),
            Some(Label::Profile {
                name: b"wg-wrap",
                mode: b"unconfined"
            })
        );
        assert_eq!(
            parse(b"/usr/bin/man (enforce)\0"),
            Some(Label::Profile {
                name: b"/usr/bin/man",
                mode: b"enforce"
            })
        );
        assert_eq!(
            parse(b"unprivileged_userns (enforce)"),
            Some(Label::Profile {
                name: b"unprivileged_userns",
                mode: b"enforce"
            })
        );
        // A name may itself contain blanks and parentheses; the mode is the last group.
        assert_eq!(
            parse(b"odd (name) (complain)\n"),
            Some(Label::Profile {
                name: b"odd (name)",
                mode: b"complain"
            })
        );
    }

    #[test]
    fn other_lsms_and_garbage_are_not_labels() {
        for text in [
            &b""[..],
            b"\n",
            b"unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
            b"system_u:system_r:kernel_t:s0\0",
            b"wg-wrap(unconfined)",
            b"wg-wrap ()",
            b" (enforce)",
            b"wg-wrap (Enforce)",
        ] {
            assert_eq!(parse(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn stacks_name_each_profile() {
        let stacked = parse(b"wg-wrap//&unprivileged_userns (mixed)\n").unwrap();
        assert!(stacked.has_profile(b"unprivileged_userns"));
        assert!(stacked.has_profile(b"wg-wrap"));
        assert!(!stacked.has_profile(b"wg"));
        assert!(parse(b"unprivileged_userns (enforce)")
            .unwrap()
            .has_profile(b"unprivileged_userns"));
        assert!(!Label::Unconfined.has_profile(b"unconfined"));
    }

    #[test]
    fn only_an_unconfined_mode_profile_is_left_before_exec() {
        assert!(leave_before_exec(b"wg-wrap (unconfined)\n"));
        assert!(leave_before_exec(b"wg-wrap-launcher (unconfined)\n"));
        // Some other flags=(unconfined) profile the caller ran under (a terminal in
        // an IDE's profile): the command returns to plain unconfined as well.
        assert!(leave_before_exec(b"code (unconfined)\n"));
        // Nothing to leave.
        assert!(!leave_before_exec(b"unconfined\n"));
        // Confining profiles decide for themselves (and cannot be left).
        assert!(!leave_before_exec(b"wg-wrap (enforce)\n"));
        assert!(!leave_before_exec(b"wg-wrap (complain)\n"));
        assert!(!leave_before_exec(b"unprivileged_userns (enforce)\n"));
        assert!(!leave_before_exec(b"a//&b (mixed)\n"));
        // No AppArmor: the file is missing or empty, or belongs to another LSM.
        assert!(!leave_before_exec(b""));
        assert!(!leave_before_exec(b"system_u:system_r:unconfined_t:s0"));
    }
}
