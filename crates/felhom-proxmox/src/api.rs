//! `ProxmoxApi`: what the agent needs of PVE, as a trait, plus the request and outcome types of
//! its mutations. `PveClient` implements it over HTTPS; tests and the engine can use a fake
//! that overrides only what it needs (every method has a default answering
//! [`ProxmoxError::Unsupported`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::error::ProxmoxError;
use crate::types::{
    GuestSummary, LxcConfig, NodeInfo, NodeStatus, Permissions, Snapshot, StorageContent,
    StorageInfo, TaskFilter, TaskList, TaskLog, TaskStatus, Version,
};
use crate::upid::Upid;

/// Restore a backup archive into a container: `POST /nodes/{node}/lxc` with `restore=1`, the
/// primary create path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreRequest {
    /// Target guest id (100..=999999999).
    pub vmid: u32,
    /// Backup volume id, e.g. `local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst`.
    pub archive: String,
    /// Storage for the restored volumes (PVE's default: `local`).
    pub storage: Option<String>,
    /// Overwrite an existing container with this vmid (`force=1`): destroys its data.
    pub force: bool,
    /// Assign fresh MAC addresses (`unique=1`).
    pub unique: bool,
    /// Start the container once restored.
    pub start: bool,
    /// Further create parameters (e.g. `hostname`, `rootfs`, `unprivileged`), raw PVE values.
    pub extra: BTreeMap<String, String>,
}

/// vzdump mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VzdumpMode {
    /// Live snapshot (PVE's default).
    #[default]
    Snapshot,
    /// Suspend during the copy.
    Suspend,
    /// Stop the guest during the backup.
    Stop,
}

impl VzdumpMode {
    /// PVE's parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            VzdumpMode::Snapshot => "snapshot",
            VzdumpMode::Suspend => "suspend",
            VzdumpMode::Stop => "stop",
        }
    }
}

/// vzdump compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VzdumpCompress {
    /// No compression (`0`).
    None,
    /// gzip.
    Gzip,
    /// lzo.
    Lzo,
    /// zstd.
    #[default]
    Zstd,
}

impl VzdumpCompress {
    /// PVE's parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            VzdumpCompress::None => "0",
            VzdumpCompress::Gzip => "gzip",
            VzdumpCompress::Lzo => "lzo",
            VzdumpCompress::Zstd => "zstd",
        }
    }
}

/// Back up one guest: `POST /nodes/{node}/vzdump`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VzdumpRequest {
    /// Guest to back up.
    pub vmid: u32,
    /// Target storage.
    pub storage: String,
    /// Backup mode.
    pub mode: VzdumpMode,
    /// Compression.
    pub compress: VzdumpCompress,
    /// Notes template (`notes-template`; may use `{{guestname}}` etc.).
    pub notes: Option<String>,
    /// Mark the backup protected.
    pub protected: bool,
}

/// What `POST /vzdump` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VzdumpOutcome {
    /// A backup task to wait on.
    Task(Upid),
    /// PVE answered the literal `"OK"`: nothing ran on this node because every requested guest
    /// lives on another cluster node. No backup was made. (A vmid that exists nowhere, e.g. a
    /// guest just destroyed, is not this: PVE runs a task that fails with `job errors`.)
    NothingRan,
}

/// A config change: `PUT /nodes/{node}/lxc/{vmid}/config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigUpdate {
    /// Keys to set, with PVE's raw values (booleans as `0`/`1`, memory in MiB).
    pub set: BTreeMap<String, String>,
    /// Keys to delete.
    pub delete: Vec<String>,
    /// Apply only if the config still has this digest (from `guest_config`); a mismatch fails
    /// with a 500 "detected modified configuration".
    pub digest: Option<String>,
}

/// What `PUT .../config` answered. PVE applies LXC config changes synchronously today, but
/// the API may hand back a task: both are success, never an empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetConfigOutcome {
    /// `data: null`: applied synchronously.
    Applied,
    /// A task that applies the change; wait on it.
    Task(Upid),
}

