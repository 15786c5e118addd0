//! `daft completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the command line's own definition (clap_complete).

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::printer::Printer;

pub fn run(args: &CompletionsArgs, pr: &Printer) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "daft", &mut script);
    crate::out!(pr, "{}", String::from_utf8_lossy(&script))?;
    Ok(())
}
