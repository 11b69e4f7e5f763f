//! The backend's unit tests: every operation against a `RecordingRunner` and a temporary root.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::backend::PCT_TIMEOUT;

fn golden() -> GoldenLxcSpec {
    GoldenLxcSpec {
        vmid: 9000,
        template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        hostname: "golden".into(),
        storage: "local-lvm".into(),
        disk_gib: 8,
        memory_mib: 1024,
        cores: 2,
        bridge: "vmbr0".into(),
    }
}

fn backend(dir: &Path) -> Privileged<RecordingRunner, RootedFiles> {
    Privileged::new(RecordingRunner::new(), RootedFiles::under(dir))
}

#[tokio::test]
async fn golden_lxc_runs_pct_create_with_keyctl() {
    let dir = tempfile::tempdir().unwrap();
    let p = backend(dir.path());
    p.runner().reply(Ok(CommandOutput::ok("")));
    p.create_golden_lxc(&golden()).await.unwrap();
    let calls = p.runner().calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].program, "pct");
    assert_eq!(
        calls[0].args,
        [
            "create",
            "9000",
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "--hostname",
            "golden",
            "--rootfs",
            "local-lvm:8",
            "--memory",
            "1024",
            "--cores",
            "2",
            "--net0",
            "name=eth0,bridge=vmbr0,ip=dhcp",
            "--unprivileged",
            "1",
            "--features",
            "keyctl=1,nesting=1",
            "--onboot",
            "0"
        ]
    );
    assert_eq!(calls[0].timeout, PCT_TIMEOUT);
}

#[tokio::test]
async fn golden_lxc_failures_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let p = backend(dir.path());
    p.runner().reply(Ok(CommandOutput::exit(
        255,
        "",
        "CT 9000 already exists on node 'pve'\n",
    )));
    let err = p.create_golden_lxc(&golden()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "pct failed with exit status 255: CT 9000 already exists on node 'pve'"
    );
    let bad_specs = [
        GoldenLxcSpec {
            vmid: 99,
            ..golden()
        },
        GoldenLxcSpec {
            template: "local:iso/x.iso".into(),
            ..golden()
        },
        GoldenLxcSpec {
            template: "local:vztmpl/../../etc/passwd.tar.gz".into(),
            ..golden()
        },
        GoldenLxcSpec {
            template: "--help:vztmpl/x.tar.zst".into(),
            ..golden()
        },
        GoldenLxcSpec {
            hostname: "-bad".into(),
            ..golden()
        },
        GoldenLxcSpec {
            hostname: "a b".into(),
            ..golden()
        },
        GoldenLxcSpec {
            storage: "local lvm".into(),
            ..golden()
        },
        GoldenLxcSpec {
            bridge: "vmbr0;reboot".into(),
            ..golden()
        },
        GoldenLxcSpec {
            memory_mib: 8,
            ..golden()
        },
        GoldenLxcSpec {
            cores: 0,
            ..golden()
        },
        GoldenLxcSpec {
            disk_gib: 0,
            ..golden()
        },
    ];
    for spec in bad_specs {
        let err = p.create_golden_lxc(&spec).await.unwrap_err();
        assert!(
            matches!(err, PrivilegedError::InvalidArgument { .. }),
            "{spec:?}: {err}"
        );
    }
    assert_eq!(p.runner().calls().len(), 1, "refused specs run nothing");
}

#[tokio::test]
async fn usb_mount_adds_fstab_entry_then_mounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/fstab"),
        "/dev/pve/root / ext4 errors=remount-ro 0 1",
    )
    .unwrap();
    let p = backend(dir.path());
    p.runner().reply(Ok(CommandOutput::ok("")));
    let uuid = "0f3c6d1e-8b2a-4c5d-9e7f-112233445566";
    let out = p.mount_usb_by_uuid(uuid, "/mnt/usb-backup").await.unwrap();
    assert_eq!(
        out,
        MountOutcome {
            fstab_changed: true,
            already_mounted: false
        }
    );
    let fstab = std::fs::read_to_string(dir.path().join("etc/fstab")).unwrap();
    assert_eq!(
        fstab,
        format!(
            "/dev/pve/root / ext4 errors=remount-ro 0 1\nUUID={uuid} /mnt/usb-backup auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
        )
    );
    assert!(dir.path().join("mnt/usb-backup").is_dir());
    let calls = p.runner().calls();
    assert_eq!(
        (calls[0].program.as_str(), calls[0].args.as_slice()),
        ("mount", &["/mnt/usb-backup".to_owned()][..])
    );

    // Again: fstab untouched, "already mounted" is fine.
    p.runner().reply(Ok(CommandOutput::exit(
        32,
        "",
        "mount: /mnt/usb-backup: /dev/sdb1 already mounted on /mnt/usb-backup.\n",
    )));
    let again = p.mount_usb_by_uuid(uuid, "/mnt/usb-backup").await.unwrap();
    assert_eq!(
        again,
        MountOutcome {
            fstab_changed: false,
            already_mounted: true
        }
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/fstab")).unwrap(),
        fstab
    );
}

