//! The pure half and the queue composed as the engine will compose them: a desired-state file,
//! a plan, its actions dispatched per guest through the queue against a simulated host, and a
//! second pass that finds nothing left to do.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use felhom_reconcile::{
    apply, plan, Action, ActualConfig, ActualGuest, DesiredError, DesiredProvider, FileProvider,
    GuestStatus, NormalizerRegistry, Plan, Queue, SkipReason,
};

fn host() -> Vec<ActualGuest> {
    let config = |cores, description: &str| ActualConfig {
        cores: Some(cores),
        memory_mib: Some(1024),
        swap_mib: Some(512),
        description: Some(description.to_owned()),
        digest: Some(format!("digest-{cores}")),
    };
    vec![
        ActualGuest {
            vmid: 101,
            status: GuestStatus::Stopped,
            config: Some(config(1, "old\n")),
        },
        ActualGuest {
            vmid: 100,
            status: GuestStatus::Running,
            config: Some(config(2, "web\n")),
        },
        ActualGuest {
            vmid: 102,
            status: GuestStatus::Unknown,
            config: None,
        },
        ActualGuest {
            vmid: 900,
            status: GuestStatus::Running,
            config: Some(config(1, "not ours\n")),
        },
    ]
}

/// Dispatches every action through the queue; each job applies its one action to the shared
/// simulated host, the way the engine's jobs will call PVE.
async fn execute(queue: &Queue, world: &Arc<Mutex<Vec<ActualGuest>>>, plan: &Plan) -> usize {
    let handles: Vec<_> = plan
        .actions
        .iter()
        .cloned()
        .map(|action| {
            let world = Arc::clone(world);
            queue
                .submit(action.vmid(), move || async move {
                    let mut world = world.lock().expect("world");
                    let single = Plan {
                        actions: vec![action],
                        skipped: vec![],
                    };
                    *world = apply(&world, &single);
                })
                .expect("queue open")
        })
        .collect();
    let count = handles.len();
    for handle in handles {
        handle.await.expect("job ran");
    }
    count
}

#[tokio::test]
async fn file_to_plan_to_queue_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("desired.json");
    std::fs::write(
        &path,
        r#"{"guests": [
            {"vmid": 101, "run_state": "running", "spec": {"cores": 2, "memory_bytes": 2147483649},
             "description": "api"},
            {"vmid": 100, "spec": {"cores": 2, "memory_bytes": 1073741824}, "description": "web"},
            {"vmid": 102, "run_state": "running", "description": "db"},
            {"vmid": 103, "run_state": "running"}
        ]}"#,
    )
    .expect("write desired");
    let provider = FileProvider::new(&path);
    let registry = NormalizerRegistry::pve();
    let queue = Queue::new(NonZeroUsize::new(4).expect("cap"));
    let world = Arc::new(Mutex::new(host()));

    let desired = provider.desired().await.expect("desired");
    let first = plan(&desired, &world.lock().expect("world"), &registry);
    // 100 is already as desired (the description newline is not drift); 101 needs config then
    // start; 102's config is unreadable and its status unknown; 103 is not on the host; 900 is
    // not desired.
    assert_eq!(first.actions.len(), 2, "{first:#?}");
    assert!(
        matches!(first.actions[0], Action::SetConfig { vmid: 101, ref changes, .. }
        if changes.memory == Some(2049) && changes.cores == Some(2)
            && changes.description.as_deref() == Some("api"))
    );
    assert_eq!(first.actions[1], Action::Start { vmid: 101 });
    let reasons: Vec<(u32, SkipReason)> =
        first.skipped.iter().map(|s| (s.vmid, s.reason)).collect();
    assert_eq!(
        reasons,
        [
            (102, SkipReason::ConfigUnreadable),
            (102, SkipReason::StatusUnknown),
            (103, SkipReason::NotOnHost),
            (900, SkipReason::NotDesired),
        ]
    );

    assert_eq!(execute(&queue, &world, &first).await, 2);
    {
        let world = world.lock().expect("world");
        let guest = world.iter().find(|g| g.vmid == 101).expect("101");
        assert_eq!(guest.status, GuestStatus::Running);
        let config = guest.config.as_ref().expect("config");
        assert_eq!(config.memory_mib, Some(2049));
        assert_eq!(config.description.as_deref(), Some("api\n"));
    }

    // the next pass re-reads the file and finds nothing to do
    let desired = provider.desired().await.expect("desired");
    let second = plan(&desired, &world.lock().expect("world"), &registry);
    assert!(second.actions.is_empty(), "{second:#?}");
    assert_eq!(second.skipped, first.skipped);

    // the operator breaks the file: that pass has no desired state, not an empty one
    std::fs::write(&path, "{\"guests\": [").expect("write");
    assert!(matches!(
        provider.desired().await,
        Err(DesiredError::Malformed { .. })
    ));

    queue.close().await;
}
