//! `daft schema [--launch]`: the JSON Schema of `.daft.toml` (or `launch.toml`), made from the
//! key list the config checker and the templates read.

use crate::cli::SchemaArgs;
use crate::config::json_schema::{cluster_schema, launch_schema};
use crate::printer::Printer;

pub fn run(args: &SchemaArgs, pr: &Printer) -> anyhow::Result<()> {
    let schema = if args.launch {
        launch_schema()
    } else {
        cluster_schema()
    };
    crate::outln!(pr, "{}", serde_json::to_string_pretty(&schema)?)?;
    Ok(())
}
