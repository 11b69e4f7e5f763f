//! The fence, as a fact of the dependency tree: the privileged backend cannot make an HTTP call
//! because no HTTP, TLS or socket-level client crate is compiled into it.

#[test]
fn no_http_or_tls_crate_in_the_tree() {
    felhom_testkit::deps::assert_not_in_tree(
        "felhom-privileged",
        &[
            "hyper",
            "hyper-util",
            "hyper-rustls",
            "rustls",
            "http",
            "reqwest",
            "felhom-http",
            "felhom-proxmox",
        ],
    );
}
