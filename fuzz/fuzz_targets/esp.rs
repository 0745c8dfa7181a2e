//! libFuzzer target `esp`: the checks of [`pmip_common::fuzzing::esp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::esp(data));
