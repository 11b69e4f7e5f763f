//! The pure planner: desired × actual → the minimal benign actions, and what it skipped, why.
//!
//! No I/O, no clock: the engine reads PVE, maps its answers to [`ActualGuest`], calls [`plan`],
//! and dispatches the [`Action`]s through the queue. [`apply`] simulates the actions' effect as
//! PVE would show it on the next read (including the description newline quirk), so tests can
//! prove a plan converges in one pass.
//!
//! Deliberately out of scope here: creating a desired guest that is not on the host
//! (provisioning), removing a guest that is not desired (destructive, needs a signature), and
//! disk size (`disk_bytes` is ignored: growing a volume is a different operation with its own
//! privileges and shrinking is impossible).

use std::collections::HashMap;
use std::fmt;

use crate::desired::{DesiredGuest, DesiredState, GuestSpec, RunState};
use crate::normalize::{pve_description_roundtrip, NormalizerRegistry, Value, MIB};

/// A guest's run status as read from PVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestStatus {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Could not be read or is neither (e.g. mid-transition): no run-state action is planned.
    Unknown,
}

/// The fields of a guest's PVE config the plan compares, in PVE's units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualConfig {
    /// `cores`; `None` when the key is absent (PVE: all host cores).
    pub cores: Option<u32>,
    /// `memory` in MiB; `None` when absent.
    pub memory_mib: Option<u64>,
    /// `swap` in MiB; `None` when absent.
    pub swap_mib: Option<u64>,
    /// `description` as read (PVE appends a newline); `None` when absent.
    pub description: Option<String>,
    /// `digest` of the config file, passed back on write so a concurrent edit is refused.
    pub digest: Option<String>,
}

/// One guest as read from PVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualGuest {
    /// The vmid.
    pub vmid: u32,
    /// Its run status.
    pub status: GuestStatus,
    /// Its config; `None` when it could not be read (then it is never written).
    pub config: Option<ActualConfig>,
}

/// The config fields to write, in PVE's key names and units; only fields that differ are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// `cores`.
    pub cores: Option<u32>,
    /// `memory`, in MiB.
    pub memory: Option<u64>,
    /// `swap`, in MiB.
    pub swap: Option<u64>,
    /// `description`, as the operator wrote it (PVE applies its own round trip).
    pub description: Option<String>,
    /// Keys to delete (PVE's `delete` list), e.g. `description` when desired empty.
    pub delete: Vec<String>,
}

impl ConfigChanges {
    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.cores.is_none()
            && self.memory.is_none()
            && self.swap.is_none()
            && self.description.is_none()
            && self.delete.is_empty()
    }
}

/// One benign mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// PUT the changed config fields.
    SetConfig {
        /// The guest.
        vmid: u32,
        /// What to write.
        changes: ConfigChanges,
        /// The digest of the config these changes were planned against.
        digest: Option<String>,
    },
    /// Start the guest.
    Start {
        /// The guest.
        vmid: u32,
    },
    /// Stop the guest.
    Stop {
        /// The guest.
        vmid: u32,
    },
    /// Destroy the guest (desired `present: false`). Destructive: the gate holds it pending a
    /// signature unless the agent created the guest itself.
    Destroy {
        /// The guest.
        vmid: u32,
    },
}

impl Action {
    /// The guest acted on.
    pub fn vmid(&self) -> u32 {
        match self {
            Self::SetConfig { vmid, .. }
            | Self::Start { vmid }
            | Self::Stop { vmid }
            | Self::Destroy { vmid } => *vmid,
        }
    }
}

