//! One WASI preview 1 command module, run to completion with wasmtime.

use std::io::Write as _;
use std::path::Path;

use wasmtime::error::Context as _;
use wasmtime::{Linker, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// What to run: the module's bytes (a `.wasm`, or a module `wasm-precompile`
/// compiled for this machine) and the process the OCI spec describes.
pub struct Command<'a> {
    pub module: &'a [u8],
    /// The export to call, `_start` for a command module.
    pub function: &'a str,
    /// `argv`, including the program name (the module's path in the image).
    pub args: &'a [String],
    /// `NAME=value` entries; an entry without `=` is an empty variable.
    pub env: &'a [String],
    /// Host directory preopened as the guest's `/`.
    pub root: &'a Path,
}

/// A run that did not end with the module's own exit code.
pub struct Failure {
    pub error: wasmtime::Error,
    pub exit_code: i32,
}

/// What the wasmtime CLI exits with when a module traps (128 + SIGABRT).
pub const TRAP_EXIT_CODE: i32 = 134;
/// The module could not be compiled, linked or started.
pub const SETUP_EXIT_CODE: i32 = 125;

/// Runs the module and returns its exit code: 0 when `_start` returns, the
/// code it passed to `proc_exit` otherwise.
///
/// # Errors
/// A [`Failure`] with [`SETUP_EXIT_CODE`] when the module cannot be loaded,
/// linked or started, or with [`TRAP_EXIT_CODE`] when it traps.
pub async fn run(command: &Command<'_>) -> Result<i32, Failure> {
    let setup = |error: wasmtime::Error| Failure {
        error,
        exit_code: SETUP_EXIT_CODE,
    };
    let engine = crate::engine::host_engine().map_err(setup)?;
    let module = crate::engine::load_module(&engine, command.module).map_err(setup)?;
    let wasi = wasi_context(command).map_err(setup)?;
    let mut store = Store::new(&engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_async(&mut linker, |wasi| wasi).map_err(setup)?;
    let instance = linker
        .instantiate_async(&mut store, &module)
        .await
        .context("the module cannot be instantiated with WASI preview 1")
        .map_err(setup)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, command.function)
        .with_context(|| format!("the module has no function `{}`", command.function))
        .map_err(setup)?;
    let outcome = start.call_async(&mut store, ()).await;
    // The guest's writes went straight to the process's stdout and stderr; make
    // sure nothing is left in Rust's buffers before the process exits.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    match outcome {
        Ok(()) => Ok(0),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(*code),
            None => Err(Failure {
                error,
                exit_code: TRAP_EXIT_CODE,
            }),
        },
    }
}

fn wasi_context(command: &Command<'_>) -> wasmtime::Result<WasiP1Ctx> {
    let env: Vec<(&str, &str)> = command
        .env
        .iter()
        .map(|entry| entry.split_once('=').unwrap_or((entry.as_str(), "")))
        .collect();
    let mut builder = WasiCtxBuilder::new();
    builder
        .inherit_stdio()
        .args(command.args)
        .envs(&env)
        .preopened_dir(command.root, "/", FsPerms::ReadWrite)
        .with_context(|| format!("cannot open {} for the module", command.root.display()))?;
    Ok(builder.build_p1())
}
