//! Compiles `proto/researcher.proto` with protox (pure Rust), so no system
//! `protoc` is needed. The `bytes_` chunk fields become `bytes::Bytes`, so a
//! chunk is a cheap slice of one buffer rather than a copy.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/researcher.proto");
    let fds = protox::compile(["proto/researcher.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".researcher")
        .compile_fds(fds)?;
    Ok(())
}
