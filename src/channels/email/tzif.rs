//! IANA time zones from the system's tz database, for calendar times in a zone the invitation
//! names (`TZID=Europe/Warsaw`) without describing it in a VTIMEZONE, as RFC 5545 asks and not
//! every calendar does. A zone is a TZif file (RFC 8536) under `$TZDIR` or
//! `/usr/share/zoneinfo` (Debian's tzdata): its transitions, then, past the last one, the
//! POSIX TZ rule of its footer (`CET-1CEST,M3.5.0,M10.5.0/3`). A Windows zone name is read as
//! the IANA zone CLDR maps it to (`windows_zones.rs`). A machine without the database, or a
//! name it does not hold, gives no zone, and the time no `utc`.

use super::calendar::Transition;
use crate::model::time;

/// A TZif file this large is no zone (the largest is about 100 KB).
const MAX_TZIF_BYTES: u64 = 1 << 20;

/// The changes of the zone `name` in and around `year` (the year before to the year after), as
/// the system's tz database has them; `None` when it has no such zone. A Windows zone name
/// ("W. Europe Standard Time") is read as the IANA zone it stands for.
pub fn transitions(name: &str, year: i64) -> Option<Vec<Transition>> {
    let name = super::windows_zones::iana(name).unwrap_or(name);
    // A name is a relative path of plain parts: "Europe/Warsaw", "America/Argentina/Salta".
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    };
    if name.len() > 64 || !name.split('/').all(plain) {
        return None;
    }
    let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
    let path = std::path::Path::new(&dir).join(name);
    if std::fs::metadata(&path).ok()?.len() > MAX_TZIF_BYTES {
        return None;
    }
    parse(&std::fs::read(path).ok()?, year)
}

/// A TZif file's changes around `year`: those it lists (version 2 and later: 64-bit times), and
/// those its footer rule gives for the years after its last listed one.
fn parse(data: &[u8], year: i64) -> Option<Vec<Transition>> {
    let header = Header::read(data)?;
    if header.version < b'2' {
        return None;
    }
    // Version 1's block (32-bit times) comes first and is passed over.
    let second = data.get(header.block_len(4)..)?;
    let header = Header::read(second)?;
    let mut at = 44;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let bytes = second.get(*at..*at + n)?;
        *at += n;
        Some(bytes)
    };
    let times: Vec<i64> = take(&mut at, header.timecnt * 8)?
        .chunks(8)
        .map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let kinds = take(&mut at, header.timecnt)?.to_vec();
    let offsets: Vec<i64> = take(&mut at, header.typecnt * 6)?
        .chunks(6)
        .map(|c| i64::from(i32::from_be_bytes(c[..4].try_into().expect("4 bytes"))))
        .collect();
    at += header.charcnt + header.leapcnt * 12 + header.isstdcnt + header.isutcnt;
    let footer = second.get(at..).and_then(|rest| rest.strip_prefix(b"\n")).and_then(|rest| {
        let end = rest.iter().position(|b| *b == b'\n')?;
        std::str::from_utf8(&rest[..end]).ok()
    });

    let (from, to) = (year_start(year - 1), year_start(year + 2));
    let mut changes = Vec::new();
    // The offset before the first listed change is the first type's (RFC 8536 §3.2); `in_effect`
    // is the one at the start of these years.
    let mut previous = *offsets.first()?;
    let mut in_effect = previous;
    for (time, kind) in times.iter().zip(&kinds) {
        let offset = *offsets.get(usize::from(*kind))?;
        if *time < from {
            in_effect = offset;
        } else if *time < to {
            changes.push(Transition { onset: *time, from: previous, to: offset });
        }
        previous = offset;
    }
    // Past the last listed change, the footer's rule.
    let last = times.last().copied().unwrap_or(i64::MIN);
    if let Some(rule) = footer.filter(|_| last < to).and_then(PosixRule::parse) {
        for y in year - 1..=year + 1 {
            changes.extend(rule.changes_in(y).into_iter().filter(|t| t.onset > last));
        }
    }
    if changes.is_empty() {
        // No change in these years: the offset in force.
        changes.push(Transition { onset: i64::MIN / 2, from: in_effect, to: in_effect });
    }
    changes.sort_by_key(|t| t.onset);
    Some(changes)
}

fn year_start(year: i64) -> i64 {
    time::days_from_civil(year, 1, 1) * 86_400
}

/// A TZif header's counts (RFC 8536 §3.1).
struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn read(data: &[u8]) -> Option<Header> {
        if data.get(..4)? != b"TZif" {
            return None;
        }
        let count = |i: usize| -> Option<usize> {
            let bytes = data.get(20 + i * 4..24 + i * 4)?;
            Some(u32::from_be_bytes(bytes.try_into().ok()?) as usize)
        };
        Some(Header {
            version: *data.get(4)?,
            isutcnt: count(0)?,
            isstdcnt: count(1)?,
            leapcnt: count(2)?,
            timecnt: count(3)?,
            typecnt: count(4)?,
            charcnt: count(5)?,
        })
    }

    /// The length of a header and its data block with times of `time_size` bytes.
    fn block_len(&self, time_size: usize) -> usize {
        44 + self.timecnt * time_size
            + self.timecnt
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * (time_size + 4)
            + self.isstdcnt
            + self.isutcnt
    }
}

/// A POSIX TZ rule (`CET-1CEST,M3.5.0,M10.5.0/3`): standard offset, and, with summer time, its
/// offset and when it starts and ends (month, week, weekday, time of day).
struct PosixRule {
    std: i64,
    dst: Option<(i64, RuleDate, RuleDate)>,
}

