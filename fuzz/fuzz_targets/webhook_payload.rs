//! Fuzz target `webhook_payload`: see `atelier_domain::fuzzing::webhook_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::webhook_payload(data));
