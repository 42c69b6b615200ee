//! Compiles the contract in `proto/` with protox (pure Rust: no `protoc` binary
//! to install) and keeps the descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let contract = proto_root.join("wechat/identity/v1/identity.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile([&contract], [&proto_root])?;
    #[allow(clippy::disallowed_methods)] // Cargo's own variable, for the build script
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("identity_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .skip_protoc_run()
        .compile_fds(descriptors)?;
    Ok(())
}
