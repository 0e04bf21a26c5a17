//! `pipeline`: the runner's commands, or, built without the `runner`
//! feature, the agent alone, whose one command is `pipeline agent`
//! (scripts/build-agents builds it so for the hosts).

#[cfg(feature = "runner")]
mod cli;
#[cfg(feature = "runner")]
mod commands;

use std::process::ExitCode;

#[cfg(feature = "runner")]
fn main() -> ExitCode {
    commands::main()
}

#[cfg(not(feature = "runner"))]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["agent"] => match pipeline::agent::run_on_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        ["--version" | "-V"] => {
            println!("pipeline {} (agent only)", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "error: this build of pipeline is the agent alone; its one command is \
                 `pipeline agent`, which answers one request line on stdin"
            );
            // Usage errors exit 2, as the runner's build does.
            ExitCode::from(2)
        }
    }
}
