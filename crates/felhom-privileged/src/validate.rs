//! Argument validation: everything that reaches a command line passes one of these.

use crate::PrivilegedError;

fn bad(what: &'static str, value: &str, reason: &'static str) -> PrivilegedError {
    PrivilegedError::InvalidArgument {
        what,
        value: value.to_owned(),
        reason,
    }
}

/// A guest id, 100..=999999999.
pub fn vmid(vmid: u32) -> Result<String, PrivilegedError> {
    if let Ok(vmid) = felhom_types::Vmid::try_from(vmid) {
        Ok(vmid.to_string())
    } else {
        Err(bad(
            "vmid",
            &vmid.to_string(),
            "must be within 100..=999999999",
        ))
    }
}

/// A filesystem UUID: RFC 4122 form (ext4, xfs, btrfs), FAT/exFAT `XXXX-XXXX`, or NTFS's 16
/// hex digits. Returned as given (PVE and `blkid` print lowercase for ext4, uppercase for FAT).
pub fn fs_uuid(uuid: &str) -> Result<String, PrivilegedError> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()));
    let shape = matches!(lens.as_slice(), [8, 4, 4, 4, 12] | [4, 4] | [16]);
    if hex && shape {
        Ok(uuid.to_owned())
    } else {
        Err(bad(
            "filesystem uuid",
            uuid,
            "must be 8-4-4-4-12 hex, XXXX-XXXX (FAT) or 16 hex digits (NTFS)",
        ))
    }
}

/// A whole-disk device: `/dev/sdX`, `/dev/nvmeNnM`, or `/dev/disk/by-id/<name>`.
pub fn device(dev: &str) -> Result<String, PrivilegedError> {
    let ok = if let Some(letters) = dev.strip_prefix("/dev/sd") {
        !letters.is_empty() && letters.len() <= 3 && letters.bytes().all(|b| b.is_ascii_lowercase())
    } else if let Some(rest) = dev.strip_prefix("/dev/nvme") {
        match rest.split_once('n') {
            Some((ctrl, ns)) => {
                !ctrl.is_empty()
                    && !ns.is_empty()
                    && ctrl.bytes().all(|b| b.is_ascii_digit())
                    && ns.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        }
    } else if let Some(name) = dev.strip_prefix("/dev/disk/by-id/") {
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+'))
    } else {
        false
    };
    if ok && !dev.contains("..") {
        Ok(dev.to_owned())
    } else {
        Err(bad(
            "device",
            dev,
            "must be /dev/sdX, /dev/nvmeNnM or /dev/disk/by-id/<name>",
        ))
    }
}

/// A mountpoint under `/mnt/`: plain path components only (no `..`, no spaces, which fstab
/// would need escaped).
pub fn mountpoint(mp: &str) -> Result<String, PrivilegedError> {
    let rest = mp.strip_prefix("/mnt/").unwrap_or("");
    let ok = !rest.is_empty()
        && mp.len() <= 255
        && rest.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.starts_with('-')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(mp.to_owned())
    } else {
        Err(bad(
            "mountpoint",
            mp,
            "must be /mnt/<name>[/<name>...] with letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A DNS hostname: labels of `[a-z0-9-]`, not starting or ending with `-`, at most 253.
pub fn hostname(h: &str) -> Result<String, PrivilegedError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(h.to_owned())
    } else {
        Err(bad("hostname", h, "must be a dns name"))
    }
}

/// A PVE storage id: `[a-z][a-z0-9-_.]*[a-z0-9]`.
pub fn storage(s: &str) -> Result<String, PrivilegedError> {
    let b = s.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad("storage", s, "must be a pve storage id"))
    }
}

/// A container template as a volume id: `<storage>:vztmpl/<file>.tar.{gz,xz,zst}`.
pub fn template(volid: &str) -> Result<String, PrivilegedError> {
    let reason = "must be <storage>:vztmpl/<file>.tar.gz|.tar.xz|.tar.zst";
    let (storage, file) = volid
        .split_once(":vztmpl/")
        .ok_or_else(|| bad("template", volid, reason))?;
    let file_ok = !file.starts_with(['-', '.'])
        && !file.contains("..")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
        && [".tar.gz", ".tar.xz", ".tar.zst"]
            .iter()
            .any(|ext| file.ends_with(ext));
    if storage_ok(storage) && file_ok {
        Ok(volid.to_owned())
    } else {
        Err(bad("template", volid, reason))
    }
}

fn storage_ok(s: &str) -> bool {
    storage(s).is_ok()
}

/// A Linux bridge name such as `vmbr0`.
pub fn bridge(b: &str) -> Result<String, PrivilegedError> {
    let bytes = b.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 15
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(b.to_owned())
    } else {
        Err(bad("bridge", b, "must be an interface name such as vmbr0"))
    }
}

/// A number within `range`.
pub fn within(
    what: &'static str,
    n: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<String, PrivilegedError> {
    if range.contains(&n) {
        Ok(n.to_string())
    } else {
        Err(bad(what, &n.to_string(), "is out of range"))
    }
}
