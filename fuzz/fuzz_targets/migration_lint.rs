//! Fuzz target `migration_lint`: see `atelier_domain::fuzzing::migration_lint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| atelier_domain::fuzzing::migration_lint(data));
