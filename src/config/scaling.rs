//! How many workers a cluster has, and who decides: a fixed `number_of_workers`, or
//! `min_workers`..`max_workers` with Ray's own autoscaler choosing within them (`idle_timeout`,
//! `upscaling_speed` in Ray's meaning); and `autostop`, how long the whole cluster may be idle
//! before it takes itself down.

use std::time::Duration;

use super::*;

/// A worker idle this long is removed by the autoscaler (Ray's default, 5 minutes).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Ray's default: pending launches may reach 100% of the current nodes.
pub const DEFAULT_UPSCALING_SPEED: f64 = 1.0;

/// The workers' count: fixed (`min == max`), or a range Ray's autoscaler moves within.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub min_workers: u32,
    pub max_workers: u32,
    pub idle_timeout: Duration,
    pub upscaling_speed: f64,
    /// `upscaling_speed` was written in the file (else Ray's default applies).
    pub upscaling_speed_given: bool,
}

impl Scaling {
    pub fn fixed(n: u32) -> Self {
        Scaling {
            min_workers: n,
            max_workers: n,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            upscaling_speed: DEFAULT_UPSCALING_SPEED,
            upscaling_speed_given: false,
        }
    }

    /// Ray's autoscaler picks the count.
    pub fn autoscaled(&self) -> bool {
        self.max_workers > self.min_workers
    }

    /// "autoscaled 0–8", for plans and lists; None when fixed.
    pub fn describe(&self) -> Option<String> {
        self.autoscaled()
            .then(|| format!("autoscaled {}–{}", self.min_workers, self.max_workers))
    }
}

/// Which back-ends let Ray's autoscaler change the number of workers (today).
fn can_autoscale(p: ProviderKind) -> bool {
    matches!(p, ProviderKind::Kubernetes)
}

/// Which back-ends' heads can take their own cluster down (today; AWS with an instance profile).
pub fn can_autostop(p: ProviderKind) -> bool {
    matches!(
        p,
        ProviderKind::Local | ProviderKind::Ssh | ProviderKind::Aws | ProviderKind::Slurm
    )
}

/// `autostop` (and `daft autostop`): a duration of at least 10 s.
pub fn parse_autostop(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|d| *d >= Duration::from_secs(10))
}

