//! `daft`: from "I have code" to "it runs on a Ray cluster" with one TOML file.

use std::process::ExitCode;

use clap::Parser;

use daft::cli::Cli;
use daft::error::{classify, EXIT_OK};

fn main() -> ExitCode {
    daft::logging::init();
    let code = match try_main() {
        Ok(()) => EXIT_OK,
        Err(err) => {
            // The one place errors are printed.
            let (code, text) = classify(&err);
            if let Some(text) = text {
                eprintln!("{}", text.trim_end());
            }
            code
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn try_main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version (exit 0) and usage errors (exit 2) itself.
            e.print()?;
            std::process::exit(if e.use_stderr() {
                daft::error::EXIT_USAGE
            } else {
                EXIT_OK
            });
        }
    };
    let printer = daft::printer::Printer::new(cli.command.output(), cli.quiet);
    daft::commands::run(cli.command, &printer)
}
