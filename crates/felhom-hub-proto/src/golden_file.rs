//! The golden contract files on disk: check `testdata/host-report.golden.json` against
//! `felhom_hub_proto::golden::sample_host_report()` and `testdata/intent.golden.json` against
//! `sample_intent()`, or rewrite them (`cargo xtask golden [--bless]`); and the one check that a
//! report as a hub receives it has the golden shape.
//!
//! Behind the `golden` feature: the default build of this crate never touches the filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use crate::golden::{sample_host_report, sample_intent};
use crate::shape::{diff, shape_of, Kind, Shape};

/// The host-report golden file's path relative to the workspace root.
pub const GOLDEN_PATH: &str = "testdata/host-report.golden.json";

/// The intent golden file's path (envelope, desired-state and signed-ops bodies).
pub const INTENT_GOLDEN_PATH: &str = "testdata/intent.golden.json";

/// Largest golden file read; the real ones are a few KiB.
const MAX_GOLDEN_BYTES: u64 = 1024 * 1024;

/// One golden file: where it lives and the sample it pins.
#[derive(Debug, Clone, Copy)]
pub struct Golden {
    /// Path relative to the workspace root.
    pub path: &'static str,
    /// The sample's name in messages (`felhom_hub_proto::golden::…()`).
    pub sample_name: &'static str,
    /// The sample as pretty JSON, fields in declaration order (not via `Value`, which sorts).
    pretty: fn() -> String,
    sample: fn() -> serde_json::Value,
}

/// The host report golden file.
pub const HOST_REPORT: Golden = Golden {
    path: GOLDEN_PATH,
    sample_name: "sample_host_report()",
    pretty: || pretty(&sample_host_report()),
    sample: || to_value(&sample_host_report()),
};

/// The intent golden file.
pub const INTENT: Golden = Golden {
    path: INTENT_GOLDEN_PATH,
    sample_name: "sample_intent()",
    pretty: || pretty(&sample_intent()),
    sample: || to_value(&sample_intent()),
};

/// Every golden file, for `cargo xtask golden`.
pub const ALL: [Golden; 2] = [HOST_REPORT, INTENT];

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    // A derived `Serialize` over strings, numbers and vectors cannot fail.
    serde_json::to_value(v).unwrap_or_else(|e| panic!("serializing a golden sample: {e}"))
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut text = serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| panic!("serializing a golden sample: {e}"));
    text.push('\n');
    text
}

impl Golden {
    /// The file's exact content: the sample as pretty JSON with a final newline.
    pub fn json(&self) -> String {
        (self.pretty)()
    }

    /// Compares the file at `path` with the sample.
    ///
    /// `Err` holds a readable report, one drift per line, contract changes (renames, type
    /// changes, additions, removals) named by JSON path. A file that only differs in formatting
    /// is reported too, so the committed file stays exactly what [`Golden::bless`] writes.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let text = read_limited(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let golden: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        let expected = shape_of(&golden).map_err(|e| format!("{}: {e}", path.display()))?;
        let actual = shape_of(&(self.sample)())
            .map_err(|e| format!("flattening {}: {e}", self.sample_name))?;
        let drifts = diff(&expected, &actual);
        if !drifts.is_empty() {
            let contract = drifts.iter().any(|d| d.is_contract_change());
            let mut msg = format!(
                "{} differs from felhom_hub_proto::golden::{} ({} {}):\n",
                path.display(),
                self.sample_name,
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
        if text != self.json() {
            return Err(format!(
                "{}: same contract and values but not in canonical form (pretty JSON, final \
                 newline); run `cargo xtask golden --bless`",
                path.display()
            ));
        }
        Ok(())
    }

    /// Rewrites the file at `path` from the sample: written to a temporary file beside it,
    /// flushed to disk, then renamed over it, so a crash never leaves half a file.
    pub fn bless(&self, path: &Path) -> std::io::Result<()> {
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
        file.write_all(self.json().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    }
}

/// The host-report golden file's exact content.
pub fn golden_json() -> String {
    HOST_REPORT.json()
}

/// [`Golden::check`] of the host-report golden file.
pub fn golden_check(path: &Path) -> Result<(), String> {
    HOST_REPORT.check(path)
}

/// [`Golden::bless`] of the host-report golden file.
pub fn golden_bless(path: &Path) -> std::io::Result<()> {
    HOST_REPORT.bless(path)
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
    fn the_committed_intent_golden_file_passes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(INTENT_GOLDEN_PATH);
        INTENT.check(&path).unwrap();
    }

    #[test]
    fn intent_drift_is_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.json");
        let mut v: serde_json::Value = serde_json::from_str(&INTENT.json()).unwrap();
        v["desired_state"]["guests"][0]["run_state"] = serde_json::json!(1);
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let err = INTENT.check(&path).unwrap_err();
        assert!(
            err.contains("desired_state.guests[0].run_state: type changed"),
            "{err}"
        );
        assert!(err.contains("sample_intent()"), "{err}");
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
