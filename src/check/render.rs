//! The report: one line per check, or one JSON document.
//!
//! JSON: `{"usable": bool, "checks": [{"name", "status": "ok"|"warning"|"error",
//! "message", "fix": string|null, "handshake_ms"?: number}]}`.

use super::{Check, Status};
use serde::Serialize;

#[derive(Serialize)]
struct Doc<'a> {
    usable: bool,
    checks: &'a [Check],
}

pub fn json(checks: &[Check], usable: bool) -> String {
    serde_json::to_string_pretty(&Doc { usable, checks }).expect("plain data serialises")
}

/// `name: ok: message` or `name: error: message; fix: …`, then a verdict line.
pub fn text(checks: &[Check], usable: bool) -> String {
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        };
        out.push_str(&format!("{}: {status}: {}", c.name, c.message));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("; fix: {fix}"));
        }
        out.push('\n');
    }
    let errors = checks.iter().filter(|c| c.status == Status::Error).count();
    let problems = format!(
        "{errors} problem{} {} fixed",
        if errors == 1 { "" } else { "s" },
        if errors == 1 { "is" } else { "are" }
    );
    // A bad profile (or a peer that does not answer) is no fault of the machine.
    let machine_ok = checks
        .iter()
        .filter(|c| c.status == Status::Error)
        .all(|c| PROFILE_CHECKS.contains(&c.name));
    if usable {
        out.push_str("wg-wrap can work here\n");
    } else if machine_ok {
        out.push_str(&format!(
            "wg-wrap can work here, but not with this profile until {problems}\n"
        ));
    } else {
        out.push_str(&format!("wg-wrap cannot work here until {problems}\n"));
    }
    out
}

/// The checks about the profile given, not the machine.
const PROFILE_CHECKS: [&str; 3] = ["profile", "dns", "connect"];

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(checks: &[Check]) -> String {
        text(checks, false)
    }

    #[test]
    fn one_line_per_check() {
        let checks = [
            Check::ok("kernel", "Linux 6.18"),
            Check::error(
                "tun",
                "/dev/net/tun is mode 0600",
                "sudo chmod 0666 /dev/net/tun",
            ),
        ];
        let text = text(&checks, false);
        assert_eq!(
            text,
            "kernel: ok: Linux 6.18\n\
             tun: error: /dev/net/tun is mode 0600; fix: sudo chmod 0666 /dev/net/tun\n\
             wg-wrap cannot work here until 1 problem is fixed\n"
        );
        let profile = [
            Check::ok("kernel", "Linux 6.18"),
            Check::error("profile", "no profile work", "import it"),
        ];
        assert!(text_of(&profile).ends_with(
            "wg-wrap can work here, but not with this profile until 1 problem is fixed\n"
        ));
        let doc: serde_json::Value = serde_json::from_str(&json(&checks, false)).unwrap();
        assert_eq!(doc["usable"], false);
        assert_eq!(doc["checks"][0]["status"], "ok");
        assert_eq!(doc["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(doc["checks"][1]["name"], "tun");
        assert_eq!(doc["checks"][1]["fix"], "sudo chmod 0666 /dev/net/tun");
    }
}
