//! Offline inspection and repair of a damaged log: what `felhom-agent journal inspect|repair`
//! runs. [`inspect`] reads without the writer's lock and changes nothing; [`repair`] takes the
//! lock (refusing while a live writer holds it), keeps the damaged file aside under a new name
//! (never deleted), and atomically replaces it with every record that can be kept.
//!
//! What is kept: every line before the damage, verbatim, and every later complete line that
//! still passes its checksum and decodes as a record, renumbered in file order. Dropping an
//! intact record after a damaged one would throw away a fact the agent acknowledged (for the
//! nonce store, a used nonce, which could then be replayed); the op journal's records each
//! carry their op's whole identity, so later ones stand on their own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::codec::{self, Tail};
use crate::error::JournalError;
use crate::fs::{FileSystem, RealFs};

/// Longest excerpt of a damaged line shown, in input bytes.
const EXCERPT_BYTES: usize = 80;

/// Whether the damage is a crash's torn tail (repaired on open anyway) or corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The last record never got its newline: a write a crash interrupted. `Log::open` cuts it
    /// off by itself; its record was never acknowledged.
    Torn,
    /// A complete line is bad: `Log::open` refuses the file until it is repaired.
    Corrupt,
}

/// The first bad line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Torn tail or corruption.
    pub kind: DamageKind,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset where the line starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// The start of the line, printable: non-ASCII and control bytes escaped (`\xNN`, `\n`).
    pub excerpt: String,
}

/// What a log file holds, as [`inspect`] (and [`repair`]) see it.
#[derive(Debug, Clone)]
pub struct Inspection<R> {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_len: u64,
    /// Good records before the damage (all of them for a healthy file), oldest first.
    pub before: Vec<R>,
    /// The first bad line, if any.
    pub damage: Option<Damage>,
    /// Intact records after the damaged line (checksum good, record decodes): kept by repair.
    pub after: Vec<R>,
    /// 1-based numbers of the lines repair drops: the damaged one and any later bad lines.
    pub dropped_lines: Vec<u64>,
    /// Bytes repair drops (the dropped lines plus an unterminated tail).
    pub dropped_bytes: u64,
}

impl<R> Inspection<R> {
    /// Whether the file opens as it is (no damage, or only a torn tail `Log::open` repairs).
    pub fn opens(&self) -> bool {
        !matches!(
            self.damage,
            Some(Damage {
                kind: DamageKind::Corrupt,
                ..
            })
        )
    }

    /// Every record repair keeps, in file order.
    pub fn kept(&self) -> impl Iterator<Item = &R> {
        self.before.iter().chain(&self.after)
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone)]
pub struct RepairReport<R> {
    /// The file as it was found.
    pub inspection: Inspection<R>,
    /// Where the damaged file now is (`<path>.corrupt-<UTC timestamp>`), or `None` when the
    /// file was healthy and nothing was changed.
    pub aside: Option<PathBuf>,
}

/// Reads the log at `path` (without taking its lock, so it works while the agent runs) and
/// reports its good records, its first damaged line, and what repair would keep.
pub fn inspect<R: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Inspection<R>, JournalError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| JournalError::io(path, "read", e))?;
    Ok(examine(path, &bytes))
}

/// Repairs the log at `path`: refuses with [`JournalError::Locked`] while another writer holds
/// it; does nothing to a healthy file; otherwise hard-links the damaged file to
/// `<path>.corrupt-<UTC timestamp of now_unix>` (never overwriting, never deleting), writes
/// every keepable record to a temp file, fsyncs it, renames it over `path` and fsyncs the
/// directory. A crash at any point leaves either the damaged or the repaired file at `path`,
/// and the damaged one aside once the link is made.
pub fn repair<R: DeserializeOwned>(
    path: impl AsRef<Path>,
    now_unix: u64,
) -> Result<RepairReport<R>, JournalError> {
    let path = path.as_ref();
    let fs = RealFs;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io(path, "open", e))?;
    match fs.try_lock(&file) {
        Ok(true) => {}
        Ok(false) => return Err(JournalError::Locked { path: path.into() }),
        Err(e) => return Err(JournalError::io(path, "lock", e)),
    }
    let mut bytes = Vec::new();
    fs.read_to_end(&mut file, &mut bytes)
        .map_err(|e| JournalError::io(path, "read", e))?;
    let inspection = examine::<R>(path, &bytes);
    if inspection.damage.is_none() {
        return Ok(RepairReport {
            inspection,
            aside: None,
        });
    }

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let aside = link_aside(path, now_unix)?;
    fs.sync_dir(&dir)
        .map_err(|e| JournalError::io(&dir, "sync_dir", e))?;

    let content = rewrite::<R>(&bytes);
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".repair-tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = fs.remove_file(&tmp);
    let mut new = fs
        .create_new(&tmp)
        .map_err(|e| JournalError::io(&tmp, "create", e))?;
    // Locked before the rename publishes it, as compaction does.
    if !fs
        .try_lock(&new)
        .map_err(|e| JournalError::io(&tmp, "lock", e))?
    {
        return Err(JournalError::Locked { path: tmp });
    }
    let written = write_synced(&fs, &mut new, &content)
        .map_err(|(op, e)| JournalError::io(&tmp, op, e))
        .and_then(|()| {
            fs.rename(&tmp, path)
                .map_err(|e| JournalError::io(path, "rename", e))
        });
    if let Err(e) = written {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    fs.sync_dir(&dir)
        .map_err(|e| JournalError::io(&dir, "sync_dir", e))?;
    tracing::warn!(
        path = %path.display(),
        aside = %aside.display(),
        kept = inspection.before.len() + inspection.after.len(),
        dropped_lines = inspection.dropped_lines.len(),
        "journal repaired; the damaged file is kept aside"
    );
    Ok(RepairReport {
        inspection,
        aside: Some(aside),
    })
}

