//! Finds the official PVE API schema for the test that derives the simulator's parameter table
//! from it (`params::tests::table_matches_the_official_schema`). The schema is not in the
//! repository: CI keeps it at `../shared/reference/pve-api-schema-9.json` next to the clone,
//! `FELHOM_PVE_SCHEMA` names another copy. When there is one the test runs against it; when
//! there is none it is compiled as `#[ignore]`d with that reason, so `cargo test` reports it
//! ignored instead of counting a test that checked nothing as passed.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pve_schema)");
    println!("cargo::rerun-if-env-changed=FELHOM_PVE_SCHEMA");
    println!("cargo::rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let schema = match std::env::var_os("FELHOM_PVE_SCHEMA") {
        Some(path) => PathBuf::from(path),
        // crates/felhom-pve-sim → the workspace → the directory holding the clone
        None => manifest.join("../../../shared/reference/pve-api-schema-9.json"),
    };
    if schema.is_file() {
        // Only an existing file is watched: a missing one would re-run this script, and rebuild
        // the crate, on every build.
        println!("cargo::rerun-if-changed={}", schema.display());
        println!("cargo::rustc-cfg=pve_schema");
        println!(
            "cargo::rustc-env=FELHOM_PVE_SCHEMA_PATH={}",
            schema.display()
        );
    }
}
