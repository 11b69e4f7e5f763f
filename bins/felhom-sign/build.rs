//! Looks for `ssh-keygen` on PATH for the round trips through it (`tests/it/round_trip.rs`).
//! Found, those tests run against it; not found, they are compiled `#[ignore]`d with the
//! reason, so `cargo test` reports them ignored instead of counting a check that never ran as
//! passed. Installed later: `touch bins/felhom-sign/build.rs` (a missing program is not
//! watched: that would re-run this script on every build).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_ssh_keygen)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("ssh-keygen"))
            .find(|p| p.is_file())
    });
    if let Some(program) = found {
        println!("cargo::rerun-if-changed={}", program.display());
        println!("cargo::rustc-cfg=have_ssh_keygen");
    }
}
