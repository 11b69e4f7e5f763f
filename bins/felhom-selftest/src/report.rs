//! The check list every subcommand fills: `Check` (name, ok, detail), `Report` with its text
//! and JSON renderings (and documents attached to it, such as the hub test's report and
//! envelope), and `describe`, which turns a Proxmox error into the one line an
//! operator needs (the missing privilege, the fingerprint actually seen, ...).

use std::io::Write;

use felhom_proxmox::{HttpError, ProxmoxError, TlsFailure};
use serde_json::{json, Value};

/// The JSON rendering's own fields, which no attachment may replace.
const RESERVED_KEYS: [&str; 4] = ["command", "ok", "checks", "summary"];

/// One check: what was checked, whether it passed, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name, e.g. `version` or `guest_config 105`.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What was found, or why it failed (never a secret).
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }

    /// `[ ok ] name: detail` (continuation lines of a multi-line detail indented).
    pub fn line(&self) -> String {
        let mark = if self.ok { "[ ok ]" } else { "[FAIL]" };
        let detail = self.detail.trim_end().replace('\n', "\n       ");
        if detail.is_empty() {
            format!("{mark} {}", self.name)
        } else {
            format!("{mark} {}: {detail}", self.name)
        }
    }
}

/// The checks of one run, in the order they ran.
#[derive(Debug)]
pub struct Report {
    command: &'static str,
    checks: Vec<Check>,
    /// Documents shown with the checks (`key` -> JSON), in the order attached.
    attachments: Vec<(&'static str, Value)>,
    /// Print each check to stdout as it is recorded (text mode), so a person watching a slow
    /// task test sees progress.
    echo: bool,
}

impl Report {
    /// An empty report for `command`; with `echo`, each check is printed when recorded.
    pub fn new(command: &'static str, echo: bool) -> Report {
        Report {
            command,
            checks: Vec::new(),
            attachments: Vec::new(),
            echo,
        }
    }

    /// Records a check.
    pub fn push(&mut self, check: Check) {
        if self.echo {
            let mut out = std::io::stdout().lock();
            // A closed stdout must not abort a test that is midway through its cleanup.
            let _ = writeln!(out, "{}", check.line());
            let _ = out.flush();
        }
        self.checks.push(check);
    }

    /// Records a passed check.
    pub fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(Check::pass(name, detail));
    }

    /// Records a failed check.
    pub fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(Check::fail(name, detail));
    }

    /// Attaches a document: a field `key` of the JSON rendering, and in text mode a
    /// pretty-printed block after the checks. `key` must not be one of the JSON rendering's own
    /// fields (`command`, `ok`, `checks`, `summary`).
    pub fn attach(&mut self, key: &'static str, value: Value) {
        debug_assert!(
            !RESERVED_KEYS.contains(&key),
            "attachment key {key} clashes with the report's own"
        );
        self.attachments.push((key, value));
    }

    /// The attachments as text: `key:` then the pretty JSON, one block each; empty if none. A
    /// list of strings (commands to run) is printed one per line, indented, unquoted, so it can
    /// be copied into a shell.
    pub fn attachments_text(&self) -> String {
        self.attachments
            .iter()
            .map(|(key, value)| match lines(value) {
                Some(lines) => format!("{key}:\n{lines}"),
                None => format!("{key}:\n{value:#}\n"),
            })
            .collect()
    }

    /// How many passed.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.ok).count()
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// Every check passed (and there was at least one).
    pub fn all_passed(&self) -> bool {
        !self.checks.is_empty() && self.failed() == 0
    }

    /// `N passed, M failed`.
    pub fn summary_line(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// `{"command", "ok", "checks": [{name, ok, detail}], "summary": {passed, failed}}` plus
    /// one field per attachment.
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "command": self.command,
            "ok": self.all_passed(),
            "checks": self
                .checks
                .iter()
                .map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail }))
                .collect::<Vec<_>>(),
            "summary": { "passed": self.passed(), "failed": self.failed() },
        });
        if let Value::Object(fields) = &mut doc {
            for (key, value) in &self.attachments {
                if !RESERVED_KEYS.contains(key) {
                    fields.insert((*key).to_owned(), value.clone());
                }
            }
        }
        doc
    }
}

