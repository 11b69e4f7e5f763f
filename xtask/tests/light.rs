//! `cargo xtask golden` (the alias builds xtask without default features) compiles no TLS stack,
//! no signature crate and no simulator: the light part stays light.

#[test]
fn the_light_xtask_compiles_no_tls_or_signature_crate() {
    let tree = felhom_testkit::deps::normal_tree_with("xtask", &["--no-default-features"]);
    assert!(tree.iter().any(|n| n == "felhom-hub-proto"), "{tree:?}");
    for banned in [
        "rustls",
        "ring",
        "ssh-key",
        "felhom-pve-sim",
        "tokio",
        "hyper",
    ] {
        assert!(
            !tree.iter().any(|n| n == banned),
            "light xtask depends on {banned}: {tree:?}"
        );
    }
}

#[test]
fn the_default_xtask_has_the_heavy_commands() {
    let tree = felhom_testkit::deps::normal_tree("xtask");
    assert!(tree.iter().any(|n| n == "felhom-pve-sim"), "{tree:?}");
}
