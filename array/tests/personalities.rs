//! Personalities and faults of the simulated array, command by command.

mod common;

use common::*;

use core::time::Duration;

use array::{
    ASC_NOT_READY_MANUAL_INTERVENTION, Array, ArrayConfig, Fault, LinkFailure, Personality,
};
use block::{Instant, MemAddr, MemoryRegions, RamDisk, SgList, Tag};
use scsi::cdb::CdbRepr;
use scsi::response::parse_target_port_groups;
use scsi::{
    AccessState, Asc, Command, InitiatorId, LunConfig, NaaId, Nexus, SenseKey, ServiceResponse,
    Status, run_to_completion,
};

const SEC: u64 = 1_000_000_000;

fn array(storage: &mut [u8], personality: Personality) -> Sim<'_> {
    let mut a: Sim<'_> = Array::new(ArrayConfig::new(personality).with_seed(7));
    for (id, c) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
        a.add_port(id, c).unwrap();
    }
    let disk = RamDisk::new(storage, 512).unwrap();
    let config = LunConfig::new("SIM", "ARRAY", "1", "SN", NaaId::registered(0x1405, 9));
    a.add_lun(disk, config, 0).unwrap();
    a
}

#[test]
fn active_passive_answers_not_ready_on_the_passive_controller_and_trespasses() {
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let mut a = array(
        &mut storage,
        Personality::ActivePassive {
            implicit_trespass: false,
        },
    );
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    let c = run_past_ua(&mut a, &mut mem, 1000, 3, &read());
    assert_eq!(
        key_asc(&c),
        (SenseKey::NOT_READY, ASC_NOT_READY_MANUAL_INTERVENTION)
    );
    // INQUIRY is answered on the passive path.
    let inq = CdbRepr::Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 36,
    };
    assert!(once(&mut a, &mut mem, 2000, 3, &inq).is_good());
    // START STOP UNIT trespasses.
    let start = CdbRepr::StartStopUnit {
        immed: false,
        power_condition_modifier: 0,
        power_condition: 0,
        no_flush: false,
        loej: false,
        start: true,
    };
    assert!(once(&mut a, &mut mem, 3000, 3, &start).is_good());
    assert_eq!(a.owner(0), Some(1));
    assert!(run_past_ua(&mut a, &mut mem, 4000, 4, &read()).is_good());
    let c = run_past_ua(&mut a, &mut mem, 5000, 1, &read());
    assert_eq!(key_asc(&c).1, ASC_NOT_READY_MANUAL_INTERVENTION);
    assert_eq!(a.stats().trespasses, 1);
}

#[test]
fn implicit_trespass_moves_ownership_on_io() {
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let mut a = array(
        &mut storage,
        Personality::ActivePassive {
            implicit_trespass: true,
        },
    );
    assert!(run_past_ua(&mut a, &mut mem, 0, 3, &read()).is_good());
    assert_eq!(a.owner(0), Some(1));
}

