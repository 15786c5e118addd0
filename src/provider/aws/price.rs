//! What EC2 instances cost: on-demand list prices from the AWS Price List API (GetProducts),
//! spot prices from EC2's spot price history, cached a day under daft's directory. A price that
//! cannot be had is "unknown" with its reason (said in the debug log), never an error.

use std::time::SystemTime;

use aws_sdk_pricing::types::{Filter as PriceFilter, FilterType};
use serde::{Deserialize, Serialize};

use super::*;
use crate::cost::{Estimate, Market, Price, PriceLine};

/// How long a fetched price is used before it is asked again.
const CACHE_SECS: u64 = 24 * 3600;
/// How long one price question may take (each of GetProducts, DescribeSpotPriceHistory).
const ASK_SECS: u64 = 15;

/// Prices of one region, asked once per run and kept in `cache/prices.json` for a day.
pub struct Prices {
    region: String,
    /// The zones nodes may be placed in (empty: any of the region's).
    zones: Vec<String>,
    ec2: Client,
    pricing: tokio::sync::OnceCell<Result<aws_sdk_pricing::Client, String>>,
    memo: tokio::sync::Mutex<BTreeMap<(String, Market), Price>>,
    /// One writer of the cache file at a time in this process (prices are asked concurrently:
    /// two read-modify-writes at once would lose one of them).
    writing: std::sync::Mutex<()>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    usd_per_hour: f64,
    /// When it was fetched (seconds since the epoch).
    at: u64,
}

fn cache_file() -> PathBuf {
    daft_home().join("cache").join("prices.json")
}

fn cache_key(region: &str, itype: &str, market: Market) -> String {
    format!("{region}/{itype}/{}", market.as_str())
}

fn read_cache() -> BTreeMap<String, Cached> {
    std::fs::read(cache_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Add one price to the cache file (written whole to a temporary file, then renamed: a reader
/// never sees half of it; two daft processes writing at once lose at most one price, fetched
/// again later). `writing`: this process's write lock.
fn write_cache(writing: &std::sync::Mutex<()>, key: String, usd_per_hour: f64) {
    let _held = writing.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = read_cache();
    let now = crate::time::now_secs();
    all.retain(|_, c| c.at + CACHE_SECS > now);
    all.insert(
        key,
        Cached {
            usd_per_hour,
            at: now,
        },
    );
    let path = cache_file();
    let write = || -> std::io::Result<()> {
        let dir = path.parent().expect("cache file has a directory");
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), serde_json::to_vec_pretty(&all)?)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(target: "daft::aws", "cannot write {}: {e}", path.display());
    }
}

/// The on-demand hourly price in one Price List product document (`terms.OnDemand.*.
/// priceDimensions.*.pricePerUnit.USD`, per hour).
pub fn on_demand_of(doc: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let terms = v.get("terms")?.get("OnDemand")?.as_object()?;
    terms.values().find_map(|term| {
        term.get("priceDimensions")?
            .as_object()?
            .values()
            .filter(|d| d.get("unit").and_then(|u| u.as_str()) == Some("Hrs"))
            .find_map(|d| {
                d.get("pricePerUnit")?
                    .get("USD")?
                    .as_str()?
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0)
            })
    })
}

impl Prices {
    pub fn new(region: &str, zones: &[String], ec2: Client) -> Self {
        Prices {
            region: region.to_string(),
            zones: zones.to_vec(),
            ec2,
            pricing: tokio::sync::OnceCell::new(),
            memo: tokio::sync::Mutex::new(BTreeMap::new()),
            writing: std::sync::Mutex::new(()),
        }
    }

    /// One node's price per hour: from this run, the cache, or AWS.
    pub async fn price(&self, itype: &str, market: Market) -> Price {
        let k = (itype.to_string(), market);
        if let Some(p) = self.memo.lock().await.get(&k) {
            return p.clone();
        }
        let key = match (market, self.zones.is_empty()) {
            (Market::Spot, false) => format!(
                "{}@{}",
                cache_key(&self.region, itype, market),
                self.zones.join(",")
            ),
            _ => cache_key(&self.region, itype, market),
        };
        let now = crate::time::now_secs();
        let p = match read_cache().get(&key).filter(|c| c.at + CACHE_SECS > now) {
            Some(c) => {
                tracing::debug!(target: "daft::aws", %key, usd = c.usd_per_hour, "price from the cache");
                Ok(c.usd_per_hour)
            }
            None => {
                let asked = tokio::time::timeout(Duration::from_secs(ASK_SECS), async {
                    match market {
                        Market::OnDemand => self.on_demand(itype).await,
                        Market::Spot => self.spot(itype).await,
                    }
                })
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {ASK_SECS}s")));
                match &asked {
                    Ok(usd) => write_cache(&self.writing, key, *usd),
                    Err(e) => {
                        tracing::debug!(target: "daft::aws", itype, market = market.as_str(), "price unknown: {e}")
                    }
                }
                asked
            }
        };
        self.memo.lock().await.insert(k, p.clone());
        p
    }

