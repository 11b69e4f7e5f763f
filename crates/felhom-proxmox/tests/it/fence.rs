//! The fence between the API client and the privileged backend, checked on the source text:
//! the API side never spawns a process, the privileged side never makes a network call.

use std::path::PathBuf;

fn source(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every module of the API side (all of `src/` except the privileged backend and `lib.rs`,
/// which only declares modules).
const API_SIDE: &[&str] = &[
    "api.rs",
    "client.rs",
    "error.rs",
    "http.rs",
    "lenient.rs",
    "secret.rs",
    "task.rs",
    "tls.rs",
    "types.rs",
    "upid.rs",
];

#[test]
fn the_api_side_never_spawns_processes() {
    for file in API_SIDE {
        let text = source(file);
        for banned in [
            "std::process",
            "tokio::process",
            "Command",
            "crate::privileged",
            "privileged::",
        ] {
            assert!(!text.contains(banned), "{file} mentions {banned:?}");
        }
    }
}

#[test]
fn the_privileged_backend_never_makes_network_calls() {
    let text = source("privileged.rs");
    let lower = text.to_lowercase();
    for banned in [
        "hyper",
        "http",
        "rustls",
        "tcpstream",
        "udpsocket",
        "std::net",
        "tokio::net",
    ] {
        assert!(!lower.contains(banned), "privileged.rs mentions {banned:?}");
    }
    for banned in ["HttpsClient", "crate::client", "crate::api", "crate::tls"] {
        assert!(!text.contains(banned), "privileged.rs mentions {banned:?}");
    }
}

#[test]
fn every_source_file_is_covered_by_the_fence() {
    let mut files: Vec<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    files.sort();
    for f in &files {
        assert!(
            API_SIDE.contains(&f.as_str()) || f == "privileged.rs" || f == "lib.rs",
            "{f} is on neither side of the fence: add it to API_SIDE or to the privileged checks"
        );
    }
}
