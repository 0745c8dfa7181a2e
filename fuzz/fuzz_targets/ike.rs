//! libFuzzer target `ike`: the checks of [`pmip_common::fuzzing::ike`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::ike(data));
