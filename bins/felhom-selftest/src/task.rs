//! `task --vmid N`: reversible writes on one guest, each PVE task waited on and asserted OK.
//!
//! Snapshot → rollback → (start again if the rollback stopped it) → delete the snapshot, then
//! description write → verify → restore (or delete the key if there was none) → verify. When a
//! step fails or the run is interrupted, what was changed is still undone (the snapshot
//! deleted, the guest started again, the description restored) and each undo is reported as a
//! `cleanup:` check. Nothing here is hidden from the operator: the snapshot carries a
//! description saying what made it, in case the cleanup cannot run.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use felhom_proxmox::{
    wait_task, ConfigUpdate, GuestStatus, ProxmoxApi, ProxmoxError, SetConfigOutcome, TaskOutcome,
    Upid, WaitOptions,
};

use crate::report::{describe, Report};

/// The snapshot's description, so one left behind explains itself.
pub const SNAPSHOT_DESCRIPTION: &str =
    "temporary snapshot of felhom-selftest task; deleted by the test itself";

/// How the task test runs.
#[derive(Debug, Clone)]
pub struct TaskTest {
    /// The guest.
    pub vmid: u32,
    /// Now, seconds since the epoch (names the snapshot and the description marker).
    pub now_unix: u64,
    /// For the test's steps; its cancel token is the interrupt.
    pub wait: WaitOptions,
    /// For cleanup steps: not cancelled by the first interrupt.
    pub cleanup_wait: WaitOptions,
    /// What is left to undo by hand if the test cannot (shared with the interrupt handler).
    pub by_hand: ByHand,
}

/// The commands that would finish the cleanup by hand, kept current as the test changes and
/// undoes things: printed at the end when anything is left, and on a second Ctrl-C.
#[derive(Debug, Clone, Default)]
pub struct ByHand(Arc<Mutex<BTreeMap<String, String>>>);

impl ByHand {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Something now needs undoing: `key` names it, `command` undoes it.
    pub fn add(&self, key: impl Into<String>, command: impl Into<String>) {
        self.lock().insert(key.into(), command.into());
    }

    /// It was undone (or never happened).
    pub fn done(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The commands left, in order (a running task first: the others need its lock).
    pub fn commands(&self) -> Vec<String> {
        self.lock().values().cloned().collect()
    }

    /// The commands as text for the terminal; empty when nothing is left.
    pub fn render(&self) -> String {
        let commands = self.commands();
        if commands.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "felhom-selftest: to finish the cleanup by hand, run on the node (in this order):\n",
        );
        for c in commands {
            out.push_str("  ");
            out.push_str(&c);
            out.push('\n');
        }
        out
    }
}

/// `'text'` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What the guest looked like before the test.
#[derive(Debug, Clone)]
struct Before {
    running: bool,
    description: Option<String>,
    digest: Option<String>,
    snapshots: BTreeSet<String>,
}

/// A name that is not taken: `felhom-selftest-<unix>`, with `-2`, `-3`, … appended if needed.
pub fn snapshot_name(now_unix: u64, taken: &BTreeSet<String>) -> String {
    let base = format!("felhom-selftest-{now_unix}");
    if !taken.contains(&base) {
        return base;
    }
    (2u32..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(base)
}

/// The description the test writes.
pub fn marker(now_unix: u64) -> String {
    format!("felhom-selftest {now_unix}: temporary description, restored by the test")
}

/// A description as PVE means it: PVE appends `\n` to every line when it reads the config
/// back and drops trailing blank lines when it writes, so trailing newlines are not content;
/// an empty description is no description.
pub fn normalize_description(d: Option<&str>) -> Option<String> {
    let t = d?.trim_end_matches(['\n', '\r']);
    (!t.is_empty()).then(|| t.to_owned())
}

/// Whether the API can write `text` back exactly (the client refuses control characters other
/// than newlines, so such a description could not be restored).
fn restorable(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && c != '\n')
}

fn shown(d: &Option<String>) -> String {
    match d {
        Some(t) => format!("{t:?}"),
        None => "none".to_owned(),
    }
}

fn outcome_detail(o: &TaskOutcome) -> String {
    let mut s = format!("task {} in {:.1} s", o.exitstatus, o.waited.as_secs_f64());
    if !o.warnings.is_empty() {
        s.push_str(&format!(" ({})", o.warnings.join("; ")));
    }
    s
}