/// A non-empty JSON list of strings as `  line` rows; `None` for anything else.
fn lines(value: &Value) -> Option<String> {
    let items = value.as_array().filter(|a| !a.is_empty())?;
    items
        .iter()
        .map(|v| v.as_str().map(|s| format!("  {s}\n")))
        .collect()
}

/// One line for an error from the Proxmox API, with a hint where the cause is usually the
/// config. Proxmox errors never carry the token secret, so neither does this.
pub fn describe(e: &ProxmoxError) -> String {
    match e {
        ProxmoxError::Api(api) => {
            let mut s = if api.permission.is_some() {
                // PVE's own words already name the privilege and path.
                api.message.clone()
            } else {
                format!("{} (http {})", api.message, api.status)
            };
            for (k, v) in &api.errors {
                s.push_str(&format!("; {k}: {v}"));
            }
            s
        }
        ProxmoxError::Unauthorized { .. } => "authentication failed (401): check \
             proxmox.token_id and proxmox.token_secret; the token may be deleted or expired, \
             or its user disabled"
            .to_owned(),
        ProxmoxError::Task(t) => {
            let mut s = format!("task {} failed: {}", t.upid.worker_type(), t.exitstatus);
            if let Some(p) = &t.privilege {
                if !t.exitstatus.contains("Permission check failed") {
                    s.push_str(&format!(" (missing {p})"));
                }
            }
            if let Some(last) = t
                .log_tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.contains(&t.exitstatus))
            {
                s.push_str(&format!("; log: {}", last.trim()));
            }
            s
        }
        ProxmoxError::Http(HttpError::Tls { url, kind }) => match kind {
            TlsFailure::PinMismatch { seen } => format!(
                "{url} presented a certificate with fingerprint {seen}, which matches no \
                 pinned fingerprint (proxmox.tls.fingerprint_sha256); if the certificate was \
                 renewed, check the new one on the host (pvenode cert info) and pin it"
            ),
            TlsFailure::UnknownIssuer => format!(
                "{url} presented a certificate not issued by a trusted ca (proxmox.tls.ca_file)"
            ),
            other => format!("tls handshake with {url} failed: {other}"),
        },
        ProxmoxError::Http(h @ HttpError::Connect { .. }) => {
            format!("{h} (is proxmox.api_url right and pveproxy running?)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use felhom_proxmox::{ApiError, MissingPrivilege, TaskError, Upid};

    use super::*;

    const UPID: &str = "UPID:pve:000A1B2C:0123ABCD:6770A1B2:vzsnapshot:100:felhom@pve!agent:";

    #[test]
    fn lines_mark_pass_and_fail_and_indent_continuations() {
        assert_eq!(
            Check::pass("version", "9.1.2").line(),
            "[ ok ] version: 9.1.2"
        );
        assert_eq!(
            Check::fail(
                "guest_config 105",
                "Permission check failed (/vms/105, VM.Audit)"
            )
            .line(),
            "[FAIL] guest_config 105: Permission check failed (/vms/105, VM.Audit)"
        );
        assert_eq!(
            Check::fail("x", "one\ntwo\n").line(),
            "[FAIL] x: one\n       two"
        );
        assert_eq!(Check::pass("bare", "").line(), "[ ok ] bare");
    }

    #[test]
    fn summary_counts_and_json_shape() {
        let mut r = Report::new("read", false);
        assert!(!r.all_passed(), "an empty report proves nothing");
        r.pass("version", "9.1.2");
        r.fail("guests", "none visible");
        r.pass("storage", "2");
        assert_eq!((r.passed(), r.failed()), (2, 1));
        assert!(!r.all_passed());
        assert_eq!(r.summary_line(), "2 passed, 1 failed");
        let v = r.to_json();
        assert_eq!(v["command"], "read");
        assert_eq!(v["ok"], false);
        assert_eq!(v["summary"]["passed"], 2);
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["checks"][1]["name"], "guests");
        assert_eq!(v["checks"][1]["ok"], false);
        assert_eq!(v["checks"][1]["detail"], "none visible");
    }

    #[test]
    fn attachments_become_json_fields_and_text_blocks() {
        let mut r = Report::new("hub", false);
        assert_eq!(r.attachments_text(), "");
        r.pass("collect", "node pve");
        r.attach("report", json!({ "host_id": "pve-01" }));
        r.attach("envelope", json!({ "blocked": false }));
        let v = r.to_json();
        assert_eq!(v["report"]["host_id"], "pve-01");
        assert_eq!(v["envelope"]["blocked"], false);
        assert_eq!(v["command"], "hub");
        assert_eq!(
            r.attachments_text(),
            "report:\n{\n  \"host_id\": \"pve-01\"\n}\nenvelope:\n{\n  \"blocked\": false\n}\n"
        );
        let mut r = Report::new("privileges", false);
        r.attach(
            "fix",
            json!(["pveum role add R", "pveum acl modify / --tokens 'a@b!c'"]),
        );
        r.attach("mixed", json!(["a", 1]));
        assert_eq!(
            r.attachments_text(),
            "fix:\n  pveum role add R\n  pveum acl modify / --tokens 'a@b!c'\nmixed:\n[\n  \"a\",\n  1\n]\n"
        );
    }

    fn api(status: u16, message: &str) -> ProxmoxError {
        ProxmoxError::Api(Box::new(ApiError {
            status,
            method: "GET".into(),
            path: "/nodes/pve/lxc/105/config".into(),
            message: message.into(),
            errors: BTreeMap::new(),
            permission: MissingPrivilege::parse(message),
        }))
    }

    #[test]
    fn permission_errors_read_as_pve_wrote_them() {
        assert_eq!(
            describe(&api(403, "Permission check failed (/vms/105, VM.Audit)")),
            "Permission check failed (/vms/105, VM.Audit)"
        );
        assert_eq!(
            describe(&api(500, "CT is locked (backup)")),
            "CT is locked (backup) (http 500)"
        );
    }

    #[test]
    fn task_errors_name_type_status_privilege_and_last_log_line() {
        let upid: Upid = UPID.parse().unwrap();
        let e = ProxmoxError::Task(Box::new(TaskError {
            upid: upid.clone(),
            exitstatus: "snapshot feature is not available".into(),
            privilege: None,
            log_tail: vec![
                "checking storage".into(),
                "TASK ERROR: snapshot feature is not available".into(),
            ],
        }));
        assert_eq!(
            describe(&e),
            "task vzsnapshot failed: snapshot feature is not available; log: checking storage"
        );
        let denied = ProxmoxError::Task(Box::new(TaskError {
            upid,
            exitstatus: "backup failed".into(),
            privilege: Some(MissingPrivilege {
                path: "/vms/100".into(),
                privileges: vec!["VM.Backup".into()],
            }),
            log_tail: Vec::new(),
        }));
        assert_eq!(
            describe(&denied),
            "task vzsnapshot failed: backup failed (missing VM.Backup on /vms/100)"
        );
    }

    #[test]
    fn tls_and_auth_failures_point_at_the_config_key() {
        let seen = felhom_proxmox::Fingerprint::of_der(b"cert");
        let e = ProxmoxError::Http(HttpError::Tls {
            url: "https://127.0.0.1:8006".into(),
            kind: TlsFailure::PinMismatch { seen },
        });
        let text = describe(&e);
        assert!(text.contains(&seen.to_string()), "{text}");
        assert!(text.contains("proxmox.tls.fingerprint_sha256"), "{text}");
        let unauthorized = ProxmoxError::Unauthorized {
            method: "GET".into(),
            path: "/version".into(),
            reason: Some("Authentication failed!".into()),
        };
        assert!(describe(&unauthorized).contains("proxmox.token_secret"));
    }
}
