//! Looks for `lintian` on PATH for the package's lintian test (`src/deb.rs`). Found, the test
//! runs it; not found, it is compiled `#[ignore]`d with the reason, so `cargo test` reports it
//! ignored instead of counting a check that never ran as passed. Installed later:
//! `touch xtask/build.rs` (a missing program is not watched: that would re-run this script on
//! every build).

include!("../build-support/tool_on_path.rs");

fn main() {
    detect_tool("lintian", "have_lintian");
}
