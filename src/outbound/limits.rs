//! Send rate limits per channel (governor GCRA): a channel-wide bucket and one per recipient.
//!
//! A job that does not fit is not waited for: `check` says how long until it would, and the engine
//! gives the job that later due time (invariant 5). `Slots` spreads several deferred jobs of the
//! same bucket over successive periods so they do not all come back at the same instant.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::channels::ChannelLimits;

pub struct ChannelLimiter {
    channel: Option<(DefaultDirectRateLimiter, Duration)>,
    recipient: Option<(DefaultKeyedRateLimiter<String>, Duration)>,
}

/// Which bucket refused a send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    Channel,
    Recipient(String),
}

fn quota(per_second: f64, burst: u32) -> (Quota, Duration) {
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).expect("burst is at least 1");
    (Quota::with_period(period).expect("period is positive").allow_burst(burst), period)
}

impl ChannelLimiter {
    pub fn new(limits: &ChannelLimits) -> ChannelLimiter {
        let burst = limits.burst.unwrap_or(1);
        ChannelLimiter {
            channel: limits.per_second.map(|r| {
                let (q, p) = quota(r, burst);
                (RateLimiter::direct(q), p)
            }),
            recipient: limits.per_recipient_per_second.map(|r| {
                let (q, p) = quota(r, burst);
                (RateLimiter::keyed(q), p)
            }),
        }
    }

    /// Takes a send slot for `recipient` now, or says which bucket refused and for how long.
    /// The recipient bucket is checked first; when it admits and the channel refuses, the
    /// recipient's slot is spent anyway (governor cannot give it back), which only ever errs
    /// on the slow side.
    pub fn check(&self, recipient: &str) -> Result<(), (Bucket, Duration, Duration)> {
        let now = DefaultClock::default().now();
        if let Some((limiter, period)) = &self.recipient {
            if let Err(not_until) = limiter.check_key(&recipient.to_owned()) {
                return Err((Bucket::Recipient(recipient.to_owned()), not_until.wait_time_from(now), *period));
            }
        }
        if let Some((limiter, period)) = &self.channel {
            if let Err(not_until) = limiter.check() {
                return Err((Bucket::Channel, not_until.wait_time_from(now), *period));
            }
        }
        Ok(())
    }

    /// Forgets idle per-recipient buckets (bounded memory).
    pub fn tidy(&self) {
        if let Some((limiter, _)) = &self.recipient {
            limiter.retain_recent();
        }
    }
}

/// Assigns the k-th job deferred by the same bucket within one dispatch round the k-th free
/// period: `wait + k × period`.
#[derive(Default)]
pub struct Slots(HashMap<(String, Bucket), u32>);

impl Slots {
    pub fn next(&mut self, channel: &str, bucket: Bucket, wait: Duration, period: Duration) -> Duration {
        let k = self.0.entry((channel.to_owned(), bucket)).or_insert(0);
        let delay = wait + period * *k;
        *k += 1;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_bucket_spaces_sends() {
        let limiter = ChannelLimiter::new(&ChannelLimits { per_recipient_per_second: Some(1.0), ..Default::default() });
        assert!(limiter.check("a").is_ok());
        let (bucket, wait, period) = limiter.check("a").unwrap_err();
        assert_eq!(bucket, Bucket::Recipient("a".into()));
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(period, Duration::from_secs(1));
        assert!(limiter.check("b").is_ok(), "other recipients are not held back");
    }

    #[test]
    fn channel_bucket_limits_everyone() {
        let limiter =
            ChannelLimiter::new(&ChannelLimits { per_second: Some(10.0), burst: Some(2), ..Default::default() });
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("b").is_ok());
        let (bucket, _, period) = limiter.check("c").unwrap_err();
        assert_eq!(bucket, Bucket::Channel);
        assert_eq!(period, Duration::from_millis(100));
    }

    #[test]
    fn slots_spread_deferred_jobs() {
        let mut slots = Slots::default();
        let p = Duration::from_secs(1);
        let w = Duration::from_millis(300);
        assert_eq!(slots.next("web", Bucket::Recipient("a".into()), w, p), w);
        assert_eq!(slots.next("web", Bucket::Recipient("a".into()), w, p), w + p);
        assert_eq!(slots.next("web", Bucket::Recipient("b".into()), w, p), w);
        assert_eq!(slots.next("web", Bucket::Recipient("a".into()), w, p), w + 2 * p);
    }
}
