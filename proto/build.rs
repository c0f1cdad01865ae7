//! Compile the protos with protox (pure Rust; there is no protoc on the
//! build machines) and generate tonic stubs from the descriptor sets:
//! `quarry/v1/quarry.proto` (the public API; its encoded descriptor set is
//! also written out for the reflection service) and
//! `quarry/replication/v1/replication.proto` (between a pair's nodes; not
//! offered by reflection).
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let public = "quarry/v1/quarry.proto";
    let replication = "quarry/replication/v1/replication.proto";
    for p in [public, replication] {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile([public], ["."])?;
    std::fs::write(out.join("quarry_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(protox::compile([replication], ["."])?)?;
    Ok(())
}
