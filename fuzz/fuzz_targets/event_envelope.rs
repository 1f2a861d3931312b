//! Fuzz target `event_envelope`: see `atelier_domain::fuzzing::event_envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::event_envelope(data));
