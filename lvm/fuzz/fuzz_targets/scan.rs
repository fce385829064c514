//! Fuzz target: arbitrary LVM metadata on up to three devices must never panic the scan,
//! the mount or I/O through a mounted volume.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
