//! Compiles proto/spacefabric/v1/*.proto with protox (pure Rust, no system `protoc`)
//! and generates prost messages plus tonic client and server stubs.
use prost::Message;

const PROTOS: &[&str] = &[
    "spacefabric/v1/controller.proto",
    "spacefabric/v1/fabric.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // prost-build writes no descriptor set on the protox path: write it for gRPC reflection.
    std::fs::write(out.join("spacefabric_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
