//! `wasmtime-runner --module-fd N --function F [--env NAME=value]... -- ARGV...`:
//! runs one module with the shim's wasmtime and engine settings, as the shim
//! itself would, in the process that execs it.
//!
//! The lab's emulated hosts use it: qemu's user-mode emulation cannot run the
//! shim itself (its container setup clones with `CLONE_PARENT`, which qemu
//! refuses), so there the shim, built for the runner's machine, sets the
//! container up as runc does for a native image, and execs this program,
//! built for the host's architecture, to compile and run the module under
//! qemu. The module is read from an inherited file, since the container's
//! root has no file of the runner's.

use std::io::Read as _;
use std::os::fd::FromRawFd as _;
use std::process::ExitCode;

use containerd_shim_wasmtime::run;

const USAGE: &str =
    "usage: wasmtime-runner --module-fd N --function F [--env NAME=value]... -- ARGV...";

struct Arguments {
    module_fd: i32,
    function: String,
    env: Vec<String>,
    argv: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Arguments, String> {
    let (mut module_fd, mut function, mut env) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--module-fd" => {
                module_fd = Some(value()?.parse().map_err(|_| "--module-fd takes a number")?);
            }
            "--function" => function = Some(value()?),
            "--env" => env.push(value()?),
            "--" => break,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Arguments {
        module_fd: module_fd.ok_or("--module-fd is required")?,
        function: function.ok_or("--function is required")?,
        env,
        argv: args.collect(),
    })
}

fn main() -> ExitCode {
    let arguments = match parse(std::env::args().skip(1)) {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("wasmtime-runner: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the shim passes this descriptor open, for this program alone.
    let mut file = unsafe { std::fs::File::from_raw_fd(arguments.module_fd) };
    let mut module = Vec::new();
    if let Err(error) = file.read_to_end(&mut module) {
        eprintln!("containerd-shim-wasmtime: cannot read the module: {error}");
        return ExitCode::from(125);
    }
    drop(file);
    let command = run::Command {
        module: &module,
        function: &arguments.function,
        args: &arguments.argv,
        env: &arguments.env,
        root: std::path::Path::new("/"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime on one thread");
    let code = runtime
        .block_on(run::run(&command))
        .unwrap_or_else(|failure| {
            eprintln!("containerd-shim-wasmtime: {:#}", failure.error);
            failure.exit_code
        });
    // WASI exit codes are 0..=255 as the shim reports them; a larger one is
    // cut as a process's would be.
    ExitCode::from(code.to_le_bytes()[0])
}
