//! libFuzzer target `ike_sk`: the checks of [`pmip_common::fuzzing::ike_sk`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::ike_sk(data));