fn write_synced(
    fs: &RealFs,
    file: &mut File,
    content: &[u8],
) -> Result<(), (&'static str, std::io::Error)> {
    fs.write_all(file, content).map_err(|e| ("write", e))?;
    file.flush().map_err(|e| ("write", e))?;
    fs.sync_data(file).map_err(|e| ("sync_data", e))
}

/// Hard-links `path` to the first free `<path>.corrupt-<stamp>[-N]` name.
fn link_aside(path: &Path, now_unix: u64) -> Result<PathBuf, JournalError> {
    let stamp = utc_stamp(now_unix);
    for n in 0..100u32 {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".corrupt-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let aside = path.with_file_name(name);
        match std::fs::hard_link(path, &aside) {
            Ok(()) => return Ok(aside),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(JournalError::io(aside, "link", e)),
        }
    }
    Err(JournalError::io(
        path,
        "link",
        std::io::Error::other("100 damaged copies already kept aside under this timestamp"),
    ))
}

/// Pure: the inspection of a log's bytes.
fn examine<R: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Inspection<R> {
    let mut before = Vec::new();
    let scanned = codec::scan(bytes, |_, line| {
        let rec = serde_json::from_slice::<R>(line.rec)
            .map_err(|e| format!("record does not decode: {e}"))?;
        before.push(rec);
        Ok(())
    });
    let mut out = Inspection {
        path: path.to_owned(),
        file_len: bytes.len() as u64,
        before,
        damage: None,
        after: Vec::new(),
        dropped_lines: Vec::new(),
        dropped_bytes: 0,
    };
    let (kind, line, offset, reason) = match scanned {
        Ok(s) => match s.tail {
            Tail::Clean => return out,
            Tail::Torn { line, reason, .. } => (DamageKind::Torn, line, s.good_len, reason),
        },
        Err(e) => (DamageKind::Corrupt, e.line, e.offset, e.reason),
    };
    let rest = &bytes[usize::try_from(offset)
        .unwrap_or(bytes.len())
        .min(bytes.len())..];
    out.damage = Some(Damage {
        kind,
        line,
        offset,
        reason,
        excerpt: excerpt(rest),
    });
    let mut line_no = line;
    let mut pos = 0usize;
    while pos < rest.len() {
        let (body, next) = match memchr::memchr(b'\n', &rest[pos..]) {
            Some(nl) => (&rest[pos..pos + nl], pos + nl + 1),
            None => (&rest[pos..], rest.len()),
        };
        let complete = next <= rest.len() && rest.get(next - 1) == Some(&b'\n');
        // The damaged line itself is never kept, even when its checksum is fine (e.g. a
        // sequence gap or a record of the wrong type): it is what was judged bad.
        let good = line_no != line && complete && {
            codec::decode_line(body)
                .ok()
                .and_then(|l| serde_json::from_slice::<R>(l.rec).ok())
                .map(|r| out.after.push(r))
                .is_some()
        };
        if !good {
            out.dropped_lines.push(line_no);
            out.dropped_bytes += (next - pos) as u64;
        }
        line_no += 1;
        pos = next;
    }
    out
}