/// Starts a task and waits for it. An interrupt does not abandon a task PVE is running: the
/// wait goes on under the cleanup options, so the undo steps that follow do not trip over the
/// task's lock.
async fn task<A: ProxmoxApi>(
    api: &A,
    started: impl Future<Output = Result<Upid, ProxmoxError>>,
    t: &TaskTest,
) -> Result<TaskOutcome, ProxmoxError> {
    let upid = started.await?;
    tracing::info!(%upid, "waiting for task");
    finish(api, &upid, t).await
}

/// Keys of [`ByHand`] entries: sorted so a running task's stop comes first.
const KEY_TASK: &str = "0 task";
const KEY_SNAPSHOT: &str = "1 snapshot";
const KEY_START: &str = "2 start";
const KEY_DESCRIPTION: &str = "3 description";

async fn finish<A: ProxmoxApi>(
    api: &A,
    upid: &Upid,
    t: &TaskTest,
) -> Result<TaskOutcome, ProxmoxError> {
    // Until it ends, the way to end it by hand (`DELETE /nodes/{node}/tasks/{upid}`).
    t.by_hand.add(
        format!("{KEY_TASK} {upid}"),
        format!("pvesh delete /nodes/{}/tasks/{upid}", api.node()),
    );
    let waited = match wait_task(api, upid, &t.wait).await {
        Err(ProxmoxError::Cancelled { .. }) => {
            tracing::warn!(%upid, "interrupted: letting the running task finish before cleaning up");
            wait_task(api, upid, &t.cleanup_wait).await
        }
        other => other,
    };
    if !still_running(&waited) {
        t.by_hand.done(&format!("{KEY_TASK} {upid}"));
    }
    waited
}

/// Whether a wait ended with the task still running in PVE.
fn still_running<T>(waited: &Result<T, ProxmoxError>) -> bool {
    matches!(
        waited,
        Err(ProxmoxError::WaitTimeout { .. } | ProxmoxError::Cancelled { .. })
    )
}

/// Whether a failed mutation certainly had no effect: never sent, or refused by PVE before it
/// acted (an HTTP error answer; a failed task changed nothing either).
fn certainly_no_effect(e: &ProxmoxError) -> bool {
    e.never_sent() || matches!(e, ProxmoxError::Api(_) | ProxmoxError::Task(_))
}

/// The run's state: once something went wrong (or the run was interrupted) steps are named
/// `cleanup:`.
struct Run<'a> {
    t: &'a TaskTest,
    broken: bool,
}

impl Run<'_> {
    fn interrupted(&self) -> bool {
        self.t.wait.cancel.is_cancelled()
    }

    /// Steps after a failure or an interrupt are cleanup.
    fn cleaning(&self) -> bool {
        self.broken || self.interrupted()
    }

    fn name(&self, step: &str) -> String {
        if self.cleaning() {
            format!("cleanup: {step}")
        } else {
            step.to_owned()
        }
    }
}

/// `felhom-selftest task --vmid N`.
pub async fn run(api: &impl ProxmoxApi, t: &TaskTest, report: &mut Report) {
    let Some(before) = preflight(api, t, report).await else {
        return;
    };
    snapshot_phase(api, t, &before, report).await;
    if t.wait.cancel.is_cancelled() {
        report.fail(
            "description",
            "skipped: interrupted (the snapshot steps were undone first)",
        );
    } else {
        description_phase(api, t, &before, report).await;
    }
    let left = t.by_hand.commands();
    if !left.is_empty() {
        report.fail(
            "cleanup: by hand",
            format!("run on the node: {}", left.join("; ")),
        );
        eprint!("{}", t.by_hand.render());
    }
}

