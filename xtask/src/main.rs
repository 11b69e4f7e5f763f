//! `cargo xtask`: the project's automation, in Rust (demo, golden, vectors, bench, live).

mod demo;
mod vectors;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "felhom-agent project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the PVE simulator on loopback and run the self-tests against it, step by step.
    Demo,
    /// Check the host-report golden file against the wire types (`--bless` rewrites it).
    Golden {
        #[arg(long)]
        bless: bool,
    },
    /// Regenerate the SSHSIG test vectors with the machine's ssh-keygen (never run by CI).
    Vectors,
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => demo::run(&root()),
        Command::Golden { bless } => golden(bless),
        Command::Vectors => vectors::run(&root().join("testdata/sshsig")),
    }
}

fn golden(bless: bool) -> Result<()> {
    let path = root().join("testdata/host-report.golden.json");
    if bless {
        felhom_agent_core::golden::golden_bless(&path)?;
        println!("golden: rewrote {}", path.display());
        return Ok(());
    }
    match felhom_agent_core::golden::golden_check(&path) {
        Ok(()) => {
            println!("golden: {} matches the wire types", path.display());
            Ok(())
        }
        Err(drift) => bail!(
            "golden: {} drifted from the wire types:\n{drift}",
            path.display()
        ),
    }
}
