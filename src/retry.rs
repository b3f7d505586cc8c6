//! Retry policy: configuration (a schedule of waits) plus this one pure function, shared by
//! webhook delivery and outbound sends.

use std::time::Duration;

/// How long to wait before attempt number `attempts + 1`, after `attempts` failures; `None` when
/// the schedule is exhausted. Scheduled waits get ±20 % jitter (`unit` is a random number in
/// [0, 1)) so a consumer coming back is not hit by every retry at once. A `retry_after` from the
/// peer replaces the scheduled wait, bounded by `max_retry_after` and floored at 100 ms.
pub fn next_delay(
    schedule: &[Duration],
    attempts: u32,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
    unit: f64,
) -> Option<Duration> {
    let scheduled = *schedule.get(attempts.saturating_sub(1) as usize)?;
    if let Some(wait) = retry_after {
        return Some(wait.clamp(Duration::from_millis(100), max_retry_after.max(Duration::from_millis(100))));
    }
    let factor = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
    Some(scheduled.mul_f64(factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: [Duration; 3] = [Duration::from_secs(5), Duration::from_secs(300), Duration::from_secs(1800)];
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn follows_the_schedule_then_gives_up() {
        assert_eq!(next_delay(&S, 1, None, MAX, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&S, 2, None, MAX, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(&S, 3, None, MAX, 0.5), Some(Duration::from_secs(1800)));
        assert_eq!(next_delay(&S, 4, None, MAX, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(next_delay(&S, 1, None, MAX, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(next_delay(&S, 1, None, MAX, 1.0), Some(Duration::from_secs(6)));
    }

    #[test]
    fn retry_after_replaces_the_wait_within_bounds() {
        assert_eq!(next_delay(&S, 2, Some(Duration::from_secs(7)), MAX, 0.5), Some(Duration::from_secs(7)));
        assert_eq!(next_delay(&S, 1, Some(Duration::from_secs(99_999)), MAX, 0.5), Some(MAX));
        assert_eq!(next_delay(&S, 1, Some(Duration::ZERO), MAX, 0.5), Some(Duration::from_millis(100)));
        assert_eq!(
            next_delay(&S, 4, Some(Duration::from_secs(1)), MAX, 0.5),
            None,
            "the schedule still bounds attempts"
        );
    }
}
