//! The wasmtime side of `containerd-shim-wasmtime-v1`, shared with the
//! `wasm-precompile` binary so both use the same engine settings.

pub mod engine;
pub mod run;
