//! Fed-BioMed interoperability: the Rust halves of the scenarios that
//! tests/interop/run.sh drives (all `#[ignore]`d; run.sh sets their inputs).
mod bytes;
mod node;
mod researcher;
