//! Compiles every proto/spacefabric/v1/*.proto with protox (pure Rust, no system `protoc`)
//! and generates prost messages plus tonic client and server stubs.
use prost::Message;

/// Every enum field of type Algorithm, Strategy or Activation, its serde module in
/// `src/wire_enum.rs` (one value or repeated) and the name the field had when it was a string
/// (a state dir written before reads as it did).
const WIRE_ENUM_FIELDS: [(&str, &str, &str); 9] = [
    ("JobPlan.collective_algorithms", "algorithms", "algorithms"),
    (
        "AllReduceJob.collective_algorithms",
        "algorithms",
        "algorithms",
    ),
    ("TrainJob.strategy", "strategy", "strategies"),
    ("TrainJob.hidden_activation", "activation", "activation"),
    ("TrainJob.collective_algorithm", "algorithm", "algorithm"),
    (
        "AllReduceSweep.collective_algorithms",
        "algorithms",
        "algorithms",
    ),
    (
        "AllReducePoint.requested_algorithm",
        "algorithm",
        "algorithm",
    ),
    ("AllReducePoint.used_algorithm", "algorithm", "used"),
    ("TrainResult.train_strategy", "strategy", "strategy"),
];

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
    let mut config = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages double as the controller's persisted state (JSON in its state dir).
        .type_attribute(
            ".spacefabric",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        );
    // Their algorithm, strategy and activation fields say names in JSON (`"ring"`), not the
    // wire's numbers (src/wire_enum.rs).
    for (field, with, old_name) in WIRE_ENUM_FIELDS {
        config = config.field_attribute(
            format!(".spacefabric.v1.{field}"),
            format!(
                "#[serde(with = \"crate::wire_enum::{with}\", default, alias = \"{old_name}\")]"
            ),
        );
    }
    config.compile_fds(fds)?;
    Ok(())
}