async fn preflight(api: &impl ProxmoxApi, t: &TaskTest, report: &mut Report) -> Option<Before> {
    let vmid = t.vmid;
    let status = match api.guest_status(vmid).await {
        Ok(s) => s,
        Err(e) => {
            report.fail(format!("guest {vmid}"), describe(&e));
            return None;
        }
    };
    if let Some(lock) = &status.lock {
        report.fail(
            format!("guest {vmid}"),
            format!("is locked ({lock}); nothing was changed, try again when it is free"),
        );
        return None;
    }
    if status.template {
        report.fail(
            format!("guest {vmid}"),
            "is a template (templates cannot be snapshotted); pick another guest",
        );
        return None;
    }
    report.pass(
        format!("guest {vmid}"),
        format!(
            "{}, {}",
            status.name.as_deref().unwrap_or("(no name)"),
            status.status
        ),
    );
    let config = match api.guest_config(vmid).await {
        Ok(c) => c,
        Err(e) => {
            report.fail(format!("guest_config {vmid}"), describe(&e));
            return None;
        }
    };
    let description = normalize_description(config.description.as_deref());
    report.pass(
        format!("guest_config {vmid}"),
        format!("description before: {}", shown(&description)),
    );
    let snapshots = match api.list_snapshots(vmid).await {
        Ok(s) => s
            .into_iter()
            .filter(|s| !s.is_current())
            .map(|s| s.name)
            .collect::<BTreeSet<_>>(),
        Err(e) => {
            report.fail("snapshots before", describe(&e));
            return None;
        }
    };
    report.pass(
        "snapshots before",
        if snapshots.is_empty() {
            "none".to_owned()
        } else {
            snapshots.iter().cloned().collect::<Vec<_>>().join(", ")
        },
    );
    Some(Before {
        running: status.status == GuestStatus::Running,
        description,
        digest: config.digest,
        snapshots,
    })
}

/// Whether the snapshot may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exists {
    No,
    Yes,
    /// The create's outcome is unknown (timeout, interrupted wait, lost connection).
    Maybe,
}

async fn snapshot_phase(api: &impl ProxmoxApi, t: &TaskTest, before: &Before, report: &mut Report) {
    let vmid = t.vmid;
    let name = snapshot_name(t.now_unix, &before.snapshots);
    let mut run = Run { t, broken: false };
    t.by_hand.add(
        KEY_SNAPSHOT,
        format!("pct delsnapshot {vmid} {name}  # if `pct listsnapshot {vmid}` shows it"),
    );

    let created = task(
        api,
        api.snapshot(vmid, &name, Some(SNAPSHOT_DESCRIPTION)),
        t,
    )
    .await;
    let mut exists = match created {
        Ok(o) => {
            report.pass(format!("snapshot {name}"), outcome_detail(&o));
            Exists::Yes
        }
        Err(e) => {
            report.fail(format!("snapshot {name}"), describe(&e));
            run.broken = true;
            if certainly_no_effect(&e) {
                t.by_hand.done(KEY_SNAPSHOT);
                Exists::No
            } else {
                Exists::Maybe
            }
        }
    };

    // Rollback only in the normal flow: as cleanup it would be pointless.
    let mut rollback_sent = false;
    if exists == Exists::Yes && !run.cleaning() {
        let rolled = task(api, api.rollback(vmid, &name, false), t).await;
        match rolled {
            Ok(o) => report.pass(format!("rollback {name}"), outcome_detail(&o)),
            Err(e) => {
                report.fail(format!("rollback {name}"), describe(&e));
                run.broken = true;
            }
        }
        rollback_sent = true;
    }

    // PVE stops a running container for a rollback; put it back the way it was.
    if rollback_sent && before.running {
        t.by_hand
            .add(KEY_START, format!("pct start {vmid}  # if it is stopped"));
        restart_if_stopped(api, &run, report).await;
    }

    if exists == Exists::Maybe {
        // Find out before deleting: deleting a snapshot that is not there fails its task.
        exists = match api.list_snapshots(vmid).await {
            Ok(s) if s.iter().any(|s| s.name == name) => Exists::Yes,
            Ok(_) => {
                // Not there now; a create task still running may make it later: then the
                // by-hand list keeps the delete.
                if !t
                    .by_hand
                    .commands()
                    .iter()
                    .any(|c| c.starts_with("pvesh delete"))
                {
                    t.by_hand.done(KEY_SNAPSHOT);
                }
                Exists::No
            }
            Err(e) => {
                report.fail(
                    run.name(&format!("find snapshot {name}")),
                    format!(
                        "{}; if it exists, delete it by hand (pct delsnapshot {vmid} {name})",
                        describe(&e)
                    ),
                );
                Exists::No
            }
        };
    }
    if exists == Exists::Yes {
        let step = run.name(&format!("delete snapshot {name}"));
        match task(api, api.delete_snapshot(vmid, &name), t).await {
            Ok(o) => {
                t.by_hand.done(KEY_SNAPSHOT);
                report.pass(step, outcome_detail(&o));
            }
            Err(e) => {
                report.fail(
                    step,
                    format!(
                        "{}; delete it by hand (pct delsnapshot {vmid} {name})",
                        describe(&e)
                    ),
                );
            }
        }
    }

    match api.list_snapshots(vmid).await {
        Ok(s) => {
            let after: BTreeSet<String> = s
                .into_iter()
                .filter(|s| !s.is_current())
                .map(|s| s.name)
                .collect();
            if after == before.snapshots {
                report.pass("snapshots after", "unchanged");
            } else {
                let extra: Vec<&String> = after.difference(&before.snapshots).collect();
                let gone: Vec<&String> = before.snapshots.difference(&after).collect();
                report.fail(
                    "snapshots after",
                    format!("changed: now also {extra:?}, no longer {gone:?}"),
                );
            }
        }
        Err(e) => report.fail("snapshots after", describe(&e)),
    }
}

