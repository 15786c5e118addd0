//! One scheduler for a sweep's jobs, wherever they run (`daft submit --sweep` on a cluster's
//! head, `daft launch`'s `[sweep]` on Kubernetes): at most `max_parallel` at a time, the next
//! started as one ends; on Ctrl-C the running ones are stopped and no more start, and the wait
//! for them to end is bounded. What a job is, how it starts, ends and stops is the back-end's
//! ([`SweepJobs`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// A sweep's jobs as one back-end runs them, by variant index.
#[async_trait]
pub trait SweepJobs: Send {
    /// Start variant `index`'s job (and say so).
    async fn start(&mut self, index: usize) -> anyhow::Result<()>;
    /// Wait up to `within` for any of the `running` variants to end: those that ended (each
    /// recorded and said by the back-end).
    async fn wait(
        &mut self,
        running: &BTreeSet<usize>,
        within: Duration,
    ) -> anyhow::Result<Vec<usize>>;
    /// Ctrl-C: stop the `running` variants' jobs; those that are over now (the others end as
    /// `wait` sees them).
    async fn stop(&mut self, running: &BTreeSet<usize>) -> anyhow::Result<Vec<usize>>;
    /// A running variant's job as the user names it (its id).
    fn name(&self, index: usize) -> String;
}

/// How a sweep's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Ctrl-C (or SIGTERM) stopped it.
    pub interrupted: bool,
    /// Variants still running when daft stopped waiting for them (after `stop_within`).
    pub left_running: Vec<usize>,
}

enum Event {
    Ended(Vec<usize>),
    Interrupted,
}

