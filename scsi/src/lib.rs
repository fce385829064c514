#![cfg_attr(not(feature = "std"), no_std)]
#![doc = include_str!("../README.md")]
//!
//! # Commands
//!
//! Every operation code the emulated [`Lun`] answers, whether it is supported, and the tests
//! that check it (`lun::` is `tests/lun.rs`, `oracle::` is `tests/sg3_oracle.rs`, checked by
//! sg3_utils; every CDB also round-trips in `roundtrip::every_cdb_round_trips` and is fed to
//! the LU by `never_panic::arbitrary_commands_never_panic_and_complete_once`).
//!
//! | Opcode | Command | Supported | Tests |
//! |---|---|---|---|
//! | 0x00 | TEST UNIT READY | yes | `lun::power_on_unit_attention_is_reported_once_and_inquiry_is_exempt`, `lun::start_stop_unit_and_get_lba_status` |
//! | 0x03 | REQUEST SENSE | yes (fixed and descriptor) | `lun::request_sense_returns_and_clears_the_unit_attention` |
//! | 0x08 | READ(6) | yes | `lun::read_write_round_trip_with_fua_and_residuals` |
//! | 0x0A | WRITE(6) | yes | `lun::verify_write_and_verify_write6_and_prevent_allow` |
//! | 0x12 | INQUIRY | yes: standard data, VPD 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 | `oracle::standard_inquiry_decodes_to_the_configured_identity`, `oracle::vpd_*` |
//! | 0x15 | MODE SELECT(6) | yes: pages 0x01, 0x08, 0x0A; only D_SENSE is changeable | `lun::mode_select_switches_to_descriptor_sense` |
//! | 0x16 | RESERVE(6) | yes (logical unit) | `lun::spc2_reservations` |
//! | 0x17 | RELEASE(6) | yes | `lun::spc2_reservations` |
//! | 0x1A | MODE SENSE(6) | yes: pages 0x01, 0x08, 0x0A, 0x3F; current, changeable, default | `lun::write_protection`, `lun::mode_select_switches_to_descriptor_sense` |
//! | 0x1B | START STOP UNIT | yes (START only; no power conditions, no LOEJ) | `lun::start_stop_unit_and_get_lba_status` |
//! | 0x1E | PREVENT ALLOW MEDIUM REMOVAL | yes (no effect: fixed medium) | `lun::verify_write_and_verify_write6_and_prevent_allow` |
//! | 0x25 | READ CAPACITY(10) | yes | `lun::capacity_change_and_reset_raise_unit_attentions` |
//! | 0x28 | READ(10) | yes | `lun::read_write_round_trip_with_fua_and_residuals`, bench `lun_read10_4k_ramdisk` |
//! | 0x2A | WRITE(10) | yes | `lun::read_write_round_trip_with_fua_and_residuals`, `lun::write_with_mismatched_buffer_is_refused` |
//! | 0x2E | WRITE AND VERIFY(10) | yes (a FUA write) | `lun::verify_write_and_verify_write6_and_prevent_allow` |
//! | 0x2F | VERIFY(10) | yes; BYTCHK 01b/11b through the device's compare-and-write | `lun::verify_write_and_verify_write6_and_prevent_allow`, `lun::verify_with_byte_check_needs_compare_and_write_in_the_device` |
//! | 0x35 | SYNCHRONIZE CACHE(10) | yes (Flush), IMMED | `lun::synchronize_cache_is_a_flush`, `lun::synchronize_cache_with_immed_reports_before_the_flush_ends`, `lun::a_failed_background_flush_is_a_deferred_error` |
//! | 0x41 | WRITE SAME(10) | yes, with UNMAP | `lun::unmap_and_write_same` |
//! | 0x42 | UNMAP | if the device has `UNMAP` | `lun::unmap_and_write_same`, `lun::compare_and_write_is_an_invalid_opcode_without_device_support` |
//! | 0x55 | MODE SELECT(10) | yes | `lun::mode_select_10_and_write_same_without_a_data_buffer` |
//! | 0x56 | RESERVE(10) | yes (logical unit) | `roundtrip`, `never_panic` |
//! | 0x57 | RELEASE(10) | yes | `lun::spc2_reservations` |
//! | 0x5A | MODE SENSE(10) | yes, LLBAA | `lun::mode_sense_all_pages_with_block_descriptor` |
//! | 0x5E | PERSISTENT RESERVE IN | READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS (SAS TransportIDs) | `lun::persistent_reservations_register_reserve_preempt_release_clear` |
//! | 0x5F | PERSISTENT RESERVE OUT | REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND IGNORE; all six types; ALL_TG_PT; SPEC_I_PT with SAS TransportIDs; no APTPL | `lun::persistent_reservations_register_reserve_preempt_release_clear`, `lun::preempting_with_another_type_releases_for_the_other_registrants`, `lun::preempt_and_abort_aborts_the_queued_commands_of_the_preempted`, `lun::registrations_belong_to_an_i_t_nexus_unless_all_target_ports`, `lun::register_with_specified_initiator_ports` |
//! | 0x88 | READ(16) | yes | `lun::read_write_round_trip_with_fua_and_residuals` |
//! | 0x89 | COMPARE AND WRITE | if the device has `COMPARE_AND_WRITE` | `lun::compare_and_write_success_and_miscompare_offset` |
//! | 0x8A | WRITE(16) | yes | `never_panic` |
//! | 0x8E | WRITE AND VERIFY(16) | yes (a FUA write) | `never_panic` |
//! | 0x8F | VERIFY(16) | yes; BYTCHK 01b/11b through the device's compare-and-write | `lun::verify_write_and_verify_write6_and_prevent_allow` |
//! | 0x91 | SYNCHRONIZE CACHE(16) | yes (Flush), IMMED | `lun::synchronize_cache_is_a_flush`, `lun::synchronize_cache_with_immed_reports_before_the_flush_ends` |
//! | 0x93 | WRITE SAME(16) | yes, with UNMAP and NDOB | `lun::unmap_and_write_same`, `lun::mode_select_10_and_write_same_without_a_data_buffer` |
//! | 0x9E/0x10 | READ CAPACITY(16) | yes (LBPME, LBPRZ) | `lun::read_capacity_16_reports_thin_provisioning` |
//! | 0x9E/0x12 | GET LBA STATUS | yes: extents the LU unmapped are deallocated, the rest "mapped or unknown" (`BlockDevice` has no query); REPORT TYPE 0–3 | `lun::get_lba_status_reports_what_the_lu_unmapped`, `lun::get_lba_status_report_types_filter_the_runs`, `oracle::get_lba_status_shows_deallocated_extents` |
//! | 0xA0 | REPORT LUNS | yes (the configured list) | `lun::report_luns_and_supported_opcodes` |
//! | 0xA3/0x0A | REPORT TARGET PORT GROUPS | if port groups are configured | `lun::alua_groups_report_set_and_refuse_on_standby` |
//! | 0xA3/0x0C | REPORT SUPPORTED OPERATION CODES | yes, all forms, RCTD | `lun::report_luns_and_supported_opcodes` |
//! | 0xA4/0x0A | SET TARGET PORT GROUPS | if port groups are configured and TPGS has explicit | `lun::alua_groups_report_set_and_refuse_on_standby` |
//! | 0xA8 | READ(12) | yes | `lun::read_write_round_trip_with_fua_and_residuals` |
//! | 0xAA | WRITE(12) | yes | `never_panic` |
//! | 0xAE | WRITE AND VERIFY(12) | yes (a FUA write) | `never_panic` |
//! | 0xAF | VERIFY(12) | yes; BYTCHK 01b/11b through the device's compare-and-write | `never_panic` |
//! | any other | (FORMAT UNIT, LOG SENSE, READ/WRITE BUFFER, EXTENDED COPY, 32-byte CDBs, ...) | no: INVALID COMMAND OPERATION CODE | `lun::unsupported_opcode_and_invalid_fields` |
//!
//! # Semantics worth knowing
//!
//! - Checks run in the order of Linux's target core: unit attention (INQUIRY, REPORT LUNS and
//!   REQUEST SENSE are exempt; REQUEST SENSE returns and clears it), the ALUA access state of
//!   the port, reservations (a CDB that does not parse is classed by its opcode, an unknown
//!   opcode as a write), then CDB decoding (INVALID COMMAND OPERATION CODE, or INVALID FIELD IN
//!   CDB with the field pointer of the first reserved bit set) and the command itself.
//! - Residuals: data-in shorter than the buffer is an underflow; a READ whose buffer is shorter
//!   than the transfer reads the whole blocks that fit and reports an overflow. A WRITE whose
//!   buffer differs from the transfer is refused (INVALID FIELD IN COMMAND INFORMATION UNIT),
//!   and a parameter list longer than its buffer is INVALID FIELD IN CDB at the PARAMETER LIST
//!   LENGTH field, as Linux does; a longer buffer is an underflow.
//! - Device errors map to sense: medium errors to MEDIUM ERROR with the LBA, miscompares to
//!   MISCOMPARE with the offset of the first differing byte, a lost device to LOGICAL UNIT NOT
//!   SUPPORTED, busy/queue full to BUSY/TASK SET FULL.
//! - SYNCHRONIZE CACHE with IMMED reports GOOD once the CDB is validated; the flush goes on in
//!   the background, and if it fails the initiator's next command gets the failure as a
//!   deferred error (response code 0x71/0x73).
//! - Commands addressed to a LUN other than [`LunConfig::lun`] get LOGICAL UNIT NOT SUPPORTED;
//!   INQUIRY answers with peripheral qualifier 3 and REPORT LUNS is answered.
//! - VERIFY with BYTCHK uses the device's atomic compare-and-write with the same bytes as
//!   both halves, so a miscompare changes nothing and an equal range is rewritten unchanged;
//!   the INFORMATION field is the offset from the start of the verified range.
//! - Registrations belong to an I_T nexus (initiator and relative target port), or with
//!   ALL_TG_PT to the initiator through every port; unit attentions are per initiator.
//! - Aborted commands (LU reset, PREEMPT AND ABORT) complete with TASK ABORTED (TAS=1).
//! - Task attributes (SAM-5 8.6): HEAD OF QUEUE starts at once, ORDERED after every older
//!   command completes, SIMPLE after every older ORDERED one; otherwise oldest first
//!   (`lun::task_attributes_order_the_task_set`).
//! - Initiators are named by SAS TransportIDs (READ FULL STATUS, SPEC_I_PT): the SAS address
//!   is the `InitiatorId`.
//! - Not supported yet: APTPL in PERSISTENT RESERVE OUT, REGISTER AND MOVE,
//!   anchored LBAs, protection information, ACA (an ACA task is refused with INVALID FIELD IN
//!   COMMAND INFORMATION UNIT).

