//! The NMP's side of path activation: every activation's outcome reaches the SATP
//! (`Satp::activation_done`), at most one activation is in flight per device, requests that
//! ask for one wait for it instead of asking again, and after a failed activation no other is
//! sent for `NmpConfig::activation_interval`, even by an SATP that ignores failures.

mod common;

use array::{Personality, TrespassCommand};
use block::testing::ExactlyOnce;
use block::{ErrorKind, Instant, MemAddr};
use common::*;
use psa::{ActivationOutcome, MostRecentlyUsed, NmpConfig, NmpDevice};
use scsi::{Asc, CommandCompletion, SenseKey, Status};

type Dev<'a, 'b> =
    NmpDevice<Scripted<&'b mut Sim<'a>>, StartStopTrespass, MostRecentlyUsed, 4, 64, 8>;

fn claim_scripted<'a, 'b>(
    array: &'b mut Sim<'a>,
    memory: &mut block::MemoryRegions<'_, 2>,
    satp: StartStopTrespass,
    script: Vec<Option<CommandCompletion>>,
) -> (Dev<'a, 'b>, Instant) {
    let (device, now) = scan_four_paths(&mut *array, memory);
    let config = NmpConfig {
        scratch: Some(MemAddr(0x10_0000)),
        ..NmpConfig::default()
    };
    let transport = Scripted::new(array, script);
    let nmp = NmpDevice::new(transport, &device, satp, MostRecentlyUsed::new(), config).unwrap();
    (nmp, now)
}

fn ap() -> Personality {
    Personality::ActivePassive {
        implicit_trespass: false,
    }
}

#[test]
fn every_activation_outcome_reaches_the_satp_once() {
    let seed = 11;
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let mut array = make_array(&mut storage, ap(), seed);
    let script = vec![
        Some(check_condition(
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_FIELD_IN_CDB,
        )),
        Some(CommandCompletion::status(block::Tag(0), Status::BUSY)),
        Some(check_condition(SenseKey::NOT_READY, Asc::new(0x04, 0x03))),
        Some(delivery_failure()),
        // Then the array's own answer: the trespass.
    ];
    let (mut nmp, start) = claim_scripted(
        &mut array,
        &mut memory,
        StartStopTrespass::new(false),
        script,
    );
    schedule(
        nmp.transport_mut().inner,
        start,
        &owner_links_down(10, None),
    );
    let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
    let out = run_workload(&mut dev, &mut memory, start, 2_000, seed);
    assert_eq!(out.completed, 2_000);
    assert_eq!(out.failures(), 0, "{out:?}");
    let nmp = dev.into_inner();
    let outcomes: Vec<ActivationOutcome> = nmp.satp().outcomes.iter().map(|o| o.2).collect();
    assert_eq!(
        outcomes,
        [
            ActivationOutcome::CheckCondition {
                key: SenseKey::ILLEGAL_REQUEST,
                asc: Asc::INVALID_FIELD_IN_CDB
            },
            ActivationOutcome::Status(Status::BUSY),
            ActivationOutcome::CheckCondition {
                key: SenseKey::NOT_READY,
                asc: Asc::new(0x04, 0x03)
            },
            ActivationOutcome::Transport,
            ActivationOutcome::Good,
        ]
    );
    let t = nmp.transport();
    assert_eq!(t.sent.len(), 5, "one command per outcome");
    assert_eq!(t.max_outstanding, 1, "one activation in flight at a time");
    // After each failure, the next one waited for the activation interval.
    for w in nmp.satp().outcomes.windows(2) {
        let next_sent = t.sent.iter().find(|s| s.0 > w[0].0).expect("sent").0;
        assert!(
            next_sent.0 - w[0].0.0 >= 100 * MS,
            "{:?} then {next_sent:?}",
            w[0]
        );
    }
    // The path the transport failure hit was marked dead, so the trespass that worked went
    // on the other standby path (paths 1 and 3 lead to controller 1).
    let o = &nmp.satp().outcomes;
    assert_ne!(o[3].1, o[4].1);
    let stats = nmp.esxtop().stats;
    assert_eq!((stats.activations, stats.activation_failures), (5, 4));
    assert_eq!(t.inner.stats().start_stop_trespasses, 1);
    assert_eq!(t.inner.owner(0), Some(1));
}

/// An SATP that ignores failed activations and asks for one on every passive answer, against
/// an array that never takes its command (START STOP UNIT on a page-0x22 array) while the
/// owner is unreachable: the NMP sends one activation at a time, no sooner than 100 ms after
/// a failed one, however many requests ask; every request completes once, with NOT READY.
#[test]
fn an_satp_that_ignores_failures_cannot_storm() {
    let seed = 12;
    let mut storage = vec![0u8; DISK_BLOCKS as usize * BLOCK];
    let mut scratch = vec![0u8; 2048];
    let mut buffers = vec![0u8; QD * BUFFER_LEN];
    let mut memory = memory_regions(&mut scratch, &mut buffers);
    let mut array = make_array_with(&mut storage, ap(), seed, TrespassCommand::ModeSelectPage22);
    let (mut nmp, start) = claim_scripted(
        &mut array,
        &mut memory,
        StartStopTrespass::new(true),
        vec![],
    );
    schedule(
        nmp.transport_mut().inner,
        start,
        &owner_links_down(10, None),
    );
    let mut dev: ExactlyOnce<_, 128> = ExactlyOnce::new(nmp);
    let ios = 1_000;
    let out = run_workload(&mut dev, &mut memory, start, ios, seed);
    assert_eq!(out.completed, ios);
    assert_eq!(
        out.failures(),
        out.failed.get(&ErrorKind::NotReady).copied().unwrap_or(0),
        "{out:?}"
    );
    assert!(out.failures() > ios / 3, "{out:?}");
    let nmp = dev.into_inner();
    let t = nmp.transport();
    assert_eq!(t.max_outstanding, 1);
    let elapsed = out.end.0 - start.0;
    let sent = t.sent.len() as u64;
    assert!(
        sent <= elapsed / (100 * MS) + 1,
        "{sent} activations in {elapsed} ns"
    );
    // Requests waited for the activation instead of asking again each: far fewer
    // activations than failed requests times their retries.
    assert!(sent * 10 < out.failures() * 40, "{sent} for {out:?}");
    eprintln!(
        "naive SATP: {sent} activations, {} failed I/Os, {:.1} s simulated",
        out.failures(),
        elapsed as f64 / 1e9
    );
    let stats = nmp.esxtop().stats;
    assert_eq!(stats.activations, sent);
    assert_eq!(stats.activation_failures, sent);
}
