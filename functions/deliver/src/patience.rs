//! How long the fast lane still waits for a batch's unanswered attempts:
//! `shared::outbound::lane::patience` of the batch's slowest answer so far,
//! from the batch's start, moved on by every answer.

use std::sync::Mutex;
use std::time::Duration;

use shared::outbound::lane::Bounds;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Patience {
    started: Instant,
    slowest: Mutex<Option<Duration>>,
    changed: Notify,
    bounds: Bounds,
}

impl Patience {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            started: Instant::now(),
            slowest: Mutex::new(None),
            changed: Notify::new(),
            bounds,
        }
    }

    /// An attempt of the batch got its answer (any status) now.
    pub fn answered(&self) {
        self.answered_after(self.started.elapsed());
    }

    fn answered_after(&self, took: Duration) {
        {
            let mut slowest = self.slowest.lock().unwrap_or_else(|p| p.into_inner());
            *slowest = Some(slowest.map_or(took, |s| s.max(took)));
        }
        self.changed.notify_waiters();
    }

    fn deadline(&self) -> Instant {
        let slowest = *self.slowest.lock().unwrap_or_else(|p| p.into_inner());
        self.started + self.bounds.patience(slowest)
    }

    /// Resolves when the batch has waited as long as it will.
    pub async fn run_out(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline()) => return,
                () = &mut changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn every_answer_moves_the_deadline_to_twice_the_slowest() {
        let patience = Patience::new(Bounds::STANDARD);
        assert_eq!(patience.deadline(), patience.started + MS(1000));
        patience.answered_after(MS(300));
        assert_eq!(patience.deadline(), patience.started + MS(600));
        patience.answered_after(MS(50));
        assert_eq!(
            patience.deadline(),
            patience.started + MS(600),
            "the slowest answer counts"
        );
    }

    #[tokio::test]
    async fn an_answer_wakes_the_attempts_still_waiting() {
        // A day until something answers, then twice that answer's time.
        let bounds = Bounds {
            min: Duration::ZERO,
            max: Duration::from_secs(86_400),
        };
        let patience = std::sync::Arc::new(Patience::new(bounds));
        let waiting = tokio::spawn({
            let p = patience.clone();
            async move { p.run_out().await }
        });
        tokio::task::yield_now().await;
        patience.answered();
        let woke = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert!(woke.is_ok(), "still waiting after an answer");
    }
}
