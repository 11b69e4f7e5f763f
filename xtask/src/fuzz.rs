//! `cargo xtask fuzz [--seconds N] [--target NAME]...`: runs every cargo-fuzz target in `fuzz/`
//! for N seconds each (nightly toolchain, cargo-fuzz installed) and fails when one crashes.
//! Each target's corpus (`fuzz/corpus/NAME`, not committed) starts from the test vectors and
//! `fuzz/seeds/`, and keeps what earlier runs found. CI does not run this.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Every target, with the files its corpus is seeded from (relative to the workspace root;
/// a directory means every file in it).
pub const TARGETS: &[(&str, &[&str])] = &[
    ("sshsig_armor", &["testdata/sshsig/*.sig"]),
    ("sshsig_envelope", &["fuzz/seeds/sshsig_envelope"]),
    ("op_blob", &["testdata/sshsig/*.json"]),
    ("signer_line", &["testdata/sshsig/*.pub"]),
    ("upid", &["fuzz/seeds/upid"]),
    ("journal_scan", &["fuzz/seeds/journal"]),
    ("journal_open", &["fuzz/seeds/journal"]),
    (
        "config",
        &["configs/agent.example.json", "fuzz/seeds/config"],
    ),
    (
        "hub_bodies",
        &["testdata/host-report.golden.json", "fuzz/seeds/hub_bodies"],
    ),
    ("pve_responses", &["testdata/pve/*.json"]),
    ("desired_state", &["fuzz/seeds/desired_state"]),
];

/// `cargo xtask fuzz` arguments.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run only these targets (default: all).
    #[arg(long = "target")]
    pub targets: Vec<String>,
}

/// One target's run.
#[derive(Debug)]
struct Outcome {
    target: &'static str,
    /// Wall time of the run, the target's (incremental) build included.
    seconds: f64,
    /// Time libFuzzer itself reports having fuzzed.
    fuzzed: Option<u64>,
    execs: Option<u64>,
    crashed: bool,
}

pub fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    let selected = select(&args.targets)?;
    let fuzz_dir = root.join("fuzz");
    let logs = fuzz_dir.join("logs");
    fs::create_dir_all(&logs).context("creating fuzz/logs")?;

    // One build for every target, so the per-target time is fuzzing time.
    let status = cargo_fuzz(&fuzz_dir)
        .arg("build")
        .status()
        .context("running `cargo +nightly fuzz build` (is cargo-fuzz installed?)")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build failed ({status})");
    }

    let mut outcomes = Vec::new();
    for (target, seeds) in selected {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeded = seed(root, &corpus, seeds)?;
        println!(
            "fuzz {target}: {}s, corpus {} ({seeded} seeds copied)",
            args.seconds,
            corpus.display()
        );
        let log_path = logs.join(format!("{target}.log"));
        let log = fs::File::create(&log_path).with_context(|| log_path.display().to_string())?;
        let started = Instant::now();
        let status = cargo_fuzz(&fuzz_dir)
            .args(["run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            // A hang is a finding too, as is a runaway allocation.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let outcome = Outcome {
            target,
            seconds: started.elapsed().as_secs_f64(),
            fuzzed: fuzzed_seconds(&text),
            execs: final_stat(&text, "stat::number_of_executed_units"),
            crashed: !status.success(),
        };
        if outcome.crashed {
            println!(
                "fuzz {target}: CRASHED — log {}, inputs in fuzz/artifacts/{target}/",
                log_path.display()
            );
            for line in text
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("    {line}");
            }
        }
        outcomes.push(outcome);
    }

    println!("\n| target | fuzzed s | wall s | executions | result |\n|---|---:|---:|---:|---|");
    let unknown = || "?".to_owned();
    for o in &outcomes {
        println!(
            "| {} | {} | {:.0} | {} | {} |",
            o.target,
            o.fuzzed.map_or_else(unknown, |n| n.to_string()),
            o.seconds,
            o.execs.map_or_else(unknown, |n| n.to_string()),
            if o.crashed { "CRASH" } else { "ok" }
        );
    }
    let crashed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target)
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz: {} crashed: {}", crashed.len(), crashed.join(", "))
    }
}

