//! The desired-state file the reconciler reads.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match felhom_reconcile::desired::parse_desired(data) {
        Ok(state) => {
            let _ = felhom_reconcile::desired::unaligned_sizes(&state);
            for g in state.guests() {
                g.validate()
                    .expect("a parsed desired state holds only valid guests");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