async fn restart_if_stopped(api: &impl ProxmoxApi, run: &Run<'_>, report: &mut Report) {
    let vmid = run.t.vmid;
    let status = match api.guest_status(vmid).await {
        Ok(s) => s.status,
        Err(e) => {
            report.fail(
                run.name(&format!("start {vmid}")),
                format!(
                    "cannot read its state after the rollback: {}; start it if it is stopped \
                     (pct start {vmid})",
                    describe(&e)
                ),
            );
            return;
        }
    };
    if status == GuestStatus::Running {
        run.t.by_hand.done(KEY_START);
        return;
    }
    let step = run.name(&format!("start {vmid}"));
    match task(api, api.start(vmid), run.t).await {
        Ok(o) => {
            run.t.by_hand.done(KEY_START);
            report.pass(
                step,
                format!(
                    "running again after the rollback stopped it ({})",
                    outcome_detail(&o)
                ),
            )
        }
        Err(e) => report.fail(
            step,
            format!(
                "it was running before the test and is now {status}: {}",
                describe(&e)
            ),
        ),
    }
}

/// Applies a config change, waiting if PVE answers with a task.
async fn set_config(
    api: &impl ProxmoxApi,
    vmid: u32,
    update: &ConfigUpdate,
    t: &TaskTest,
) -> Result<String, ProxmoxError> {
    match api.set_config(vmid, update).await? {
        SetConfigOutcome::Applied => Ok("applied".to_owned()),
        SetConfigOutcome::Task(upid) => finish(api, &upid, t)
            .await
            .map(|o| format!("applied by {}", outcome_detail(&o))),
    }
}

fn description_update(text: Option<&str>, digest: Option<String>) -> ConfigUpdate {
    let mut u = ConfigUpdate {
        digest,
        ..ConfigUpdate::default()
    };
    match text {
        Some(t) => {
            u.set.insert("description".to_owned(), t.to_owned());
        }
        None => u.delete.push("description".to_owned()),
    }
    u
}