#[test]
fn alua_groups_transitions_and_controller_failover() {
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let personality = Personality::Alua {
        explicit: true,
        non_owner: AccessState::Standby,
    };
    let mut a = array(&mut storage, personality);
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    let c = run_past_ua(&mut a, &mut mem, 1000, 3, &read());
    assert_eq!(key_asc(&c), (SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY));
    // RTPG lists two groups: 1 AO (ports 1, 2), 2 standby (ports 3, 4).
    let rtpg = CdbRepr::ReportTargetPortGroups {
        extended: false,
        allocation_length: 512,
    };
    let c = once(&mut a, &mut mem, 2000, 3, &rtpg);
    assert!(c.is_good());
    let data = page_copy(&mem);
    let (_, groups) = parse_target_port_groups(&data).unwrap();
    let groups: Vec<_> = groups
        .map(|g| g.unwrap())
        .map(|g| (g.id, g.state_code, g.ports().collect::<Vec<_>>()))
        .collect();
    assert_eq!(groups, vec![(1, 0, vec![1, 2]), (2, 2, vec![3, 4])]);
    // Implicit transition of group 1 through TRANSITIONING to non-optimized.
    a.apply(
        Instant(3 * SEC),
        Fault::Transition {
            lun: 0,
            group: 1,
            to: AccessState::ActiveNonOptimized,
            duration: Duration::from_secs(1),
        },
    );
    let c = once(&mut a, &mut mem, 3 * SEC + 10, 1, &read());
    assert_eq!(
        key_asc(&c),
        (
            SenseKey::UNIT_ATTENTION,
            Asc::ASYMMETRIC_ACCESS_STATE_CHANGED
        )
    );
    let c = run_past_ua(&mut a, &mut mem, 3 * SEC + 100, 1, &read());
    assert_eq!(
        key_asc(&c),
        (SenseKey::NOT_READY, Asc::ASYMMETRIC_ACCESS_TRANSITION)
    );
    let c = run_past_ua(&mut a, &mut mem, 5 * SEC, 1, &read());
    assert!(c.is_good(), "{c:?}");
    // Controller 0 fails: its ports time out and group 2 becomes active/optimized.
    a.apply(Instant(6 * SEC), Fault::ControllerFail { controller: 0 });
    let c = once(&mut a, &mut mem, 6 * SEC, 1, &read());
    assert_eq!(c.service, ServiceResponse::ServiceDeliveryFailure);
    let c = run_past_ua(&mut a, &mut mem, 12 * SEC, 3, &read());
    assert!(c.is_good(), "{c:?}");
    assert_eq!(a.owner(0), Some(1));
}

fn page_copy(mem: &MemoryRegions<'_, 1>) -> Vec<u8> {
    use block::Memory;
    mem.slice(MemAddr(0x1000), 512).unwrap().to_vec()
}

#[test]
fn links_time_out_or_fail_and_flap() {
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let mut a = array(&mut storage, Personality::ActiveActive);
    a.schedule(
        Instant(SEC),
        Fault::LinkDown {
            port: 1,
            failure: LinkFailure::Timeout,
        },
    )
    .unwrap();
    a.schedule(Instant(20 * SEC), Fault::LinkUp { port: 1 })
        .unwrap();
    a.schedule(
        Instant(30 * SEC),
        Fault::Flap {
            port: 2,
            period: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            failure: LinkFailure::Error,
        },
    )
    .unwrap();
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 1,
        lun: 0,
    };
    let cmd = Command::new(Tag(99), nexus, &read())
        .data_in(SgList::single(MemAddr(0x1000), 512).unwrap());
    let (c, at) =
        run_to_completion(&mut a, &mut mem, Instant(2 * SEC), cmd, 64, &mut |_| {}).unwrap();
    assert_eq!(c.service, ServiceResponse::ServiceDeliveryFailure);
    assert_eq!(at, Instant(7 * SEC), "fails after the 5 s command timeout");
    // Back up: I_T nexus loss is reported.
    let c = once(&mut a, &mut mem, 21 * SEC, 1, &read());
    assert_eq!(
        key_asc(&c),
        (SenseKey::UNIT_ATTENTION, Asc::I_T_NEXUS_LOSS_OCCURRED)
    );
    // Flapping: down in even seconds, up in odd ones.
    let _ = run_past_ua(&mut a, &mut mem, 29 * SEC, 2, &read());
    let c = once(&mut a, &mut mem, 30 * SEC + 1, 2, &read());
    assert_eq!(c.service, ServiceResponse::ServiceDeliveryFailure);
    let c = once(&mut a, &mut mem, 31 * SEC + 1, 2, &read());
    assert!(c.is_good());
    let c = once(&mut a, &mut mem, 41 * SEC, 2, &read());
    assert!(c.is_good());
}

