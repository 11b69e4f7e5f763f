//! The crate's `[dependencies]` are serde and nothing else: the hub team compiles these types.

const MANIFEST: &str = include_str!("../../Cargo.toml");

/// The dependency names declared in every `[dependencies]`-like table of a Cargo manifest
/// (plain, target-specific, or `[dependencies.x]` tables); dev-dependencies are not included.
fn runtime_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']');
            let last = table.rsplit('.').next().unwrap_or(table);
            // `[dependencies.serde]` names its dependency in the header.
            if let Some(name) = table
                .strip_prefix("dependencies.")
                .or_else(|| table.split_once(".dependencies.").map(|(_, n)| n))
            {
                names.push(name.to_owned());
                in_deps = false;
            } else {
                in_deps = last == "dependencies" || last == "build-dependencies";
            }
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            if let Some((key, _)) = line.split_once('=') {
                // `serde.workspace = true` is a dotted key: the name is its first part.
                let name = key.split('.').next().unwrap_or(key);
                names.push(name.trim().trim_matches('"').to_owned());
            }
        }
    }
    names
}

#[test]
fn only_serde_at_run_time() {
    // serde_json is optional, pulled in only by the `golden` feature (tests, xtask).
    let required: Vec<String> = runtime_dependencies(MANIFEST)
        .into_iter()
        .filter(|name| !optional_dependency(MANIFEST, name))
        .collect();
    assert_eq!(required, ["serde"]);
    assert!(optional_dependency(MANIFEST, "serde_json"));
    assert!(MANIFEST.contains("golden = [\"dep:serde_json\"]"));
}

/// Whether `name`'s `[dependencies]` line marks it `optional = true`.
fn optional_dependency(manifest: &str, name: &str) -> bool {
    manifest.lines().map(str::trim).any(|line| {
        line.split(['=', '.', ' '])
            .next()
            .is_some_and(|key| key.trim_matches('"') == name)
            && line.contains("optional = true")
    })
}

#[test]
fn the_manifest_reader_sees_every_kind_of_dependency_table() {
    let m = r#"
[package]
name = "x"

[dependencies]
serde.workspace = true
tokio = "1"

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[dependencies.hyper]
version = "1"

[build-dependencies]
cc = "1"

[dev-dependencies]
serde_json = "1"
"#;
    assert_eq!(
        runtime_dependencies(m),
        ["serde", "tokio", "libc", "hyper", "cc"]
    );
}
