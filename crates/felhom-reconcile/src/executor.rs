//! The destructive executor: sends an allowed destructive action to Proxmox. Injected into the
//! signed-job runner (the real one is [`PveExecutor`] over [`ProxmoxApi`]), so the runner's
//! journal and crash handling are tested against the simulator and its faults.
//!
//! It only ever runs behind the gate, inside a queue job, with the op journaled `started`.

use std::future::Future;
use std::sync::Arc;

use felhom_proxmox::{wait_task, GuestStatus, ProxmoxApi, ProxmoxError, Upid, WaitOptions};

use crate::destructive::DestructiveAction;

/// Why an action was not (fully) executed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// Proxmox refused or failed a request, or its task failed.
    #[error(transparent)]
    Proxmox(#[from] ProxmoxError),
    /// The action is not a Proxmox request (`rotate_signers` is the agent's own state).
    #[error("{0} is not executed by the proxmox executor")]
    NotProxmox(&'static str),
}

/// Sends destructive actions.
pub trait DestructiveExecutor: Send + Sync + 'static {
    /// Sends the action's request and returns the task PVE runs it as. Preparatory steps
    /// (stopping a running guest before destroying it) are waited on here; the returned task
    /// is the one that destroys or overwrites data.
    fn send(
        &self,
        action: &DestructiveAction,
    ) -> impl Future<Output = Result<Upid, ExecError>> + Send;

    /// Waits for `upid` to end; its warnings when it succeeded.
    fn wait(&self, upid: &Upid) -> impl Future<Output = Result<Vec<String>, ProxmoxError>> + Send;
}

/// The real executor over a Proxmox client.
#[derive(Debug)]
pub struct PveExecutor<A> {
    api: Arc<A>,
    wait: WaitOptions,
}

impl<A: ProxmoxApi + 'static> PveExecutor<A> {
    /// An executor acting on `api`, waiting on tasks with `wait`.
    pub fn new(api: Arc<A>, wait: WaitOptions) -> Self {
        Self { api, wait }
    }

    /// The client.
    pub fn api(&self) -> &Arc<A> {
        &self.api
    }
}

impl<A: ProxmoxApi + 'static> DestructiveExecutor for PveExecutor<A> {
    async fn send(&self, action: &DestructiveAction) -> Result<Upid, ExecError> {
        let api = &*self.api;
        let upid = match action {
            DestructiveAction::DestroyGuest { vmid } => {
                // PVE refuses to destroy a running CT; stopping loses nothing the destroy
                // would not.
                if api.guest_status(*vmid).await?.status == GuestStatus::Running {
                    let stop = api.stop(*vmid).await?;
                    wait_task(api, &stop, &self.wait).await?;
                }
                api.destroy_guest(*vmid).await?
            }
            DestructiveAction::Rollback {
                vmid,
                snapname,
                start,
            } => api.rollback(*vmid, snapname, *start).await?,
            DestructiveAction::DeleteSnapshot { vmid, snapname } => {
                api.delete_snapshot(*vmid, snapname).await?
            }
            DestructiveAction::RestoreOver {
                vmid,
                archive,
                storage,
            } => api.restore_over(*vmid, archive, storage).await?,
            DestructiveAction::RotateSigners { .. } => {
                return Err(ExecError::NotProxmox("rotate_signers"))
            }
        };
        Ok(upid)
    }

    async fn wait(&self, upid: &Upid) -> Result<Vec<String>, ProxmoxError> {
        wait_task(&*self.api, upid, &self.wait)
            .await
            .map(|done| done.warnings)
    }
}
