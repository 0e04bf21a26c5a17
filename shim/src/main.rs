//! `containerd-shim-wasmtime-v1`: the containerd runtime `io.containerd.wasmtime.v1`.
//!
//! containerd-shim-wasm does the containerd side (the shim API, the bundle, a
//! container made with libcontainer, stdio wired to the task's FIFOs); this crate
//! only runs the module. A module comes either from wasm layers of the image
//! (`application/wasm`) or, for ordinary images, from the file the entrypoint names
//! in the rootfs. It runs as a WASI preview 1 command: arguments and environment
//! from the OCI spec, the container's root directory preopened as `/`, the
//! container's stdio inherited. The file may also be a module `wasm-precompile`
//! compiled ahead of time for this machine (a `.cwasm`), which is loaded
//! without compiling.

use std::io::Read as _;

use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use containerd_shim_wasm::shim::{Cli, Config, Shim, Version, version};
use containerd_shim_wasmtime::run;

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

/// The first bytes of a wasm module, and of an ELF object such as wasmtime's
/// precompiled modules.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

impl Sandbox for WasmtimeSandbox {
    /// The framework's own check accepts only wasm and wat files; this one
    /// also lets a precompiled module (an ELF object) through. An executable
    /// ELF never gets here: the framework runs it as a Linux process first,
    /// which is why `wasm-precompile` writes its output without the exec bit.
    async fn can_handle(&self, ctx: &impl RuntimeContext) -> anyhow::Result<()> {
        let source = ctx.entrypoint().source;
        let mut head = [0u8; 4];
        match &source {
            Source::Oci(_) => return Ok(()),
            Source::File(path) if path.is_absolute() => {
                std::fs::File::open(path)
                    .and_then(|mut file| file.read_exact(&mut head))
                    .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
            }
            // A bare name is looked up on PATH as the framework does.
            Source::File(_) => {
                let bytes = source.as_bytes()?;
                let len = bytes.len().min(head.len());
                head[..len].copy_from_slice(&bytes[..len]);
            }
        }
        if &head == WASM_MAGIC || &head == ELF_MAGIC {
            Ok(())
        } else {
            anyhow::bail!("the entrypoint is neither a wasm module nor a precompiled one")
        }
    }

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
