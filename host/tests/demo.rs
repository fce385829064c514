//! The simulator verifies data end to end, sees injected faults, and replays from its seed.

use std::time::Duration;

use host::demo::{self, ArrayKind, DemoConfig};

fn small(faults: bool, seed: u64) -> DemoConfig {
    DemoConfig {
        vms: 3,
        depth: 4,
        duration: Duration::from_millis(100),
        seed,
        lun_mib: 8,
        faults,
        ..DemoConfig::default()
    }
}

#[test]
fn clean_run_verifies_every_read() {
    let report = demo::run(&small(false, 1)).unwrap();
    assert!(report.is_clean(), "{:?}", report.mismatches);
    for vm in &report.vms {
        assert!(
            vm.reads > 100 && vm.writes > 30,
            "{} reads, {} writes",
            vm.reads,
            vm.writes
        );
        assert_eq!(vm.errors, 0);
        assert!(vm.verified_blocks > 0);
    }
    // With a 100 µs device and nothing else in the way, every request takes exactly 100 µs.
    let (p50, p99) = demo::VmStats::percentiles_us(&report.vms[0].read_latency_ns);
    assert_eq!((p50, p99), (100.0, 100.0));
}

#[test]
fn array_faults_are_survived_on_every_array_kind() {
    for kind in [
        ArrayKind::ActiveActive,
        ArrayKind::ActivePassive,
        ArrayKind::Alua,
    ] {
        let report = demo::run(&DemoConfig {
            array: kind,
            ..small(true, 2)
        })
        .unwrap();
        assert!(report.is_clean(), "{kind:?}: {:?}", report.mismatches);
        // The faults really happened and multipathing hid them: retries, no failed I/O.
        assert!(report.array.delivery_failures > 0, "{kind:?}");
        assert!(report.array.congested > 0, "{kind:?}");
        assert!(report.retries > 0, "{kind:?}");
        let errors: u64 = report.vms.iter().map(|v| v.errors).sum();
        assert_eq!(
            errors, 0,
            "{kind:?}: every fault of the schedule is recoverable"
        );
        // I/O moved off the first path when its link started flapping.
        assert!(
            report.paths.iter().filter(|p| p.commands > 0).count() >= 2,
            "{kind:?}"
        );
        if kind != ArrayKind::ActiveActive {
            assert!(
                report.array.trespasses > 0,
                "{kind:?}: the controller failure moves the LUN"
            );
        }
    }
}

#[test]
fn same_seed_same_run() {
    let a = demo::run(&small(true, 9)).unwrap();
    let b = demo::run(&small(true, 9)).unwrap();
    assert_eq!(a, b);
    let c = demo::run(&small(true, 10)).unwrap();
    assert_ne!(a.vms, c.vms);
}

#[test]
fn bad_configurations_are_refused() {
    assert!(
        demo::run(&DemoConfig {
            vms: 0,
            ..DemoConfig::default()
        })
        .is_err()
    );
    assert!(
        demo::run(&DemoConfig {
            vms: 16,
            depth: 16,
            ..DemoConfig::default()
        })
        .is_err()
    );
    assert!(
        demo::run(&DemoConfig {
            lun_mib: 0,
            ..DemoConfig::default()
        })
        .is_err()
    );
}
