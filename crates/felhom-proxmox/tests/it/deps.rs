//! The other side of the fence: the API client's tree holds no process-spawning crate of ours
//! (the root-CLI backend lives in `felhom-privileged`).

#[test]
fn the_api_client_tree_has_no_privileged_backend() {
    felhom_testkit::deps::assert_not_in_tree("felhom-proxmox", &["felhom-privileged"]);
}

/// tokio's `process` feature is on workspace-wide, so the tree alone cannot prove the client
/// never spawns: every source file of the crate is read for the spawning APIs too.
#[test]
fn no_source_file_spawns_a_process() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = 0;
    for entry in std::fs::read_dir(&src).expect("src/ is readable") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source is readable");
            for banned in ["std::process", "tokio::process", "Command::new"] {
                assert!(
                    !text.contains(banned),
                    "{} mentions {banned:?}",
                    path.display()
                );
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 8,
        "expected the crate's sources under {}, read {seen}",
        src.display()
    );
}
