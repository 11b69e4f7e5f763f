//! fstab editing as pure text: the entry `mount_usb_by_uuid` adds, and the conflicts it refuses.

use crate::PrivilegedError;

/// What `mount_usb_by_uuid` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOutcome {
    /// An fstab entry was added (false: it was already there).
    pub fstab_changed: bool,
    /// The filesystem was already mounted there.
    pub already_mounted: bool,
}

/// Adds `UUID=<uuid> <mountpoint> ...` to fstab text. `None` if that exact entry exists;
/// an error if the UUID or the mountpoint is already used otherwise.
pub fn fstab_with_entry(
    existing: &str,
    uuid: &str,
    mountpoint: &str,
) -> Result<Option<String>, PrivilegedError> {
    let spec = format!("UUID={uuid}");
    for line in existing.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut fields = t.split_whitespace();
        let (Some(src), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        let same_src = src.eq_ignore_ascii_case(&spec);
        let same_target = target == mountpoint;
        match (same_src, same_target) {
            (true, true) => return Ok(None),
            (true, false) => {
                return Err(PrivilegedError::FstabConflict {
                    line: line.to_owned(),
                    reason: "the uuid is already mounted elsewhere",
                })
            }
            (false, true) => {
                return Err(PrivilegedError::FstabConflict {
                    line: line.to_owned(),
                    reason: "the mountpoint is already used by another filesystem",
                })
            }
            (false, false) => {}
        }
    }
    let mut out = existing.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    // nofail + a short device timeout: a missing USB disk must never hold up boot; pass 0:
    // no boot-time fsck of a backup disk.
    out.push_str(&format!(
        "{spec} {mountpoint} auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
    ));
    Ok(Some(out))
}