/// `Mm.w.d/time`: weekday `d` (Sunday = 0) of week `w` (5: the last) of month `m`, at `time`
/// (seconds, local time then in force; may be negative or past 24 h).
#[derive(Clone, Copy)]
struct RuleDate {
    month: u32,
    week: i64,
    weekday: i64,
    time: i64,
}

impl PosixRule {
    fn parse(text: &str) -> Option<PosixRule> {
        let mut rest = text;
        skip_name(&mut rest)?;
        // POSIX offsets are west of UTC: "CET-1" is an hour east.
        let std = -signed_time(&mut rest)?;
        if rest.is_empty() {
            return Some(PosixRule { std, dst: None });
        }
        skip_name(&mut rest)?;
        let dst_offset = match rest.starts_with(',') {
            true => std + 3600,
            false => -signed_time(&mut rest)?,
        };
        let mut dates = rest.strip_prefix(',')?.split(',');
        let (start, end) = (RuleDate::parse(dates.next()?)?, RuleDate::parse(dates.next()?)?);
        Some(PosixRule { std, dst: Some((dst_offset, start, end)) })
    }

    /// The two changes of `year`: into summer time (from standard time's wall clock) and out of
    /// it (from summer time's).
    fn changes_in(&self, year: i64) -> Vec<Transition> {
        let Some((dst, start, end)) = self.dst else { return Vec::new() };
        vec![
            Transition { onset: start.local_in(year) - self.std, from: self.std, to: dst },
            Transition { onset: end.local_in(year) - dst, from: dst, to: self.std },
        ]
    }
}

impl RuleDate {
    fn parse(text: &str) -> Option<RuleDate> {
        let (date, time) = match text.split_once('/') {
            Some((date, time)) => (date, Some(time)),
            None => (text, None),
        };
        let mut fields = date.strip_prefix('M')?.split('.');
        let mut field = || fields.next()?.parse::<i64>().ok();
        let (month, week, weekday) = (field()?, field()?, field()?);
        if !(1..=12).contains(&month) || !(1..=5).contains(&week) || !(0..=6).contains(&weekday) {
            return None;
        }
        let time = match time {
            Some(mut time) => signed_time(&mut time)?,
            None => 7200,
        };
        Some(RuleDate { month: month as u32, week, weekday, time })
    }

    /// The wall-clock time (seconds as if UTC) this date falls on in `year`.
    fn local_in(&self, year: i64) -> i64 {
        let first = time::days_from_civil(year, self.month, 1);
        let next_month = first + i64::from(time::days_in_month(year, self.month));
        // POSIX counts weekdays from Sunday, `time::weekday` from Monday.
        let first_weekday = (i64::from(time::weekday(first)) + 1) % 7;
        let mut day = first + (self.weekday - first_weekday).rem_euclid(7) + (self.week - 1) * 7;
        while day >= next_month {
            day -= 7;
        }
        day * 86_400 + self.time
    }
}

/// Passes over a zone abbreviation: letters ("CET"), or anything in angle brackets ("<+0330>").
fn skip_name(rest: &mut &str) -> Option<()> {
    let len = match rest.strip_prefix('<') {
        Some(inner) => inner.find('>')? + 2,
        None => rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len()),
    };
    (len >= 3).then(|| *rest = &rest[len..])
}

/// `[+-]hh[:mm[:ss]]` in seconds, taken off the front of `rest`.
fn signed_time(rest: &mut &str) -> Option<i64> {
    let (sign, body) = match rest.as_bytes().first()? {
        b'-' => (-1, &rest[1..]),
        b'+' => (1, &rest[1..]),
        _ => (1, *rest),
    };
    let len = body.find(|c: char| !(c.is_ascii_digit() || c == ':')).unwrap_or(body.len());
    let mut parts = body[..len].split(':').map(|p| p.parse::<i64>().ok());
    let hours = parts.next()??;
    let minutes = parts.next().unwrap_or(Some(0))?;
    let seconds = parts.next().unwrap_or(Some(0))?;
    *rest = &body[len..];
    Some(sign * (hours * 3600 + minutes * 60 + seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_rules_read_as_glibc_reads_them() {
        let rule = PosixRule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(rule.std, 3600);
        let changes = rule.changes_in(2040);
        // 25 March 2040, 01:00 UTC and 28 October 2040, 01:00 UTC.
        assert_eq!(changes[0].onset, time::days_from_civil(2040, 3, 25) * 86_400 + 3600);
        assert_eq!(changes[1].onset, time::days_from_civil(2040, 10, 28) * 86_400 + 3600);
        let rule = PosixRule::parse("<-03>3<-02>,M3.2.0,M11.1.0").unwrap();
        assert_eq!(rule.std, -3 * 3600);
        assert_eq!(rule.dst.map(|d| d.0), Some(-2 * 3600));
        assert_eq!(PosixRule::parse("<+0530>-5:30").map(|r| (r.std, r.dst.is_none())), Some((19_800, true)));
        assert!(PosixRule::parse("X1").is_none());
    }

    #[test]
    fn names_that_are_no_plain_path_are_not_looked_up() {
        for name in ["../../etc/passwd", "/etc/passwd", "Europe//Warsaw", "Europe/..", "", "a\0b"] {
            assert!(transitions(name, 2026).is_none(), "{name}");
        }
    }
}
