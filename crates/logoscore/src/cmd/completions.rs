//! `logoscore completions SHELL`: prints a completion script generated from the clap
//! definitions in `main.rs`, so completions never drift from the real flags.

use crate::error::Error;

pub(crate) fn run(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut cmd = crate::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "logoscore", &mut out);
    let text = String::from_utf8_lossy(&out);
    crate::output::line(text.trim_end())?;
    Ok(())
}