#[tokio::test]
async fn usb_mount_refusals_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let p = backend(dir.path());
    for (uuid, mp) in [
        ("not-a-uuid", "/mnt/usb"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-11223344556", "/mnt/usb"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/media/usb"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/../etc"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/my disk"),
        ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/-o"),
    ] {
        let err = p.mount_usb_by_uuid(uuid, mp).await.unwrap_err();
        assert!(
            matches!(err, PrivilegedError::InvalidArgument { .. }),
            "{uuid} {mp}: {err}"
        );
    }
    assert!(p.runner().calls().is_empty());
    assert!(
        !dir.path().join("etc/fstab").exists(),
        "nothing written for refused arguments"
    );

    p.runner().reply(Ok(CommandOutput::exit(
        32,
        "",
        "mount: /mnt/usb: can't find UUID=ABCD-1234.\n",
    )));
    let err = p
        .mount_usb_by_uuid("ABCD-1234", "/mnt/usb")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("can't find UUID"), "{err}");
}

#[test]
fn fstab_conflicts() {
    let existing =
        "# comment\nUUID=abcd-1234 /mnt/a auto defaults 0 0\n/dev/sdc1 /mnt/b ext4 defaults 0 2\n";
    assert_eq!(
        fstab_with_entry(existing, "ABCD-1234", "/mnt/a").unwrap(),
        None,
        "uuid case-insensitive"
    );
    let err = fstab_with_entry(existing, "ABCD-1234", "/mnt/other").unwrap_err();
    assert!(
        err.to_string().contains("already mounted elsewhere"),
        "{err}"
    );
    let err = fstab_with_entry(existing, "1111-2222", "/mnt/b").unwrap_err();
    assert!(
        err.to_string().contains("mountpoint is already used"),
        "{err}"
    );
    let added = fstab_with_entry(existing, "1111-2222", "/mnt/c")
        .unwrap()
        .unwrap();
    assert!(
        added.starts_with(existing)
            && added.ends_with(
                "/mnt/c auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
            )
    );
    assert!(fstab_with_entry("", "1111-2222", "/mnt/c")
        .unwrap()
        .unwrap()
        .starts_with("UUID=1111-2222 "));
}

