//! Compile quarry/v1/quarry.proto with protox (pure Rust; there is no
//! protoc on the build machines) and generate tonic stubs from the
//! descriptor set. The encoded descriptor set is also written out for the
//! reflection service.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "quarry/v1/quarry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("quarry_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