pub mod cdb;
pub mod lun;
pub mod provisioning;
pub mod response;
pub mod sense;
pub mod status;
pub mod transport;

pub use cdb::{COMMANDS, Cdb, CdbError, CdbRepr, CdbSize, CommandSpec, Rw, RwKind};
pub use lun::{Lun, LunConfig, PortGroup};
pub use response::{AccessState, NaaId};
pub use sense::{Sense, SenseBuf, SenseError, SenseFormat, SenseKeySpecific, SenseRepr};
pub use status::{ASC_TABLE, Asc, SenseKey, Status};
pub use transport::{
    CdbBytes, Command, CommandCompletion, DataDirection, InitiatorId, Nexus, Residual, RunError,
    ServiceResponse, TaskAttribute, Transport, TransportSubmitError, TransportSubmitErrorKind,
    run_to_completion,
};

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    /// The command table in the crate documentation names every command of [`COMMANDS`].
    #[test]
    fn opcode_table_covers_every_command() {
        let docs = include_str!("lib.rs");
        for spec in crate::COMMANDS {
            let code = match spec.service_action {
                Some(sa)
                    if spec.opcode != crate::cdb::opcode::PERSISTENT_RESERVE_IN
                        && spec.opcode != crate::cdb::opcode::PERSISTENT_RESERVE_OUT =>
                {
                    format!("| 0x{:02X}/0x{:02X} |", spec.opcode, sa)
                }
                _ => format!("| 0x{:02X} |", spec.opcode),
            };
            assert!(
                docs.contains(&code),
                "{} ({code}) missing from the table",
                spec.name
            );
        }
    }

    /// Every test the command table names exists.
    #[test]
    fn tests_named_in_the_table_exist() {
        let docs: std::string::String = include_str!("lib.rs")
            .lines()
            .filter(|l| l.starts_with("//!"))
            .collect();
        let sources = [
            ("`lun::", include_str!("../tests/lun.rs")),
            ("`oracle::", include_str!("../tests/sg3_oracle.rs")),
        ];
        for (prefix, source) in sources {
            for (at, _) in docs.match_indices(prefix) {
                let rest = &docs[at + prefix.len()..];
                let name = &rest[..rest.find('`').unwrap_or(0)];
                if name.ends_with('*') || name.is_empty() {
                    continue;
                }
                assert!(
                    source.contains(&format!("fn {name}(")),
                    "{prefix}{name}` is in the table but not a test"
                );
            }
        }
    }
}
