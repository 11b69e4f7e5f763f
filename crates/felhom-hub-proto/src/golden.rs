//! The fixed samples that `testdata/host-report.golden.json` (the report) and
//! `testdata/intent.golden.json` (the envelope and the hub-served intent bodies) pin, field for
//! field.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    AuditEntry, BackupEntry, ControlEnvelope, GuestReport, GuestSpec, GuestStatus, HostInfo,
    HostReport, JournalStatus, PbsSnapshot, RestoreTest, ServiceState, StorageTarget, Timestamp,
    SCHEMA_VERSION,
};
use crate::{
    DesiredGuestEntry, DesiredRunState, DesiredSpec, DesiredStateBody, OpBlob, OpKind,
    SignedOpEntry, SignedOpsBody,
};

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// A fully populated report: every field and every optional part present somewhere (one guest
/// with spec and description, one without either, one of unknown status; one backup with notes,
/// one without; one element in each reserved collection), with fixed values.
///
/// Serialized pretty, it is `testdata/host-report.golden.json`; changing it is changing the
/// contract the hub team codes against.
pub fn sample_host_report() -> HostReport {
    HostReport {
        schema_version: SCHEMA_VERSION,
        host_id: "pve-01".into(),
        agent_version: "0.1.0".into(),
        collected_at: ts("2026-11-23T10:00:00Z"),
        host: HostInfo {
            node: "pve".into(),
            pve_version: "9.0.3".into(),
            kernel: "6.14.8-2-pve".into(),
            uptime_seconds: 20_391,
            cpu_usage: 0.125,
            cpu_count: 16,
            load_average: [0.5, 0.75, 1.25],
            memory_total_bytes: 64 * GIB,
            memory_used_bytes: 12 * GIB,
            rootfs_total_bytes: 100 * GIB,
            rootfs_used_bytes: 20 * GIB,
        },
        guests: vec![
            GuestReport {
                vmid: 100,
                name: "web".into(),
                status: GuestStatus::Running,
                spec: Some(GuestSpec {
                    cores: 2,
                    memory_bytes: 2 * GIB,
                    swap_bytes: 512 * MIB,
                    disk_bytes: 8 * GIB,
                }),
                description: Some("customer web".into()),
            },
            GuestReport {
                vmid: 101,
                name: "db".into(),
                status: GuestStatus::Stopped,
                spec: None,
                description: None,
            },
            GuestReport {
                vmid: 102,
                name: "".into(),
                status: GuestStatus::Unknown,
                spec: None,
                description: None,
            },
        ],
        cloudflared: ServiceState::Active,
        storage_targets: vec![
            StorageTarget {
                id: "local".into(),
                storage_type: "dir".into(),
                content: vec!["backup".into(), "iso".into(), "vztmpl".into()],
                total_bytes: 100 * GIB,
                used_bytes: 20 * GIB,
                avail_bytes: 80 * GIB,
                active: true,
            },
            StorageTarget {
                id: "local-lvm".into(),
                storage_type: "lvmthin".into(),
                content: vec!["images".into(), "rootdir".into()],
                total_bytes: 400 * GIB,
                used_bytes: 50 * GIB,
                avail_bytes: 350 * GIB,
                active: true,
            },
        ],
        backups: vec![
            BackupEntry {
                volid: "local:backup/vzdump-lxc-100-2026_11_22-03_00_00.tar.zst".into(),
                vmid: 100,
                ctime: 1_795_316_400,
                size_bytes: 734_003_200,
                format: "tar.zst".into(),
                protected: true,
                notes: Some("before upgrade".into()),
            },
            BackupEntry {
                volid: "local:backup/vzdump-lxc-101-2026_11_22-03_05_00.tar.zst".into(),
                vmid: 101,
                ctime: 1_795_316_700,
                size_bytes: 1_258_291_200,
                format: "tar.zst".into(),
                protected: false,
                notes: None,
            },
        ],
        restore_tests: vec![
            RestoreTest {
                volid: "local:backup/vzdump-lxc-100-2026_11_22-03_00_00.tar.zst".into(),
                vmid: 100,
                tested_at: ts("2026-11-22T04:00:40Z"),
                ok: true,
                detail: "restored into 9000 without network, ran 3 s, stopped, destroyed".into(),
                outcome: "ok".into(),
                reason: None,
                error: None,
                backup_ctime: 1_795_316_400,
                scratch_vmid: Some(9000),
                started_at: Some(ts("2026-11-22T04:00:00Z")),
                duration_seconds: 40,
            },
            RestoreTest {
                volid: "local:backup/vzdump-lxc-101-2026_11_22-03_05_00.tar.zst".into(),
                vmid: 101,
                tested_at: ts("2026-11-22T04:02:10Z"),
                ok: false,
                detail: "restored into 9001; start failed; stopped, destroyed".into(),
                outcome: "boot_failed".into(),
                reason: Some("start".into()),
                error: Some("startup for container '9001' failed".into()),
                backup_ctime: 1_795_316_700,
                scratch_vmid: Some(9001),
                started_at: Some(ts("2026-11-22T04:01:00Z")),
                duration_seconds: 70,
            },
        ],
        pbs_snapshots: vec![PbsSnapshot {
            volid: "pbs:backup/ct/100/2026-11-22T03:00:00Z".into(),
            vmid: 100,
            backup_time: 1_795_316_400,
            size_bytes: 512 * MIB,
            verified: true,
        }],
        audit_tail: vec![
            AuditEntry {
                at: ts("2026-11-23T09:59:00Z"),
                action: "destroy_guest".into(),
                vmid: Some(101),
                class: "destructive".into(),
                decision: "executed".into(),
                reason: None,
                detail: None,
                key_id: Some("ops-anna".into()),
                nonce: Some("3f9c1d7e5a2b4c6d".into()),
            },
            AuditEntry {
                at: ts("2026-11-23T09:59:30Z"),
                action: "destroy_guest".into(),
                vmid: Some(102),
                class: "destructive".into(),
                decision: "refused".into(),
                reason: Some("role_denied".into()),
                detail: Some(
                    "signed op refused: signer \"ops-bob\" has role recovery, which may not \
                     authorize \"destroy_guest\""
                        .into(),
                ),
                key_id: Some("ops-bob".into()),
                nonce: Some("8a1b2c3d4e5f6071".into()),
            },
            AuditEntry {
                at: ts("2026-11-23T09:59:45Z"),
                action: "rotate_signers".into(),
                vmid: None,
                class: "destructive".into(),
                decision: "executed".into(),
                reason: None,
                detail: None,
                key_id: Some("ops-bob".into()),
                nonce: Some("c0ffee00c0ffee00".into()),
            },
            AuditEntry {
                at: ts("2026-11-23T10:00:00Z"),
                action: "destroy_guest".into(),
                vmid: Some(105),
                class: "destructive".into(),
                decision: "pending_signature".into(),
                reason: Some("pending_signature".into()),
                detail: None,
                key_id: None,
                nonce: None,
            },
        ],
        journal: JournalStatus::journal_less(
            "op journal /var/lib/felhom/journal.log: line 12 is corrupt",
        ),
    }
}

