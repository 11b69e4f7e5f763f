//! `Log` on the real file system: replay, torn-tail repair, corruption refusal, lock, compaction.

use std::fs;

use felhom_journal::{JournalError, Log};

use crate::{line_starts, rec, recs, Rec};

fn write_log(path: &std::path::Path, n: u64) {
    let mut opened = Log::<Rec>::open(path).unwrap();
    for r in recs(1..=n) {
        opened.log.append(&r).unwrap();
    }
}

#[test]
fn open_creates_then_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let opened = Log::<Rec>::open(&path).unwrap();
    assert!(path.exists());
    assert!(opened.records.is_empty() && opened.repaired.is_none());
    assert_eq!(opened.log.len(), 0);
    assert_eq!(opened.log.path(), path);
    drop(opened);

    write_log(&path, 0);
    let mut o = Log::<Rec>::open(&path).unwrap();
    for r in recs(1..=5) {
        o.log.append(&r).unwrap();
    }
    assert_eq!(o.log.len(), 5);
    drop(o);
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(1..=5));
    assert_eq!(o.log.len(), 5);
    assert!(o.repaired.is_none());
    // Every line is the documented envelope.
    let text = fs::read_to_string(&path).unwrap();
    for (i, l) in text.lines().enumerate() {
        assert!(
            l.starts_with(&format!("{{\"seq\":{},\"crc\":\"", i + 1)),
            "{l}"
        );
    }
}

#[test]
fn truncation_at_every_byte_of_the_last_record_loses_exactly_it() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.log");
    write_log(&full, 3);
    let bytes = fs::read(&full).unwrap();
    let starts = line_starts(&bytes);
    let (last_start, end) = (starts[2], starts[3]);
    assert_eq!(end, bytes.len());

    let path = dir.path().join("cut.log");
    for cut in last_start..end {
        fs::write(&path, &bytes[..cut]).unwrap();
        let mut o = Log::<Rec>::open(&path).unwrap();
        assert_eq!(o.records, recs(1..=2), "cut at {cut}");
        let dropped = (cut - last_start) as u64;
        match &o.repaired {
            None => assert_eq!(dropped, 0, "cut at {cut}"),
            Some(t) => {
                assert_eq!((t.line, t.bytes_dropped), (3, dropped), "cut at {cut}");
                assert!(!t.reason.is_empty());
            }
        }
        // Repaired on disk: truncated to the good prefix.
        assert_eq!(
            fs::read(&path).unwrap(),
            &bytes[..last_start],
            "cut at {cut}"
        );
        // Appends continue cleanly after the repair.
        o.log.append(&rec(30)).unwrap();
        assert_eq!(o.log.len(), 3);
        drop(o);
        let o = Log::<Rec>::open(&path).unwrap();
        assert_eq!(o.records, vec![rec(1), rec(2), rec(30)], "cut at {cut}");
        assert!(o.repaired.is_none());
    }
}

#[test]
fn trailing_zero_bytes_are_a_torn_tail_but_a_bad_complete_last_line_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    write_log(&path, 2);
    let good = fs::read(&path).unwrap();

    let mut zeros = good.clone();
    zeros.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &zeros).unwrap();
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(1..=2));
    let t = o.repaired.unwrap();
    assert_eq!((t.line, t.bytes_dropped), (3, 4096));
    assert!(t.reason.contains("zero bytes"), "{}", t.reason);
    drop(o.log);
    assert_eq!(fs::read(&path).unwrap(), good);

    // A complete last line whose bytes were damaged (newline intact): its append was
    // acknowledged, so dropping it would lose a record. Refused, naming the line; untouched.
    let mut bad_last = good.clone();
    let starts = line_starts(&bad_last);
    bad_last[starts[1] + 40] ^= 0x20;
    for trailer in [&b""[..], b"\0\0\0\0"] {
        let mut damaged = bad_last.clone();
        damaged.extend_from_slice(trailer);
        fs::write(&path, &damaged).unwrap();
        let e = Log::<Rec>::open(&path).unwrap_err();
        assert!(matches!(&e, JournalError::Corrupt { line: 2, .. }), "{e}");
        assert_eq!(fs::read(&path).unwrap(), damaged, "file untouched");
    }
}

