//! Fuzz target `amqp_headers`: see `atelier_domain::fuzzing::amqp_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::amqp_headers(data));