/// Run `total` variants' jobs, `max_parallel` at a time. `started`: variants the back-end
/// started already, all at once (a Slurm job array): none is started then, they are waited for.
/// `interrupt`: the process's (`crate::interrupt::token()`), or a test's own.
pub async fn run(
    jobs: &mut dyn SweepJobs,
    total: usize,
    max_parallel: usize,
    started: BTreeSet<usize>,
    poll: Duration,
    stop_within: Duration,
    interrupt: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Outcome> {
    let max_parallel = max_parallel.max(1);
    let mut next = if started.is_empty() { 0 } else { total };
    let mut running = started;
    let mut interrupted = false;
    let mut stop_by: Option<Instant> = None;
    loop {
        while !interrupted && running.len() < max_parallel && next < total {
            jobs.start(next).await?;
            running.insert(next);
            next += 1;
        }
        if running.is_empty() {
            break;
        }
        // Stopping is bounded: what has not ended by then is named and left as it is.
        if stop_by.is_some_and(|d| Instant::now() > d) {
            crate::warning!(
                "daft: {} job(s) of the sweep did not end within {}s of Ctrl-C: {}",
                running.len(),
                stop_within.as_secs(),
                running
                    .iter()
                    .map(|i| jobs.name(*i))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Ok(Outcome {
                interrupted,
                left_running: running.into_iter().collect(),
            });
        }
        // (The interrupt is seen however long the back-end's wait takes: an interrupt that came
        // while a job was being started is not lost either.)
        let event = tokio::select! {
            ended = jobs.wait(&running, poll) => Event::Ended(ended?),
            _ = interrupt.cancelled(), if !interrupted => Event::Interrupted,
        };
        match event {
            Event::Ended(ended) => {
                for i in ended {
                    running.remove(&i);
                }
            }
            Event::Interrupted => {
                interrupted = true;
                stop_by = Some(Instant::now() + stop_within);
                crate::notice!(
                    "\ndaft: stopping the sweep (Ctrl-C): cancelling {} running job(s), starting no more",
                    running.len()
                );
                for i in jobs.stop(&running).await? {
                    running.remove(&i);
                }
            }
        }
    }
    Ok(Outcome {
        interrupted,
        left_running: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs that end after `ticks` waits each, recording how many ran at once.
    struct Fake {
        ticks: Vec<u32>,
        left: std::collections::BTreeMap<usize, u32>,
        most_at_once: usize,
        started: Vec<usize>,
        stopped: Vec<usize>,
        /// Stopped jobs end at once (true) or never (false).
        stop_ends: bool,
    }

    #[async_trait]
    impl SweepJobs for Fake {
        async fn start(&mut self, index: usize) -> anyhow::Result<()> {
            self.started.push(index);
            self.left.insert(index, self.ticks[index]);
            self.most_at_once = self.most_at_once.max(self.left.len());
            Ok(())
        }
        async fn wait(
            &mut self,
            running: &BTreeSet<usize>,
            within: Duration,
        ) -> anyhow::Result<Vec<usize>> {
            tokio::time::sleep(within).await;
            let mut ended = Vec::new();
            for i in running {
                let Some(t) = self.left.get_mut(i) else {
                    continue;
                };
                *t = t.saturating_sub(1);
                if *t == 0 {
                    ended.push(*i);
                }
            }
            for i in &ended {
                self.left.remove(i);
            }
            Ok(ended)
        }
        async fn stop(&mut self, running: &BTreeSet<usize>) -> anyhow::Result<Vec<usize>> {
            self.stopped.extend(running.iter().copied());
            if self.stop_ends {
                for i in running {
                    self.left.remove(i);
                }
                Ok(running.iter().copied().collect())
            } else {
                Ok(Vec::new())
            }
        }
        fn name(&self, index: usize) -> String {
            format!("job-{index}")
        }
    }

    fn fake(ticks: Vec<u32>, stop_ends: bool) -> Fake {
        Fake {
            ticks,
            left: Default::default(),
            most_at_once: 0,
            started: Vec::new(),
            stopped: Vec::new(),
            stop_ends,
        }
    }

    #[tokio::test]
    async fn every_variant_runs_never_more_than_max_parallel_at_once() {
        let mut f = fake(vec![3, 1, 1, 2, 1, 1, 1], true);
        let o = run(
            &mut f,
            7,
            2,
            BTreeSet::new(),
            Duration::from_millis(1),
            Duration::from_secs(1),
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            o,
            Outcome {
                interrupted: false,
                left_running: vec![]
            }
        );
        assert_eq!(f.started, vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(f.most_at_once, 2);
    }

    #[tokio::test]
    async fn variants_started_by_the_back_end_are_waited_for_not_started_again() {
        let mut f = fake(vec![1, 2, 3], true);
        for i in 0..3 {
            f.left.insert(i, f.ticks[i]);
        }
        let o = run(
            &mut f,
            3,
            1,
            (0..3).collect(),
            Duration::from_millis(1),
            Duration::from_secs(1),
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(!o.interrupted);
        assert!(f.started.is_empty());
        assert!(f.left.is_empty());
    }

    #[tokio::test]
    async fn an_interrupt_stops_the_running_starts_no_more_and_is_not_lost() {
        // The interrupt came before the scheduler looked (while a job was being started, say).
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let mut f = fake(vec![1000; 5], true);
        let o = run(
            &mut f,
            5,
            2,
            BTreeSet::new(),
            Duration::from_millis(1),
            Duration::from_secs(5),
            &token,
        )
        .await
        .unwrap();
        assert!(o.interrupted);
        assert_eq!(f.started, vec![0, 1], "no more started after Ctrl-C");
        assert_eq!(f.stopped, vec![0, 1]);
        assert!(o.left_running.is_empty());
    }

    #[tokio::test]
    async fn jobs_that_do_not_stop_are_waited_for_within_a_bound_then_named() {
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let mut f = fake(vec![u32::MAX; 3], false);
        let t = Instant::now();
        let o = run(
            &mut f,
            3,
            3,
            BTreeSet::new(),
            Duration::from_millis(5),
            Duration::from_millis(200),
            &token,
        )
        .await
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(o.left_running, vec![0, 1, 2]);
    }
}
