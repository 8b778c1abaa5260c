//! Generates the engram.v1 and engram.events.v1 code with a vendored protoc, so no protoc has to
//! be installed by hand.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single threaded; prost-build reads PROTOC.
    unsafe_set_protoc(&protoc);
    // Read at run time, not baked in with env!: the compiled build script is
    // shared by every checkout using the same target directory (.ci/run's
    // cache), and a baked path would point at whichever clone built it first.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "engram/v1/common.proto",
        "engram/v1/ingest.proto",
        "engram/v1/recall.proto",
        "engram/v1/jobs.proto",
        "engram/v1/filter.proto",
        "engram/v1/memory.proto",
        "engram/v1/workspace.proto",
        "engram/events/v1/events.proto",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("engram_descriptor.bin"))
        .compile_protos(&paths, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // SAFETY: the build script has no other threads reading the environment.
    unsafe { std::env::set_var("PROTOC", path) };
}