#[test]
fn congestion_queue_limit_latency_and_lun_removal() {
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let mut a = array(&mut storage, Personality::ActiveActive);
    assert!(run_past_ua(&mut a, &mut mem, 0, 1, &read()).is_good());
    a.apply(
        Instant(SEC),
        Fault::Congestion {
            port: None,
            status: Status::BUSY,
            permille: 1000,
            duration: Duration::from_secs(1),
        },
    );
    assert_eq!(once(&mut a, &mut mem, SEC, 1, &read()).status, Status::BUSY);
    assert!(once(&mut a, &mut mem, 2 * SEC, 1, &read()).is_good());
    a.apply(
        Instant(3 * SEC),
        Fault::Latency {
            port: 2,
            extra: Duration::from_millis(3),
        },
    );
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 2,
        lun: 0,
    };
    let cmd =
        Command::new(Tag(5), nexus, &read()).data_in(SgList::single(MemAddr(0x1000), 512).unwrap());
    let (_, at) =
        run_to_completion(&mut a, &mut mem, Instant(3 * SEC), cmd, 64, &mut |_| {}).unwrap();
    assert_eq!(at, Instant(3 * SEC + 3_000_000));
    // Queue limit 0: everything is TASK SET FULL.
    a.apply(
        Instant(4 * SEC),
        Fault::QueueLimit {
            lun: 0,
            limit: Some(0),
        },
    );
    assert_eq!(
        once(&mut a, &mut mem, 4 * SEC, 1, &read()).status,
        Status::TASK_SET_FULL
    );
    a.apply(
        Instant(4 * SEC),
        Fault::QueueLimit {
            lun: 0,
            limit: None,
        },
    );
    a.apply(Instant(5 * SEC), Fault::RemoveLun { lun: 0 });
    let c = once(&mut a, &mut mem, 5 * SEC, 1, &read());
    assert_eq!(
        key_asc(&c),
        (SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED)
    );
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn explicit_alua_set_target_port_groups_moves_the_owner() {
    use block::Memory;
    let mut storage = vec![0u8; 64 * 512];
    let mut page = [0u8; 512];
    let mut mem = MemoryRegions::<1>::new();
    mem.add(MemAddr(0x1000), &mut page).unwrap();
    let personality = Personality::Alua {
        explicit: true,
        non_owner: AccessState::Standby,
    };
    let mut a = array(&mut storage, personality);
    assert!(
        run_past_ua(&mut a, &mut mem, 0, 3, &CdbRepr::TestUnitReady)
            .sense_repr()
            .is_some()
    );
    // Group 2 active/optimized, group 1 standby.
    mem.write(MemAddr(0x1000), &[0, 0, 0, 0, 0x00, 0, 0, 2, 0x02, 0, 0, 1])
        .unwrap();
    let nexus = Nexus {
        initiator: InitiatorId(1),
        target_port: 3,
        lun: 0,
    };
    let stpg = CdbRepr::SetTargetPortGroups {
        parameter_list_length: 12,
    };
    let cmd =
        Command::new(Tag(77), nexus, &stpg).data_out(SgList::single(MemAddr(0x1000), 12).unwrap());
    let (c, _) = run_to_completion(&mut a, &mut mem, Instant(1000), cmd, 64, &mut |_| {}).unwrap();
    assert!(c.is_good(), "{c:?}");
    assert_eq!(a.owner(0), Some(1));
    assert!(run_past_ua(&mut a, &mut mem, 2000, 4, &read()).is_good());
    let c = run_past_ua(&mut a, &mut mem, 3000, 2, &read());
    assert_eq!(key_asc(&c), (SenseKey::NOT_READY, Asc::TARGET_PORT_STANDBY));
    // Controller 1 now fails: the LUN fails over back to controller 0.
    a.apply(Instant(SEC), Fault::ControllerFail { controller: 1 });
    assert_eq!(a.owner(0), Some(0));
    assert!(run_past_ua(&mut a, &mut mem, 2 * SEC, 1, &read()).is_good());
}
