//! What a cluster costs: the hourly price of each kind of node a plan wants, the total per hour,
//! and what the running nodes have cost so far. Pure: the prices come from the back-end (EC2's
//! Price List and spot history); here they are added up and put into words.

use serde::{Deserialize, Serialize};

/// How an instance is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    OnDemand,
    Spot,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        }
    }

    pub fn parse(s: &str) -> Option<Market> {
        match s {
            "on-demand" => Some(Market::OnDemand),
            "spot" => Some(Market::Spot),
            _ => None,
        }
    }
}

/// One node's price per hour, or why it is not known.
pub type Price = Result<f64, String>;

/// One kind of node in a plan: how many, of what type, bought how, at what price each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceLine {
    /// "head", "workers", "group gpu".
    pub what: String,
    pub count: u32,
    pub instance_type: String,
    pub market: Market,
    /// USD per hour for one node (None: unknown, see `unknown`).
    pub usd_per_hour: Option<f64>,
    /// Why the price is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl PriceLine {
    pub fn new(what: &str, count: u32, instance_type: &str, market: Market, price: Price) -> Self {
        let (usd_per_hour, unknown) = match price {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        PriceLine {
            what: what.to_string(),
            count,
            instance_type: instance_type.to_string(),
            market,
            usd_per_hour,
            unknown,
        }
    }
}

/// What the nodes a plan wants cost per hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Estimate {
    pub lines: Vec<PriceLine>,
}

impl Estimate {
    /// The cluster's price per hour; None when a node's price is unknown.
    pub fn per_hour(&self) -> Option<f64> {
        self.lines
            .iter()
            .filter(|l| l.count > 0)
            .map(|l| l.usd_per_hour.map(|p| p * l.count as f64))
            .sum()
    }

    /// The part of the price that is known (a floor when some is not).
    pub fn known_per_hour(&self) -> f64 {
        // (+ 0.0: an empty f64 sum is -0.0, which prints as "-0.0000".)
        self.lines
            .iter()
            .filter_map(|l| l.usd_per_hour.map(|p| p * l.count as f64))
            .sum::<f64>()
            + 0.0
    }

    /// Whether the cluster's price is within `max` dollars an hour (None: not known).
    pub fn within(&self, max: f64) -> Option<bool> {
        self.per_hour().map(|total| total <= max + 1e-9)
    }

    /// Why `up` must not apply a plan with this estimate under `max` dollars an hour.
    pub fn refusal(&self, max: f64) -> Option<String> {
        match self.per_hour() {
            Some(total) if self.within(max) == Some(false) => Some(format!(
                "the cluster would cost {}/h, {} over max_hourly_cost = {}/h; nothing was \
                 changed.\n  what to do: fewer or smaller nodes, spot workers (a group's \
                 market = \"spot\"), or a higher [setup.aws] max_hourly_cost",
                money(total),
                money(total - max),
                money(max)
            )),
            Some(_) => None,
            None => Some(format!(
                "the cluster's price is not known ({}), so max_hourly_cost = {}/h cannot be \
                 checked; nothing was changed.\n  what to do: allow pricing:GetProducts and \
                 ec2:DescribeSpotPriceHistory to your AWS identity, or remove max_hourly_cost",
                self.unknown_reasons().join("; "),
                money(max)
            )),
        }
    }

    fn unknown_reasons(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lines
            .iter()
            .filter(|l| l.count > 0)
            .filter_map(|l| {
                l.unknown
                    .as_ref()
                    .map(|u| format!("{} {}: {u}", l.instance_type, l.market.as_str()))
            })
            .collect();
        v.dedup();
        v
    }

    /// The plan's cost block: a line per kind of node, then the total.
    pub fn render(&self) -> String {
        let mut out = String::from("Cost per hour (AWS list prices, USD):\n");
        let what_w = self.lines.iter().map(|l| l.what.len()).max().unwrap_or(0);
        let type_w = self
            .lines
            .iter()
            .map(|l| l.instance_type.len())
            .max()
            .unwrap_or(0);
        for l in &self.lines {
            let price = match l.usd_per_hour {
                Some(p) if l.count == 1 => money(p),
                Some(p) => format!("{} × {} = {}", l.count, money(p), money(p * l.count as f64)),
                None => "unknown".to_string(),
            };
            out.push_str(&format!(
                "  {:what_w$}  {:type_w$}  {:9}  {price}\n",
                l.what,
                l.instance_type,
                l.market.as_str(),
            ));
        }
        match self.per_hour() {
            Some(t) => out.push_str(&format!(
                "  total {}/h (about ${:.2} a day)\n",
                money(t),
                t * 24.0
            )),
            None => out.push_str(&format!(
                "  total unknown (at least {}/h): {}\n",
                money(self.known_per_hour()),
                self.unknown_reasons().join("; ")
            )),
        }
        out
    }
}

/// Dollars: cents under $100 show four places (instance prices are given to the tenth of a
/// cent), larger sums two.
pub fn money(usd: f64) -> String {
    if usd.abs() < 100.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// What a node has cost from `since` to `now` (seconds since the epoch) at `per_hour`.
pub fn so_far(per_hour: f64, since: u64, now: u64) -> f64 {
    per_hour * now.saturating_sub(since) as f64 / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> Estimate {
        Estimate {
            lines: vec![
                PriceLine::new("head", 1, "m7i.large", Market::OnDemand, Ok(0.1008)),
                PriceLine::new("group gpu", 2, "g5.xlarge", Market::Spot, Ok(0.4)),
            ],
        }
    }

    #[test]
    fn totals_and_refusals() {
        let e = est();
        assert!((e.per_hour().unwrap() - 0.9008).abs() < 1e-9);
        assert!(e.refusal(1.0).is_none());
        let r = e.refusal(0.5).unwrap();
        assert!(
            r.contains("$0.9008/h, $0.4008 over max_hourly_cost = $0.5000/h"),
            "{r}"
        );
        let mut u = e.clone();
        u.lines[1].usd_per_hour = None;
        u.lines[1].unknown = Some("no answer".into());
        assert_eq!(u.per_hour(), None);
        assert!((u.known_per_hour() - 0.1008).abs() < 1e-9);
        // Nothing known: zero, never "-0".
        let none = Estimate {
            lines: vec![PriceLine::new(
                "head",
                1,
                "m7i.large",
                Market::OnDemand,
                Err("x".into()),
            )],
        };
        assert_eq!(money(none.known_per_hour()), "$0.0000");
        let r = u.refusal(10.0).unwrap();
        assert!(r.contains("not known (g5.xlarge spot: no answer)"), "{r}");
        // A kind with no nodes costs nothing, known or not.
        u.lines[1].count = 0;
        assert!((u.per_hour().unwrap() - 0.1008).abs() < 1e-9);
    }

    #[test]
    fn money_and_time() {
        assert_eq!(money(0.0104), "$0.0104");
        assert_eq!(money(123.456), "$123.46");
        assert!((so_far(0.36, 1000, 1000 + 1800) - 0.18).abs() < 1e-9);
        assert_eq!(so_far(1.0, 2000, 1000), 0.0);
    }
}
