//! The fuzz targets' bodies (`fuzz/fuzz_targets/harness.rs`) run as proptests, so that every
//! `cargo test` exercises them: corrupted chains and arbitrary descriptors never panic.

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

use proptest::prelude::*;

thread_local! {
    static CHAIN: vmdk::MemSource = harness::chain();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn corrupted_chains_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        CHAIN.with(|chain| harness::corrupted_chain(chain, &data));
    }

    #[test]
    fn descriptors_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        harness::descriptor(&data);
    }

    #[test]
    fn descriptor_like_text_never_panics(text in "([A-Za-z.]{1,12} ?= ?\"?[ -~]{0,12}\"?\n|(RW|RDONLY) [0-9]{1,22} (FLAT|SPARSE|ZERO|VMFSSPARSE) \"[a-z]{1,5}\"( [0-9]{1,21})?\n|#[ -~]{0,10}\n|\n){0,20}") {
        harness::descriptor(text.as_bytes());
    }
}
