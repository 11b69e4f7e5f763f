//! Looks for `lintian` on PATH for the package's lintian test (`src/deb.rs`). Found, the test
//! runs it; not found, it is compiled `#[ignore]`d with the reason, so `cargo test` reports it
//! ignored instead of counting a check that never ran as passed. Installed later:
//! `touch xtask/build.rs` (a missing program is not watched: that would re-run this script on
//! every build).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_lintian)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("lintian"))
            .find(|p| p.is_file())
    });
    if let Some(program) = found {
        println!("cargo::rerun-if-changed={}", program.display());
        println!("cargo::rustc-cfg=have_lintian");
    }
}
