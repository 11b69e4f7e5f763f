//! Building the workspace's binaries from xtask with the cargo that runs it (same toolchain,
//! same target dir), shared by `demo`, `bench` and `live`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Which cargo profile to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "heavy"), allow(dead_code))] // used by heavy commands (and deb)
pub enum Profile {
    Dev,
    Release,
}

/// Builds `packages` (in `profile`) with the cargo that runs this xtask (same toolchain, same target dir)
/// and returns each binary's path, read from cargo's own build messages.
#[cfg_attr(not(feature = "heavy"), allow(dead_code))]
pub fn build(root: &Path, packages: &[&str], profile: Profile) -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["build", "--message-format=json-render-diagnostics"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    without_package_variables(&mut cmd);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    let mut built = Vec::new();
    let stdout = child.stdout.take().context("cargo's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        if let Some((name, exe)) = executable(&line) {
            if packages.contains(&name.as_str()) {
                built.push((name, exe));
            }
        }
    }
    let status = child.wait().context("waiting for cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    for p in packages {
        if !built.iter().any(|(name, _)| name == p) {
            bail!("cargo build reported no executable for {p}");
        }
    }
    for (name, path) in &built {
        println!("built    {name}: {}", path.display());
    }
    Ok(built)
}

/// Re-runs this xtask invocation (same arguments) as `cargo run -p xtask` with its default
/// features (the heavy commands) and `extra` cargo flags (`--release` for the benchmarks).
pub fn rerun(root: &Path, extra: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["run", "--quiet", "--package", "xtask"])
        .args(extra)
        .arg("--")
        .args(std::env::args_os().skip(1));
    without_package_variables(&mut cmd);
    if extra.contains(&"--release") {
        println!("xtask: re-running in release (benchmarks measure release builds)");
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("xtask exited with {status}");
    }
    Ok(())
}

/// Removes the variables `cargo run` gave this process for the xtask package: build scripts
/// (ring's) watch some of them, so passing them on would rebuild those crates on every run.
pub fn without_package_variables(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_package_variable) {
            cmd.env_remove(key);
        }
    }
}

/// Variables cargo sets for the package it runs (not configuration of cargo itself).
fn is_package_variable(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "OUT_DIR"
        )
}

/// A `compiler-artifact` message for a binary: its target name and executable path.
#[cfg_attr(not(feature = "heavy"), allow(dead_code))]
fn executable(line: &str) -> Option<(String, PathBuf)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["reason"] != "compiler-artifact" {
        return None;
    }
    let is_bin = v["target"]["kind"].as_array()?.iter().any(|k| k == "bin");
    if !is_bin {
        return None;
    }
    Some((
        v["target"]["name"].as_str()?.to_owned(),
        PathBuf::from(v["executable"].as_str()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_in_cargo_messages() {
        let bin = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"felhom-selftest"},"executable":"/t/debug/felhom-selftest"}"#;
        assert_eq!(
            executable(bin),
            Some((
                "felhom-selftest".to_owned(),
                PathBuf::from("/t/debug/felhom-selftest")
            ))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"felhom_proxmox"},"executable":null}"#;
        assert_eq!(executable(lib), None);
        assert_eq!(
            executable(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(executable("not json"), None);
    }

    #[test]
    fn only_the_run_packages_variables_are_dropped() {
        for k in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "OUT_DIR",
        ] {
            assert!(is_package_variable(k), "{k}");
        }
        for k in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "CARGO_BUILD_JOBS",
            "PATH",
        ] {
            assert!(!is_package_variable(k), "{k}");
        }
    }
}
