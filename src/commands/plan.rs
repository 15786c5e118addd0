//! `daft plan`: what `up` would change, as a person reads it or as JSON.

use crate::cli::{OutputFormat, PlanArgs};
use crate::planner::{plan, render};

pub async fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let cfg = super::load(&args.config.config)?;
    let (provider, observed) = super::observe(&cfg, args.key.identity.clone()).await?;
    let desired = provider.desired().await;
    let p = plan(&desired, &observed);
    match args.output {
        OutputFormat::Text => print!("{}", render(&p, &provider.context())),
        OutputFormat::Json => {
            let v = serde_json::json!({
                "cluster": p.cluster,
                "context": provider.context(),
                "actions": p.actions,
                "summary": p.summary(),
                "noop": p.is_noop(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
