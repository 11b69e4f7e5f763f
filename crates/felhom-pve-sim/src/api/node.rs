//! `GET /version`, `GET /nodes` and `GET /nodes/{node}/status`, shaped like PVE 9.1.

use serde_json::json;
use sha1::{Digest, Sha1};

use super::{ApiResult, Ctx, Reply};
use crate::config::GIB;
use crate::state::Inner;

const KERNEL_RELEASE: &str = "6.14.11-4-pve";
const KERNEL_VERSION: &str = "#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4 (2025-10-10T08:04Z)";

/// The git revision `pveversion` prints after the version.
fn repoid(version: &str) -> String {
    if version == crate::config::DEFAULT_PVE_VERSION {
        // the revision of the real 9.1.2 build
        return "9d436f37a0ac4172".to_string();
    }
    hex::encode(Sha1::digest(version.as_bytes()))[..16].to_string()
}

/// Memory the host uses: a base plus a quarter of each running guest's limit.
pub(crate) fn host_memory_used(inner: &Inner) -> u64 {
    2 * GIB
        + inner
            .guests
            .values()
            .filter(|g| g.running)
            .map(|g| super::lxc::guest_maxmem(g) / 4)
            .sum::<u64>()
}

fn host_cpu(inner: &Inner) -> f64 {
    let running = inner.guests.values().filter(|g| g.running).count() as f64;
    (0.0123 + running * 0.004).min(1.0)
}

/// Root filesystem figures of the host.
fn rootfs() -> (u64, u64) {
    (100 * GIB, 12 * GIB)
}

pub(super) fn version(ctx: &mut Ctx<'_>) -> ApiResult {
    let v = &ctx.inner.pve_version;
    let release: String = v.split(['.', '-']).take(2).collect::<Vec<_>>().join(".");
    Ok(Reply::data(json!({
        "version": v,
        "release": release,
        "repoid": repoid(v),
    })))
}

pub(super) fn nodes(ctx: &mut Ctx<'_>) -> ApiResult {
    let inner = &*ctx.inner;
    let node = &inner.node;
    let mut entry = json!({
        "node": node,
        "id": format!("node/{node}"),
        "type": "node",
        "status": "online",
        "level": "",
        "ssl_fingerprint": inner.fingerprint,
    });
    // extract_node_stats leaves the figures out for callers without Sys.Audit on the node
    if ctx.allowed(&format!("/nodes/{node}"), &["Sys.Audit"]) {
        let (disk_total, disk_used) = rootfs();
        let obj = entry.as_object_mut().expect("entry is an object");
        obj.insert("uptime".into(), json!(inner.uptime()));
        obj.insert("cpu".into(), json!(host_cpu(inner)));
        obj.insert("maxcpu".into(), json!(inner.cpus));
        obj.insert("mem".into(), json!(host_memory_used(inner)));
        obj.insert("maxmem".into(), json!(inner.memory_total));
        obj.insert("disk".into(), json!(disk_used));
        obj.insert("maxdisk".into(), json!(disk_total));
    }
    Ok(Reply::data(json!([entry])))
}

pub(super) fn status(ctx: &mut Ctx<'_>) -> ApiResult {
    let inner = &*ctx.inner;
    let total = inner.memory_total;
    let used = host_memory_used(inner).min(total);
    let (rootfs_total, rootfs_used) = rootfs();
    let cpus = inner.cpus.max(1);
    Ok(Reply::data(json!({
        "uptime": inner.uptime(),
        "idle": 0,
        "wait": 0.000_412,
        "cpu": host_cpu(inner),
        // read_loadavg returns regex captures: strings, always
        "loadavg": ["0.16", "0.10", "0.02"],
        "kversion": format!("Linux {KERNEL_RELEASE} {KERNEL_VERSION}"),
        "current-kernel": {
            "sysname": "Linux",
            "release": KERNEL_RELEASE,
            "version": KERNEL_VERSION,
            "machine": "x86_64",
        },
        "boot-info": { "mode": "efi", "secureboot": 0 },
        "cpuinfo": {
            "model": "Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz",
            "sockets": 1,
            "cores": (cpus / 2).max(1),
            "cpus": cpus,
            "mhz": "2895.985",
            "hvm": "1",
            "user_hz": 100,
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush \
                      mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc vmx",
        },
        "memory": {
            "total": total,
            "used": used,
            "free": total - used,
            "available": total - used,
        },
        "swap": { "total": 8 * GIB, "used": 0, "free": 8 * GIB },
        "ksm": { "shared": 0 },
        "rootfs": {
            "total": rootfs_total,
            "used": rootfs_used,
            "avail": rootfs_total - rootfs_used,
            "free": rootfs_total - rootfs_used,
        },
        "pveversion": format!("pve-manager/{}/{}", inner.pve_version, repoid(&inner.pve_version)),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repoids_look_like_git_revisions() {
        assert_eq!(repoid("9.1.2"), "9d436f37a0ac4172");
        let r = repoid("8.4.14");
        assert_eq!(r.len(), 16);
        assert!(r.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
