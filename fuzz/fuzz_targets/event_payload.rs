//! Fuzz target `event_payload`: see `atelier_domain::fuzzing::event_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::event_payload(data));
