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
        if let Some(foreign) = FOREIGN.get().and_then(Option::as_ref) {
            let Err(error) = foreign.exec(&module, &entrypoint.func, ctx.args(), ctx.envs());
            eprintln!("containerd-shim-wasmtime: cannot start {RUNNER}: {error}");
            return Ok(run::SETUP_EXIT_CODE);
        }
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

/// The program that runs modules for the shim on a host of another
/// architecture, found beside the shim (`pipeline lab up` puts it there on
/// its emulated hosts).
const RUNNER: &str = "wasmtime-runner";

/// What the shim needs to hand a module to [`RUNNER`] from inside the
/// container, where no file of the host is visible: the runner's bytes, read
/// when the shim starts, and the CPU qemu emulates there.
struct ForeignRunner {
    program: Vec<u8>,
    qemu_cpu: Option<String>,
}

/// Set once in `main`, before any container exists; the container's init
/// process is a fork of the shim and sees it too.
static FOREIGN: std::sync::OnceLock<Option<ForeignRunner>> = std::sync::OnceLock::new();

impl ForeignRunner {
    fn beside_this_program() -> Option<ForeignRunner> {
        let path = std::env::current_exe().ok()?.with_file_name(RUNNER);
        let program = std::fs::read(path).ok()?;
        Some(ForeignRunner {
            program,
            qemu_cpu: std::env::var("QEMU_CPU").ok(),
        })
    }

    /// Replaces this process with the runner, the module in an inherited
    /// file; returns only when that fails.
    fn exec(
        &self,
        module: &[u8],
        function: &str,
        module_args: &[String],
        env: &[String],
    ) -> std::io::Result<std::convert::Infallible> {
        use std::ffi::CString;
        use std::os::fd::AsRawFd as _;

        let program = memory_file(c"wasmtime-runner", &self.program)?;
        let module = memory_file(c"module", module)?;
        let mut argv = vec![
            RUNNER.to_string(),
            "--module-fd".to_string(),
            module.as_raw_fd().to_string(),
            "--function".to_string(),
            function.to_string(),
        ];
        for entry in env {
            argv.extend(["--env".to_string(), entry.clone()]);
        }
        argv.push("--".to_string());
        argv.extend(module_args.iter().cloned());
        let strings = |items: Vec<String>| -> Result<Vec<CString>, std::io::Error> {
            items
                .into_iter()
                .map(|item| CString::new(item).map_err(std::io::Error::other))
                .collect()
        };
        let envp: Vec<String> = self
            .qemu_cpu
            .iter()
            .map(|cpu| format!("QEMU_CPU={cpu}"))
            .collect();
        let (argv, envp) = (strings(argv)?, strings(envp)?);
        let pointers = |items: &[CString]| -> Vec<*const libc::c_char> {
            items
                .iter()
                .map(|item| item.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let (argv, envp) = (pointers(&argv), pointers(&envp));
        // SAFETY: both arrays end with a null pointer and point into strings
        // that live until the call, which returns only on failure.
        unsafe { libc::fexecve(program.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
        Err(std::io::Error::last_os_error())
    }
}

/// `bytes` in an anonymous memory file, read from its start by whoever
/// inherits it: left open across `exec` on purpose.
fn memory_file(name: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::{Seek as _, Write as _};
    use std::os::fd::FromRawFd as _;

    // SAFETY: a valid name; the returned descriptor is owned by the file below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

fn main() {
    let _ = FOREIGN.set(ForeignRunner::beside_this_program());
    WasmtimeShim::run(Config::default());
}
