//! Property: random destructive actions × random signed ops (valid, mutated, mis-bound, wrong
//! role, unknown key, wrong namespace, expired, wrong host, replayed) → the gate allows exactly
//! the attempts a model of "matching valid signature, fresh nonce" allows, so no destructive
//! action ever runs without one.
//!
//! Default: 64 cases per run. The large run (documented in the crate README):
//! `PROPTEST_CASES=10000 cargo test --release -p felhom-reconcile gate_props`.

use std::collections::HashSet;
use std::sync::Arc;

use felhom_authz::{MemoryNonceStore, Role, NAMESPACE};
use felhom_reconcile::{DestructiveAction, MemoryAudit, ReversibilityGate, SignedOp, SignerSpec};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::signing::*;

fn actions() -> Vec<DestructiveAction> {
    vec![
        DestructiveAction::DestroyGuest { vmid: 100 },
        DestructiveAction::DestroyGuest { vmid: 101 },
        DestructiveAction::Rollback {
            vmid: 101,
            snapname: "a".into(),
            start: false,
        },
        DestructiveAction::Rollback {
            vmid: 101,
            snapname: "a".into(),
            start: true,
        },
        DestructiveAction::DeleteSnapshot {
            vmid: 101,
            snapname: "a".into(),
        },
        DestructiveAction::RestoreOver {
            vmid: 100,
            archive: "local:backup/x.tar.zst".into(),
            storage: "local-lvm".into(),
        },
        DestructiveAction::RotateSigners {
            signers: vec![SignerSpec {
                key_id: "ops-anna".into(),
                role: Role::Operational,
                public_key: line(ANNA),
            }],
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    None,
    FlipByte(usize),
    Namespace,
    Expired,
    WrongHost,
    Unsigned,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::None),
        1 => any::<usize>().prop_map(Mutation::FlipByte),
        1 => Just(Mutation::Namespace),
        1 => Just(Mutation::Expired),
        1 => Just(Mutation::WrongHost),
        1 => Just(Mutation::Unsigned),
    ]
}

/// One attempt: the action about to run, and the signed op presented for it.
#[derive(Debug, Clone)]
struct Attempt {
    action: usize,
    signed_for: usize,
    seed: u8,
    nonce: u8,
    mutation: Mutation,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let n = actions().len();
    (
        0..n,
        prop_oneof![3 => Just(None), 2 => (0..n).prop_map(Some)],
        prop_oneof![Just(ANNA), Just(RECOVERY), Just(STRANGER)],
        0u8..4,
        mutation(),
    )
        .prop_map(|(action, other, seed, nonce, mutation)| Attempt {
            action,
            signed_for: other.unwrap_or(action),
            seed,
            nonce,
            mutation,
        })
}

fn present(a: &Attempt, all: &[DestructiveAction]) -> SignedOp {
    let target = &all[a.signed_for];
    let nonce = format!("nonce-{}", a.nonce);
    let params: Value = target.params();
    let mut b = blob_with(
        target.wire_name(),
        target.guest_id(),
        params,
        &nonce,
        |v| match a.mutation {
            Mutation::Expired => {
                v["not_before"] = json!("2026-06-01T09:00:00Z");
                v["not_after"] = json!("2026-06-01T09:10:00Z");
            }
            Mutation::WrongHost => v["host_id"] = json!("pve-02"),
            _ => {}
        },
    );
    let ns = if a.mutation == Mutation::Namespace {
        "file"
    } else {
        NAMESPACE
    };
    let signature = match a.mutation {
        Mutation::Unsigned => Vec::new(),
        _ => sign_ns(a.seed, ns, &b),
    };
    if let Mutation::FlipByte(i) = a.mutation {
        let i = i % b.len();
        b[i] ^= 0x01;
    }
    SignedOp { blob: b, signature }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn gate_props_no_destructive_execution_without_a_matching_valid_signature(
        attempts in proptest::collection::vec(attempt(), 1..8)
    ) {
        let all = actions();
        let audit = Arc::new(MemoryAudit::new());
        let gate = ReversibilityGate::new(
            signers(),
            Arc::new(MemoryNonceStore::new()),
            HOST_ID,
            None,
            audit.clone(),
        )
        .with_clock(|| CLOCK);
        let mut used: HashSet<u8> = HashSet::new();
        let mut executed = 0;
        for a in &attempts {
            let op = present(a, &all);
            let action = &all[a.action];
            let verdict = gate.decide_destructive(action, Some(&op), UNIX_NOW);
            let role_allows = match a.seed {
                s if s == ANNA => true,
                s if s == RECOVERY => action.op() == felhom_authz::Op::RotateSigners,
                _ => false,
            };
            let valid = a.mutation == Mutation::None
                && a.seed != STRANGER
                && role_allows
                && a.signed_for == a.action
                && !used.contains(&a.nonce);
            prop_assert_eq!(verdict.is_ok(), valid, "{:?} → {:?}", a, verdict);
            if verdict.is_ok() {
                used.insert(a.nonce);
                executed += 1;
            }
        }
        // every decision audited, allows included
        prop_assert_eq!(audit.entries().len(), attempts.len());
        prop_assert_eq!(
            audit.entries().iter().filter(|e| e.decision == "allowed").count(),
            executed
        );
    }
}
