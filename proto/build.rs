//! Compiles every proto/spacefabric/v1/*.proto with protox (pure Rust, no system `protoc`)
//! and generates prost messages plus tonic client and server stubs.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=spacefabric/v1");
    let mut protos = Vec::new();
    for entry in std::fs::read_dir("spacefabric/v1")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            protos.push(path);
        }
    }
    protos.sort();
    let fds = protox::compile(&protos, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // prost-build writes no descriptor set on the protox path: write it for gRPC reflection.
    std::fs::write(out.join("spacefabric_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages double as the controller's persisted state (JSON in its state dir).
        .type_attribute(
            ".spacefabric",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