#[test]
fn mid_file_corruption_is_refused_with_its_line_and_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    write_log(&path, 5);
    let mut bytes = fs::read(&path).unwrap();
    let starts = line_starts(&bytes);
    for line in 1..=4usize {
        let mut damaged = bytes.clone();
        // Damage a byte inside the record of `line` (1-based), well past the envelope.
        damaged[starts[line - 1] + 45] ^= 0x01;
        fs::write(&path, &damaged).unwrap();
        match Log::<Rec>::open(&path) {
            Err(JournalError::Corrupt {
                line: l,
                reason,
                path: p,
            }) => {
                assert_eq!(l, line as u64);
                assert_eq!(p, path);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("line {line}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            fs::read(&path).unwrap(),
            damaged,
            "refused file must not be repaired"
        );
    }

    // A lost line (sequence gap) is corruption too.
    let gap: Vec<u8> = [&bytes[..starts[1]], &bytes[starts[2]..]].concat();
    fs::write(&path, &gap).unwrap();
    let e = Log::<Rec>::open(&path).unwrap_err();
    assert!(
        matches!(&e, JournalError::Corrupt { line: 2, reason, .. } if reason.contains("sequence gap")),
        "{e}"
    );
    assert!(e.to_string().contains("line 2"));

    // Garbage in the middle, with good lines after it.
    bytes.splice(starts[2]..starts[2], b"garbage\n".iter().copied());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Log::<Rec>::open(&path),
        Err(JournalError::Corrupt { line: 3, .. })
    ));
}

#[test]
fn a_checksummed_record_of_the_wrong_type_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let mut o = Log::<u64>::open(&path).unwrap();
    o.log.append(&7).unwrap();
    drop(o);
    let e = Log::<Rec>::open(&path).unwrap_err();
    assert!(
        matches!(&e, JournalError::Corrupt { line: 1, reason, .. } if reason.contains("does not decode")),
        "{e}"
    );
    assert_eq!(Log::<u64>::open(&path).unwrap().records, vec![7]);
}

#[test]
fn one_writer_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let first = Log::<Rec>::open(&path).unwrap();
    let e = Log::<Rec>::open(&path).unwrap_err();
    assert!(
        matches!(&e, JournalError::Locked { path: p } if *p == path),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("journal {}: locked by another writer", path.display())
    );
    drop(first);
    Log::<Rec>::open(&path).unwrap();
}

#[test]
fn compaction_rewrites_atomically_and_keeps_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let mut o = Log::<Rec>::open(&path).unwrap();
    for r in recs(1..=10) {
        o.log.append(&r).unwrap();
    }
    let mut log = o.log;
    log.compact(&recs(8..=10)).unwrap();
    assert_eq!(log.len(), 3);
    log.append(&rec(11)).unwrap();
    assert_eq!(log.len(), 4);
    // The lock moved to the new file with the rename.
    assert!(matches!(
        Log::<Rec>::open(&path),
        Err(JournalError::Locked { .. })
    ));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("j.log")],
        "no temp file left"
    );
    drop(log);
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(8..=11));

    // Compacting to nothing leaves an empty, valid log.
    let mut log = o.log;
    log.compact(&[]).unwrap();
    assert!(log.is_empty());
    drop(log);
    assert!(Log::<Rec>::open(&path).unwrap().records.is_empty());
}

#[test]
fn a_big_compaction_spans_several_write_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let mut log = Log::<Rec>::open(&path).unwrap().log;
    let keep = recs(1..=20_000); // ~1.6 MB: more than one 1 MiB chunk
    log.compact(&keep).unwrap();
    assert_eq!(log.len(), 20_000);
    log.append(&rec(20_001)).unwrap();
    drop(log);
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records.len(), 20_001);
    assert_eq!(o.records[19_999], rec(20_000));
    assert_eq!(o.records[20_000], rec(20_001));
}

#[test]
fn an_unfinished_compaction_file_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    write_log(&path, 2);
    let tmp = dir.path().join("j.log.compact-tmp");
    fs::write(&tmp, b"half a compaction").unwrap();
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(1..=2));
    assert!(!tmp.exists());
}

#[test]
fn open_visit_streams_records_without_collecting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    write_log(&path, 50);
    let mut sum = 0;
    let (log, torn) =
        Log::<Rec>::open_visit(&path, std::sync::Arc::new(felhom_journal::RealFs), |r| {
            sum += r.n
        })
        .unwrap();
    assert_eq!(sum, (1..=50).sum::<u64>());
    assert_eq!(log.len(), 50);
    assert!(torn.is_none());
}

#[test]
fn a_missing_directory_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope").join("j.log");
    let e = Log::<Rec>::open(&path).unwrap_err();
    assert!(matches!(&e, JournalError::Io { op: "create", .. }), "{e}");
    assert!(e.to_string().contains("nope/j.log"), "{e}");
}

#[test]
fn an_unencodable_record_is_refused_without_poisoning() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let mut log = Log::<HashMap<Vec<u8>, u8>>::open(&path).unwrap().log;
    let mut bad = HashMap::new();
    bad.insert(vec![1u8], 1u8);
    assert!(matches!(log.append(&bad), Err(JournalError::Encode { .. })));
    assert!(!log.is_poisoned());
    log.append(&HashMap::new()).unwrap();
    assert_eq!(log.len(), 1);
    assert!(matches!(
        log.compact(&[bad]),
        Err(JournalError::Encode { .. })
    ));
    assert_eq!(log.len(), 1);
    drop(log);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}
