//! libFuzzer target `gre`: the checks of [`pmip_common::fuzzing::gre`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pmip_common::fuzzing::gre(data));
