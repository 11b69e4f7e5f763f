//! `felhom-agent journal inspect|repair` on real temp journals with a corrupted middle line:
//! what an operator sees, the damaged file kept aside, the repaired file opening again, and the
//! refusal while another process holds the journal.

use felhom_journal::{OpJournal, OpState};
use felhom_testkit::config;
use serde_json::json;

use crate::support::{run, HUB_KEY};

/// A config whose journal.path is `journal` (nothing else is touched by these commands).
fn config(dir: &std::path::Path, journal: &std::path::Path) -> String {
    let doc = json!({
        "proxmox": config::example_proxmox_section("0b1c2d3e-aaaa-4bbb-8ccc-ddddeeeeffff"),
        "hub": config::example_hub_section(HUB_KEY),
        "authz": { "nonce_store": dir.join("nonces.log") },
        "journal": { "path": journal }
    });
    let path = dir.join("agent.json");
    config::write_json(&path, &doc).unwrap();
    path.display().to_string()
}

/// A journal of five records: op A started and running (in flight), op B started and done,
/// op C started. Returns the byte offset of line 3 (B's start), which the tests corrupt.
fn journal_with_corrupt_line_3(path: &std::path::Path) -> u64 {
    {
        let (mut j, _) = OpJournal::open(path).unwrap();
        let a = j.started(Some(101), "start", None, 1000).unwrap();
        j.task_running(&a, "UPID:pve:0000A1:qmstart:101", 1001)
            .unwrap();
        let b = j
            .started(Some(102), "destroy_guest", Some("job-7".into()), 1002)
            .unwrap();
        j.succeeded(&b, 1003).unwrap();
        j.started(Some(103), "stop", None, 1004).unwrap();
    }
    let mut bytes = std::fs::read(path).unwrap();
    let line3 = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    // A bit flip inside the record's action.
    let at = line3
        + bytes[line3..]
            .windows(7)
            .position(|w| w == b"destroy")
            .unwrap();
    bytes[at] ^= 0x04;
    std::fs::write(path, &bytes).unwrap();
    line3 as u64
}

#[tokio::test]
async fn inspect_shows_the_good_records_the_corrupt_line_and_the_in_flight_ops() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.log");
    let offset = journal_with_corrupt_line_3(&journal);
    let before = std::fs::read(&journal).unwrap();
    let cfg = config(dir.path(), &journal);

    // Default path: the configured journal.path.
    let (code, out, err) = run(&["--config", &cfg, "journal", "inspect"]).await;
    assert_eq!(code, 1, "corruption found exits 1\n{out}{err}");
    assert!(out.contains("op journal"), "{out}");
    assert!(out.contains("good records: 2"), "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
    assert!(
        out.contains(&format!("line 3 at byte {offset}: checksum mismatch")),
        "{out}"
    );
    assert!(out.contains("excerpt: {\"seq\":3,"), "{out}");
    assert!(out.contains("after it: 2 intact records"), "{out}");
    // A is running; C started after the damage is kept too; B's start is lost but its
    // `succeeded` record (intact, carrying B's whole identity) says it ended.
    assert!(out.contains("in-flight ops: 2"), "{out}");
    assert!(
        out.contains("guest 101 action start state task_running upid UPID:pve:0000A1:qmstart:101"),
        "{out}"
    );
    assert!(out.contains("guest 103 action stop state started"), "{out}");
    assert!(!out.contains("guest 102"), "{out}");
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "inspect is read-only"
    );

    // The agent itself refuses this file.
    assert!(OpJournal::open(&journal).is_err());
}

#[tokio::test]
async fn repair_moves_the_file_aside_and_keeps_what_can_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.log");
    journal_with_corrupt_line_3(&journal);
    let damaged = std::fs::read(&journal).unwrap();
    let path = journal.display().to_string();

    let (code, out, err) = run(&["journal", "repair", "--path", &path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("kept 4 records (2 before the damage, 2 intact after it)"),
        "{out}"
    );
    assert!(out.contains("dropped 1 lines"), "{out}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("journal.log.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // `<path>.corrupt-YYYYMMDDTHHMMSSZ`
    let stamp = aside[0].trim_start_matches("journal.log.corrupt-");
    assert_eq!(stamp.len(), 16, "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
        "{stamp}"
    );
    assert!(out.contains(&aside[0]), "{out}");
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        damaged,
        "the damaged file is kept, byte for byte"
    );
    assert!(!dir.path().join("journal.log.repair-tmp").exists());

    // The repaired journal opens: A still in flight, B's key applied, C started.
    let (j, torn) = OpJournal::open(&journal).unwrap();
    assert!(torn.is_none());
    assert!(j.already_applied("job-7"));
    let in_flight: Vec<_> = j
        .in_flight()
        .into_iter()
        .map(|e| (e.vmid, e.state))
        .collect();
    assert_eq!(
        in_flight,
        [
            (
                Some(101),
                OpState::TaskRunning {
                    upid: "UPID:pve:0000A1:qmstart:101".into()
                }
            ),
            (Some(103), OpState::Started)
        ]
    );
    drop(j);

    // Healthy now: inspect exits 0, a second repair changes nothing.
    let (code, out, _) = run(&["journal", "inspect", "--path", &path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("good records: 4") && out.contains("damage: none"),
        "{out}"
    );
    let (code, out, _) = run(&["journal", "repair", "--path", &path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to repair"), "{out}");
}

#[tokio::test]
async fn repair_refuses_while_another_process_holds_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.log");
    journal_with_corrupt_line_3(&journal);
    let damaged = std::fs::read(&journal).unwrap();
    // The agent's lock (flock through std's File::lock), held by this test process.
    let holder = std::fs::File::open(&journal).unwrap();
    holder.lock().unwrap();

    let path = journal.display().to_string();
    let (code, out, err) = run(&["journal", "repair", "--path", &path]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("held by a running felhom-agent"), "{err}");
    assert!(err.contains("stop it first"), "{err}");
    assert_eq!(std::fs::read(&journal).unwrap(), damaged, "untouched");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing aside"
    );
    // Inspect still works (read-only, no lock).
    let (code, _, _) = run(&["journal", "inspect", "--path", &path]).await;
    assert_eq!(code, 1);
    drop(holder);
}

#[tokio::test]
async fn a_corrupt_nonce_store_is_inspected_and_repaired_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nonces.log");
    {
        let s = felhom_authz::FileNonceStore::open(&store).unwrap();
        let t = time::macros::datetime!(2026-06-01 12:00 UTC);
        for n in ["n-1", "n-2", "n-3"] {
            felhom_authz::NonceStore::record(&s, n, t).unwrap();
        }
    }
    let mut bytes = std::fs::read(&store).unwrap();
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    bytes[last + 45] ^= 0x01; // the last complete record: corruption, not a torn tail
    std::fs::write(&store, &bytes).unwrap();
    let path = store.display().to_string();

    let (code, out, _) = run(&["journal", "inspect", "--path", &path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nonce store") && out.contains("line 3 at byte"),
        "{out}"
    );
    assert!(!out.contains("in-flight"), "{out}");

    let (code, out, _) = run(&["journal", "repair", "--path", &path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("could be accepted again"), "{out}");
    let s = felhom_authz::FileNonceStore::open(&store).unwrap();
    assert!(!s.is_disabled());
    assert!(felhom_authz::NonceStore::seen(&s, "n-1"));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json").display().to_string();
    let (code, _, err) = run(&["--config", &missing, "journal", "inspect"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["journal", "inspect", "--path", &missing]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.json"), "{err}");
    let (code, _, _) = run(&["journal", "bogus"]).await;
    assert_eq!(code, 2);
}