/// A fixed envelope with every field set, for examples and simulators.
pub fn sample_control_envelope() -> ControlEnvelope {
    ControlEnvelope {
        poll_interval_seconds: Some(300),
        blocked: Some(false),
        desired_generation: 3,
        has_signed_ops: false,
    }
}

/// The three bodies the hub sends, in one document: `testdata/intent.golden.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntentSample {
    /// The answer to a host report, every field set and asking for both fetches.
    pub envelope: ControlEnvelope,
    /// `GET /api/v1/desired-state`.
    pub desired_state: DesiredStateBody,
    /// `GET /api/v1/signed-ops`.
    pub signed_ops: SignedOpsBody,
}

/// The signed op of [`sample_intent`]: destroy guest 105 on `pve-01`.
pub fn sample_op_blob() -> OpBlob {
    OpBlob {
        op: OpKind::DestroyGuest,
        host_id: "pve-01".into(),
        guest_id: Some(105),
        params: BTreeMap::new(),
        nonce: "6f1c2a9e-41d7-4c1e-9a53-0d2b8f7e6a11".into(),
        not_before: ts("2026-11-23T10:00:00Z"),
        not_after: ts("2026-11-23T11:00:00Z"),
        key_id: "ops-anna".into(),
    }
}

/// Every field of the three intent bodies present somewhere (a guest with every field, one
/// with `vmid` only, one `present: false`); the op's `blob` is [`sample_op_blob`]'s canonical
/// JSON. The signature is a shape placeholder, not a valid signature.
pub fn sample_intent() -> IntentSample {
    IntentSample {
        envelope: ControlEnvelope {
            poll_interval_seconds: Some(60),
            blocked: Some(false),
            desired_generation: 7,
            has_signed_ops: true,
        },
        desired_state: DesiredStateBody {
            generation: 7,
            guests: vec![
                DesiredGuestEntry {
                    vmid: 100,
                    run_state: Some(DesiredRunState::Running),
                    spec: Some(DesiredSpec {
                        cores: Some(2),
                        memory_bytes: Some(2 * GIB),
                        swap_bytes: Some(512 * MIB),
                        disk_bytes: Some(8 * GIB),
                    }),
                    description: Some("customer web".into()),
                    present: Some(true),
                },
                DesiredGuestEntry {
                    vmid: 101,
                    run_state: Some(DesiredRunState::Stopped),
                    ..DesiredGuestEntry::default()
                },
                DesiredGuestEntry {
                    vmid: 105,
                    present: Some(false),
                    ..DesiredGuestEntry::default()
                },
            ],
        },
        signed_ops: SignedOpsBody {
            ops: vec![SignedOpEntry {
                blob: sample_op_blob().to_canonical_json(),
                signature:
                    "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n"
                        .into(),
            }],
        },
    }
}

fn ts(s: &str) -> Timestamp {
    // The literals above are valid; a typo is caught by the golden tests on the first run.
    Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_exercises_every_optional_part() {
        let r = sample_host_report();
        assert!(r.guests.iter().any(|g| g.spec.is_some()));
        assert!(r.guests.iter().any(|g| g.spec.is_none()));
        assert!(r.guests.iter().any(|g| g.description.is_some()));
        assert!(r.guests.iter().any(|g| g.description.is_none()));
        assert!(r.backups.iter().any(|b| b.notes.is_some()));
        assert!(r.backups.iter().any(|b| b.notes.is_none()));
        assert!(!r.storage_targets.is_empty());
        assert!(!r.restore_tests.is_empty());
        assert!(!r.pbs_snapshots.is_empty());
        assert!(r.audit_tail.iter().any(|a| a.vmid.is_none()));
        assert!(r.audit_tail.iter().any(|a| a.key_id.is_some()));
        // The fixed ctime matches the volid's date (UTC).
        assert_eq!(
            Timestamp::from_unix_seconds(r.backups[0].ctime).as_str(),
            "2026-11-22T03:00:00Z"
        );
    }

    #[test]
    fn the_sample_round_trips_through_json() {
        let r = sample_host_report();
        let json = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(serde_json::from_str::<HostReport>(&json).unwrap(), r);
        let e = sample_control_envelope();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<ControlEnvelope>(&json).unwrap(), e);
    }
}
