//! Waiting for something outside daft: delays that grow (backon's exponential backoff), so a
//! long wait asks a shared service (Slurm's controller, an API server) less and less often.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays from `min`, growing by half each time, to at most `max`, for ever (the caller's
/// deadline bounds the wait).
pub fn delays(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(1.5)
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn delays_grow_to_their_bound_and_go_on() {
        let d: Vec<Duration> = super::delays(Duration::from_millis(500), Duration::from_secs(10))
            .take(20)
            .collect();
        assert_eq!(d[0], Duration::from_millis(500));
        assert!(d[1] > d[0] && d[2] > d[1], "{d:?}");
        assert_eq!(*d.last().unwrap(), Duration::from_secs(10));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(10)));
    }
}

/// A duration in whole seconds from the environment variable `name`, else `default`. A value
/// that is not a number is said, once, and the default used (never silently ignored).
pub fn env_secs(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) if v.trim().is_empty() => default,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) => Duration::from_secs(n),
            Err(_) => {
                static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
                let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
                if !said.iter().any(|s| s == name) {
                    said.push(name.to_string());
                    crate::warning!(
                        "daft: warning: {name}={v:?} is not a number of seconds; using {}s",
                        default.as_secs()
                    );
                }
                default
            }
        },
    }
}

#[cfg(test)]
mod env_tests {
    use std::time::Duration;

    #[test]
    fn env_secs_reads_numbers_and_falls_back_on_anything_else() {
        std::env::set_var("DAFT_TEST_WAIT_A", "7");
        std::env::set_var("DAFT_TEST_WAIT_B", "7s");
        let d = Duration::from_secs(3);
        assert_eq!(
            super::env_secs("DAFT_TEST_WAIT_A", d),
            Duration::from_secs(7)
        );
        assert_eq!(super::env_secs("DAFT_TEST_WAIT_B", d), d);
        assert_eq!(super::env_secs("DAFT_TEST_WAIT_UNSET", d), d);
    }
}