/// Why a guest (or part of one) was left alone this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SkipReason {
    /// Desired but not on this host: provisioning is not automated yet.
    NotOnHost,
    /// On this host but not desired: removal is destructive and needs a signed op.
    NotDesired,
    /// Config fields are desired but the config could not be read: never written blind.
    ConfigUnreadable,
    /// A run state is desired but the status is unknown.
    StatusUnknown,
    /// The actual list names this vmid more than once: nothing is planned for it.
    DuplicateActual,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotOnHost => "desired but not on this host (provisioning is not automated)",
            Self::NotDesired => "on this host but not desired (removal needs a signed op)",
            Self::ConfigUnreadable => "config could not be read, so it is not written",
            Self::StatusUnknown => "run status unknown, so it is not started or stopped",
            Self::DuplicateActual => "listed more than once by the host, so it is left alone",
        })
    }
}

/// A guest left alone, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// The guest.
    pub vmid: u32,
    /// Why.
    pub reason: SkipReason,
}

/// What one pass should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In vmid order; for one guest, config before run state.
    pub actions: Vec<Action>,
    /// In vmid order.
    pub skipped: Vec<Skip>,
}

/// Plans the minimal benign actions taking `actual` to `desired`.
///
/// `normalizers` decides what counts as drift; use [`NormalizerRegistry::pve`] (its `memory` and
/// `swap` entries convert the desired bytes to MiB). The order of `actual` does not matter.
pub fn plan(
    desired: &DesiredState,
    actual: &[ActualGuest],
    normalizers: &NormalizerRegistry,
) -> Plan {
    let mut sorted: Vec<&ActualGuest> = actual.iter().collect();
    sorted.sort_by_key(|guest| guest.vmid);
    let wanted = desired.guests(); // sorted by vmid, unique

    let mut out = Plan::default();
    let (mut i, mut j) = (0, 0);
    loop {
        let want = wanted.get(i);
        let have = sorted.get(j).copied();
        let vmid = match (want, have) {
            (None, None) => break,
            (Some(w), None) => w.vmid,
            (None, Some(h)) => h.vmid,
            (Some(w), Some(h)) => w.vmid.min(h.vmid),
        };
        let want = want.filter(|w| w.vmid == vmid);
        let group = sorted[j..]
            .iter()
            .take_while(|guest| guest.vmid == vmid)
            .count();
        i += usize::from(want.is_some());
        j += group;
        let have = (group == 1).then(|| sorted[j - 1]);
        match (want, have) {
            _ if group > 1 => out.skipped.push(Skip {
                vmid,
                reason: SkipReason::DuplicateActual,
            }),
            // Desired absent: destroy it (gated). Absent already: converged.
            (Some(want), Some(_)) if !want.present => {
                out.actions.push(Action::Destroy { vmid });
            }
            (Some(want), None) if !want.present => {}
            (Some(want), Some(have)) => plan_guest(want, have, normalizers, &mut out),
            (Some(_), None) => out.skipped.push(Skip {
                vmid,
                reason: SkipReason::NotOnHost,
            }),
            // the vmid came from the actual side
            (None, _) => out.skipped.push(Skip {
                vmid,
                reason: SkipReason::NotDesired,
            }),
        }
    }
    out
}

fn plan_guest(
    want: &DesiredGuest,
    have: &ActualGuest,
    normalizers: &NormalizerRegistry,
    out: &mut Plan,
) {
    let vmid = want.vmid;
    if manages_config(want) {
        match &have.config {
            None => out.skipped.push(Skip {
                vmid,
                reason: SkipReason::ConfigUnreadable,
            }),
            Some(config) => {
                let changes = config_changes(want, config, normalizers);
                if !changes.is_empty() {
                    out.actions.push(Action::SetConfig {
                        vmid,
                        changes,
                        digest: config.digest.clone(),
                    });
                }
            }
        }
    }
    if let Some(run_state) = want.run_state {
        match (run_state, have.status) {
            (_, GuestStatus::Unknown) => out.skipped.push(Skip {
                vmid,
                reason: SkipReason::StatusUnknown,
            }),
            (RunState::Running, GuestStatus::Stopped) => out.actions.push(Action::Start { vmid }),
            (RunState::Stopped, GuestStatus::Running) => out.actions.push(Action::Stop { vmid }),
            (RunState::Running, GuestStatus::Running)
            | (RunState::Stopped, GuestStatus::Stopped) => {}
        }
    }
}

