//! Looks for `ssh-keygen` on PATH for the round trips through it (`tests/it/round_trip.rs`).
//! Found, those tests run against it; not found, they are compiled `#[ignore]`d with the
//! reason, so `cargo test` reports them ignored instead of counting a check that never ran as
//! passed. Installed later: `touch bins/felhom-sign/build.rs` (a missing program is not
//! watched: that would re-run this script on every build).

include!("../../build-support/tool_on_path.rs");

fn main() {
    detect_tool("ssh-keygen", "have_ssh_keygen");
}
