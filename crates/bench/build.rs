//! Compiles the baseline's echo service with protox (no protoc binary).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile([root.join("echo.proto")], [&root])?;
    tonic_prost_build::configure()
        .skip_protoc_run()
        .compile_fds(descriptors)?;
    Ok(())
}
