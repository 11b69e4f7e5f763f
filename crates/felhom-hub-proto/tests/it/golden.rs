//! The golden contract: `testdata/host-report.golden.json` is the sample report, name for name
//! and type for type. Rewrite it on purpose with `cargo xtask golden --bless`.

use felhom_hub_proto::golden::sample_host_report;
use felhom_hub_proto::shape::{diff, shape_of};
use felhom_hub_proto::HostReport;

const GOLDEN: &str = include_str!("../../../../testdata/host-report.golden.json");

fn golden_value() -> serde_json::Value {
    serde_json::from_str(GOLDEN).expect("testdata/host-report.golden.json is valid JSON")
}

#[test]
fn the_sample_matches_the_golden_file() {
    let actual = shape_of(&sample_host_report()).unwrap();
    let expected = shape_of(&golden_value()).unwrap();
    let drifts = diff(&expected, &actual);
    assert!(
        drifts.is_empty(),
        "the host report drifted from testdata/host-report.golden.json:\n  {}\n\
         if intended: run `cargo xtask golden --bless`, tell the hub team, and bump \
         SCHEMA_VERSION on a removal, rename or type change",
        drifts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // The flattened comparison above must agree with plain JSON equality.
    assert_eq!(
        serde_json::to_value(sample_host_report()).unwrap(),
        golden_value()
    );
}

#[test]
fn the_golden_file_reads_back_as_the_sample() {
    let read: HostReport = serde_json::from_str(GOLDEN).unwrap();
    assert_eq!(read, sample_host_report());
}

#[test]
fn the_golden_file_is_the_pretty_serialization() {
    // Byte-for-byte, so a bless is the only way the file changes and diffs stay readable.
    let pretty = serde_json::to_string_pretty(&sample_host_report()).unwrap() + "\n";
    assert_eq!(GOLDEN, pretty);
}

#[test]
fn collections_are_arrays_and_unknowns_are_omitted_in_the_golden_file() {
    let v = golden_value();
    for key in [
        "guests",
        "storage_targets",
        "backups",
        "restore_tests",
        "pbs_snapshots",
        "audit_tail",
    ] {
        assert!(v[key].is_array(), "{key} is not an array");
    }
    let without_spec = v["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == 101)
        .unwrap();
    assert!(
        without_spec.get("spec").is_none(),
        "spec must be omitted, not null"
    );
    assert!(without_spec.get("description").is_none());
}

#[test]
fn a_renamed_or_retyped_golden_field_is_named() {
    // What the test above prints when the code and the file disagree.
    let mut tampered = golden_value();
    let host = tampered["host"].as_object_mut().unwrap();
    let node = host.remove("node").unwrap();
    host.insert("node_name".into(), node);
    tampered["host"]["cpu_count"] = serde_json::json!(16.0);
    tampered["guests"][0]["spec"]["cores"] = serde_json::json!("2");
    let drifts: Vec<String> = diff(
        &shape_of(&tampered).unwrap(),
        &shape_of(&sample_host_report()).unwrap(),
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        drifts,
        [
            "host.node_name: string renamed to host.node",
            "guests[0].spec.cores: type changed from string to integer",
            "host.cpu_count: type changed from float to integer",
        ]
    );
}
