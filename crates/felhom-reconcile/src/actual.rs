//! The boundary between the Proxmox client's wire types and reconcile's domain: PVE's guest list
//! and LXC config become [`ActualGuest`]s here, once, and a planned [`ConfigChanges`] becomes the
//! client's [`ConfigUpdate`].
//!
//! Pure functions over values; the engine does the reading and writing.

use felhom_proxmox::{ConfigUpdate, GuestSummary, LxcConfig};

use crate::plan::{ActualConfig, ActualGuest, ConfigChanges, GuestStatus};

/// The run status the plan sees for a PVE status. Anything but `running` and `stopped` (a value
/// this client does not know, or none at all) is `Unknown`, so no start or stop is planned on a
/// guest whose state we cannot name.
pub fn guest_status(status: &felhom_proxmox::GuestStatus) -> GuestStatus {
    match status {
        felhom_proxmox::GuestStatus::Running => GuestStatus::Running,
        felhom_proxmox::GuestStatus::Stopped => GuestStatus::Stopped,
        felhom_proxmox::GuestStatus::Unknown(_) => GuestStatus::Unknown,
    }
}

/// The config fields the plan compares, in PVE's units (MiB), exactly as read: the
/// description keeps PVE's trailing newline (the normalizer, not this mapping, decides that it
/// is no drift), and the digest is kept so a write is refused if someone edits in between.
pub fn actual_config(config: &LxcConfig) -> ActualConfig {
    ActualConfig {
        cores: config.cores,
        memory_mib: config.memory,
        swap_mib: config.swap,
        description: config.description.clone(),
        digest: config.digest.clone(),
    }
}

/// One listed guest with its config, if it was read (`None`: unread or unreadable, and then
/// the plan never writes it).
pub fn actual_guest(summary: &GuestSummary, config: Option<&LxcConfig>) -> ActualGuest {
    ActualGuest {
        vmid: summary.vmid,
        status: guest_status(&summary.status),
        config: config.map(actual_config),
    }
}

/// The `PUT .../config` request for planned `changes`, guarded by the `digest` they were planned
/// against. Keys are PVE's (`cores`, `memory` and `swap` in MiB, `description`), values their
/// decimal or verbatim text; `delete` is passed through.
pub fn config_update(changes: &ConfigChanges, digest: Option<&str>) -> ConfigUpdate {
    let mut update = ConfigUpdate {
        digest: digest.map(str::to_owned),
        delete: changes.delete.clone(),
        ..ConfigUpdate::default()
    };
    if let Some(cores) = changes.cores {
        update.set.insert("cores".to_owned(), cores.to_string());
    }
    if let Some(memory) = changes.memory {
        update.set.insert("memory".to_owned(), memory.to_string());
    }
    if let Some(swap) = changes.swap {
        update.set.insert("swap".to_owned(), swap.to_string());
    }
    if let Some(description) = &changes.description {
        update
            .set
            .insert("description".to_owned(), description.clone());
    }
    update
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn summary(vmid: u32, status: &str) -> GuestSummary {
        GuestSummary {
            vmid,
            status: felhom_proxmox::GuestStatus::from(status),
            ..GuestSummary::default()
        }
    }

    #[test]
    fn statuses_map_and_unknown_stays_unknown() {
        for (pve, expect) in [
            ("running", GuestStatus::Running),
            ("stopped", GuestStatus::Stopped),
            ("paused", GuestStatus::Unknown),
            ("", GuestStatus::Unknown),
        ] {
            assert_eq!(
                guest_status(&felhom_proxmox::GuestStatus::from(pve)),
                expect,
                "{pve:?}"
            );
        }
    }

    #[test]
    fn config_is_taken_verbatim_in_mib_with_digest_and_newline() {
        let config: LxcConfig = serde_json::from_str(
            r#"{"cores": "2", "memory": 2048, "swap": 512, "description": "web\n",
                "digest": "0123abcd", "hostname": "web", "net0": "name=eth0"}"#,
        )
        .expect("lxc config");
        let guest = actual_guest(&summary(100, "running"), Some(&config));
        assert_eq!(
            guest,
            ActualGuest {
                vmid: 100,
                status: GuestStatus::Running,
                config: Some(ActualConfig {
                    cores: Some(2),
                    memory_mib: Some(2048),
                    swap_mib: Some(512),
                    description: Some("web\n".to_owned()),
                    digest: Some("0123abcd".to_owned()),
                }),
            }
        );
    }

    #[test]
    fn absent_keys_stay_absent_and_an_unread_config_is_none() {
        let empty = actual_config(&LxcConfig::default());
        assert_eq!(empty, ActualConfig::default());
        let guest = actual_guest(&summary(101, "stopped"), None);
        assert_eq!(guest.config, None);
        assert_eq!(guest.status, GuestStatus::Stopped);
    }

    #[test]
    fn config_update_sets_only_the_changed_keys_in_pve_units() {
        let changes = ConfigChanges {
            cores: Some(4),
            memory: Some(2049),
            swap: None,
            description: Some("web".to_owned()),
            delete: vec![],
        };
        let update = config_update(&changes, Some("d1"));
        let expect: BTreeMap<String, String> =
            [("cores", "4"), ("description", "web"), ("memory", "2049")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(update.set, expect);
        assert!(update.delete.is_empty());
        assert_eq!(update.digest.as_deref(), Some("d1"));

        let delete_only = ConfigChanges {
            delete: vec!["description".to_owned()],
            ..ConfigChanges::default()
        };
        let update = config_update(&delete_only, None);
        assert!(update.set.is_empty());
        assert_eq!(update.delete, ["description"]);
        assert_eq!(update.digest, None);
    }
}
