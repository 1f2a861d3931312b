//! Rebuilds the crate when a migration is added or changed: the migrations
//! are embedded (`store::migrations`), and cargo does not see new files on
//! its own (diesel_migrations' documented advice).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
