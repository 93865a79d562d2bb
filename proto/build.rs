//! Generates the `lb.v1` messages (prost), their services (tonic) and
//! their proto3 JSON mapping (pbjson) from `lb/v1/*.proto`, plus the
//! descriptor set that server reflection serves. Needs `protoc` (Debian's
//! `protobuf-compiler`, installed by `scripts/setup.sh`).

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["lb/v1/config.proto", "lb/v1/api.proto"];
    for proto in protos {
        println!("cargo::rerun-if-changed={proto}");
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("lb_v1_descriptors.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["."])?;
    // Unknown fields stay errors (pbjson's default): a VIP written by a
    // newer controller is refused whole, never half read.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".lb.v1"])?;
    Ok(())
}
