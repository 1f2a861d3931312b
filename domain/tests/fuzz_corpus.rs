//! Replays the fuzz corpus committed under `fuzz/corpus/<target>/` and the
//! crash reproducers under `fuzz/regressions/<target>/` through the same
//! entry points the cargo-fuzz targets call (`atelier_domain::fuzzing`), so
//! CI checks them on stable without libFuzzer. A file that panics fails
//! the test with its path.

use atelier_domain::fuzzing::TARGETS;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind);
    let mut count = 0;
    let mut failed = Vec::new();
    for (name, entry) in TARGETS {
        for file in files(&root.join(name)) {
            // A file gone since the listing (a fuzzer reducing the corpus
            // while this runs) is skipped; any other read error fails.
            let data = match std::fs::read(&file) {
                Ok(data) => data,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            if std::panic::catch_unwind(|| entry(&data)).is_err() {
                failed.push(file.display().to_string());
            }
            count += 1;
        }
    }
    assert!(failed.is_empty(), "{} {kind} file(s) fail their target: {failed:#?}", failed.len());
    count
}

#[test]
fn every_target_has_a_committed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, _) in TARGETS {
        assert!(files(&root.join(name)).len() >= 2, "fuzz/corpus/{name} is missing or nearly empty");
    }
}

#[test]
fn corpus_replays_without_a_failure() {
    assert!(replay("corpus") > 0);
}

#[test]
fn crash_reproducers_stay_fixed() {
    replay("regressions");
}
