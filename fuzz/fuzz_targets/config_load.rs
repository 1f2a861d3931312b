//! Fuzz target `config_load`: see `atelier_domain::fuzzing::config_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::config_load(data));
