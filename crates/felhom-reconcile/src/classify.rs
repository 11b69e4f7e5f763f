//! The classifier: benign or destructive, by provenance and data-bearing-ness — never by verb.
//!
//! Pure, no I/O. Starting, stopping and resizing destroy nothing, so they are benign. Destroying
//! or overwriting a guest's data ([`DestructiveAction`]) is destructive, **unless** the agent
//! itself created that guest: a succeeded `create_guest` op in the agent's own op journal (the
//! scratch guests of restore tests), or a guest created earlier in the same journaled
//! transaction ([`Provenance::with_created`]). Rotating the signer set is always destructive.
//!
//! Provenance comes from the journal only. Never from the hub, and never from a PVE tag or
//! description: anyone with `VM.Config.Options` can write "created by felhom" on any guest.
//!
//! Provenance ends with the guest: a `destroy_guest` or `restore_over` op on that vmid recorded
//! after the creation (in any state but failed — an unknown outcome fails safe) means the vmid
//! may now hold someone else's guest. Journal compaction prunes finished ops by the time they
//! ended, so a creation record always goes before the record that ended it: provenance can
//! lapse (the guest then needs a signature, the safe direction), never come back.

use std::collections::{BTreeMap, BTreeSet};

use felhom_journal::{OpEntry, OpId, OpState};

use crate::destructive::DestructiveAction;
use crate::plan::Action;

/// The op-journal action under which the agent records a guest it created.
pub const CREATE_GUEST_ACTION: &str = "create_guest";

/// Which guests the agent created itself, as its op journal proves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// vmid → the op that created it.
    created: BTreeMap<u32, OpId>,
    /// Created earlier in the transaction being classified (not yet journaled as succeeded).
    in_transaction: BTreeSet<u32>,
}

impl Provenance {
    /// Provenance from the journal's entries, in start order ([`felhom_journal::OpJournal::entries`]).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a OpEntry>) -> Self {
        let mut created = BTreeMap::new();
        for entry in entries {
            let Some(vmid) = entry.vmid else { continue };
            match (entry.action.as_str(), &entry.state) {
                (CREATE_GUEST_ACTION, OpState::Succeeded) => {
                    created.insert(vmid, entry.op_id.clone());
                }
                // A create that failed or is in flight proves nothing.
                (CREATE_GUEST_ACTION, _) => {}
                // Gone (or maybe gone): whatever holds the vmid next is not known to be ours.
                ("destroy_guest" | "restore_over", state)
                    if !matches!(state, OpState::Failed { .. }) =>
                {
                    created.remove(&vmid);
                }
                _ => {}
            }
        }
        Self {
            created,
            in_transaction: BTreeSet::new(),
        }
    }

    /// Adds a guest created earlier in the same journaled transaction.
    pub fn with_created(mut self, vmid: u32) -> Self {
        self.in_transaction.insert(vmid);
        self
    }

    /// The op that created `vmid`, when the agent did.
    pub fn created_by(&self, vmid: u32) -> Option<&OpId> {
        self.created.get(&vmid)
    }

    /// Whether the agent created `vmid` (journal or this transaction).
    pub fn agent_created(&self, vmid: u32) -> bool {
        self.created.contains_key(&vmid) || self.in_transaction.contains(&vmid)
    }
}

/// Why an action is benign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenignWhy {
    /// It destroys and overwrites no data (run state, sizes, description).
    NoDataLoss,
    /// It acts on a guest the agent created itself (journal provenance).
    AgentCreated,
}

/// The classifier's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Allowed unsigned.
    Benign(BenignWhy),
    /// Needs a verified, role-scoped, action-bound operator signature.
    Destructive,
}

impl Class {
    /// `benign` or `destructive`, for the audit.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Benign(_) => "benign",
            Class::Destructive => "destructive",
        }
    }

    /// Whether it needs a signature.
    pub fn is_destructive(&self) -> bool {
        matches!(self, Class::Destructive)
    }
}

/// Classifies a destructive-kind action. Exhaustive: a new action cannot compile unclassified.
pub fn classify_destructive(action: &DestructiveAction, provenance: &Provenance) -> Class {
    match action {
        DestructiveAction::DestroyGuest { vmid }
        | DestructiveAction::Rollback { vmid, .. }
        | DestructiveAction::DeleteSnapshot { vmid, .. }
        | DestructiveAction::RestoreOver { vmid, .. } => {
            if provenance.agent_created(*vmid) {
                Class::Benign(BenignWhy::AgentCreated)
            } else {
                Class::Destructive
            }
        }
        // Who may authorize destruction is never the agent's own business.
        DestructiveAction::RotateSigners { .. } => Class::Destructive,
    }
}

/// Classifies a planned action. Exhaustive, like [`classify_destructive`].
pub fn classify(action: &Action, provenance: &Provenance) -> Class {
    match action {
        Action::SetConfig { .. } | Action::Start { .. } | Action::Stop { .. } => {
            Class::Benign(BenignWhy::NoDataLoss)
        }
        Action::Destroy { vmid } => {
            classify_destructive(&DestructiveAction::DestroyGuest { vmid: *vmid }, provenance)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, vmid: u32, action: &str, state: OpState) -> OpEntry {
        OpEntry {
            op_id: OpId::new(id).unwrap(),
            vmid: Some(vmid),
            action: action.into(),
            idempotency_key: None,
            state,
            at: 1,
        }
    }

    #[test]
    fn only_a_succeeded_agent_creation_not_yet_ended_is_provenance() {
        let entries = [
            entry("1", 9000, CREATE_GUEST_ACTION, OpState::Succeeded),
            entry("2", 9001, CREATE_GUEST_ACTION, OpState::Started),
            entry(
                "3",
                9002,
                CREATE_GUEST_ACTION,
                OpState::Failed { error: "x".into() },
            ),
            entry("4", 9003, CREATE_GUEST_ACTION, OpState::Succeeded),
            entry("5", 9003, "destroy_guest", OpState::Started),
            entry("6", 9004, CREATE_GUEST_ACTION, OpState::Succeeded),
            entry(
                "7",
                9004,
                "destroy_guest",
                OpState::Failed { error: "x".into() },
            ),
            // someone else's op names the vmid: no provenance from a start
            entry("8", 105, "start", OpState::Succeeded),
        ];
        let p = Provenance::from_entries(&entries);
        let destroy = |vmid| classify_destructive(&DestructiveAction::DestroyGuest { vmid }, &p);
        assert_eq!(destroy(9000), Class::Benign(BenignWhy::AgentCreated));
        assert_eq!(destroy(9001), Class::Destructive);
        assert_eq!(destroy(9002), Class::Destructive);
        assert_eq!(destroy(9003), Class::Destructive, "maybe destroyed already");
        assert_eq!(destroy(9004), Class::Benign(BenignWhy::AgentCreated));
        assert_eq!(destroy(105), Class::Destructive);
        let p = p.with_created(105);
        assert!(
            classify_destructive(&DestructiveAction::DestroyGuest { vmid: 105 }, &p)
                .eq(&Class::Benign(BenignWhy::AgentCreated))
        );
        assert_eq!(
            classify_destructive(&DestructiveAction::RotateSigners { signers: vec![] }, &p),
            Class::Destructive
        );
        assert_eq!(
            classify(&Action::Start { vmid: 105 }, &Provenance::default()),
            Class::Benign(BenignWhy::NoDataLoss)
        );
    }
}
