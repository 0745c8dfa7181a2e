//! libFuzzer target `eap`: the checks of [`pmip_common::fuzzing::eap`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::eap(data));
