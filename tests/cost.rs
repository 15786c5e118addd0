//! What a plan says of the cluster's cost (the block `daft plan` and `daft up` print on AWS).

use daft::commands::plan::cost_text;
use daft::cost::{Estimate, Market, PriceLine};

fn estimate(spot: Result<f64, String>) -> Estimate {
    Estimate {
        lines: vec![
            PriceLine::new("head", 1, "m7i.large", Market::OnDemand, Ok(0.1008)),
            PriceLine::new("group gpu", 2, "g5.xlarge", Market::Spot, spot),
            PriceLine::new("group cpu", 0, "c7i.xlarge", Market::OnDemand, Ok(0.1785)),
        ],
    }
}

#[test]
fn cost_block_with_every_price_known() {
    insta::assert_snapshot!(cost_text(&estimate(Ok(0.45)), None));
}

#[test]
fn cost_block_within_and_over_the_limit() {
    let e = estimate(Ok(0.45));
    insta::assert_snapshot!(format!(
        "{}\n{}",
        cost_text(&e, Some(2.0)),
        cost_text(&e, Some(0.5))
    ));
}

#[test]
fn cost_block_with_an_unknown_price() {
    let e = estimate(Err(
        "DescribeSpotPriceHistory failed: UnauthorizedOperation".into(),
    ));
    insta::assert_snapshot!(cost_text(&e, Some(5.0)));
    // `up` refuses what it cannot check against the limit, and says why.
    let why = e.refusal(5.0).unwrap();
    assert!(why.contains("cannot be checked"), "{why}");
    assert!(why.contains("UnauthorizedOperation"), "{why}");
}