#[test]
fn validators() {
    for ok in [
        "0f3c6d1e-8b2a-4c5d-9e7f-112233445566",
        "ABCD-1234",
        "0123456789ABCDEF",
    ] {
        assert!(validate::fs_uuid(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "ABCD1234",
        "ABCD-123G",
        "0f3c6d1e-8b2a-4c5d-9e7f",
        "abcd-1234-",
        "--all",
    ] {
        assert!(validate::fs_uuid(bad).is_err(), "{bad}");
    }
    for ok in [
        "/dev/sda",
        "/dev/sdab",
        "/dev/nvme0n1",
        "/dev/nvme12n3",
        "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1234567",
        "/dev/disk/by-id/usb-Seagate_Expansion_NAAB1234-0:0",
    ] {
        assert!(validate::device(ok).is_ok(), "{ok}");
    }
    for bad in [
        "/dev/sda1",
        "/dev/sd",
        "/dev/nvme0",
        "/dev/nvme0n1p1",
        "/dev/disk/by-id/../../sda",
        "/dev/disk/by-id/",
        "/dev/disk/by-id/a/b",
        "/dev/mem",
        "sda",
        "/dev/disk/by-id/-x",
        "/dev/SDA",
    ] {
        assert!(validate::device(bad).is_err(), "{bad}");
    }
    for ok in ["/mnt/usb", "/mnt/backup/disk-1", "/mnt/a.b_c"] {
        assert!(validate::mountpoint(ok).is_ok(), "{ok}");
    }
    for ok in ["golden", "web-01.example.com", "a"] {
        assert!(validate::hostname(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a..b", "-a", "a-", "a_b", &"x".repeat(64)] {
        assert!(validate::hostname(bad).is_err(), "{bad}");
    }
    assert!(validate::template("local:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz").is_ok());
    assert!(validate::template("local:vztmpl/x.iso").is_err());
    assert!(validate::template("local:vztmpl/.hidden.tar.gz").is_err());
    assert!(validate::vmid(100).is_ok() && validate::vmid(999_999_999).is_ok());
    assert!(validate::vmid(1_000_000_000).is_err());
}

const SMART_ATA: &str = r#"{
  "json_format_version": [1, 0],
  "smartctl": {"version": [7, 3], "exit_status": 0, "messages": []},
  "device": {"name": "/dev/sda", "type": "sat"},
  "model_name": "WDC WD40EFRX-68N32N0",
  "serial_number": "WD-WCC7K1234567",
  "smart_status": {"passed": true},
  "ata_smart_attributes": {"revision": 16, "table": [
    {"id": 5, "name": "Reallocated_Sector_Ct", "value": 200, "worst": 200, "thresh": 140, "when_failed": "", "flags": {"value": 51}, "raw": {"value": 0, "string": "0"}},
    {"id": 194, "name": "Temperature_Celsius", "value": 114, "worst": 103, "thresh": 0, "when_failed": "", "raw": {"value": 36, "string": "36"}}
  ]},
  "power_on_time": {"hours": 31337},
  "temperature": {"current": 36}
}"#;

const SMART_NVME: &str = r#"{
  "smartctl": {"exit_status": 4, "messages": [{"string": "Read Self-test Log failed", "severity": "error"}]},
  "model_name": "Samsung SSD 980 PRO 1TB",
  "smart_status": {"passed": false, "nvme": {"value": 4}},
  "nvme_smart_health_information_log": {"critical_warning": 4, "temperature": 41, "available_spare": 100, "percentage_used": 7, "media_errors": 0},
  "temperature": {"current": 41},
  "power_on_time": {"hours": 812}
}"#;

#[tokio::test]
async fn smart_health_ata_and_nvme() {
    let dir = tempfile::tempdir().unwrap();
    let p = backend(dir.path());
    p.runner().reply(Ok(CommandOutput::ok(SMART_ATA)));
    let h = p.smart_health("/dev/sda").await.unwrap();
    assert_eq!(
        p.runner().calls()[0].args,
        ["--json", "-H", "-A", "/dev/sda"]
    );
    assert_eq!(h.passed, Some(true));
    assert_eq!(h.temperature_c, Some(36));
    assert_eq!(h.power_on_hours, Some(31337));
    assert_eq!(h.attributes.len(), 2);
    assert_eq!(
        (
            h.attributes[0].id,
            h.attributes[0].raw,
            h.attributes[0].thresh
        ),
        (5, 0, 140)
    );
    assert_eq!(h.model.as_deref(), Some("WDC WD40EFRX-68N32N0"));

    // Exit bit 2 (a command failed) and bit 3 (disk failing) still carry a report.
    p.runner()
        .reply(Ok(CommandOutput::exit(12, SMART_NVME, "")));
    let h = p.smart_health("/dev/nvme0n1").await.unwrap();
    assert_eq!(h.passed, Some(false));
    assert_eq!(h.exit_status, 12);
    assert_eq!(h.nvme.as_ref().unwrap().percentage_used, 7);
    assert_eq!(h.nvme.unwrap().critical_warning, 4);
    assert_eq!(h.messages, ["Read Self-test Log failed"]);
    assert!(h.attributes.is_empty());

    // Bit 1: the device could not be opened: no report.
    p.runner().reply(Ok(CommandOutput::exit(
        2,
        r#"{"smartctl":{"exit_status":2}}"#,
        "Smartctl open device: /dev/sdb failed: No such device",
    )));
    let err = p.smart_health("/dev/sdb").await.unwrap_err();
    assert!(
        matches!(
            err,
            PrivilegedError::Failed {
                status: Some(2),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("No such device"));

    p.runner().reply(Ok(CommandOutput::ok("not json")));
    assert!(matches!(
        p.smart_health("/dev/sda").await,
        Err(PrivilegedError::Parse { .. })
    ));
    assert!(matches!(
        p.smart_health("/dev/sda; reboot").await,
        Err(PrivilegedError::InvalidArgument { .. })
    ));
}

const SENSORS: &str = r#"{
  "coretemp-isa-0000": {
    "Adapter": "ISA adapter",
    "Package id 0": {"temp1_input": 45.000, "temp1_max": 80.000, "temp1_crit": 100.000, "temp1_crit_alarm": 0.000},
    "Core 0": {"temp2_input": 43.000, "temp2_max": 80.000, "temp2_crit": 100.000, "temp2_crit_alarm": 0.000}
  },
  "nct6775-isa-0290": {
    "Adapter": "ISA adapter",
    "fan2": {"fan2_input": 1205.000, "fan2_min": 0.000},
    "in0": {"in0_input": 0.880, "in0_min": 0.000, "in0_max": 1.744},
    "intrusion0": {"intrusion0_alarm": 1.000}
  },
  "acpitz-acpi-0": {"Adapter": "ACPI interface", "temp1": {}}
}"#;

#[tokio::test]
async fn sensors_are_parsed_per_chip() {
    let dir = tempfile::tempdir().unwrap();
    let p = backend(dir.path());
    p.runner().reply(Ok(CommandOutput::ok(SENSORS)));
    let chips = p.sensors().await.unwrap();
    assert_eq!(p.runner().calls()[0].args, ["-j"]);
    let core = chips
        .iter()
        .find(|c| c.name == "coretemp-isa-0000")
        .unwrap();
    assert_eq!(core.adapter.as_deref(), Some("ISA adapter"));
    let pkg = core
        .readings
        .iter()
        .find(|r| r.label == "Package id 0")
        .unwrap();
    assert_eq!(
        (pkg.kind, pkg.input, pkg.max, pkg.crit),
        (SensorKind::Temperature, Some(45.0), Some(80.0), Some(100.0))
    );
    let nct = chips.iter().find(|c| c.name.starts_with("nct")).unwrap();
    let fan = nct.readings.iter().find(|r| r.label == "fan2").unwrap();
    assert_eq!((fan.kind, fan.input), (SensorKind::Fan, Some(1205.0)));
    let volt = nct.readings.iter().find(|r| r.label == "in0").unwrap();
    assert_eq!((volt.kind, volt.max), (SensorKind::Voltage, Some(1.744)));
    let intrusion = nct
        .readings
        .iter()
        .find(|r| r.label == "intrusion0")
        .unwrap();
    assert_eq!((intrusion.kind, intrusion.input), (SensorKind::Other, None));
    let acpi = chips.iter().find(|c| c.name.starts_with("acpitz")).unwrap();
    assert_eq!(
        acpi.readings[0].input, None,
        "a reading that failed is absent, not zero"
    );

    p.runner()
        .reply(Ok(CommandOutput::exit(1, "", "No sensors found!")));
    let err = p.sensors().await.unwrap_err();
    assert!(err.to_string().contains("No sensors found!"));
    p.runner().reply(Ok(CommandOutput::ok("[1,2]")));
    assert!(matches!(
        p.sensors().await,
        Err(PrivilegedError::Parse { .. })
    ));
}

#[tokio::test]
async fn recording_runner_without_reply_errors() {
    let r = RecordingRunner::new();
    let err = r.run("x", &[], Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, PrivilegedError::Spawn { .. }));
    assert_eq!(r.calls().len(), 1);
}

#[tokio::test]
async fn tokio_runner_runs_without_a_shell_and_times_out() {
    let r = TokioCommandRunner::default();
    // `echo` gets its argument verbatim: no shell expands `$HOME` or `;`.
    let out = r
        .run("echo", &["$HOME; true".to_owned()], Duration::from_secs(10))
        .await
        .unwrap();
    assert!(out.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "$HOME; true\n");

    let out = r.run("false", &[], Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.status, Some(1));

    let err = r
        .run("sleep", &["5".to_owned()], Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, PrivilegedError::Timeout { .. }), "{err}");

    let err = r
        .run("/nonexistent/program", &[], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PrivilegedError::Spawn { .. }), "{err}");

    let small = TokioCommandRunner {
        max_output_bytes: 4,
    };
    let err = small
        .run("echo", &["0123456789".to_owned()], Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrivilegedError::OutputTooLarge { limit: 4, .. }),
        "{err}"
    );
}
