//! The LXC config file as `pve-container` writes it (pure): description as encoded comment
//! lines, sorted `key: value` lines, snapshot sections; its SHA-1 digest; and the small parsers
//! around it (sizes, volume ids, lists, tags).

use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

/// One section of a config file: the current config or a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Section {
    /// Description lines, decoded, without newlines.
    pub(crate) description: Vec<String>,
    /// Every other key with its raw value.
    pub(crate) keys: BTreeMap<String, String>,
}

impl Section {
    pub(crate) fn new(description: Option<&str>, keys: BTreeMap<String, String>) -> Section {
        let mut s = Section {
            description: Vec::new(),
            keys,
        };
        s.set_description(description.unwrap_or(""));
        s
    }

    /// The description as GET config returns it: every line with `\n` appended
    /// (`parse_pct_config`: `$descr .= decode_text($1) . "\n"`), or `None` when unset.
    pub(crate) fn description(&self) -> Option<String> {
        if self.description.is_empty() {
            return None;
        }
        let mut out = String::new();
        for line in &self.description {
            out.push_str(line);
            out.push('\n');
        }
        Some(out)
    }

    /// Stores a description the way `write_pct_config` does: Perl's `split(/\n/, ...)`, which
    /// drops trailing empty fields, so trailing blank lines vanish and inner ones stay.
    pub(crate) fn set_description(&mut self, text: &str) {
        let mut lines: Vec<String> = text.split('\n').map(|l| l.to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        self.description = lines;
    }

    fn write(&self, out: &mut String) {
        for line in &self.description {
            out.push('#');
            out.push_str(&encode_text(line));
            out.push('\n');
        }
        for (k, v) in &self.keys {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push('\n');
        }
    }
}

/// The whole config file: current section, then `[name]` sections sorted by name.
pub(crate) fn raw_config(current: &Section, snapshots: &BTreeMap<String, Section>) -> String {
    let mut out = String::new();
    current.write(&mut out);
    for (name, snap) in snapshots {
        out.push_str("\n[");
        out.push_str(name);
        out.push_str("]\n");
        snap.write(&mut out);
    }
    out
}

/// `Digest::SHA::sha1_hex($raw)` over the whole file.
pub(crate) fn digest(raw: &str) -> String {
    hex::encode(Sha1::digest(raw.as_bytes()))
}

/// `PVE::Tools::encode_text`: percent-encodes everything outside 0x20–0x24, 0x26–0x39 and
/// 0x3b–0x7e (so `%`, `:`, control characters and non-ASCII bytes), uppercase hex.
pub(crate) fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let keep = matches!(b, 0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `PVE::Tools::decode_text` (descriptions are kept decoded, so only tests need it).
#[cfg(test)]
pub(crate) fn decode_text(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `PVE::Tools::split_list`: NUL-separated if it contains a NUL, else split on `,`, `;` and
/// whitespace.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    if text.contains('\0') {
        return text.split('\0').map(|s| s.to_string()).collect();
    }
    text.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect()
}

/// Tags as PVE stores them: split on `;`, `,` and spaces, deduplicated and sorted, joined by `;`.
pub(crate) fn normalize_tags(text: &str) -> String {
    let set: BTreeSet<String> = split_list(text).into_iter().collect();
    set.into_iter().collect::<Vec<_>>().join(";")
}

/// `PVE::JSONSchema::parse_size`: `\d+(\.\d+)?[KMGT]?` → bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (num, mult) = match text.chars().last()? {
        'K' => (&text[..text.len() - 1], 1u64 << 10),
        'M' => (&text[..text.len() - 1], 1 << 20),
        'G' => (&text[..text.len() - 1], 1 << 30),
        'T' => (&text[..text.len() - 1], 1 << 40),
        _ => (text, 1),
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let value: f64 = num.parse().ok()?;
    Some((value * mult as f64) as u64)
}

/// A mount point property string (`rootfs`, `mpN`): its volume and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountPoint {
    pub(crate) volume: String,
    pub(crate) size: Option<u64>,
}

/// Parses `local-lvm:vm-100-disk-0,size=8G` (the volume is the default key).
pub(crate) fn parse_mountpoint(text: &str) -> Option<MountPoint> {
    let mut volume = None;
    let mut size = None;
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('=') {
            Some(("volume", v)) => volume = Some(v.to_string()),
            Some(("size", v)) => size = parse_size(v),
            Some(_) => {}
            None => volume = Some(part.to_string()),
        }
    }
    Some(MountPoint {
        volume: volume?,
        size,
    })
}

/// `parse_volume_id`: `storage:name` with PVE's storage-id syntax.
pub(crate) fn parse_volume_id(volid: &str) -> Option<(&str, &str)> {
    let (sid, name) = volid.split_once(':')?;
    (valid_storage_id(sid) && !name.is_empty()).then_some((sid, name))
}

/// `parse_id`: `[a-z][a-z0-9\-_.]*[a-z0-9]`, case-insensitive.
pub(crate) fn valid_storage_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(desc: &str, pairs: &[(&str, &str)]) -> Section {
        Section::new(
            Some(desc),
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn description_reads_back_with_a_trailing_newline() {
        let s = section("hello", &[]);
        assert_eq!(s.description().as_deref(), Some("hello\n"));
        let s = section("a\n\nb\n\n", &[]);
        assert_eq!(s.description().as_deref(), Some("a\n\nb\n"));
        let s = section("", &[]);
        assert_eq!(s.description(), None);
        let s = section("already\n", &[]);
        assert_eq!(s.description().as_deref(), Some("already\n"));
    }

    #[test]
    fn raw_config_matches_write_pct_config() {
        let current = section(
            "web: 100%",
            &[("memory", "2048"), ("cores", "2"), ("parent", "s1")],
        );
        let mut snaps = BTreeMap::new();
        snaps.insert(
            "s1".to_string(),
            section("", &[("cores", "1"), ("snaptime", "5")]),
        );
        let raw = raw_config(&current, &snaps);
        assert_eq!(
            raw,
            "#web%3A 100%25\ncores: 2\nmemory: 2048\nparent: s1\n\n[s1]\ncores: 1\nsnaptime: 5\n"
        );
        assert_eq!(digest(&raw).len(), 40);
        assert_ne!(
            digest(&raw),
            digest(&raw_config(&current, &BTreeMap::new()))
        );
    }

    #[test]
    fn encode_and_decode_are_inverse() {
        for text in ["plain", "a:b%c", "tab\there", "ünï", "\r"] {
            assert_eq!(decode_text(&encode_text(text)), text);
        }
        assert_eq!(encode_text("\r"), "%0D");
    }

    #[test]
    fn lists_sizes_and_volumes() {
        assert_eq!(split_list(" a, b;c  d"), ["a", "b", "c", "d"]);
        assert_eq!(split_list("x\0y"), ["x", "y"]);
        assert_eq!(normalize_tags("b;a,b c"), "a;b;c");
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("1.G"), None);
        let mp = parse_mountpoint("local-lvm:vm-100-disk-0,size=8G").unwrap();
        assert_eq!(mp.volume, "local-lvm:vm-100-disk-0");
        assert_eq!(mp.size, Some(8 << 30));
        assert_eq!(
            parse_mountpoint("volume=local:100/x.raw,mp=/srv")
                .unwrap()
                .volume,
            "local:100/x.raw"
        );
        assert_eq!(
            parse_volume_id("local:backup/x.tar.zst"),
            Some(("local", "backup/x.tar.zst"))
        );
        assert_eq!(parse_volume_id("/abs/path"), None);
        assert!(!valid_storage_id("a"));
        assert!(valid_storage_id("local-lvm"));
    }
}
