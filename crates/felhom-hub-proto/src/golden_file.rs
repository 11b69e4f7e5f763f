//! The golden contract file on disk: check `testdata/host-report.golden.json` against
//! `felhom_hub_proto::golden::sample_host_report()`, or rewrite it (`cargo xtask golden [--bless]`);
//! and the one check that a report as a hub receives it has the golden shape.
//!
//! Behind the `golden` feature: the default build of this crate never touches the filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use crate::golden::sample_host_report;
use crate::shape::{diff, shape_of, Kind, Shape};

/// The golden file's path relative to the workspace root.
pub const GOLDEN_PATH: &str = "testdata/host-report.golden.json";

/// Largest golden file read; the real one is a few KiB.
const MAX_GOLDEN_BYTES: u64 = 1024 * 1024;

/// The golden file's exact content: the sample report as pretty JSON with a final newline.
pub fn golden_json() -> String {
    // A derived `Serialize` over strings, numbers and vectors cannot fail.
    let mut text = serde_json::to_string_pretty(&sample_host_report())
        .unwrap_or_else(|e| panic!("serializing the sample host report: {e}"));
    text.push('\n');
    text
}

/// Compares the golden file at `path` with the sample report.
///
/// `Err` holds a readable report, one drift per line, contract changes (renames, type
/// changes, additions, removals) named by JSON path. A file that only differs in formatting
/// is reported too, so the committed file stays exactly what `golden_bless` writes.
pub fn golden_check(path: &Path) -> Result<(), String> {
    let text = read_limited(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let golden: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let expected = shape_of(&golden).map_err(|e| format!("{}: {e}", path.display()))?;
    let actual = shape_of(&sample_host_report())
        .map_err(|e| format!("flattening the sample host report: {e}"))?;
    let drifts = diff(&expected, &actual);
    if !drifts.is_empty() {
        let contract = drifts.iter().any(|d| d.is_contract_change());
        let mut msg = format!(
            "{} differs from felhom_hub_proto::golden::sample_host_report() ({} {}):\n",
            path.display(),
            drifts.len(),
            if contract {
                "differences, the contract changed"
            } else {
                "differences in values only"
            }
        );
        for d in &drifts {
            msg.push_str("  ");
            msg.push_str(&d.to_string());
            msg.push('\n');
        }
        msg.push_str(
            "if intended: run `cargo xtask golden --bless`; a removal, rename or type change \
             also needs SCHEMA_VERSION bumped and the hub team told",
        );
        return Err(msg);
    }
    if text != golden_json() {
        return Err(format!(
            "{}: same contract and values but not in canonical form (pretty JSON, final newline); \
             run `cargo xtask golden --bless`",
            path.display()
        ));
    }
    Ok(())
}

/// Rewrites the golden file at `path` from the sample report: written to a temporary file
/// beside it, flushed to disk, then renamed over it, so a crash never leaves half a file.
pub fn golden_bless(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(golden_json().as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Fields of the golden report the contract lets an agent omit (`spec` and `description` of a
/// guest, a backup's `notes`, the journal's `reason`), and everything under them.
const OPTIONAL_REPORT_FIELDS: &[&str] = &[
    "guests[].spec",
    "guests[].description",
    "backups[].notes",
    "journal.reason",
];

/// Checks that `raw`, a host report as a hub received it, has the golden shape: every path it
/// has (element indexes folded, `guests[3].spec` is `guests[].spec`) exists in the golden
/// report with the same JSON type, and every golden field of every object it has is present
/// unless optional. `Err` lists every difference, one a line.
pub fn report_shape_check(raw: &serde_json::Value) -> Result<(), String> {
    let golden = folded(
        &shape_of(&sample_host_report())
            .map_err(|e| format!("flattening the sample host report: {e}"))?,
    );
    let got = folded(&shape_of(raw).map_err(|e| format!("flattening the report: {e}"))?);
    let mut problems = Vec::new();
    for (path, kinds) in &got {
        match golden.get(path) {
            None => problems.push(format!("{path}: not in the golden file")),
            Some(g) if !kinds.is_subset(g) => {
                problems.push(format!("{path}: {kinds:?} where the golden file has {g:?}"))
            }
            Some(_) => {}
        }
    }
    for path in golden.keys() {
        let parent = match path.rfind(['.', '[']) {
            Some(i) => &path[..i],
            None => "",
        };
        let optional = OPTIONAL_REPORT_FIELDS
            .iter()
            .any(|o| path == o || path.starts_with(&format!("{o}.")));
        if got.contains_key(parent) && !got.contains_key(path) && !optional && !path.ends_with("[]")
        {
            problems.push(format!("{path}: missing"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "report shape differs from the golden file:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// The paths of `shape` with element indexes folded, each with the JSON kinds seen there.
fn folded(shape: &Shape) -> BTreeMap<String, BTreeSet<Kind>> {
    let mut out: BTreeMap<String, BTreeSet<Kind>> = BTreeMap::new();
    for (path, leaf) in &shape.0 {
        let mut p = String::new();
        let mut in_index = false;
        for c in path.chars() {
            match c {
                '[' => {
                    in_index = true;
                    p.push('[');
                }
                ']' => {
                    in_index = false;
                    p.push(']');
                }
                _ if in_index => {}
                c => p.push(c),
            }
        }
        out.entry(p).or_default().insert(leaf.kind);
    }
    out
}

fn read_limited(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_GOLDEN_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_GOLDEN_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_GOLDEN_BYTES} bytes"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_golden() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(GOLDEN_PATH)
    }

    #[test]
    fn the_committed_golden_file_passes() {
        golden_check(&workspace_golden()).unwrap();
    }

    #[test]
    fn bless_then_check_passes_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        std::fs::write(&path, "stale").unwrap();
        golden_bless(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), golden_json());
        golden_check(&path).unwrap();
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn drift_is_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let mut v: serde_json::Value = serde_json::from_str(&golden_json()).unwrap();
        let host = v["host"].as_object_mut().unwrap();
        let kernel = host.remove("kernel").unwrap();
        host.insert("kernel_version".into(), kernel);
        v["guests"][0]["vmid"] = serde_json::json!("100");
        v["backups"][0]["size_bytes"] = serde_json::json!(1);
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let err = golden_check(&path).unwrap_err();
        assert!(err.contains("the contract changed"), "{err}");
        assert!(
            err.contains("host.kernel_version: string renamed to host.kernel"),
            "{err}"
        );
        assert!(
            err.contains("guests[0].vmid: type changed from string to integer"),
            "{err}"
        );
        assert!(
            err.contains("backups[0].size_bytes: value changed from 1 to 734003200"),
            "{err}"
        );
        assert!(err.contains("cargo xtask golden --bless"), "{err}");
    }

    #[test]
    fn formatting_only_differences_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let v: serde_json::Value = serde_json::from_str(&golden_json()).unwrap();
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
        let err = golden_check(&path).unwrap_err();
        assert!(err.contains("not in canonical form"), "{err}");
    }

    #[test]
    fn unreadable_or_invalid_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = golden_check(&missing).unwrap_err();
        assert!(
            err.starts_with("reading ") && err.contains("missing.json"),
            "{err}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"schema_version\": ").unwrap();
        let err = golden_check(&bad).unwrap_err();
        assert!(err.contains("bad.json: not valid JSON"), "{err}");
    }

    #[test]
    fn the_sample_report_has_the_golden_shape_and_a_tampered_one_does_not() {
        let sample = serde_json::to_value(sample_host_report()).unwrap();
        report_shape_check(&sample).unwrap();

        let mut optional_gone = sample.clone();
        optional_gone["guests"][0]
            .as_object_mut()
            .unwrap()
            .remove("description");
        report_shape_check(&optional_gone).unwrap();

        let mut tampered = sample.clone();
        tampered["host"]["uptime_seconds"] = serde_json::json!("long");
        tampered["guests"][0]
            .as_object_mut()
            .unwrap()
            .insert("surprise".into(), serde_json::json!(1));
        tampered["host"].as_object_mut().unwrap().remove("kernel");
        let err = report_shape_check(&tampered).unwrap_err();
        assert!(err.contains("host.uptime_seconds: {String}"), "{err}");
        assert!(
            err.contains("guests[].surprise: not in the golden file"),
            "{err}"
        );
        assert!(err.contains("host.kernel: missing"), "{err}");
    }

    #[test]
    fn bless_refuses_a_path_without_a_file_name() {
        assert!(golden_bless(Path::new("/")).is_err());
    }
}