fn select(names: &[String]) -> Result<Vec<(&'static str, &'static [&'static str])>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            TARGETS
                .iter()
                .find(|(t, _)| t == n)
                .copied()
                .with_context(|| {
                    let all: Vec<_> = TARGETS.iter().map(|(t, _)| *t).collect();
                    format!("no fuzz target {n:?}; the targets are {}", all.join(", "))
                })
        })
        .collect()
}

/// `cargo +nightly fuzz` in `fuzz/`, without the variables `cargo run` set for xtask.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir)
        .args(["+nightly", "fuzz"])
        .stdin(Stdio::null());
    crate::cargo::without_package_variables(&mut cmd);
    // The stable toolchain's own paths, when xtask runs under cargo: nightly must use its own.
    cmd.env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    cmd
}

/// Copies the seed files into `corpus` (existing entries are kept); returns how many it copied.
fn seed(root: &Path, corpus: &Path, patterns: &[&str]) -> Result<usize> {
    fs::create_dir_all(corpus).with_context(|| corpus.display().to_string())?;
    let mut copied = 0;
    for pattern in patterns {
        for file in expand(root, pattern)? {
            let name = file.file_name().context("a seed file name")?;
            let dest = corpus.join(format!("seed-{}", name.to_string_lossy()));
            if !dest.exists() {
                fs::copy(&file, &dest)
                    .with_context(|| format!("{} -> {}", file.display(), dest.display()))?;
                copied += 1;
            }
        }
    }
    if copied == 0 && fs::read_dir(corpus)?.next().is_none() {
        bail!("no seeds for {}", corpus.display());
    }
    Ok(copied)
}

/// `dir/*.ext` (the one glob form the seed table uses), a directory, or a file.
fn expand(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let (dir, suffix) = match pattern.split_once("/*") {
        Some((dir, suffix)) => (root.join(dir), Some(suffix)),
        None if root.join(pattern).is_dir() => (root.join(pattern), Some("")),
        None => return Ok(vec![root.join(pattern)]),
    };
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.is_file() && suffix.is_none_or(|s| p.to_string_lossy().ends_with(s)));
    files.sort();
    Ok(files)
}

/// The seconds of libFuzzer's closing `Done N runs in S second(s)` line.
fn fuzzed_seconds(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let rest = l.split_once("Done ")?.1;
        let (_, after) = rest.split_once(" runs in ")?;
        after.split_whitespace().next()?.parse().ok()
    })
}

/// A `-print_final_stats` value from libFuzzer's output.
fn final_stat(log: &str, key: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix(key)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_fuzz_target_file_and_seeds() {
        let root = crate::root();
        let manifest = fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        for (target, seeds) in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{target}.rs"))
                    .is_file(),
                "{target}"
            );
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} in fuzz/Cargo.toml"
            );
            let files: usize = seeds.iter().map(|p| expand(&root, p).unwrap().len()).sum();
            assert!(files > 0, "{target} has no seed files");
        }
        let in_manifest = manifest.matches("[[bin]]").count();
        assert_eq!(
            in_manifest,
            TARGETS.len(),
            "fuzz/Cargo.toml and TARGETS list the same targets"
        );
    }

    #[test]
    fn final_stats_are_read_from_libfuzzer_output() {
        let log =
            "#1024 DONE cov: 9\nstat::number_of_executed_units: 123456\nstat::peak_rss_mb: 40\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(123456)
        );
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), Some(40));
        assert_eq!(final_stat("crash", "stat::number_of_executed_units"), None);
        let done = "#2139267\tDONE   cov: 9\nDone 2139267 runs in 61 second(s)\n";
        assert_eq!(fuzzed_seconds(done), Some(61));
        assert_eq!(
            fuzzed_seconds("==1== ERROR: libFuzzer: deadly signal"),
            None
        );
    }

    #[test]
    fn unknown_targets_are_named() {
        let err = select(&["nope".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("upid"), "{err}");
        assert_eq!(select(&[]).unwrap().len(), TARGETS.len());
    }
}