/// Pure: the repaired file's bytes for a damaged log: the good prefix verbatim, then the
/// intact later lines renumbered. Must agree with [`examine`] on what is kept.
fn rewrite<R: DeserializeOwned>(bytes: &[u8]) -> Vec<u8> {
    let (good_len, damaged_line) = match codec::scan(bytes, |_, _| Ok(())) {
        Ok(s) => (s.good_len, None),
        Err(e) => (e.offset, Some(e.offset)),
    };
    let good_len = usize::try_from(good_len)
        .unwrap_or(bytes.len())
        .min(bytes.len());
    let mut out = bytes[..good_len].to_vec();
    let mut next_seq = bytes[..good_len].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let rest = &bytes[good_len..];
    let mut pos = 0usize;
    let mut first = true;
    while pos < rest.len() {
        let Some(nl) = memchr::memchr(b'\n', &rest[pos..]) else {
            break;
        };
        let body = &rest[pos..pos + nl];
        if !(first && damaged_line.is_some()) {
            let line = codec::decode_line(body)
                .ok()
                .filter(|l| serde_json::from_slice::<R>(l.rec).is_ok());
            if let Some(line) = line {
                if codec::encode_raw_line(next_seq, line.rec, &mut out).is_ok() {
                    next_seq += 1;
                }
            }
        }
        first = false;
        pos += nl + 1;
    }
    out
}

/// The start of `bytes` as printable ASCII, escaped.
fn excerpt(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(EXCERPT_BYTES) {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > EXCERPT_BYTES {
        out.push('…');
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for unix seconds (proleptic Gregorian, UTC).
pub fn utc_stamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(recs: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            codec::encode_line(i as u64 + 1, r, &mut out).unwrap();
        }
        out
    }

    fn line_starts(b: &[u8]) -> Vec<usize> {
        std::iter::once(0)
            .chain(
                b.iter()
                    .enumerate()
                    .filter(|(_, &c)| c == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect()
    }

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_428_300), "20261123T100500Z");
        assert_eq!(utc_stamp(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn a_healthy_log_has_no_damage_and_rewrites_to_itself() {
        let b = log_of(&[1, 2, 3]);
        let i = examine::<u32>(Path::new("j"), &b);
        assert_eq!(i.before, [1, 2, 3]);
        assert!(i.damage.is_none() && i.after.is_empty() && i.opens());
        assert_eq!(rewrite::<u32>(&b), b);
    }

    #[test]
    fn a_corrupt_middle_line_keeps_the_intact_records_around_it() {
        let b = log_of(&[1, 2, 3, 4]);
        let starts = line_starts(&b);
        let mut d = b.clone();
        d[starts[1] + 32] ^= 0x01; // line 2's record: `2` becomes `3`
        d.extend_from_slice(b"junk\n{\"seq\":9,\"cr"); // a bad line, then a torn tail
        let i = examine::<u32>(Path::new("j"), &d);
        let damage = i.damage.clone().unwrap();
        assert_eq!(damage.kind, DamageKind::Corrupt);
        assert_eq!((damage.line, damage.offset), (2, starts[1] as u64));
        assert!(
            damage.excerpt.starts_with("{\"seq\":2,"),
            "{}",
            damage.excerpt
        );
        assert!(!i.opens());
        assert_eq!(i.before, [1]);
        assert_eq!(i.after, [3, 4]);
        assert_eq!(i.dropped_lines, [2, 5, 6]);
        assert_eq!(
            i.dropped_bytes,
            (starts[2] - starts[1]) as u64 + 5 + 12,
            "line 2, the junk line, the torn tail"
        );

        let fixed = rewrite::<u32>(&d);
        assert_eq!(fixed, log_of(&[1, 3, 4]), "renumbered, checksums valid");
    }

    #[test]
    fn a_torn_tail_is_damage_that_opens() {
        let mut b = log_of(&[1, 2]);
        b.extend_from_slice(&[0; 8]);
        let i = examine::<u32>(Path::new("j"), &b);
        assert_eq!(i.damage.as_ref().unwrap().kind, DamageKind::Torn);
        assert_eq!(i.damage.as_ref().unwrap().excerpt, "\\x00".repeat(8));
        assert!(i.opens());
        assert_eq!(
            (i.dropped_lines.as_slice(), i.dropped_bytes),
            (&[3u64][..], 8)
        );
        assert_eq!(rewrite::<u32>(&b), log_of(&[1, 2]));
    }

    #[test]
    fn excerpts_are_escaped_and_bounded() {
        assert_eq!(excerpt(b"a\\b\n\xff\x01"), "a\\\\b\\n\\xff\\x01");
        let long = excerpt(&[b'x'; 200]);
        assert_eq!(long.chars().count(), EXCERPT_BYTES + 1);
    }
}