macro_rules! unsupported {
    ($op:literal) => {
        async { Err(ProxmoxError::Unsupported { operation: $op }) }
    };
}

/// What the agent needs of the Proxmox VE API on its own node.
///
/// Mutations return once PVE has accepted them: a returned [`Upid`] is a task still running
/// server-side (see `wait_task`). Dropping a returned future does not undo anything PVE
/// already started.
pub trait ProxmoxApi: Send + Sync {
    /// The node this client manages.
    fn node(&self) -> &str;

    /// `GET /version`.
    fn version(&self) -> impl Future<Output = Result<Version, ProxmoxError>> + Send {
        unsupported!("version")
    }
    /// `GET /nodes`.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeInfo>, ProxmoxError>> + Send {
        unsupported!("nodes")
    }
    /// `GET /nodes/{node}/status`.
    fn node_status(&self) -> impl Future<Output = Result<NodeStatus, ProxmoxError>> + Send {
        unsupported!("node_status")
    }
    /// `GET /nodes/{node}/lxc`. Silently omits guests the token may not `VM.Audit`.
    fn list_lxc(&self) -> impl Future<Output = Result<Vec<GuestSummary>, ProxmoxError>> + Send {
        unsupported!("list_lxc")
    }
    /// `GET /nodes/{node}/lxc/{vmid}/status/current`.
    fn guest_status(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<GuestSummary, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("guest_status")
    }
    /// `GET /nodes/{node}/lxc/{vmid}/config` (pending values merged in, as PVE's default).
    fn guest_config(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<LxcConfig, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("guest_config")
    }
    /// `GET /storage` (cluster storage config). Silently omits storages the token may not see.
    fn list_storage(&self) -> impl Future<Output = Result<Vec<StorageInfo>, ProxmoxError>> + Send {
        unsupported!("list_storage")
    }
    /// `GET /nodes/{node}/storage` (status and usage).
    fn node_storage(&self) -> impl Future<Output = Result<Vec<StorageInfo>, ProxmoxError>> + Send {
        unsupported!("node_storage")
    }
    /// `GET /nodes/{node}/storage/{storage}/content`, optionally filtered by content type and
    /// owning guest.
    fn storage_content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> impl Future<Output = Result<Vec<StorageContent>, ProxmoxError>> + Send {
        let _ = (storage, content, vmid);
        unsupported!("storage_content")
    }
    /// `GET /nodes/{upid.node}/tasks/{upid}/status`: one read, no waiting.
    fn task_status(
        &self,
        upid: &Upid,
    ) -> impl Future<Output = Result<TaskStatus, ProxmoxError>> + Send {
        let _ = upid;
        unsupported!("task_status")
    }
    /// `GET /nodes/{upid.node}/tasks/{upid}/log?start=&limit=`: `start` is a 0-based line
    /// offset, `limit` 0 means to the end.
    fn task_log(
        &self,
        upid: &Upid,
        start: u64,
        limit: u64,
    ) -> impl Future<Output = Result<TaskLog, ProxmoxError>> + Send {
        let _ = (upid, start, limit);
        unsupported!("task_log")
    }
    /// Who this client acts as, as a UPID names it (`user@realm!token`), so a task it
    /// started can be told from one someone else started; `None` when it cannot tell.
    fn caller(&self) -> Option<&str> {
        None
    }

    /// `GET /nodes/{node}/tasks` with `filter`: the tasks this token may see (its own; every
    /// task of the node with `Sys.Audit` on `/nodes/{node}`), newest first, and `total`.
    fn list_tasks(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<TaskList, ProxmoxError>> + Send {
        let _ = filter;
        unsupported!("list_tasks")
    }
    /// `GET /access/permissions`: what this token may do.
    fn permissions(&self) -> impl Future<Output = Result<Permissions, ProxmoxError>> + Send {
        unsupported!("permissions")
    }
    /// `GET /nodes/{node}/lxc/{vmid}/snapshot`.
    fn list_snapshots(
        &self,
        vmid: u32,
    ) -> impl Future<Output = Result<Vec<Snapshot>, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("list_snapshots")
    }
    /// `POST /nodes/{node}/lxc` with `restore=1`.
    fn restore_lxc(
        &self,
        req: &RestoreRequest,
    ) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = req;
        unsupported!("restore_lxc")
    }
    /// `POST /nodes/{node}/vzdump`.
    fn vzdump(
        &self,
        req: &VzdumpRequest,
    ) -> impl Future<Output = Result<VzdumpOutcome, ProxmoxError>> + Send {
        let _ = req;
        unsupported!("vzdump")
    }
    /// `POST /nodes/{node}/lxc/{vmid}/snapshot`.
    fn snapshot(
        &self,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = (vmid, name, description);
        unsupported!("snapshot")
    }
    /// `POST /nodes/{node}/lxc/{vmid}/snapshot/{name}/rollback`, with `start=1` when `start`:
    /// PVE stops a running CT to roll back and starts it again only if asked. Destroys the
    /// changes since the snapshot. Needs `VM.Snapshot` or `VM.Snapshot.Rollback`.
    fn rollback(
        &self,
        vmid: u32,
        name: &str,
        start: bool,
    ) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = (vmid, name, start);
        unsupported!("rollback")
    }
    /// `DELETE /nodes/{node}/lxc/{vmid}` with `purge=1` and `destroy-unreferenced-disks=1`:
    /// the guest, its disks and its jobs/ACL entries are gone. PVE refuses a running CT
    /// (`unable to destroy CT N - container is running`), so stop it first. Needs
    /// `VM.Allocate` on `/vms/{vmid}`.
    fn destroy_guest(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("destroy_guest")
    }
    /// `POST /nodes/{node}/lxc` with `restore=1`, `force=1`: replace an existing (stopped)
    /// guest's disks and config with `archive`'s, volumes on `storage`. Needs `VM.Backup` (or
    /// `VM.Allocate`) on `/vms/{vmid}` and `Datastore.AllocateSpace` on the storage.
    fn restore_over(
        &self,
        vmid: u32,
        archive: &str,
        storage: &str,
    ) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = (vmid, archive, storage);
        unsupported!("restore_over")
    }
    /// `DELETE /nodes/{node}/lxc/{vmid}/snapshot/{name}`.
    fn delete_snapshot(
        &self,
        vmid: u32,
        name: &str,
    ) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = (vmid, name);
        unsupported!("delete_snapshot")
    }
    /// `POST /nodes/{node}/lxc/{vmid}/status/start`. PVE answers 500 if already running.
    fn start(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("start")
    }
    /// `POST /nodes/{node}/lxc/{vmid}/status/stop`. PVE answers 500 if not running.
    fn stop(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send {
        let _ = vmid;
        unsupported!("stop")
    }
    /// `PUT /nodes/{node}/lxc/{vmid}/config`.
    fn set_config(
        &self,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> impl Future<Output = Result<SetConfigOutcome, ProxmoxError>> + Send {
        let _ = (vmid, update);
        unsupported!("set_config")
    }
}

/// Forwards every method to `$target`, so shared handles are APIs too.
macro_rules! forward_api {
    ($($generics:tt)*) => {
        impl<T: ProxmoxApi + ?Sized> ProxmoxApi for $($generics)* {
            fn node(&self) -> &str { (**self).node() }
            fn version(&self) -> impl Future<Output = Result<Version, ProxmoxError>> + Send { (**self).version() }
            fn nodes(&self) -> impl Future<Output = Result<Vec<NodeInfo>, ProxmoxError>> + Send { (**self).nodes() }
            fn node_status(&self) -> impl Future<Output = Result<NodeStatus, ProxmoxError>> + Send { (**self).node_status() }
            fn list_lxc(&self) -> impl Future<Output = Result<Vec<GuestSummary>, ProxmoxError>> + Send { (**self).list_lxc() }
            fn guest_status(&self, vmid: u32) -> impl Future<Output = Result<GuestSummary, ProxmoxError>> + Send { (**self).guest_status(vmid) }
            fn guest_config(&self, vmid: u32) -> impl Future<Output = Result<LxcConfig, ProxmoxError>> + Send { (**self).guest_config(vmid) }
            fn list_storage(&self) -> impl Future<Output = Result<Vec<StorageInfo>, ProxmoxError>> + Send { (**self).list_storage() }
            fn node_storage(&self) -> impl Future<Output = Result<Vec<StorageInfo>, ProxmoxError>> + Send { (**self).node_storage() }
            fn storage_content(&self, storage: &str, content: Option<&str>, vmid: Option<u32>) -> impl Future<Output = Result<Vec<StorageContent>, ProxmoxError>> + Send { (**self).storage_content(storage, content, vmid) }
            fn task_status(&self, upid: &Upid) -> impl Future<Output = Result<TaskStatus, ProxmoxError>> + Send { (**self).task_status(upid) }
            fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> impl Future<Output = Result<TaskLog, ProxmoxError>> + Send { (**self).task_log(upid, start, limit) }
            fn caller(&self) -> Option<&str> { (**self).caller() }
            fn list_tasks(&self, filter: &TaskFilter) -> impl Future<Output = Result<TaskList, ProxmoxError>> + Send { (**self).list_tasks(filter) }
            fn permissions(&self) -> impl Future<Output = Result<Permissions, ProxmoxError>> + Send { (**self).permissions() }
            fn list_snapshots(&self, vmid: u32) -> impl Future<Output = Result<Vec<Snapshot>, ProxmoxError>> + Send { (**self).list_snapshots(vmid) }
            fn restore_lxc(&self, req: &RestoreRequest) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).restore_lxc(req) }
            fn vzdump(&self, req: &VzdumpRequest) -> impl Future<Output = Result<VzdumpOutcome, ProxmoxError>> + Send { (**self).vzdump(req) }
            fn snapshot(&self, vmid: u32, name: &str, description: Option<&str>) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).snapshot(vmid, name, description) }
            fn rollback(&self, vmid: u32, name: &str, start: bool) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).rollback(vmid, name, start) }
            fn destroy_guest(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).destroy_guest(vmid) }
            fn restore_over(&self, vmid: u32, archive: &str, storage: &str) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).restore_over(vmid, archive, storage) }
            fn delete_snapshot(&self, vmid: u32, name: &str) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).delete_snapshot(vmid, name) }
            fn start(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).start(vmid) }
            fn stop(&self, vmid: u32) -> impl Future<Output = Result<Upid, ProxmoxError>> + Send { (**self).stop(vmid) }
            fn set_config(&self, vmid: u32, update: &ConfigUpdate) -> impl Future<Output = Result<SetConfigOutcome, ProxmoxError>> + Send { (**self).set_config(vmid, update) }
        }
    };
}

