//! `wasm-precompile --target <triple> IN.wasm OUT.cwasm`: compiles a WASI
//! preview 1 module ahead of time for one architecture, with the wasmtime and
//! the engine settings of `containerd-shim-wasmtime-v1`, which then loads the
//! result without compiling it.

use std::process::ExitCode;

use containerd_shim_wasmtime::engine;

const USAGE: &str = "usage: wasm-precompile --target <triple> IN.wasm OUT.cwasm\n\
                     triples: x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu, riscv64gc-unknown-linux-gnu";

struct Arguments {
    target: String,
    input: std::path::PathBuf,
    output: std::path::PathBuf,
}

fn parse(mut args: impl Iterator<Item = std::ffi::OsString>) -> Result<Arguments, String> {
    let mut target = None;
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--target" {
            let value = args.next().ok_or("--target needs a value")?;
            target = Some(value.into_string().map_err(|_| "the target is not UTF-8")?);
        } else if arg.to_str().is_some_and(|text| text.starts_with('-')) {
            return Err(format!("unknown option {}", arg.to_string_lossy()));
        } else {
            files.push(std::path::PathBuf::from(arg));
        }
    }
    let target = target.ok_or("--target is required")?;
    let [input, output] = <[_; 2]>::try_from(files)
        .map_err(|_| "give exactly one input and one output file".to_string())?;
    Ok(Arguments {
        target,
        input,
        output,
    })
}

fn precompile(arguments: &Arguments) -> wasmtime::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    use wasmtime::error::Context as _;

    let engine = engine::cross_engine(&arguments.target)?;
    let module = fs_err::read(&arguments.input)?;
    let compiled = engine::precompile(&engine, &module)
        .with_context(|| format!("cannot precompile {}", arguments.input.display()))?;
    fs_err::write(&arguments.output, compiled)?;
    // A .cwasm is an ELF object: an executable one would be started as a Linux
    // process by the shim framework instead of being handed to wasmtime.
    fs_err::set_permissions(&arguments.output, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn main() -> ExitCode {
    let arguments = match parse(std::env::args_os().skip(1)) {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("wasm-precompile: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match precompile(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasm-precompile: {error:#}");
            ExitCode::FAILURE
        }
    }
}