impl Checker<'_> {
    /// The workers' count from `number_of_workers` (already checked) or `min_workers` /
    /// `max_workers`, and the autoscaler's settings.
    pub(super) fn check_scaling(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
        number_of_workers: u32,
    ) -> Result<Scaling, ConfigError> {
        let v = |k: &str| self.value_span(doc, &["setup", k]);
        let count = |k: &str, n: Option<i64>| -> Result<Option<u32>, ConfigError> {
            match n {
                None => Ok(None),
                Some(n) if (0..=MAX_WORKERS).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(self
                    .err(v(k), format!("`setup.{k}` = {n} is out of range"))
                    .label(format!("must be between 0 and {MAX_WORKERS}"))
                    .help("give a number of workers besides the head, for example min_workers = 0 and max_workers = 8")),
            }
        };
        let min = count("min_workers", s.min_workers)?;
        let max = count("max_workers", s.max_workers)?;
        if v("number_of_workers").is_some() && (min.is_some() || max.is_some()) {
            let k = if min.is_some() {
                "min_workers"
            } else {
                "max_workers"
            };
            return Err(self
                .err(v(k), format!("`setup.{k}` and `setup.number_of_workers` both say how many workers"))
                .label("a second way to give the workers")
                .help("keep number_of_workers = N for a fixed size, or min_workers and max_workers for a size Ray's autoscaler picks; not both"));
        }
        let mut scaling = match (min, max) {
            (None, None) => Scaling::fixed(number_of_workers),
            (Some(m), None) => {
                return Err(self
                    .err(v("min_workers"), "`setup.min_workers` is given without `setup.max_workers`")
                    .label("no upper bound")
                    .help(format!("add max_workers = N (the most workers the autoscaler may start, at least {m}), or use number_of_workers = {m} for a fixed size")));
            }
            (None, Some(m)) => Scaling {
                min_workers: 0,
                max_workers: m,
                ..Scaling::fixed(0)
            },
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(self
                    .err(
                        v("min_workers"),
                        format!(
                            "`setup.min_workers` = {lo} is more than `setup.max_workers` = {hi}"
                        ),
                    )
                    .label("more than the maximum")
                    .help("make min_workers at most max_workers (equal means a fixed size)"));
            }
            (Some(lo), Some(hi)) => Scaling {
                min_workers: lo,
                max_workers: hi,
                ..Scaling::fixed(lo)
            },
        };
        if let Some(t) = &s.idle_timeout {
            match humantime::parse_duration(t) {
                Ok(d) if d >= Duration::from_secs(1) => scaling.idle_timeout = d,
                _ => {
                    return Err(self
                        .err(v("idle_timeout"), format!("`setup.idle_timeout` = {t:?} is not a duration"))
                        .label("expected a duration such as \"5m\" or \"90s\"")
                        .help("give how long a worker may be idle before the autoscaler removes it, for example idle_timeout = \"10m\" (at least 1s)"));
                }
            }
        }
        if let Some(x) = s.upscaling_speed {
            if !(x.is_finite() && x > 0.0 && x <= 1000.0) {
                return Err(self
                    .err(v("upscaling_speed"), format!("`setup.upscaling_speed` = {x} is out of range"))
                    .label("must be more than 0 and at most 1000")
                    .help("give Ray's upscaling speed: pending launches as a multiple of the nodes there are, for example upscaling_speed = 1.0 (Ray's default)"));
            }
            scaling.upscaling_speed = x;
            scaling.upscaling_speed_given = true;
        }
        if !scaling.autoscaled() {
            for k in ["idle_timeout", "upscaling_speed"] {
                if v(k).is_some() {
                    return Err(self
                        .err(v(k), format!("`setup.{k}` means nothing with a fixed number of workers"))
                        .label("no autoscaler to use it")
                        .help("remove it, or give min_workers below max_workers so that Ray's autoscaler picks the count"));
                }
            }
            return Ok(scaling);
        }
        let at = if max.is_some() {
            "max_workers"
        } else {
            "min_workers"
        };
        if s.provider == ProviderKind::Slurm {
            return Err(self
                .err(v(at), "a Slurm allocation has a fixed number of nodes: `setup.min_workers` and `setup.max_workers` differ")
                .label("Slurm cannot grow or shrink an allocation")
                .help("use number_of_workers = N (or min_workers = max_workers = N); `daft up` with a new N asks Slurm for a new allocation of that size"));
        }
        if !can_autoscale(s.provider) {
            return Err(self
                .err(v(at), format!("autoscaled workers are not available with provider = {:?} yet", s.provider.as_str()))
                .label("min_workers below max_workers needs Ray's autoscaler")
                .help("use number_of_workers = N for a fixed size here; provider = \"kubernetes\" scales between min_workers and max_workers through KubeRay's autoscaler"));
        }
        Ok(scaling)
    }
}

impl Checker<'_> {
    pub(super) fn check_autostop(
        &self,
        doc: &Document<String>,
        s: &SetupFile,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(text) = &s.autostop else {
            return Ok(None);
        };
        let span = self.value_span(doc, &["setup", "autostop"]);
        let Some(d) = parse_autostop(text) else {
            return Err(self
                .err(span, format!("`setup.autostop` = {text:?} is not a duration of at least 10s"))
                .label("expected a duration such as \"30m\" or \"2h\"")
                .help("give how long the cluster may be idle (no job, no Ray task or actor) before it takes itself down, for example autostop = \"30m\"; leave it out to keep the cluster until `daft down`"));
        };
        if !can_autostop(s.provider) {
            return Err(self
                .err(span, format!("autostop is not available with provider = {:?} yet", s.provider.as_str()))
                .label("this back-end's head cannot take its cluster down yet")
                .help("remove it and run `daft down` when done; autostop works with provider = \"local\", \"ssh\", \"aws\" and \"slurm\""));
        }
        let profile = s.aws.as_ref().and_then(|a| a.iam_instance_profile.as_ref());
        if s.provider == ProviderKind::Aws && profile.is_none() {
            return Err(self
                .err(span, "autostop on AWS needs `setup.aws.iam_instance_profile`")
                .label("the head terminates the cluster with its instance's own credentials")
                .help(format!(
                    "name an instance profile whose role allows ec2:DescribeInstances, and ec2:TerminateInstances on instances tagged daft:cluster = {:?} (the README has the policy); daft never copies your credentials to a node",
                    s.name.trim()
                )));
        }
        Ok(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_is_not_autoscaled_and_a_range_says_so() {
        assert!(!Scaling::fixed(3).autoscaled());
        assert_eq!(Scaling::fixed(3).describe(), None);
        let s = Scaling {
            min_workers: 0,
            max_workers: 8,
            ..Scaling::fixed(0)
        };
        assert!(s.autoscaled());
        assert_eq!(s.describe().as_deref(), Some("autoscaled 0–8"));
    }
}