forward_api!(&T);
forward_api!(Arc<T>);

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake that only knows its node: every operation reports itself unsupported.
    struct Bare;
    impl ProxmoxApi for Bare {
        fn node(&self) -> &str {
            "pve"
        }
    }

    #[tokio::test]
    async fn defaults_name_the_operation_and_handles_forward() {
        let err = Bare.start(100).await.unwrap_err();
        assert!(matches!(
            err,
            ProxmoxError::Unsupported { operation: "start" }
        ));
        assert!(err.never_sent());
        let shared = Arc::new(Bare);
        assert_eq!(shared.node(), "pve");
        let by_ref = &*shared;
        assert!(matches!(
            ProxmoxApi::set_config(&by_ref, 100, &ConfigUpdate::default()).await,
            Err(ProxmoxError::Unsupported {
                operation: "set_config"
            })
        ));
        assert!(matches!(
            shared.vzdump(&VzdumpRequest::default()).await,
            Err(ProxmoxError::Unsupported {
                operation: "vzdump"
            })
        ));
    }

    #[test]
    fn parameter_values() {
        assert_eq!(VzdumpMode::default().as_str(), "snapshot");
        assert_eq!(VzdumpMode::Stop.as_str(), "stop");
        assert_eq!(VzdumpCompress::None.as_str(), "0");
        assert_eq!(VzdumpCompress::default().as_str(), "zstd");
    }
}
