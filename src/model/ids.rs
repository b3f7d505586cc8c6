//! Prefixed, sortable identifiers (`msg_…`, `cnv_…`, `ctc_…`, `evt_…`, `att_…`).
//!
//! An id is a type prefix plus a ULID (48-bit millisecond timestamp, 80 random bits, Crockford
//! base32). Ids are opaque to consumers; the prefix makes a misplaced id obvious in logs and lets
//! the API reject a `msg_` where a `cnv_` belongs. Ordering of the event stream comes from `seq`,
//! never from ids.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new ULID string (26 characters).
pub fn ulid() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let random = random_bytes();
    let mut value: u128 = (ms as u128 & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= (*b as u128) << (8 * (9 - i));
    }
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((value >> shift) & 0x1F) as usize];
    }
    String::from_utf8(out.to_vec()).expect("base32 is ASCII")
}

/// Ten bytes from the operating system's CSPRNG, taken from a per-thread buffer refilled 4 KiB
/// at a time: an ingested mail needs half a dozen ids, and a system call for each showed up in
/// profiles of a backlog import.
fn random_bytes() -> [u8; 10] {
    use std::cell::RefCell;
    const REFILL: usize = 4096;
    thread_local! {
        static POOL: RefCell<(Box<[u8; REFILL]>, usize)> = RefCell::new((Box::new([0; REFILL]), REFILL));
    }
    POOL.with(|pool| {
        let (buffer, used) = &mut *pool.borrow_mut();
        if *used + 10 > REFILL {
            getrandom::fill(&mut buffer[..]).expect("the operating system refused random bytes");
            *used = 0;
        }
        let mut out = [0u8; 10];
        out.copy_from_slice(&buffer[*used..*used + 10]);
        // Never hand out the same bytes twice.
        buffer[*used..*used + 10].fill(0);
        *used += 10;
        out
    })
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, ulid()))
            }

            /// Accepts only ids carrying this type's prefix.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| Self(s.to_owned()))
            }

            /// Wraps a value read back from our own store.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A message, inbound or outbound.
    MessageId, "msg_");
prefixed_id!(
    /// A conversation: one thread on one channel.
    ConversationId, "cnv_");
prefixed_id!(
    /// A contact, owning identities on any number of channels.
    ContactId, "ctc_");
prefixed_id!(
    /// An event in the log; the `webhook-id` of its deliveries.
    EventId, "evt_");
prefixed_id!(
    /// A stored attachment.
    AttachmentId, "att_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_distinct_across_refills_of_the_random_pool() {
        // 1,000 ids use the 4 KiB pool more than twice over.
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| MessageId::new().as_str().to_owned()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn ids_carry_prefix_and_parse_back() {
        let id = MessageId::new();
        assert!(id.as_str().starts_with("msg_"));
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(ConversationId::parse(id.as_str()), None);
        assert_eq!(MessageId::parse("msg_"), None);
        assert_eq!(MessageId::parse("msg_../etc"), None);
    }

    #[test]
    fn ulids_differ_and_sort_by_time() {
        let a = ulid();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ulid();
        assert_ne!(a, b);
        assert!(a < b);
    }
}
