//! Fuzz target: arbitrary descriptor text must never panic parsing, emitting or editing, and
//! an unedited descriptor emits exactly its text.
#![no_main]

mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::descriptor(data));
