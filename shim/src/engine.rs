//! The one wasmtime engine configuration of the shim and the precompiler, and
//! how a module's bytes become a [`Module`].

use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, Module, Precompiled};

/// The settings every engine of this crate is made with. wasmtime loads a
/// precompiled module only into an engine with the settings (and version) it
/// was compiled with, so the shim and `wasm-precompile` both start here.
#[must_use]
pub fn config() -> Config {
    Config::new()
}

/// The engine the shim runs modules with, for the machine it runs on.
///
/// # Errors
/// When wasmtime cannot make an engine with [`config`] on this machine.
pub fn host_engine() -> wasmtime::Result<Engine> {
    Engine::new(&config())
}

/// An engine that compiles for another target (`aarch64-unknown-linux-gnu`):
/// what `wasm-precompile` uses. The compiler for that architecture must be
/// built in (the crate's `precompiler` feature builds them all).
///
/// # Errors
/// When the target is not a triple, or its compiler is not built in.
pub fn cross_engine(target: &str) -> wasmtime::Result<Engine> {
    let mut config = config();
    config
        .target(target)
        .with_context(|| format!("`{target}` is not a target triple"))?;
    Engine::new(&config).with_context(|| format!("cannot compile for `{target}`"))
}

/// Compiles `bytes` ahead of time into what [`load_module`] loads without compiling.
///
/// # Errors
/// When the bytes are not a valid WebAssembly module.
pub fn precompile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    if Engine::detect_precompiled(bytes).is_some() {
        wasmtime::bail!("the input is already precompiled; give the .wasm module");
    }
    engine
        .precompile_module(bytes)
        .context("the module does not compile")
}

/// The module in `bytes`: loaded as it is when `wasm-precompile` made it,
/// compiled otherwise (what runwasi does with a `.wasm` in the image's files,
/// at every start).
///
/// # Errors
/// When the module does not compile, or was precompiled by another wasmtime
/// build, with other settings or for another machine.
pub fn load_module(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
    match Engine::detect_precompiled(bytes) {
        Some(Precompiled::Module) => {
            // SAFETY: wasmtime runs these bytes as machine code without
            // verifying them. They are the entrypoint of the image the user
            // asked to run, the trust a native binary in an image gets; wasmtime
            // still refuses another version, settings or architecture.
            unsafe { Module::deserialize(engine, bytes) }.context(
                "the precompiled module does not fit this runtime: make it with the wasm-precompile \
                 built with this shim, for this host's architecture",
            )
        }
        Some(Precompiled::Component) => wasmtime::bail!(
            "the file is a precompiled component; this runtime runs WASI preview 1 modules"
        ),
        None => Module::new(engine, bytes).context("the module does not compile"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
    ///  (memory (export "memory") 1) (func (export "_start") i32.const 7 call 0))`:
    /// exits with 7.
    const EXITS_WITH_7: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x08, 0x02, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00, // types
        0x02, 0x24, 0x01, 0x16, b'w', b'a', b's', b'i', b'_', b's', b'n', b'a', b'p', b's', b'h',
        b'o', b't', b'_', b'p', b'r', b'e', b'v', b'i', b'e', b'w', b'1', 0x09, b'p', b'r', b'o',
        b'c', b'_', b'e', b'x', b'i', b't', 0x00, 0x00, // import proc_exit
        0x03, 0x02, 0x01, 0x01, // one function of type 1
        0x05, 0x03, 0x01, 0x00, 0x01, // one page of memory, which WASI needs exported
        0x07, 0x13, 0x02, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x01, 0x06, b'm', b'e',
        b'm', b'o', b'r', b'y', 0x02, 0x00, // exports
        0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x07, 0x10, 0x00, 0x0b, // i32.const 7, call 0
    ];

    fn host_triple() -> String {
        let arch = match std::env::consts::ARCH {
            "riscv64" => "riscv64gc",
            other => other,
        };
        format!("{arch}-unknown-linux-gnu")
    }

    /// The futures of a module that never waits are ready on their first polls.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::yield_now();
        }
    }

    fn run(module: &[u8]) -> Result<i32, String> {
        let root = std::env::temp_dir();
        let command = crate::run::Command {
            module,
            function: "_start",
            args: &["/module".to_string()],
            env: &[],
            root: &root,
        };
        block_on(crate::run::run(&command)).map_err(|failure| format!("{:#}", failure.error))
    }

    #[test]
    fn a_plain_module_is_compiled_and_runs() {
        assert_eq!(run(EXITS_WITH_7), Ok(7));
    }

    #[test]
    fn a_precompiled_module_runs_without_compiling() {
        let engine = cross_engine(&host_triple()).unwrap();
        let compiled = precompile(&engine, EXITS_WITH_7).unwrap();
        assert_eq!(
            Engine::detect_precompiled(&compiled),
            Some(Precompiled::Module)
        );
        assert_eq!(run(&compiled), Ok(7));
    }

    #[test]
    fn a_module_precompiled_with_other_settings_is_refused_clearly() {
        let mut other = config();
        other.consume_fuel(true);
        let compiled = Engine::new(&other)
            .unwrap()
            .precompile_module(EXITS_WITH_7)
            .unwrap();
        let error = run(&compiled).unwrap_err();
        assert!(
            error.starts_with("the precompiled module does not fit this runtime"),
            "{error}"
        );
    }

    #[test]
    fn precompiling_twice_is_refused() {
        let engine = cross_engine(&host_triple()).unwrap();
        let compiled = precompile(&engine, EXITS_WITH_7).unwrap();
        let error = precompile(&engine, &compiled).unwrap_err().to_string();
        assert!(error.contains("already precompiled"), "{error}");
    }

    /// Needs the other architectures' compilers, which only the precompiler has.
    #[cfg(feature = "precompiler")]
    #[test]
    fn a_module_precompiled_for_another_architecture_is_refused_clearly() {
        let other = if cfg!(target_arch = "aarch64") {
            "x86_64-unknown-linux-gnu"
        } else {
            "aarch64-unknown-linux-gnu"
        };
        let compiled = precompile(&cross_engine(other).unwrap(), EXITS_WITH_7).unwrap();
        let error = run(&compiled).unwrap_err();
        assert!(
            error.starts_with("the precompiled module does not fit this runtime"),
            "{error}"
        );
    }
}
