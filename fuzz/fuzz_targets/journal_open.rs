//! Opening a journal file holding arbitrary bytes, as the daemon does at start: the op journal,
//! the generic log (reopening what one open accepted must give the same records and no torn
//! tail), and `journal inspect`.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use felhom_journal::{repair, Log, OpJournal, OpRecord};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    // /dev/shm when there is one: an fsync per run on a real disk would dominate the run time.
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            tempfile::tempdir_in(shm).expect("a temp dir")
        } else {
            tempfile::tempdir().expect("a temp dir")
        }
    })
}

fn fresh(name: &str, data: &[u8]) -> PathBuf {
    let path = dir().path().join(name);
    std::fs::write(&path, data).expect("write the journal file");
    path
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = repair::inspect::<OpRecord>(fresh("inspect.jsonl", data));

    if let Ok((journal, _torn)) = OpJournal::open(fresh("ops.jsonl", data)) {
        let _ = (journal.in_flight(), journal.len());
    }

    let path = fresh("log.jsonl", data);
    let first = Log::<serde_json::Value>::open(&path);
    if let Ok(first) = first {
        let records = first.records;
        drop(first.log);
        let again = Log::<serde_json::Value>::open(&path).expect("an accepted log reopens");
        assert!(
            again.repaired.is_none(),
            "a repaired log needed a second repair"
        );
        assert_eq!(again.records, records, "reopening changed the records");
    }
});
