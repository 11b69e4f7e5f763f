//! TEST ONLY: the crash seam of the crash-point harness (`cargo xtask crashpoints`).
//!
//! `FELHOM_AGENT_TEST_CRASH_AT=<step>[@<action>]:<n>` makes the daemon kill itself with SIGKILL
//! the `n`-th time a reconcile job reaches `<step>` (of `<action>` only, when given): one of
//! `before-started`, `after-started`, `after-request`, `after-task-running`, `after-task-end`
//! (see `felhom_reconcile::OpStep`), or the `n`-th time a signed job (a hub-served signed op)
//! reaches one of `signed-before-gate` (after its journaled start, before the gate recorded its
//! nonce), `signed-before-post` (the nonce recorded, before the request),
//! `signed-after-post` (PVE answered with a task, not yet journaled) and
//! `signed-after-task-recorded` (the task journaled, before the terminal record) — see
//! `felhom_reconcile::CrashPoint`; those take no `@<action>`. Nothing runs after that point, exactly as when the
//! machine loses power there: no destructor, no flush, no journal write. The daemon warns at
//! every start while the variable is set; never set it on a host.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU32, Ordering};

use std::sync::Arc;

use felhom_reconcile::{CrashPoint, FaultSeam, OpStep, StepProbe};

/// The variable (exempt from the config overlay's unknown-variable check).
pub const TEST_CRASH_AT_ENV: &str = felhom_config::TEST_CRASH_AT_ENV;

/// Where to crash: the `n`-th time (from 1) a job reaches `step`, counting only `action`'s
/// jobs when it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashAt {
    pub step: Step,
    pub action: Option<String>,
    pub n: u32,
}

/// A step of a reconcile job or of a signed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A reconcile job's step.
    Op(OpStep),
    /// A signed job's step.
    Signed(CrashPoint),
}

/// The signed-job steps and their names.
pub const SIGNED_STEPS: [(CrashPoint, &str); 4] = [
    (CrashPoint::BeforeGate, "signed-before-gate"),
    (CrashPoint::BeforePost, "signed-before-post"),
    (CrashPoint::AfterPost, "signed-after-post"),
    (CrashPoint::AfterTaskRecorded, "signed-after-task-recorded"),
];

impl Step {
    /// The step's name in the variable.
    pub fn name(self) -> &'static str {
        match self {
            Step::Op(step) => step.name(),
            Step::Signed(point) => SIGNED_STEPS
                .iter()
                .find(|(p, _)| *p == point)
                .map_or("signed", |(_, name)| name),
        }
    }

    fn from_name(name: &str) -> Option<Step> {
        OpStep::from_name(name).map(Step::Op).or_else(|| {
            SIGNED_STEPS
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(p, _)| Step::Signed(*p))
        })
    }
}

/// [`TEST_CRASH_AT_ENV`]'s value: `None` when unset, the crash point, or the one-line reason
/// it is unusable.
pub fn parse(raw: Option<&OsStr>) -> Result<Option<CrashAt>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let parsed = raw.to_str().and_then(|text| {
        let (point, n) = text.trim().rsplit_once(':')?;
        let n = n.parse::<u32>().ok().filter(|n| *n >= 1)?;
        let (step, action) = match point.split_once('@') {
            Some((step, action)) if !action.is_empty() => (step, Some(action.to_owned())),
            Some(_) => return None,
            None => (point, None),
        };
        let step = Step::from_name(step)?;
        if matches!(step, Step::Signed(_)) && action.is_some() {
            return None;
        }
        Some(CrashAt { step, action, n })
    });
    match parsed {
        Some(at) => Ok(Some(at)),
        None => Err(format!(
            "{TEST_CRASH_AT_ENV}: expected <step>[@<action>]:<n> with step one of {}, or \
             <signed-step>:<n> with signed-step one of {}, and n from 1, got {:?} (a test-only \
             setting: unset it on a real host)",
            OpStep::ALL.map(OpStep::name).join(", "),
            SIGNED_STEPS.map(|(_, name)| name).join(", "),
            raw.to_string_lossy()
        )),
    }
}

impl CrashAt {
    /// `<step>[@<action>]:<n>`, as the variable spells it.
    pub fn spec(&self) -> String {
        match &self.action {
            Some(action) => format!("{}@{action}:{}", self.step.name(), self.n),
            None => format!("{}:{}", self.step.name(), self.n),
        }
    }

