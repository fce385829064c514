//! Fuzz target: arbitrary bytes laid over the files of a three-deep chain (sparse base,
//! `COWD` delta, hosted delta) must never panic opening, I/O, check, consolidation or close.
#![no_main]

mod harness;

thread_local! {
    static CHAIN: vmdk::MemSource = harness::chain();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    CHAIN.with(|chain| harness::corrupted_chain(chain, data));
});
