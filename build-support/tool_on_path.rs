// Included by the build scripts whose tests need an outside tool (`include!`, so each build
// script stays one file to cargo): one way to look for the tool, one cfg when found.

/// Sets `--cfg <cfg>` when `program` is an executable file in a PATH directory, and declares
/// the cfg either way. Re-runs when PATH changes or the found program does; a missing program
/// is not watched (that would re-run the script on every build): after installing it, touch
/// the build script.
fn detect_tool(program: &str, cfg: &str) {
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if let Some(found) = found {
        println!("cargo::rerun-if-changed={}", found.display());
        println!("cargo::rustc-cfg={cfg}");
    }
}
