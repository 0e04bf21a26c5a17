//! `containerd-shim-wasmtime-v1`: the containerd runtime `io.containerd.wasmtime.v1`.
//!
//! containerd-shim-wasm does the containerd side (the shim API, the bundle, a
//! container made with libcontainer, stdio wired to the task's FIFOs); this crate
//! only runs the module. A module comes either from wasm layers of the image
//! (`application/wasm`) or, for ordinary images, from the file the entrypoint names
//! in the rootfs. It runs as a WASI preview 1 command: arguments and environment
//! from the OCI spec, the container's root directory preopened as `/`, the
//! container's stdio inherited.

mod run;

use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::RuntimeContext;
use containerd_shim_wasm::shim::{Cli, Config, Shim, Version, version};

struct WasmtimeShim;

#[derive(Default)]
struct WasmtimeSandbox;

impl Shim for WasmtimeShim {
    type Sandbox = WasmtimeSandbox;

    fn name() -> &'static str {
        "wasmtime"
    }

    fn version() -> Version {
        version!()
    }
}

impl Sandbox for WasmtimeSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        let entrypoint = ctx.entrypoint();
        let module = entrypoint.source.as_bytes()?;
        let command = run::Command {
            module: &module,
            function: &entrypoint.func,
            args: ctx.args(),
            env: ctx.envs(),
            root: std::path::Path::new("/"),
        };
        // This runs in the container's init process, whose stdio are the task's
        // FIFOs: a failure written to stderr reaches whoever reads the task's output.
        Ok(run::run(&command).await.unwrap_or_else(|failure| {
            eprintln!("containerd-shim-wasmtime: {:#}", failure.error);
            failure.exit_code
        }))
    }
}

fn main() {
    WasmtimeShim::run(Config::default());
}
