//! `SystemctlProber` with stand-in programs: each `systemctl is-active` answer, the exact
//! arguments, a program that hangs (timeout, killed) and one that cannot run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use felhom_hub::cloudflared::{CloudflaredProber, SystemctlProber};
use felhom_hub_proto::ServiceState;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Whether the process is gone (or a zombie waiting to be reaped).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

// One test writes every script before running any: a script written while another thread
// forks could fail to exec with "text file busy".
#[tokio::test]
async fn each_answer_maps_to_a_state_and_a_hang_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Answers "active" only when called exactly as `systemctl is-active cloudflared`.
    let exact = script(
        d,
        "exact",
        r#"if [ "$#" -eq 2 ] && [ "$1" = is-active ] && [ "$2" = cloudflared ]; then echo active; else echo "wrong args: $*"; fi"#,
    );
    let inactive = script(d, "inactive", "echo inactive; exit 3");
    let failed = script(d, "failed", "echo failed; exit 3");
    let odd = script(d, "odd", "echo bogus-state");
    let silent = script(d, "silent", "exit 0");
    let pidfile = d.join("hang.pid");
    let hang = script(
        d,
        "hang",
        &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
    );

    for (program, want) in [
        (&exact, ServiceState::Active),
        (&inactive, ServiceState::Inactive),
        (&failed, ServiceState::Inactive),
        (&odd, ServiceState::Unknown),
        (&silent, ServiceState::Unknown),
    ] {
        let p = SystemctlProber::new().with_program(program);
        assert_eq!(p.probe().await, want, "{}", program.display());
    }

    let t = Instant::now();
    let p = SystemctlProber::new()
        .with_program(&hang)
        .with_timeout(Duration::from_millis(300));
    assert_eq!(p.probe().await, ServiceState::Unknown);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_dead(pid) {
        assert!(
            Instant::now() < deadline,
            "the hung probe {pid} was not killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let missing = SystemctlProber::new().with_program(d.join("no-such-program"));
    assert_eq!(missing.probe().await, ServiceState::Unknown);
}
