//! The simulator verifies data end to end, claims its device with the plugins the claim rules
//! pick (or `--satp` / `--psp` name), sees injected faults, and replays from its seed.

use std::process::Command;
use std::time::Duration;

use host::demo::{self, ArrayKind, DemoConfig, DemoReport};
use host::plugins::{PspChoice, SatpName};
use psp::RrConfig;

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

/// The SATP, PSP and claim rule (1-based, `None`: psa's default) each array kind is claimed
/// with when nothing is overridden.
fn expected_claim(kind: ArrayKind) -> (&'static str, &'static str, Option<usize>) {
    match kind {
        ArrayKind::ActiveActive => ("VMW_SATP_DEFAULT_AA", "VMW_PSP_FIXED", None),
        ArrayKind::ActivePassive => ("VMW_SATP_DEFAULT_AP", "VMW_PSP_MRU", Some(2)),
        ArrayKind::ActivePassiveCx => ("VMW_SATP_CX", "VMW_PSP_MRU", Some(1)),
        ArrayKind::Alua => ("VMW_SATP_ALUA", "VMW_PSP_RR", Some(3)),
    }
}

fn errors(report: &DemoReport) -> u64 {
    report.vms.iter().map(|v| v.errors).sum()
}

/// Every promise of a faulty run: data verified, exactly once, the faults really happened and
/// multipathing hid them (retries, no failed I/O).
fn assert_faults_survived(label: &str, kind: ArrayKind, report: &DemoReport) {
    assert!(report.is_clean(), "{label}: {:?}", report.mismatches);
    assert!(report.array.delivery_failures > 0, "{label}");
    assert!(report.array.congested > 0, "{label}");
    assert!(report.retries > 0, "{label}");
    assert_eq!(
        errors(report),
        0,
        "{label}: every fault of the schedule is recoverable"
    );
    // I/O moved off the first path when its link started flapping.
    assert!(
        report.paths.iter().filter(|p| p.commands > 0).count() >= 2,
        "{label}"
    );
    if kind != ArrayKind::ActiveActive {
        assert!(
            report.array.trespasses > 0,
            "{label}: the controller failure moves the LUN"
        );
    }
    // The owning controller's links go down: an active/passive SATP trespasses with the one
    // command its array takes (the array counts what it accepted), the others do not.
    let a = &report.array;
    let sent = (a.start_stop_trespasses, a.page22_trespasses);
    match kind {
        ArrayKind::ActivePassive => {
            assert!(report.satp_trespasses > 0, "{label}");
            assert!(sent.0 > 0 && sent.1 == 0, "{label}: {sent:?}");
        }
        ArrayKind::ActivePassiveCx => {
            assert!(report.satp_trespasses > 0, "{label}");
            assert!(sent.0 == 0 && sent.1 > 0, "{label}: {sent:?}");
        }
        ArrayKind::ActiveActive | ArrayKind::Alua => {
            assert_eq!((report.satp_trespasses, sent), (0, (0, 0)), "{label}");
        }
    }
    assert!(report.vms.iter().all(|v| v.verified_blocks > 0), "{label}");
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
fn every_array_kind_is_claimed_by_its_rule_and_runs_clean() {
    for kind in ArrayKind::ALL {
        let report = demo::run(&DemoConfig {
            array: kind,
            ..small(false, 3)
        })
        .unwrap();
        let (satp, psp, rule) = expected_claim(kind);
        let c = &report.claim;
        assert_eq!(
            (c.satp, c.psp, c.rule.map(|r| r + 1)),
            (satp, psp, rule),
            "{kind:?}"
        );
        assert_eq!((c.rule_satp, c.rule_psp), (satp, psp), "{kind:?}");
        assert!(!c.satp_overridden && !c.psp_overridden, "{kind:?}");
        assert_eq!(
            (c.vendor.as_str(), c.model.as_str()),
            ("ESXSIM", kind.model())
        );
        assert_eq!(c.alua, kind == ArrayKind::Alua, "{kind:?}");
        assert!(report.is_clean(), "{kind:?}: {:?}", report.mismatches);
        assert_eq!(errors(&report), 0, "{kind:?}");
        assert_eq!(
            report.array.trespasses, 0,
            "{kind:?}: nothing moves without faults"
        );
        // MRU and FIXED keep to one path. On ALUA the rule's round robin with iops=1
        // alternates between the two active/optimized paths (group 1 is the owner's), evenly,
        // and leaves the non-optimized ones alone (useANO=0).
        let busy: Vec<_> = report.paths.iter().filter(|p| p.commands > 100).collect();
        // No path fails a command without faults; the only CHECK CONDITIONs are unit
        // attentions (POWER ON, once per I_T nexus), counted apart.
        assert!(
            report.paths.iter().all(|p| p.errors == 0),
            "{:?}",
            report.paths
        );
        if kind == ArrayKind::Alua {
            // The second active/optimized path's first I/O meets its POWER ON; on the first
            // path the commands sent before the I/O began (discovery's, the SATP's) met it.
            let attentions: Vec<u64> = report.paths.iter().map(|p| p.unit_attentions).collect();
            assert_eq!(attentions, [0, 0, 1, 0]);
            assert_eq!(c.rule_psp_options, Some("iops=1"));
            assert_eq!(c.psp_config, "{policy=iops,iops=1,useANO=0}");
            assert_eq!(busy.len(), 2, "{kind:?}: {:?}", report.paths);
            assert!(busy.iter().all(|p| p.state == "active"), "{:?}", busy);
            assert!(
                busy[0].commands.abs_diff(busy[1].commands) <= 1,
                "{:?}",
                busy
            );
            assert!(c.satp_config.contains("TPG_state=AO"), "{}", c.satp_config);
        } else {
            assert_eq!(c.rule_psp_options, None, "{kind:?}");
            assert_eq!(busy.len(), 1, "{kind:?}: {:?}", report.paths);
        }
        let rendered = demo::render(&DemoConfig::default(), &report);
        for line in [
            format!("   Storage Array Type: {satp}\n"),
            format!("   Path Selection Policy: {psp}\n"),
            "   Claim Rule: ".to_string(),
        ] {
            assert!(
                rendered.contains(&line),
                "{kind:?}: no {line:?} in\n{rendered}"
            );
        }
    }
}

#[test]
fn array_faults_are_survived_on_every_array_kind_with_its_claimed_plugins() {
    for kind in ArrayKind::ALL {
        let report = demo::run(&DemoConfig {
            array: kind,
            ..small(true, 2)
        })
        .unwrap();
        let (satp, psp, _) = expected_claim(kind);
        assert_eq!((report.claim.satp, report.claim.psp), (satp, psp));
        assert_faults_survived(&format!("{kind:?}"), kind, &report);
    }
}

/// Round robin over the owner's paths of an ALUA and a CLARiiON-style array, with and without
/// the fault schedule: the I/O is spread, never sent to non-optimized paths (no useANO), and
/// nothing fails.
#[test]
fn round_robin_on_alua_and_cx_with_and_without_faults() {
    for kind in [ArrayKind::Alua, ArrayKind::ActivePassiveCx] {
        for faults in [false, true] {
            for rr in [
                RrConfig::default(),
                RrConfig {
                    iops: 1,
                    bytes: u64::MAX,
                    ..RrConfig::default()
                },
            ] {
                let label = format!("{kind:?}, faults {faults}, iops {}", rr.iops);
                let report = demo::run(&DemoConfig {
                    array: kind,
                    psp: Some(PspChoice::RoundRobin(rr)),
                    ..small(faults, 4)
                })
                .unwrap();
                assert_eq!(report.claim.psp, "VMW_PSP_RR", "{label}");
                assert!(report.claim.psp_overridden, "{label}");
                assert!(!report.claim.satp_overridden, "{label}");
                assert_eq!(report.claim.satp, expected_claim(kind).0, "{label}");
                if faults {
                    assert_faults_survived(&label, kind, &report);
                    continue;
                }
                assert!(report.is_clean(), "{label}: {:?}", report.mismatches);
                assert_eq!(errors(&report), 0, "{label}");
                // vmhba1:C0:T0:L0 and vmhba2:C0:T0:L0 lead to the owner (controller 0).
                let owner: Vec<_> = report
                    .paths
                    .iter()
                    .filter(|p| p.name.contains(":T0:"))
                    .collect();
                let total: u64 = report.paths.iter().map(|p| p.commands).sum();
                for p in &owner {
                    assert!(
                        p.commands * 3 > total,
                        "{label}: round robin spreads over both owner paths: {:?}",
                        report.paths
                    );
                }
                for p in report.paths.iter().filter(|p| p.name.contains(":T1:")) {
                    // ALUA: non-optimized, never chosen; CX: passive, tried once per path
                    // before the SATP marks it standby.
                    assert!(p.commands < 20, "{label}: {p:?}");
                    let state = if kind == ArrayKind::Alua {
                        "active unoptimized"
                    } else {
                        "standby"
                    };
                    assert_eq!(p.state, state, "{label}");
                }
            }
        }
    }
}

/// Every PSP the command line names on `kind`, under the fault schedule: nothing fails, data
/// verifies, the SATP does what the array needs.
fn every_psp_survives_the_faults_on(kind: ArrayKind) {
    let specs = [
        "VMW_PSP_MRU",
        "VMW_PSP_FIXED",
        "VMW_PSP_RR:type=bytes,bytes=65536",
        "VMW_PSP_RR:type=latency,samplingCycles=4,latencyEvalTime=20",
        "VMW_PSP_RR:iops=10,useANO=1",
        "DM_PSP_QUEUE_LENGTH",
        "DM_PSP_SERVICE_TIME",
    ];
    for spec in specs {
        let report = demo::run(&DemoConfig {
            array: kind,
            psp: Some(PspChoice::parse(spec).unwrap()),
            ..small(true, 5)
        })
        .unwrap();
        let label = format!("{kind:?} with {spec}");
        assert_eq!(report.claim.psp, spec.split(':').next().unwrap(), "{label}");
        assert_faults_survived(&label, kind, &report);
    }
}

#[test]
fn every_psp_survives_the_faults_on_active_active() {
    every_psp_survives_the_faults_on(ArrayKind::ActiveActive);
}

#[test]
fn every_psp_survives_the_faults_on_active_passive() {
    every_psp_survives_the_faults_on(ArrayKind::ActivePassive);
}

#[test]
fn every_psp_survives_the_faults_on_active_passive_cx() {
    every_psp_survives_the_faults_on(ArrayKind::ActivePassiveCx);
}

#[test]
fn every_psp_survives_the_faults_on_alua() {
    every_psp_survives_the_faults_on(ArrayKind::Alua);
}

#[test]
fn satp_overrides_must_fit_the_array() {
    for kind in ArrayKind::ALL {
        for satp in SatpName::ALL {
            let config = DemoConfig {
                array: kind,
                satp: Some(satp),
                ..small(false, 6)
            };
            let fits = satp.name() == expected_claim(kind).0;
            match demo::run(&config) {
                Ok(report) => {
                    assert!(fits, "{kind:?} took {satp:?}");
                    assert_eq!(report.claim.satp, satp.name());
                    assert!(report.claim.satp_overridden);
                    assert!(report.is_clean());
                }
                Err(e) => {
                    assert!(!fits, "{kind:?} refused {satp:?}: {e}");
                    assert!(
                        e.contains(satp.name()) && e.contains("does not fit"),
                        "{kind:?}, {satp:?}: {e}"
                    );
                }
            }
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
    let rr = DemoConfig {
        array: ArrayKind::ActivePassiveCx,
        psp: Some(PspChoice::RoundRobin(RrConfig::default())),
        ..small(true, 9)
    };
    assert_eq!(demo::run(&rr).unwrap(), demo::run(&rr).unwrap());
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

fn host(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_line_refuses_unknown_names_and_misfits() {
    for (args, why) in [
        (
            &["demo", "--psp", "VMW_PSP_BEST"][..],
            "unknown PSP \"VMW_PSP_BEST\"",
        ),
        (&["demo", "--psp", "VMW_PSP_RR:iops=0"], "at least 1"),
        (
            &["demo", "--psp", "VMW_PSP_FIXED:iops=3"],
            "unknown VMW_PSP_FIXED option \"iops\"",
        ),
        (&["demo", "--psp", "VMW_PSP_MRU:iops=3"], "takes no options"),
        (
            &[
                "demo",
                "--psp",
                "fixed:preferred=vmhba9:C0:T0:L0",
                "--seconds",
                "0.01",
            ],
            "the device has no path vmhba9:C0:T0:L0; its paths are vmhba1:C0:T0:L0",
        ),
        (
            &["demo", "--satp", "VMW_SATP_EVA"],
            "unknown SATP \"VMW_SATP_EVA\"",
        ),
        (
            &["demo", "--array", "ap-cx", "--satp", "VMW_SATP_DEFAULT_AP"],
            "VMW_SATP_DEFAULT_AP does not fit",
        ),
        (
            &["demo", "--array", "aa", "--satp", "VMW_SATP_ALUA"],
            "no ALUA support",
        ),
    ] {
        let (code, stdout, stderr) = host(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn command_line_shows_the_claim_in_text_and_json() {
    let (code, rules, _) = host(&["demo", "--list-rules"]);
    assert_eq!(code, 0);
    assert!(
        rules.contains("VMW_SATP_CX          ESXSIM  DEMO CX   tpgs_off       VMW_PSP_MRU "),
        "{rules}"
    );
    assert!(
        rules.contains(
            "VMW_SATP_ALUA        ESXSIM  DEMO ALUA tpgs_on        VMW_PSP_RR    iops=1       "
        ),
        "{rules}"
    );

    let short = ["--seconds", "0.02", "--lun-mib", "8"];
    let (code, text, stderr) = host(&[&["demo", "--array", "ap-cx"][..], &short].concat());
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "   Storage Array Type: VMW_SATP_CX\n",
        "   Path Selection Policy: VMW_PSP_MRU\n",
        "   Claim Rule: rule 1 of 3 (vendor ESXSIM, model DEMO CX, tpgs_off)",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }

    let (code, json, stderr) = host(
        &[
            &[
                "demo",
                "--array",
                "alua",
                "--psp",
                "VMW_PSP_RR:iops=3",
                "--json",
            ][..],
            &short,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let claim = &v["claim"];
    assert_eq!(claim["storage_array_type"], "VMW_SATP_ALUA");
    assert_eq!(claim["path_selection_policy"], "VMW_PSP_RR");
    assert_eq!(claim["rule"]["number"], 3);
    assert_eq!(claim["rule"]["psp_options"], "iops=1");
    assert_eq!(claim["rule_psp"], "VMW_PSP_RR");
    assert_eq!(claim["rule_psp_options"], "iops=1");
    assert_eq!(claim["psp_overridden"], true);
    assert_eq!(
        claim["path_selection_policy_device_config"],
        "{policy=iops,iops=3,useANO=0}"
    );
    assert_eq!(v["verification"]["clean"], true);
    assert_eq!(v["total"]["errors"], 0);
    assert_eq!(v["paths"].as_array().map(Vec::len), Some(4));
}

/// `VMW_PSP_FIXED:preferred=...` (esxcli's `psp fixed deviceconfig set --path`) sends the I/O to
/// that path, and after the fault schedule took it away, back to it.
#[test]
fn fixed_uses_the_configured_preferred_path_and_fails_back_to_it() {
    let preferred = host::plugins::parse_path_name("vmhba2:C0:T1:L0").unwrap();
    for faults in [false, true] {
        let label = format!("faults {faults}");
        let report = demo::run(&DemoConfig {
            array: ArrayKind::ActiveActive,
            psp: Some(PspChoice::Fixed(Some(preferred))),
            ..small(faults, 9)
        })
        .unwrap();
        assert!(report.claim.psp_overridden, "{label}");
        assert!(
            report
                .claim
                .psp_config
                .contains("preferred=vmhba2:C0:T1:L0"),
            "{label}: {}",
            report.claim.psp_config
        );
        let total: u64 = report.paths.iter().map(|p| p.commands).sum();
        let on_preferred = report
            .paths
            .iter()
            .find(|p| p.name == "vmhba2:C0:T1:L0")
            .unwrap()
            .commands;
        if faults {
            assert_faults_survived(&label, ArrayKind::ActiveActive, &report);
            // Most of the run is on the preferred path: FIXED fails back to it once it returns.
            assert!(on_preferred * 2 > total, "{label}: {:?}", report.paths);
        } else {
            assert!(report.is_clean(), "{label}: {:?}", report.mismatches);
            assert_eq!(on_preferred, total, "{label}: {:?}", report.paths);
        }
    }
}
