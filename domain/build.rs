//! Rebuilds the crate when a migration is added or changed: the migrations
//! are embedded (`store::migrations`), and cargo does not see new files on
//! its own (diesel_migrations' documented advice). Also writes the list of
//! every migration's `up.sql` and `down.sql` text, embedded too, for the
//! migration lint, phases and checksums (diesel_migrations keeps its
//! embedded SQL private).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    // The manifest directory of this build, read when the script runs (not
    // `env!`, which is fixed when the script is compiled: a target directory
    // moved to another checkout would embed the old checkout's migrations).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../migrations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("migrations/ is readable")
        .flatten()
        .filter(|e| e.path().join("up.sql").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = String::new();
    for (file, constant) in [("up.sql", "UP_SQL"), ("down.sql", "DOWN_SQL")] {
        out +=
            &format!("/// (name, {file}) of every migration, in order.\npub const {constant}: &[(&str, &str)] = &[\n");
        for name in &names {
            println!("cargo:rerun-if-changed=../migrations/{name}/{file}");
            let path = dir.join(name).join(file);
            out += &format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string());
        }
        out += "];\n";
    }
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migration_sql.rs");
    std::fs::write(target, out).expect("write migration_sql.rs");
}