    /// A Price List client (its endpoints are in us-east-1), with the EC2 client's credentials,
    /// HTTP stack, call log and a bound on each call.
    async fn pricing(&self) -> Result<&aws_sdk_pricing::Client, String> {
        self.pricing
            .get_or_init(|| async {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .http_client(http_client())
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(Duration::from_secs(ASK_SECS))
                            .connect_timeout(Duration::from_secs(5))
                            .build(),
                    )
                    .load()
                    .await;
                if sdk.credentials_provider().is_none() {
                    return Err("no AWS credentials".to_string());
                }
                let conf = aws_sdk_pricing::config::Builder::from(&sdk)
                    .interceptor(CallLog)
                    .build();
                Ok(aws_sdk_pricing::Client::from_conf(conf))
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The on-demand Linux price of `itype` in this region (shared tenancy, no pre-installed
    /// software), from the Price List API.
    async fn on_demand(&self, itype: &str) -> Price {
        let client = self.pricing().await?;
        let f = |field: &str, value: &str| {
            PriceFilter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| e.to_string())
        };
        let out = client
            .get_products()
            .service_code("AmazonEC2")
            .format_version("aws_v1")
            .filters(f("instanceType", itype)?)
            .filters(f("regionCode", &self.region)?)
            .filters(f("operatingSystem", "Linux")?)
            .filters(f("tenancy", "Shared")?)
            .filters(f("preInstalledSw", "NA")?)
            .filters(f("capacitystatus", "Used")?)
            .max_results(10)
            .send()
            .await
            .map_err(|e| {
                // The whole error in the debug log; a short reason in the plan.
                tracing::debug!(target: "daft::aws", "GetProducts failed: {}", aws_smithy_types::error::display::DisplayErrorContext(&e));
                match &e {
                    SdkError::ServiceError(s) if s.err().code().is_some() => format!(
                        "GetProducts: {}: {}",
                        s.err().code().unwrap_or_default(),
                        s.err().message().unwrap_or_default()
                    ),
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                        "GetProducts: the Price List API cannot be reached".to_string()
                    }
                    _ => "GetProducts: the Price List API's answer cannot be read".to_string(),
                }
            })?;
        out.price_list()
            .iter()
            .find_map(|doc| on_demand_of(doc))
            .ok_or_else(|| {
                format!(
                    "the Price List has no on-demand Linux price for {itype} in {}",
                    self.region
                )
            })
    }

    /// The spot price of `itype`: the newest price of each zone in use, the highest of them
    /// (where EC2 places a node is not known before it does).
    async fn spot(&self, itype: &str) -> Price {
        let zones: Vec<&str> = self.zones.iter().map(String::as_str).collect();
        let out = self
            .ec2
            .describe_spot_price_history()
            .set_filters((!zones.is_empty()).then(|| vec![filter("availability-zone", &zones)]))
            .instance_types(InstanceType::from(itype))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_smithy_types::DateTime::from(SystemTime::now()))
            .send()
            .await
            .map_err(|e| format!("{:#}", aws_err("DescribeSpotPriceHistory", e)))?;
        let mut newest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for h in out.spot_price_history() {
            let (Some(zone), Some(p)) = (
                h.availability_zone(),
                h.spot_price().and_then(|p| p.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let at = h.timestamp().map(|t| t.secs()).unwrap_or(0);
            let e = newest.entry(zone.to_string()).or_insert((at, p));
            if at > e.0 {
                *e = (at, p);
            }
        }
        newest
            .values()
            .map(|(_, p)| *p)
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
            .ok_or_else(|| {
                format!(
                    "EC2 has no spot price history for {itype} in {}",
                    self.region
                )
            })
    }

    /// Prices of several (type, market) pairs at once, each distinct pair asked once.
    pub async fn many(&self, want: &[(String, Market)]) -> Vec<Price> {
        let mut distinct: Vec<&(String, Market)> = want.iter().collect();
        distinct.sort();
        distinct.dedup();
        let got = futures::future::join_all(distinct.iter().map(|(t, m)| self.price(t, *m))).await;
        want.iter()
            .map(|w| {
                let i = distinct.iter().position(|d| *d == w).unwrap_or(0);
                got[i].clone()
            })
            .collect()
    }
}

impl AwsProvider {
    /// What the nodes of `desired` cost per hour: the head, and each group at its largest, of
    /// its first instance type and its market.
    pub(super) async fn estimate_cost(&self, desired: &DesiredCluster) -> Estimate {
        let mut want = vec![(
            "head".to_string(),
            1,
            self.aws.instance_type.clone(),
            Market::OnDemand,
        )];
        for g in &self.aws.groups {
            let what = if g.name.is_empty() {
                "workers".to_string()
            } else {
                format!("group {}", g.name)
            };
            let count = desired.group(&g.name).map(|w| w.max).unwrap_or(g.workers);
            let itype = g.instance_types.first().cloned().unwrap_or_default();
            want.push((what, count, itype, g.market));
        }
        let pairs: Vec<(String, Market)> = want.iter().map(|w| (w.2.clone(), w.3)).collect();
        let prices = self.prices.many(&pairs).await;
        Estimate {
            lines: want
                .into_iter()
                .zip(prices)
                .map(|((what, n, t, m), p)| PriceLine::new(&what, n, &t, m, p))
                .collect(),
        }
    }
}

/// What each of `nodes` (of one region) costs per hour, by its own type and market; None for
/// a node that does not run or whose price is unknown.
pub async fn node_prices(region: &str, nodes: &[ObservedNode]) -> Vec<Option<f64>> {
    let Ok(c) = client(region).await else {
        return vec![None; nodes.len()];
    };
    // (Only running nodes cost money; each distinct type and market is asked once.)
    let priced = |n: &ObservedNode| {
        n.detail
            .get("type")
            .filter(|t| n.state == NodeState::Running && !t.is_empty())
            .map(|t| (t.clone(), node_market(n)))
    };
    let want: Vec<(String, Market)> = nodes.iter().filter_map(priced).collect();
    let mut got = Prices::new(region, &[], c).many(&want).await.into_iter();
    nodes
        .iter()
        .map(|n| priced(n).and_then(|_| got.next().and_then(Result::ok)))
        .collect()
}

/// How a node was bought, as EC2 says (`instanceLifecycle`).
pub fn node_market(n: &ObservedNode) -> Market {
    n.detail
        .get("market")
        .and_then(|m| Market::parse(m))
        .unwrap_or(Market::OnDemand)
}

#[cfg(test)]
mod tests {
    use super::on_demand_of;

    #[test]
    fn the_on_demand_price_of_a_price_list_document() {
        // The shape of one PriceList entry (trimmed) as GetProducts returns it.
        let doc = r#"{"product":{"productFamily":"Compute Instance","attributes":{"instanceType":"m7i.large","regionCode":"us-west-2"},"sku":"ABC"},
            "serviceCode":"AmazonEC2",
            "terms":{"OnDemand":{"ABC.JRTCKXETXF":{"priceDimensions":{"ABC.JRTCKXETXF.6YS6EN2CT7":{"unit":"Hrs","pricePerUnit":{"USD":"0.1008000000"},"description":"$0.1008 per On Demand Linux m7i.large Instance Hour"}},"sku":"ABC","effectiveDate":"2026-11-01T00:00:00Z"}}}}"#;
        assert_eq!(on_demand_of(doc), Some(0.1008));
        assert_eq!(on_demand_of(r#"{"terms":{"OnDemand":{}}}"#), None);
        assert_eq!(on_demand_of("not json"), None);
        // A zero price (a reservation's placeholder) is no price.
        assert_eq!(
            on_demand_of(
                r#"{"terms":{"OnDemand":{"a":{"priceDimensions":{"b":{"unit":"Hrs","pricePerUnit":{"USD":"0.0000000000"}}}}}}}"#
            ),
            None
        );
    }
}