async fn description_phase(
    api: &impl ProxmoxApi,
    t: &TaskTest,
    before: &Before,
    report: &mut Report,
) {
    let vmid = t.vmid;
    if let Some(d) = &before.description {
        if !restorable(d) {
            report.fail(
                "description write",
                "skipped: the current description holds control characters the api client \
                 cannot write back, so it could not be restored",
            );
            return;
        }
    }
    let mut run = Run { t, broken: false };
    let marker = marker(t.now_unix);
    t.by_hand.add(
        KEY_DESCRIPTION,
        match &before.description {
            Some(d) => format!("pct set {vmid} --description {}", shell_quote(d)),
            None => format!("pct set {vmid} --delete description"),
        },
    );

    let write = set_config(
        api,
        vmid,
        &description_update(Some(&marker), before.digest.clone()),
        t,
    )
    .await;
    let mut maybe_changed = true;
    match write {
        Ok(how) => report.pass("description write", how),
        Err(e) => {
            maybe_changed = !certainly_no_effect(&e);
            report.fail("description write", describe(&e));
            run.broken = true;
        }
    }
    if !maybe_changed {
        t.by_hand.done(KEY_DESCRIPTION);
    }

    // Read back: verifies the write, and tells the restore what is there now.
    let mut current: Option<(Option<String>, Option<String>)> = None;
    if maybe_changed {
        match api.guest_config(vmid).await {
            Ok(c) => {
                let raw = c.description.clone();
                let now = normalize_description(raw.as_deref());
                if !run.broken {
                    if now.as_deref() == Some(marker.as_str()) {
                        let how = if raw.as_deref().is_some_and(|r| r.ends_with('\n')) {
                            "reads back as written (with PVE's trailing newline)"
                        } else {
                            "reads back as written"
                        };
                        report.pass("description verify", how);
                    } else {
                        report.fail(
                            "description verify",
                            format!("wrote {marker:?}, reads back {}", shown(&now)),
                        );
                        run.broken = true;
                    }
                }
                current = Some((now, c.digest));
            }
            Err(e) => {
                report.fail(run.name("description verify"), describe(&e));
                run.broken = true;
            }
        }
    }

    let needs_restore = match &current {
        Some((now, _)) => *now != before.description,
        // Unknown: restore anyway (writing the original back is harmless).
        None => maybe_changed,
    };
    if !needs_restore {
        t.by_hand.done(KEY_DESCRIPTION);
        return;
    }
    let digest = current.and_then(|(_, d)| d);
    let step = run.name("description restore");
    let restore = description_update(before.description.as_deref(), digest);
    match set_config(api, vmid, &restore, t).await {
        Ok(how) => {
            t.by_hand.done(KEY_DESCRIPTION);
            report.pass(
                step,
                match &before.description {
                    Some(_) => format!("{how}: the original written back"),
                    None => format!("{how}: the key deleted (there was no description)"),
                },
            )
        }
        Err(e) => {
            report.fail(
                step,
                format!(
                    "{}; the description is still the test's; set it back to {} by hand",
                    describe(&e),
                    shown(&before.description)
                ),
            );
            return;
        }
    }
    let step = run.name("description restored");
    match api.guest_config(vmid).await {
        Ok(c) => {
            let now = normalize_description(c.description.as_deref());
            if now == before.description {
                report.pass(step, format!("reads back {}", shown(&now)));
            } else {
                report.fail(
                    step,
                    format!(
                        "reads back {}, expected {}",
                        shown(&now),
                        shown(&before.description)
                    ),
                );
            }
        }
        Err(e) => report.fail(step, describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_unique_and_valid() {
        let mut taken = BTreeSet::new();
        assert_eq!(
            snapshot_name(1_735_787_045, &taken),
            "felhom-selftest-1735787045"
        );
        taken.insert("felhom-selftest-1735787045".to_owned());
        taken.insert("felhom-selftest-1735787045-2".to_owned());
        let n = snapshot_name(1_735_787_045, &taken);
        assert_eq!(n, "felhom-selftest-1735787045-3");
        // PVE's snapshot names: [a-zA-Z][a-zA-Z0-9_-]+, at most 40 characters.
        assert!(n.len() <= 40);
        assert!(n.starts_with(|c: char| c.is_ascii_alphabetic()));
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(snapshot_name(u64::MAX, &BTreeSet::new()).len() <= 40);
    }

    #[test]
    fn descriptions_compare_without_pves_trailing_newline() {
        assert_eq!(
            normalize_description(Some("web server\n")),
            Some("web server".to_owned())
        );
        assert_eq!(
            normalize_description(Some("a\nb\n\n")),
            Some("a\nb".to_owned())
        );
        assert_eq!(normalize_description(Some("\n")), None);
        assert_eq!(normalize_description(Some("")), None);
        assert_eq!(normalize_description(None), None);
        let m = marker(42);
        assert_eq!(normalize_description(Some(&format!("{m}\n"))), Some(m));
    }

    #[test]
    fn only_newlines_are_restorable_control_characters() {
        assert!(restorable("a\nb"));
        assert!(!restorable("a\tb"));
        assert!(!restorable("a\r\nb"));
    }

    #[test]
    fn restore_sets_the_original_or_deletes_the_key() {
        let set = description_update(Some("web"), Some("abc".into()));
        assert_eq!(set.set.get("description").map(String::as_str), Some("web"));
        assert!(set.delete.is_empty());
        assert_eq!(set.digest.as_deref(), Some("abc"));
        let del = description_update(None, None);
        assert!(del.set.is_empty());
        assert_eq!(del.delete, ["description"]);
    }

    #[test]
    fn refused_mutations_had_no_effect_lost_ones_might_have() {
        let refused = ProxmoxError::InvalidArgument {
            what: "x",
            detail: "y".into(),
        };
        assert!(certainly_no_effect(&refused));
        let lost = ProxmoxError::WaitTimeout {
            upid: "UPID:pve:000A1B2C:0123ABCD:6770A1B2:vzsnapshot:100:felhom@pve!agent:"
                .parse()
                .unwrap(),
            waited: std::time::Duration::from_secs(1),
        };
        assert!(!certainly_no_effect(&lost));
    }
}