/// Whether any config field the plan reconciles is desired (disk is not one).
fn manages_config(want: &DesiredGuest) -> bool {
    let spec_managed = want.spec.as_ref().is_some_and(|spec| {
        spec.cores.is_some() || spec.memory_bytes.is_some() || spec.swap_bytes.is_some()
    });
    spec_managed || want.description.is_some()
}

fn config_changes(
    want: &DesiredGuest,
    have: &ActualConfig,
    normalizers: &NormalizerRegistry,
) -> ConfigChanges {
    let mut changes = ConfigChanges::default();
    let unmanaged = GuestSpec::default();
    let spec = want.spec.as_ref().unwrap_or(&unmanaged);
    if let Some(cores) = spec.cores {
        let desired = Value::Int(i64::from(cores));
        if drifted(normalizers, "cores", &desired, have.cores.map(u64::from)) {
            let canonical = normalizers.desired("cores", &desired);
            changes.cores = Some(
                canonical
                    .as_ref()
                    .and_then(as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(cores),
            );
        }
    }
    changes.memory = size_change(normalizers, "memory", spec.memory_bytes, have.memory_mib);
    changes.swap = size_change(normalizers, "swap", spec.swap_bytes, have.swap_mib);
    if let Some(text) = &want.description {
        // Text to text without building `Value`s: this runs for every described guest each
        // pass, and drift (the only case that needs a `Value`) is the exception.
        if !normalizers.equivalent_text("description", text, have.description.as_deref()) {
            let desired = Value::Text(text.clone());
            if normalizers.desired("description", &desired).is_some() {
                // The operator's text, not the canonical form: PVE adds the newline itself,
                // and the canonical form could exceed PVE's 8192-character limit by one.
                changes.description = Some(text.clone());
            } else {
                changes.delete.push("description".to_owned());
            }
        }
    }
    changes
}

/// A MiB size to write when the desired bytes and the actual MiB differ after normalizing.
fn size_change(
    normalizers: &NormalizerRegistry,
    field: &str,
    desired_bytes: Option<u64>,
    actual_mib: Option<u64>,
) -> Option<u64> {
    let bytes = desired_bytes?;
    // Validation caps sizes at 1 PiB, so the byte count fits an i64.
    let desired = Value::Int(i64::try_from(bytes).unwrap_or(i64::MAX));
    if !drifted(normalizers, field, &desired, actual_mib) {
        return None;
    }
    // Write the canonical value the comparison used, so the next read compares equal; fall
    // back to rounding up ourselves if a custom normalizer left it in another shape.
    let canonical = normalizers.desired(field, &desired);
    Some(
        canonical
            .as_ref()
            .and_then(as_u64)
            .unwrap_or_else(|| bytes.div_ceil(MIB)),
    )
}

fn drifted(
    normalizers: &NormalizerRegistry,
    field: &str,
    desired: &Value,
    actual: Option<u64>,
) -> bool {
    // A PVE value beyond i64 cannot equal a validated desired one; saturating keeps it drift.
    let actual = actual.map(|n| Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    !normalizers.equivalent(field, desired, actual.as_ref())
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Simulates `plan`'s actions on `actual` as the next PVE read would show them (pure; for tests
/// and the demo). A `SetConfig` whose digest no longer matches is refused, as PVE refuses it;
/// actions for vmids not in `actual`, and config writes to an unread config, change nothing.
pub fn apply(actual: &[ActualGuest], plan: &Plan) -> Vec<ActualGuest> {
    // A destroy (as if signed) removes the guest.
    let destroyed: Vec<u32> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Destroy { vmid } => Some(*vmid),
            _ => None,
        })
        .collect();
    let mut out: Vec<ActualGuest> = actual
        .iter()
        .filter(|g| !destroyed.contains(&g.vmid))
        .cloned()
        .collect();
    let mut index: HashMap<u32, Vec<usize>> = HashMap::new();
    for (position, guest) in out.iter().enumerate() {
        index.entry(guest.vmid).or_default().push(position);
    }
    for action in &plan.actions {
        let Some(positions) = index.get(&action.vmid()) else {
            continue;
        };
        for &position in positions {
            let guest = &mut out[position];
            match action {
                Action::Start { .. } => guest.status = GuestStatus::Running,
                Action::Stop { .. } => guest.status = GuestStatus::Stopped,
                Action::Destroy { .. } => {}
                Action::SetConfig {
                    changes, digest, ..
                } => {
                    if let Some(config) = guest.config.as_mut() {
                        apply_config(config, changes, digest.as_deref());
                    }
                }
            }
        }
    }
    out
}

fn apply_config(config: &mut ActualConfig, changes: &ConfigChanges, digest: Option<&str>) {
    if digest.is_some() && digest != config.digest.as_deref() {
        return; // PVE: "detected modified configuration - file changed by other user?"
    }
    for key in &changes.delete {
        match key.as_str() {
            "cores" => config.cores = None,
            "swap" => config.swap_mib = None,
            "description" => config.description = None,
            _ => {} // memory is required by PVE and cannot be deleted; other keys not modelled
        }
    }
    if let Some(cores) = changes.cores {
        config.cores = Some(cores);
    }
    if let Some(memory) = changes.memory {
        config.memory_mib = Some(memory);
    }
    if let Some(swap) = changes.swap {
        config.swap_mib = Some(swap);
    }
    if let Some(text) = &changes.description {
        config.description = pve_description_roundtrip(text);
    }
    config.digest = Some(simulated_digest(config));
}

/// A content-derived stand-in for PVE's SHA-1 of the config file (FNV-1a; only needs to change
/// when the content does).
fn simulated_digest(config: &ActualConfig) -> String {
    let rendered = format!(
        "{:?}|{:?}|{:?}|{:?}",
        config.cores, config.memory_mib, config.swap_mib, config.description
    );
    let hash = rendered
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn desired(guests: Vec<DesiredGuest>) -> DesiredState {
        DesiredState::new(guests).expect("valid desired state")
    }

    fn want(vmid: u32) -> DesiredGuest {
        DesiredGuest::new(vmid)
    }

    fn wants_run(vmid: u32, run_state: RunState) -> DesiredGuest {
        DesiredGuest {
            run_state: Some(run_state),
            ..want(vmid)
        }
    }

    fn wants_spec(vmid: u32, spec: GuestSpec) -> DesiredGuest {
        DesiredGuest {
            spec: Some(spec),
            ..want(vmid)
        }
    }

    fn wants_description(vmid: u32, text: &str) -> DesiredGuest {
        DesiredGuest {
            description: Some(text.to_owned()),
            ..want(vmid)
        }
    }

    fn config() -> ActualConfig {
        ActualConfig {
            cores: Some(2),
            memory_mib: Some(2048),
            swap_mib: Some(512),
            description: Some("web\n".to_owned()),
            digest: Some("d1".to_owned()),
        }
    }

    fn have(vmid: u32, status: GuestStatus, config: Option<ActualConfig>) -> ActualGuest {
        ActualGuest {
            vmid,
            status,
            config,
        }
    }

    fn set(vmid: u32, changes: ConfigChanges) -> Action {
        Action::SetConfig {
            vmid,
            changes,
            digest: Some("d1".to_owned()),
        }
    }

    fn skip(vmid: u32, reason: SkipReason) -> Skip {
        Skip { vmid, reason }
    }

    /// Plans, compares with `expect`, then proves one application converges.
    fn check(desired: &DesiredState, actual: &[ActualGuest], expect: Plan) {
        let registry = NormalizerRegistry::pve();
        let got = plan(desired, actual, &registry);
        assert_eq!(got, expect);
        let after = apply(actual, &got);
        let again = plan(desired, &after, &registry);
        assert_eq!(
            again.actions,
            [],
            "not converged after one pass: {after:#?}"
        );
        assert_eq!(again.skipped, got.skipped);
    }

    #[test]
    fn run_state() {
        use GuestStatus::{Running, Stopped, Unknown};
        let state = desired(vec![
            wants_run(100, RunState::Running),
            wants_run(101, RunState::Running),
            wants_run(102, RunState::Stopped),
            wants_run(103, RunState::Stopped),
            wants_run(104, RunState::Running),
            want(105),
        ]);
        let actual = [
            have(100, Stopped, Some(config())),
            have(101, Running, Some(config())),
            have(102, Running, None), // config unread: run state still planned
            have(103, Stopped, Some(config())),
            have(104, Unknown, Some(config())),
            have(105, Stopped, Some(config())), // run state unmanaged
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![Action::Start { vmid: 100 }, Action::Stop { vmid: 102 }],
                skipped: vec![skip(104, SkipReason::StatusUnknown)],
            },
        );
    }

    #[test]
    fn spec_drift_writes_only_differing_fields() {
        let state = desired(vec![
            wants_spec(
                100,
                GuestSpec {
                    cores: Some(4),
                    memory_bytes: Some(2 * GIB),
                    swap_bytes: Some(0),
                    disk_bytes: None,
                },
            ),
            wants_spec(
                101,
                GuestSpec {
                    cores: Some(2),
                    memory_bytes: Some(2 * GIB),
                    swap_bytes: Some(512 * MIB),
                    disk_bytes: None,
                },
            ),
        ]);
        let actual = [
            have(100, GuestStatus::Running, Some(config())),
            have(101, GuestStatus::Running, Some(config())),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![set(
                    100,
                    ConfigChanges {
                        cores: Some(4),
                        swap: Some(0),
                        ..ConfigChanges::default()
                    },
                )],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn absent_actual_keys_are_drift() {
        let state = desired(vec![wants_spec(
            100,
            GuestSpec {
                cores: Some(1),
                memory_bytes: Some(512 * MIB),
                swap_bytes: Some(512 * MIB),
                disk_bytes: None,
            },
        )]);
        let actual = [have(
            100,
            GuestStatus::Stopped,
            Some(ActualConfig::default()),
        )];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![Action::SetConfig {
                    vmid: 100,
                    changes: ConfigChanges {
                        cores: Some(1),
                        memory: Some(512),
                        swap: Some(512),
                        ..ConfigChanges::default()
                    },
                    digest: None,
                }],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn description_newline_is_not_drift() {
        let state = desired(vec![
            wants_description(100, "web"),
            wants_description(101, "web\n\n"),
            wants_description(102, "db"),
            wants_description(103, ""),
            wants_description(104, ""),
            wants_description(105, "two\nlines"),
            wants_description(106, "\n"),
        ]);
        let with = |text: Option<&str>| {
            Some(ActualConfig {
                description: text.map(str::to_owned),
                ..config()
            })
        };
        let actual = [
            have(100, GuestStatus::Running, with(Some("web\n"))),
            have(101, GuestStatus::Running, with(Some("web\n"))),
            have(102, GuestStatus::Running, with(Some("web\n"))),
            have(103, GuestStatus::Running, with(None)),
            have(104, GuestStatus::Running, with(Some("old\n"))),
            have(105, GuestStatus::Running, with(None)),
            have(106, GuestStatus::Running, with(Some("x\n"))),
        ];
        let describe = |text: &str| ConfigChanges {
            description: Some(text.to_owned()),
            ..ConfigChanges::default()
        };
        let delete = ConfigChanges {
            delete: vec!["description".to_owned()],
            ..ConfigChanges::default()
        };
        check(
            &state,
            &actual,
            Plan {
                actions: vec![
                    set(102, describe("db")),
                    set(104, delete.clone()),
                    set(105, describe("two\nlines")),
                    set(106, delete),
                ],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn memory_mib_aligned_and_unaligned() {
        let state = desired(vec![
            wants_spec(
                100,
                GuestSpec {
                    memory_bytes: Some(2 * GIB),
                    ..GuestSpec::default()
                },
            ),
            wants_spec(
                101,
                GuestSpec {
                    memory_bytes: Some(2 * GIB + 1),
                    ..GuestSpec::default()
                },
            ),
            wants_spec(
                102,
                GuestSpec {
                    memory_bytes: Some(4 * GIB),
                    swap_bytes: Some(MIB + 1),
                    ..GuestSpec::default()
                },
            ),
        ]);
        let actual = [
            have(100, GuestStatus::Running, Some(config())),
            have(101, GuestStatus::Running, Some(config())),
            have(102, GuestStatus::Running, Some(config())),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![
                    // 2 GiB + 1 byte rounds up to 2049 MiB, written once
                    set(
                        101,
                        ConfigChanges {
                            memory: Some(2049),
                            ..ConfigChanges::default()
                        },
                    ),
                    set(
                        102,
                        ConfigChanges {
                            memory: Some(4096),
                            swap: Some(2),
                            ..ConfigChanges::default()
                        },
                    ),
                ],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn unmanaged_fields_and_disk_are_left_alone() {
        let state = desired(vec![
            want(100),
            wants_spec(101, GuestSpec::default()),
            wants_spec(
                102,
                GuestSpec {
                    disk_bytes: Some(100 * GIB),
                    ..GuestSpec::default()
                },
            ),
            wants_spec(
                103,
                GuestSpec {
                    cores: Some(2),
                    disk_bytes: Some(100 * GIB),
                    ..GuestSpec::default()
                },
            ),
        ]);
        let odd = ActualConfig {
            cores: Some(64),
            memory_mib: Some(16),
            swap_mib: None,
            description: Some("anything\n".to_owned()),
            digest: Some("d1".to_owned()),
        };
        let actual = [
            have(100, GuestStatus::Running, Some(odd.clone())),
            have(101, GuestStatus::Stopped, Some(odd.clone())),
            have(102, GuestStatus::Stopped, None), // only disk desired: config not needed
            have(103, GuestStatus::Stopped, Some(odd)),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![set(
                    103,
                    ConfigChanges {
                        cores: Some(2),
                        ..ConfigChanges::default()
                    },
                )],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn unreadable_config_is_never_written() {
        let state = desired(vec![
            DesiredGuest {
                run_state: Some(RunState::Running),
                spec: Some(GuestSpec {
                    cores: Some(4),
                    ..GuestSpec::default()
                }),
                description: Some("web".to_owned()),
                ..want(100)
            },
            wants_description(101, "x"),
        ]);
        let actual = [
            have(100, GuestStatus::Stopped, None),
            have(101, GuestStatus::Unknown, None),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![Action::Start { vmid: 100 }],
                skipped: vec![
                    skip(100, SkipReason::ConfigUnreadable),
                    skip(101, SkipReason::ConfigUnreadable),
                ],
            },
        );
    }

    #[test]
    fn desired_absent_and_actual_absent_are_skipped() {
        let state = desired(vec![
            wants_run(100, RunState::Running),
            wants_run(102, RunState::Running),
        ]);
        let actual = [
            have(101, GuestStatus::Running, Some(config())),
            have(102, GuestStatus::Running, Some(config())),
            have(103, GuestStatus::Stopped, None),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![],
                skipped: vec![
                    skip(100, SkipReason::NotOnHost),
                    skip(101, SkipReason::NotDesired),
                    skip(103, SkipReason::NotDesired),
                ],
            },
        );
    }

    #[test]
    fn empty_desired_plans_nothing() {
        let actual = [
            have(100, GuestStatus::Running, Some(config())),
            have(101, GuestStatus::Stopped, None),
        ];
        check(
            &DesiredState::empty(),
            &actual,
            Plan {
                actions: vec![],
                skipped: vec![
                    skip(100, SkipReason::NotDesired),
                    skip(101, SkipReason::NotDesired),
                ],
            },
        );
        check(&DesiredState::empty(), &[], Plan::default());
    }

    #[test]
    fn ordering_is_by_vmid_and_config_before_run_state() {
        let full = |vmid, run_state| DesiredGuest {
            run_state: Some(run_state),
            spec: Some(GuestSpec {
                cores: Some(8),
                ..GuestSpec::default()
            }),
            ..want(vmid)
        };
        let state = desired(vec![
            full(300, RunState::Stopped),
            full(100, RunState::Running),
            full(200, RunState::Running),
        ]);
        // actual arrives unordered, as PVE's list does
        let actual = [
            have(200, GuestStatus::Stopped, Some(config())),
            have(300, GuestStatus::Running, Some(config())),
            have(100, GuestStatus::Stopped, Some(config())),
        ];
        let cores = || ConfigChanges {
            cores: Some(8),
            ..ConfigChanges::default()
        };
        check(
            &state,
            &actual,
            Plan {
                actions: vec![
                    set(100, cores()),
                    Action::Start { vmid: 100 },
                    set(200, cores()),
                    Action::Start { vmid: 200 },
                    set(300, cores()),
                    Action::Stop { vmid: 300 },
                ],
                skipped: vec![],
            },
        );
    }

    #[test]
    fn duplicate_actual_entries_are_left_alone() {
        let state = desired(vec![wants_run(100, RunState::Running)]);
        let actual = [
            have(100, GuestStatus::Stopped, None),
            have(100, GuestStatus::Stopped, None),
            have(101, GuestStatus::Stopped, None),
            have(101, GuestStatus::Stopped, None),
        ];
        check(
            &state,
            &actual,
            Plan {
                actions: vec![],
                skipped: vec![
                    skip(100, SkipReason::DuplicateActual),
                    skip(101, SkipReason::DuplicateActual),
                ],
            },
        );
    }

    #[test]
    fn apply_refuses_a_stale_digest_like_pve() {
        let actual = [have(100, GuestStatus::Running, Some(config()))];
        let stale = Plan {
            actions: vec![Action::SetConfig {
                vmid: 100,
                changes: ConfigChanges {
                    cores: Some(9),
                    ..ConfigChanges::default()
                },
                digest: Some("someone-else".to_owned()),
            }],
            skipped: vec![],
        };
        assert_eq!(apply(&actual, &stale), actual);
        let fresh = Plan {
            actions: vec![set(
                100,
                ConfigChanges {
                    cores: Some(9),
                    ..ConfigChanges::default()
                },
            )],
            skipped: vec![],
        };
        let after = apply(&actual, &fresh);
        let config = after[0].config.as_ref().expect("config");
        assert_eq!(config.cores, Some(9));
        assert_ne!(
            config.digest.as_deref(),
            Some("d1"),
            "a write changes the digest"
        );
    }

    #[test]
    fn skip_reasons_read_well() {
        assert_eq!(
            SkipReason::ConfigUnreadable.to_string(),
            "config could not be read, so it is not written"
        );
    }

    fn arb_run_state() -> impl Strategy<Value = Option<RunState>> {
        prop_oneof![
            Just(None),
            Just(Some(RunState::Running)),
            Just(Some(RunState::Stopped)),
        ]
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[ab\n\r ]{0,6}"
    }

    fn arb_desired_guest(vmid: u32) -> impl Strategy<Value = DesiredGuest> {
        let spec = (
            proptest::option::of(1u32..=8192),
            proptest::option::of(16 * MIB..=64 * GIB),
            proptest::option::of(0u64..=8 * GIB),
            proptest::option::of(1u64..=u64::MAX),
        )
            .prop_map(|(cores, memory_bytes, swap_bytes, disk_bytes)| GuestSpec {
                cores,
                memory_bytes,
                swap_bytes,
                disk_bytes,
            });
        (
            arb_run_state(),
            proptest::option::of(spec),
            proptest::option::of(arb_text()),
        )
            .prop_map(move |(run_state, spec, description)| DesiredGuest {
                vmid,
                run_state,
                spec,
                description,
                present: true,
            })
    }

    fn arb_actual_guest(vmid: u32) -> impl Strategy<Value = ActualGuest> {
        let status = prop_oneof![
            Just(GuestStatus::Running),
            Just(GuestStatus::Stopped),
            Just(GuestStatus::Unknown),
        ];
        let config = (
            proptest::option::of(1u32..=8192),
            proptest::option::of(0u64..=65536),
            proptest::option::of(0u64..=8192),
            proptest::option::of(arb_text()),
            proptest::option::of("[0-9a-f]{4}"),
        )
            .prop_map(
                |(cores, memory_mib, swap_mib, description, digest)| ActualConfig {
                    cores,
                    memory_mib,
                    swap_mib,
                    description,
                    digest,
                },
            );
        (status, proptest::option::of(config)).prop_map(move |(status, config)| ActualGuest {
            vmid,
            status,
            config,
        })
    }

    fn arb_world() -> impl Strategy<Value = (DesiredState, Vec<ActualGuest>)> {
        // vmids from a small pool so desired and actual overlap often
        let desired = proptest::collection::btree_set(100u32..120, 0..12)
            .prop_flat_map(|vmids| vmids.into_iter().map(arb_desired_guest).collect::<Vec<_>>());
        let actual = proptest::collection::btree_set(100u32..120, 0..12)
            .prop_flat_map(|vmids| vmids.into_iter().map(arb_actual_guest).collect::<Vec<_>>())
            .prop_shuffle();
        (desired, actual).prop_map(|(guests, actual)| (desired_valid(guests), actual))
    }

    fn desired_valid(guests: Vec<DesiredGuest>) -> DesiredState {
        DesiredState::new(guests).expect("generated guests are valid")
    }

    proptest! {
        /// plan ∘ apply reaches a fixed point after one application, and every action is
        /// well-formed: minimal, ordered, never blind.
        #[test]
        fn plan_then_apply_converges_in_one_pass((state, actual) in arb_world()) {
            let registry = NormalizerRegistry::pve();
            let first = plan(&state, &actual, &registry);
            let after = apply(&actual, &first);
            let second = plan(&state, &after, &registry);
            prop_assert_eq!(&second.actions, &Vec::<Action>::new());
            prop_assert_eq!(&second.skipped, &first.skipped);
            // applying an empty plan changes nothing
            prop_assert_eq!(apply(&after, &second), after);

            let mut last: Option<&Action> = None;
            for action in &first.actions {
                let vmid = action.vmid();
                let have = actual.iter().find(|g| g.vmid == vmid).expect("acted on a real guest");
                prop_assert!(state.get(vmid).is_some(), "acted on an undesired guest");
                match action {
                    Action::SetConfig { changes, digest, .. } => {
                        let config = have.config.as_ref();
                        prop_assert!(config.is_some(), "wrote a config it could not read");
                        prop_assert!(!changes.is_empty());
                        prop_assert_eq!(digest, &config.and_then(|c| c.digest.clone()));
                        if let (Some(cores), Some(config)) = (changes.cores, config) {
                            prop_assert_ne!(Some(cores), config.cores);
                        }
                    }
                    Action::Start { .. } => prop_assert_eq!(have.status, GuestStatus::Stopped),
                    Action::Stop { .. } => prop_assert_eq!(have.status, GuestStatus::Running),
                    Action::Destroy { .. } => prop_assert!(false, "destroy planned without present: false"),
                }
                if let Some(previous) = last {
                    prop_assert!(previous.vmid() <= vmid, "not in vmid order");
                    if previous.vmid() == vmid {
                        prop_assert!(
                            matches!(previous, Action::SetConfig { .. })
                                && !matches!(action, Action::SetConfig { .. }),
                            "config must come before run state, once each"
                        );
                    }
                }
                last = Some(action);
            }
            let skipped: Vec<u32> = first.skipped.iter().map(|s| s.vmid).collect();
            let mut sorted = skipped.clone();
            sorted.sort_unstable();
            prop_assert_eq!(skipped, sorted);
        }
    }
}