    /// The engine probe that kills this process at the crash point (`None` for a signed-job
    /// point).
    pub fn probe(self) -> Option<StepProbe> {
        let Step::Op(at) = self.step else {
            return None;
        };
        let reached = AtomicU32::new(0);
        Some(StepProbe::new(move |step, vmid, action| {
            if step != at || self.action.as_deref().is_some_and(|a| a != action) {
                return;
            }
            if reached.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
                kill_self(&format!("{} (vmid {vmid} {action})", self.spec()));
            }
        }))
    }

    /// The signed-job fault seam that kills this process at the crash point (`None` for a
    /// reconcile-job point).
    pub fn fault(self) -> Option<FaultSeam> {
        let Step::Signed(at) = self.step else {
            return None;
        };
        let reached = AtomicU32::new(0);
        let seam: FaultSeam = Arc::new(move |point| {
            if point == at && reached.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
                kill_self(&format!("{} (signed job)", self.spec()));
            }
            false
        });
        Some(seam)
    }
}

/// SIGKILL to this process, after one line on stderr the harness reads. `kill(1)` sends it
/// because the workspace forbids unsafe code (no `libc::kill`); should that fail, abort.
fn kill_self(point: &str) -> ! {
    use std::io::Write;
    let pid = std::process::id();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "felhom-agent: TEST crash point {point} reached: SIGKILL to {pid}"
    );
    let _ = err.flush();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_are_parsed_and_checked() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(
            parse(Some(OsStr::new("after-started:2"))),
            Ok(Some(CrashAt {
                step: Step::Op(OpStep::AfterStarted),
                action: None,
                n: 2
            }))
        );
        let at = parse(Some(OsStr::new(" after-task-end@start:1 ")))
            .unwrap()
            .unwrap();
        assert_eq!(at.step, Step::Op(OpStep::AfterTaskEnd));
        let signed = parse(Some(OsStr::new("signed-after-post:1")))
            .unwrap()
            .unwrap();
        assert_eq!(signed.step, Step::Signed(CrashPoint::AfterPost));
        assert_eq!(signed.spec(), "signed-after-post:1");
        assert!(signed.clone().probe().is_none());
        assert!(signed.fault().is_some());
        assert_eq!(at.action.as_deref(), Some("start"));
        assert_eq!(at.spec(), "after-task-end@start:1");
        for bad in [
            "",
            "after-started",
            "after-started:0",
            "after-started:x",
            "after-post:1",
            "after-started@:1",
            ":1",
            "signed-after-post@destroy_guest:1",
            "signed-after:1",
        ] {
            let err = parse(Some(OsStr::new(bad))).unwrap_err();
            assert!(
                err.starts_with("FELHOM_AGENT_TEST_CRASH_AT: expected <step>[@<action>]:<n>"),
                "{err}"
            );
            assert!(err.contains("after-task-running"), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn the_probe_counts_only_its_step_and_action() {
        // n = 3 of after-request@stop: other steps and actions never count, so every call
        // returns (a miscount would SIGKILL this test process, failing the run).
        let probe = CrashAt {
            step: Step::Op(OpStep::AfterRequest),
            action: Some("stop".to_owned()),
            n: 3,
        }
        .probe()
        .unwrap();
        for _ in 0..5 {
            call(&probe, OpStep::AfterRequest, "start");
            call(&probe, OpStep::AfterStarted, "stop");
        }
        call(&probe, OpStep::AfterRequest, "stop");
        call(&probe, OpStep::AfterRequest, "stop");
    }

    #[test]
    fn the_signed_seam_counts_only_its_point() {
        // n = 2 of signed-after-post: other points never count and the first reach returns
        // (a miscount would SIGKILL this test process, failing the run).
        let seam = parse(Some(OsStr::new("signed-after-post:2")))
            .unwrap()
            .unwrap()
            .fault()
            .unwrap();
        for _ in 0..3 {
            assert!(!seam(CrashPoint::BeforeGate));
            assert!(!seam(CrashPoint::BeforePost));
            assert!(!seam(CrashPoint::AfterTaskRecorded));
        }
        assert!(!seam(CrashPoint::AfterPost));
    }

    fn call(probe: &StepProbe, step: OpStep, action: &'static str) {
        probe.call(step, 100, action);
    }
}
