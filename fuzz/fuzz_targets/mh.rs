//! libFuzzer target `mh`: the checks of [`pmip_common::fuzzing::mh`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::mh(data));
