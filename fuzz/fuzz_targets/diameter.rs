//! libFuzzer target `diameter`: the checks of [`pmip_common::fuzzing::diameter`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::diameter(data));
