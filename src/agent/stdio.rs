//! The agent's process: one [`AgentCall`] line read from stdin, one
//! [`AgentReply`] line written to stdout. `pipeline agent` is this, in the
//! runner's build and in the agent's own.

use std::io::{BufRead, Write};

use tokio_util::sync::CancellationToken;

use super::wire::{AGENT_PROTOCOL, AgentCall, AgentError, AgentReply};

/// Why the agent could send no reply at all; anything else is a reply.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("failed to read the agent request: {0}")]
    Read(std::io::Error),
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("failed to write the agent answer: {0}")]
    Encode(serde_json::Error),
    #[error("failed to write to stdout: {0}")]
    Write(std::io::Error),
}

/// Reads one call, answers it, and returns once the reply is written.
pub fn run_on_stdio() -> Result<(), StdioError> {
    // sshd hangs up on the agent when the runner's connection goes (a
    // killed apply's SSH master being ended, say). The end of stdin already
    // says cancel; dying at once instead would cut a pull off midway and
    // leave the engine a lease that keeps later fresh pulls from being fresh.
    // SAFETY: setting a signal's disposition to "ignore" before any thread starts.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(StdioError::Read)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StdioError::Runtime)?;
    let reply = match serde_json::from_str::<AgentCall>(&line) {
        Ok(call) => {
            // The runner holds stdin open while it waits: its end means cancel.
            let cancel = CancellationToken::new();
            let on_eof = cancel.clone();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                on_eof.cancel();
            });
            runtime.block_on(super::serve(call, cancel))
        }
        Err(error) => AgentReply {
            protocol: AGENT_PROTOCOL,
            outcome: Err(AgentError::Request {
                message: error.to_string(),
            }),
        },
    };
    let mut text = serde_json::to_string(&reply).map_err(StdioError::Encode)?;
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A runner that stopped listening is not an error worth a message.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(StdioError::Write(error))
        }
        _ => Ok(()),
    }
}
