//! The normal (run-time) dependency tree of a workspace package, read from `cargo tree`, so a
//! fence between crates is a fact a test checks rather than a text search of source files.

use std::process::Command;

/// Every package name in `package`'s normal dependency tree (build and dev dependencies
/// excluded), the package itself included. Panics with cargo's own message if cargo fails:
/// a test that cannot read the tree must not pass.
pub fn normal_tree(package: &str) -> Vec<String> {
    normal_tree_with(package, &[])
}

/// [`normal_tree`] with extra `cargo tree` flags (e.g. `--no-default-features`).
pub fn normal_tree_with(package: &str, flags: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .args(flags)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Asserts that none of `banned` is in `package`'s normal dependency tree.
pub fn assert_not_in_tree(package: &str, banned: &[&str]) {
    let tree = normal_tree(package);
    assert!(
        tree.iter().any(|n| n == package),
        "cargo tree -p {package} did not list the package itself: {tree:?}"
    );
    for b in banned {
        assert!(
            !tree.iter().any(|n| n == b),
            "{package} depends (transitively) on {b}: {tree:?}"
        );
    }
}
