//! `cargo xtask`: the project's automation, in Rust (demo, golden, vectors, bench, live,
//! crashpoints, soak, fuzz, deb).

#[cfg(feature = "heavy")]
mod agentproc;
#[cfg(feature = "heavy")]
mod bench;
mod cargo;
#[cfg(feature = "heavy")]
mod crashpoints;
mod deb;
#[cfg(feature = "heavy")]
mod demo;
mod fuzz;
#[cfg(feature = "heavy")]
mod soak;
#[cfg(feature = "heavy")]
mod vectors;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

/// The commands that need the `heavy` feature (simulators, rustls, ssh-key).
#[cfg(not(feature = "heavy"))]
const HEAVY: &[&str] = &[
    "demo",
    "bench",
    "live",
    "vectors",
    "crashpoints",
    "soak",
    "fuzz",
];

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "felhom-agent project automation",
    after_help = "demo, bench, live, vectors, crashpoints and soak build the heavy part of xtask (the simulators) on first use."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "heavy")]
    /// The main job on the embedded default: simulators on loopback, self-tests, then the daemon
    /// reporting and converging a desired state, step by step; exits by itself.
    Demo,
    #[cfg(feature = "heavy")]
    /// Measure the SPEC budgets, each next to an anchor measured in the same run (a debug xtask
    /// re-runs itself in release).
    Bench(bench::BenchArgs),
    #[cfg(feature = "heavy")]
    /// Run the self-tests against a real Proxmox host (never in CI): read, privileges, and hub when
    /// the config has a hub section. Changes nothing on the host.
    Live {
        /// The agent config naming the host, token and TLS trust.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the golden files (host report, intent) against the wire types (`--bless` rewrites them).
    Golden {
        #[arg(long)]
        bless: bool,
    },
    /// Build the Debian package (release binaries, `dpkg-deb`) into target/debian; lintian
    /// checks it when installed.
    Deb(deb::DebArgs),
    #[cfg(feature = "heavy")]
    /// Kill the real daemon with SIGKILL at every step of an op's life (start, stop, set_config)
    /// against the simulators, restart it, and check nothing was lost, repeated or mutated
    /// early, and that the guests converge (15 kill points per round).
    Crashpoints(crashpoints::CrashArgs),
    #[cfg(feature = "heavy")]
    /// Run the daemon for N minutes against flapping simulators, sampling RSS and open fds
    /// every second.
    Soak(soak::SoakArgs),
    #[cfg(feature = "heavy")]
    /// Regenerate the SSHSIG test vectors with the machine's ssh-keygen (never run by CI).
    Vectors,
    /// Run every cargo-fuzz target in fuzz/ for --seconds each (nightly + cargo-fuzz; never
    /// run by CI); fails when a target crashes.
    Fuzz(fuzz::FuzzArgs),
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> Result<()> {
    #[cfg(not(feature = "heavy"))]
    if std::env::args()
        .nth(1)
        .is_some_and(|c| HEAVY.contains(&c.as_str()))
    {
        return cargo::rerun(&root(), &[]);
    }
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "heavy")]
        Command::Demo => demo::run(&root()),
        // The budgets are about the product, so they are measured in release: a debug xtask
        // hands the same arguments to a release build of itself.
        #[cfg(feature = "heavy")]
        Command::Bench(_) if cfg!(debug_assertions) => cargo::rerun(&root(), &["--release"]),
        #[cfg(feature = "heavy")]
        Command::Bench(args) => bench::run(args),
        #[cfg(feature = "heavy")]
        Command::Live { config } => live(&config),
        Command::Golden { bless } => golden(bless),
        Command::Deb(args) => deb::run(&root(), args),
        #[cfg(feature = "heavy")]
        Command::Crashpoints(args) => crashpoints::run(&root(), &args),
        #[cfg(feature = "heavy")]
        Command::Soak(args) => soak::run(&root(), &args),
        #[cfg(feature = "heavy")]
        Command::Vectors => vectors::run(&root().join("testdata/sshsig")),
        Command::Fuzz(args) => fuzz::run(&root(), &args),
    }
}

fn golden(bless: bool) -> Result<()> {
    let mut drifted = Vec::new();
    for golden in felhom_hub_proto::golden_file::ALL {
        let path = root().join(golden.path);
        if bless {
            golden.bless(&path)?;
            println!("golden: rewrote {}", path.display());
            continue;
        }
        match golden.check(&path) {
            Ok(()) => println!("golden: {} matches the wire types", path.display()),
            Err(drift) => drifted.push(format!(
                "golden: {} drifted from the wire types:\n{drift}",
                path.display()
            )),
        }
    }
    if !drifted.is_empty() {
        bail!("{}", drifted.join("\n"));
    }
    Ok(())
}

#[cfg(feature = "heavy")]
/// `live`: the read-only self-tests against a real host, with the built `felhom-selftest`.
fn live(config: &std::path::Path) -> Result<()> {
    let built = cargo::build(&root(), &["felhom-selftest"], cargo::Profile::Dev)?;
    let (_, selftest) = built
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("cargo reported no felhom-selftest executable"))?;
    let has_hub = std::fs::read(config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("hub").is_some());
    let mut checks = vec!["read", "privileges"];
    if has_hub {
        checks.push("hub");
    }
    let mut failed = Vec::new();
    for check in checks {
        println!("\n=== felhom-selftest {check}");
        let status = std::process::Command::new(&selftest)
            .arg("--config")
            .arg(config)
            .arg(check)
            .status()?;
        if !status.success() {
            failed.push(check);
        }
    }
    if failed.is_empty() {
        println!("\nlive: every self-test passed");
        Ok(())
    } else {
        bail!("live: failed: {}", failed.join(", "))
    }
}
