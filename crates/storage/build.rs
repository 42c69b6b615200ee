//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! files at compile time, and stable Rust cannot track them by itself.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
