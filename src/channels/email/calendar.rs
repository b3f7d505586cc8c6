//! Calendar invitations in mail (iMIP, RFC 6047): the `text/calendar` part Outlook, Google
//! Calendar, Apple Calendar and Thunderbird put beside an invitation's text, or an `.ics` file,
//! read into the message's `calendar`: what the event is, when (in UTC when the invitation says
//! which instant it means), who organises it and who answered what. A helpdesk agent sees "a
//! meeting on Tuesday at 10:00 about the order" instead of overlooking a file (Znuny#172), and an
//! attendee's answer ("Accepted: …", `method` REPLY) can be told from a customer's question.
//!
//! The reader takes iCalendar (RFC 5545) as mail clients write it: folded lines, quoted
//! parameters, escaped text, all-day dates, `DURATION` instead of `DTEND`. A time in a named zone
//! is placed in UTC by the invitation's own `VTIMEZONE` (its observances' `DTSTART`, yearly
//! `RRULE` and `RDATE` onsets); a zone it names without describing (`TZID=Europe/Warsaw` alone,
//! which RFC 5545 does not allow and some calendars write) by the system's tz database
//! (`tzif.rs`); a zone neither knows leaves `utc` out rather than guessing.
//!
//! Nothing here can fail the mail: what does not parse is left out, and the file stays an
//! attachment either way. Hostile data is read in bounded time (the `MAX_` caps below).

use super::tzif;
use crate::model::{time, CalendarAttendee, CalendarTime, MailCalendar, Party};

/// Whether a mail part is a calendar object: by its type, or by an `.ics` name on a generic one.
pub fn is_calendar(content_type: &str, filename: Option<&str>) -> bool {
    matches!(content_type, "text/calendar" | "application/ics" | "text/x-vcalendar")
        || filename
            .is_some_and(|name| name.len() >= 4 && name.as_bytes()[name.len() - 4..].eq_ignore_ascii_case(b".ics"))
}

/// Calendar data larger than this is not read (the file stays): an invitation is a few KB, and
/// one with a picture in its description a few hundred.
const MAX_CALENDAR_BYTES: usize = 1 << 20;
/// A zone's observances considered: real ones have two, or a few dozen written out by year.
const MAX_OBSERVANCES: usize = 200;
/// Entries of an RRULE list considered (BYDAY, BYMONTHDAY, BYMONTH): a zone's rule has one.
const MAX_RULE_ENTRIES: usize = 31;

/// The event of a calendar object (its first `VEVENT` that is not an exception to a recurring
/// one; else its first exception, with which meeting it is about), or `None` when it holds none
/// or is larger than `MAX_CALENDAR_BYTES`.
pub fn read(ics: &[u8]) -> Option<MailCalendar> {
    if ics.len() > MAX_CALENDAR_BYTES {
        return None;
    }
    let text = String::from_utf8_lossy(ics);
    let calendar = parse(&text)?;
    let events = || calendar.children.iter().filter(|c| c.name == "VEVENT");
    let event = events().find(|e| e.property("RECURRENCE-ID").is_none()).or_else(|| events().next())?;
    let zones: Vec<&Component> = calendar.children.iter().filter(|c| c.name == "VTIMEZONE").collect();
    let start = event.property("DTSTART").and_then(|p| instant(p, &zones));
    // A DURATION's days and weeks are nominal, its hours, minutes and seconds exact (RFC 5545
    // §3.3.6): "P1D" across the night the clocks change ends at the same time of day, "PT2H" two
    // hours later, whatever the wall clock says then.
    let end = match event.property("DTEND").and_then(|p| instant(p, &zones)) {
        Some(end) => Some(end),
        None => start.as_ref().zip(event.property("DURATION").and_then(|p| duration(&p.value))).map(
            |(start, (days, seconds))| {
                let nominal = start.local + days * 86_400;
                let (local, utc) = match (start.time_zone.as_deref(), start.utc) {
                    (Some(name), Some(_)) => match zoned(nominal, name, &zones).map(|u| u + seconds) {
                        Some(utc) => (wall_clock(utc, name, &zones).unwrap_or(nominal + seconds), Some(utc)),
                        None => (nominal + seconds, None),
                    },
                    (_, utc) => (nominal + seconds, utc.map(|u| u + days * 86_400 + seconds)),
                };
                Instant { local, utc, ..start.clone() }
            },
        ),
    };
    let text = |name: &str| event.property(name).map(|p| unescape(&p.value)).filter(|t| !t.trim().is_empty());
    // An exception read only when the calendar has no series: the mail is about that meeting.
    let occurrence = event.property("RECURRENCE-ID");
    Some(MailCalendar {
        method: calendar.property("METHOD").map(|p| p.value.trim().to_ascii_uppercase()),
        uid: event.property("UID").map(|p| p.value.trim().to_owned()),
        sequence: event.property("SEQUENCE").and_then(|p| p.value.trim().parse().ok()).unwrap_or(0),
        status: event.property("STATUS").map(|p| p.value.trim().to_ascii_lowercase()),
        summary: text("SUMMARY"),
        location: text("LOCATION"),
        description: text("DESCRIPTION"),
        start: start.map(Instant::shown),
        end: end.map(Instant::shown),
        recurrence: event.property("RRULE").map(|p| p.value.trim().to_owned()),
        occurrence: occurrence.and_then(|p| instant(p, &zones)).map(Instant::shown),
        occurrence_range: occurrence
            .and_then(|p| p.param("RANGE"))
            .filter(|range| range.eq_ignore_ascii_case("THISANDFUTURE"))
            .map(|_| "this_and_future".to_owned()),
        organizer: event.property("ORGANIZER").and_then(person),
        attendees: event
            .properties
            .iter()
            .filter(|p| p.name == "ATTENDEE")
            .filter_map(|p| {
                let party = person(p)?;
                let status = p.param("PARTSTAT").unwrap_or("NEEDS-ACTION").to_ascii_lowercase();
                Some(CalendarAttendee { address: party.address, name: party.name, status })
            })
            .collect(),
        conference_url: ["CONFERENCE", "X-GOOGLE-CONFERENCE", "X-MICROSOFT-SKYPETEAMSMEETINGURL"]
            .iter()
            .find_map(|name| event.property(name))
            .map(|p| p.value.trim().to_owned())
            .filter(|url| !url.is_empty()),
    })
}

/// One content line (RFC 5545 §3.1): `NAME;PARAM=value:value`.
struct Property {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Property {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `BEGIN:NAME` … `END:NAME`, with what it holds.
struct Component {
    name: String,
    properties: Vec<Property>,
    children: Vec<Component>,
}

impl Component {
    fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

/// The outermost component (`VCALENDAR`). Lines folded by a leading space or tab are joined; a
/// component left open at the end is closed there, and an `END` that closes nothing is passed over.
fn parse(text: &str) -> Option<Component> {
    let mut stack: Vec<Component> = Vec::new();
    let mut done: Option<Component> = None;
    // The innermost open component goes into the one around it, or, outermost, is the result.
    let close = |stack: &mut Vec<Component>, done: &mut Option<Component>| {
        let component = stack.pop()?;
        let name = component.name.clone();
        match stack.last_mut() {
            Some(parent) => parent.children.push(component),
            None => *done = done.take().or(Some(component)),
        }
        Some(name)
    };
    for line in unfolded(text) {
        let Some(property) = content_line(&line) else { continue };
        match property.name.as_str() {
            "BEGIN" => stack.push(Component {
                name: property.value.trim().to_ascii_uppercase(),
                properties: Vec::new(),
                children: Vec::new(),
            }),
            "END" => {
                if !stack.iter().any(|c| c.name.eq_ignore_ascii_case(property.value.trim())) {
                    continue;
                }
                // Inner components left open end with the one closed.
                while let Some(closed) = close(&mut stack, &mut done) {
                    if closed.eq_ignore_ascii_case(property.value.trim()) {
                        break;
                    }
                }
            }
            _ => {
                if let Some(component) = stack.last_mut() {
                    component.properties.push(property);
                }
            }
        }
    }
    while close(&mut stack, &mut done).is_some() {}
    done.filter(|c| c.name == "VCALENDAR")
}

/// The logical lines of `text`: a line that begins with a space or a tab continues the one
/// before, without that first character (RFC 5545 §3.1).
fn unfolded(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        match (line.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

/// `NAME;P1=a;P2="b:c",d:value`: names upper-cased, a quoted parameter value may hold `;`, `:`
/// and `,`; the value is everything after the first colon outside quotes.
fn content_line(line: &str) -> Option<Property> {
    let (mut params, mut in_quotes, mut split) = (Vec::new(), false, None);
    let mut field_start = 0;
    let mut fields: Vec<&str> = Vec::new();
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                fields.push(&line[field_start..i]);
                field_start = i + 1;
            }
            ':' if !in_quotes => {
                fields.push(&line[field_start..i]);
                split = Some(i);
                break;
            }
            _ => {}
        }
    }
    let value = line[split? + 1..].to_owned();
    let mut fields = fields.into_iter();
    let name = fields.next()?.trim().to_ascii_uppercase();
    if name.is_empty() {
        return None;
    }
    for field in fields {
        if let Some((key, value)) = field.split_once('=') {
            params.push((key.trim().to_ascii_uppercase(), value.trim().trim_matches('"').to_owned()));
        }
    }
    Some(Property { name, params, value })
}

/// A TEXT value with its escapes undone (RFC 5545 §3.3.11): `\n`, `\,`, `\;`, `\\`.
fn unescape(value: &str) -> String {
    let mut text = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => text.push('\n'),
            Some(escaped) => text.push(escaped),
            None => text.push('\\'),
        }
    }
    text.trim().to_owned()
}

/// `mailto:ann@example.org` with its `CN`, as a party.
fn person(property: &Property) -> Option<Party> {
    let value = property.value.trim();
    let address = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => &value[7..],
        _ => value,
    };
    (address.contains('@')).then(|| Party {
        address: address.to_owned(),
        name: property.param("CN").map(str::to_owned).filter(|n| !n.trim().is_empty()),
    })
}

/// A DTSTART or DTEND: its wall-clock time (seconds as if the wall clock were UTC), and the
/// instant when the value says or its zone's rules tell it.
#[derive(Clone)]
struct Instant {
    local: i64,
    all_day: bool,
    time_zone: Option<String>,
    utc: Option<i64>,
}

impl Instant {
    fn shown(self) -> CalendarTime {
        let (y, m, d) = time::civil_from_days(self.local.div_euclid(86_400));
        let seconds = self.local.rem_euclid(86_400);
        let local = match self.all_day {
            true => format!("{y:04}-{m:02}-{d:02}"),
            false => {
                format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", seconds / 3600, seconds % 3600 / 60, seconds % 60)
            }
        };
        CalendarTime {
            utc: self.utc.map(|u| time::rfc3339(u * 1000)),
            local,
            time_zone: self.time_zone,
            all_day: self.all_day,
        }
    }
}

fn instant(property: &Property, zones: &[&Component]) -> Option<Instant> {
    let value = property.value.trim();
    let (local, all_day, utc) = date_time(value)?;
    let time_zone = property.param("TZID").map(|z| z.trim_start_matches('/').to_owned()).filter(|_| !utc);
    let utc = match (utc, all_day, &time_zone) {
        (true, _, _) => Some(local),
        (false, false, Some(name)) => zoned(local, name, zones),
        _ => None,
    };
    Some(Instant { local, all_day, time_zone, utc })
}

/// The instant of the wall-clock time `local` in the zone `name`: by the invitation's VTIMEZONE
/// for it, or, when it only names the zone, by the system's tz database.
fn zoned(local: i64, name: &str, zones: &[&Component]) -> Option<i64> {
    resolve(local, transitions(name, zones, year_of(local))?)
}

/// The changes of the zone `name` near `year`, by onset: its VTIMEZONE's observances, or, when
/// the invitation only names it, the system's tz database's.
fn transitions(name: &str, zones: &[&Component], year: i64) -> Option<Vec<Transition>> {
    match zone(zones, name) {
        Some(zone) => Some(observances(zone, year)),
        None => tzif::transitions(name, year),
    }
}

/// The wall-clock time in the zone `name` at the instant `utc`: `utc` plus the offset of the
/// zone's last change before it.
fn wall_clock(utc: i64, name: &str, zones: &[&Component]) -> Option<i64> {
    let transitions = transitions(name, zones, year_of(utc))?;
    let offset = match transitions.iter().rev().find(|t| t.onset <= utc) {
        Some(last) => last.to,
        None => transitions.first()?.from,
    };
    Some(utc + offset)
}

/// The `VTIMEZONE` of the zone a TZID names (a leading `/`, "globally unique", is no part of it).
fn zone<'a>(zones: &[&'a Component], name: &str) -> Option<&'a Component> {
    zones.iter().copied().find(|z| z.property("TZID").is_some_and(|id| id.value.trim().trim_start_matches('/') == name))
}

/// `20261124` (a day), `20261124T100000` (wall-clock time) or `20261124T090000Z` (UTC), as
/// seconds since the epoch, whether it is a whole day, and whether it is UTC.
fn date_time(value: &str) -> Option<(i64, bool, bool)> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok()).flatten();
    let (date, time) = match value.split_once(['T', 't']) {
        Some((date, time)) => (date, Some(time)),
        None => (value, None),
    };
    if date.len() != 8 {
        return None;
    }
    let (y, m, d) = (digits(&date[..4])?, digits(&date[4..6])?, digits(&date[6..])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = time::days_from_civil(y, m as u32, d as u32) * 86_400;
    let Some(time) = time else { return Some((day, true, false)) };
    let (time, utc) = match time.strip_suffix(['Z', 'z']) {
        Some(time) => (time, true),
        None => (time, false),
    };
    if time.len() != 6 {
        return None;
    }
    let (h, min, s) = (digits(&time[..2])?, digits(&time[2..4])?, digits(&time[4..])?);
    if h > 23 || min > 59 || s > 60 {
        return None;
    }
    Some((day + h * 3600 + min * 60 + s, false, utc))
}

/// The longest DURATION read (a hundred years, in seconds): anything longer is no event's.
const MAX_DURATION: i64 = 100 * 366 * 86_400;

/// `P1D`, `PT1H30M`, `P2W`, `-PT15M` (RFC 5545 §3.3.6) as its days (weeks and days, nominal)
/// and its seconds (hours, minutes and seconds, exact).
fn duration(value: &str) -> Option<(i64, i64)> {
    let value = value.trim();
    let (sign, rest) = match value.as_bytes().first()? {
        b'-' => (-1, &value[1..]),
        b'+' => (1, &value[1..]),
        _ => (1, value),
    };
    let rest = rest.strip_prefix(['P', 'p'])?;
    let (mut days, mut seconds, mut number, mut in_time, mut any) = (0i64, 0i64, String::new(), false, false);
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            '0'..='9' => number.push(c),
            'T' if number.is_empty() => in_time = true,
            unit => {
                let n: i64 = number.parse().ok().filter(|n| *n <= MAX_DURATION)?;
                number.clear();
                match (unit, in_time) {
                    ('W', false) => days += n * 7,
                    ('D', false) => days += n,
                    ('H', true) => seconds += n * 3600,
                    ('M', true) => seconds += n * 60,
                    ('S', true) => seconds += n,
                    _ => return None,
                }
                if days * 86_400 > MAX_DURATION || seconds > MAX_DURATION {
                    return None;
                }
                any = true;
            }
        }
    }
    (any && number.is_empty()).then_some((sign * days, sign * seconds))
}

/// A change of a zone's offset: when (UTC), from which offset to which (seconds east of UTC).
pub(super) struct Transition {
    pub onset: i64,
    pub from: i64,
    pub to: i64,
}

/// A VTIMEZONE's changes near `year` (its STANDARD and DAYLIGHT observances), by onset.
fn observances(zone: &Component, year: i64) -> Vec<Transition> {
    let mut transitions: Vec<Transition> = zone
        .children
        .iter()
        .filter(|c| c.name == "STANDARD" || c.name == "DAYLIGHT")
        .take(MAX_OBSERVANCES)
        .flat_map(|observance| observance_transitions(observance, year))
        .collect();
    transitions.sort_by_key(|t| t.onset);
    transitions
}

fn year_of(local: i64) -> i64 {
    time::civil_from_days(local.div_euclid(86_400)).0
}

/// The instant a zone's wall-clock time `local` names, among the zone's `transitions` (sorted by
/// onset): the offset in effect is that of the last onset before it. A time that occurs twice
/// (the hour clocks go back) is the first of the two; one skipped (the hour clocks go forward)
/// is read with the offset before the gap — both as RFC 5545 §3.3.5 says.
fn resolve(local: i64, transitions: Vec<Transition>) -> Option<i64> {
    // Before the first onset, the offset it changes from.
    let mut offset_before = transitions.first()?.from;
    if local - offset_before < transitions[0].onset {
        return Some(local - offset_before);
    }
    // Each offset holds from its onset to the next; the earlier of two readings is the first.
    for (i, transition) in transitions.iter().enumerate() {
        let next = transitions.get(i + 1).map_or(i64::MAX, |t| t.onset);
        if (transition.onset..next).contains(&(local - transition.to)) {
            return Some(local - transition.to);
        }
        // Skipped by this transition (a gap): read with the offset before it.
        if local - offset_before >= transition.onset && local - transition.to < transition.onset {
            return Some(local - offset_before);
        }
        offset_before = transition.to;
    }
    Some(local - offset_before)
}

/// The onsets of one STANDARD or DAYLIGHT observance near `year`: its `DTSTART`, its `RDATE`s,
/// and what a yearly `RRULE` gives in the year before, the year and the year after.
fn observance_transitions(observance: &Component, year: i64) -> Vec<Transition> {
    let offset = |name: &str| observance.property(name).and_then(|p| utc_offset(&p.value));
    let (Some(from), Some(to)) = (offset("TZOFFSETFROM"), offset("TZOFFSETTO")) else { return Vec::new() };
    let Some((start, _, _)) = observance.property("DTSTART").and_then(|p| date_time(p.value.trim())) else {
        return Vec::new();
    };
    let mut onsets = vec![start];
    for rdate in observance.properties.iter().filter(|p| p.name == "RDATE") {
        for value in rdate.value.split(',') {
            // A PERIOD (`start/end`) starts at its start.
            let value = value.split('/').next().unwrap_or(value).trim();
            onsets.extend(
                date_time(value).map(|(at, all_day, _)| at + if all_day { start.rem_euclid(86_400) } else { 0 }),
            );
        }
    }
    if let Some(rule) = observance.property("RRULE") {
        onsets.extend(yearly_onsets(&rule.value, start, year - 1..=year + 1));
    }
    onsets.into_iter().map(|onset| Transition { onset: onset - from, from, to }).collect()
}

/// The onsets a yearly `RRULE` (`FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU`, with `BYMONTHDAY`, `UNTIL`
/// or `COUNT`) gives in `years`, at `start`'s time of day, none before `start`. Other
/// frequencies, which no zone uses, give none.
fn yearly_onsets(rule: &str, start: i64, years: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    let part = |name: &str| {
        rule.split(';')
            .find_map(|p| p.split_once('=').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim())
    };
    if !part("FREQ").is_some_and(|f| f.eq_ignore_ascii_case("YEARLY")) {
        return Vec::new();
    }
    let (start_year, start_month, start_day) = time::civil_from_days(start.div_euclid(86_400));
    let time_of_day = start.rem_euclid(86_400);
    let until = part("UNTIL").and_then(date_time).map(|(at, _, _)| at);
    let last_year = part("COUNT").and_then(|c| c.parse::<i64>().ok()).map(|count| start_year + count - 1);
    let list = |name: &str| {
        part(name).map(|v| v.split(',').map(str::trim).take(MAX_RULE_ENTRIES).collect::<Vec<_>>()).unwrap_or_default()
    };
    let mut months: Vec<u32> = match list("BYMONTH").iter().map(|m| m.parse().ok()).collect::<Option<Vec<u32>>>() {
        Some(months) if !months.is_empty() => months,
        _ => vec![start_month],
    };
    // Each month and each day once, however often a rule names them: at most a year's days.
    months.sort_unstable();
    months.dedup();
    let month_days: Vec<i64> = list("BYMONTHDAY").iter().filter_map(|d| d.parse().ok()).collect();
    let weekdays: Vec<(i64, u32)> = list("BYDAY").iter().filter_map(|d| by_day(d)).collect();
    let mut onsets = Vec::new();
    for year in years.filter(|y| *y >= start_year && last_year.is_none_or(|last| *y <= last)) {
        for &month in months.iter().filter(|m| (1..=12).contains(*m)) {
            let first = time::days_from_civil(year, month, 1);
            let length = i64::from(time::days_in_month(year, month));
            let mut days: Vec<i64> = match (weekdays.is_empty(), month_days.is_empty()) {
                (true, true) => vec![start_day as i64],
                (true, false) => month_days.clone(),
                (false, _) => weekdays
                    .iter()
                    .flat_map(|&(nth, weekday)| {
                        let matching: Vec<i64> = (1..=length)
                            .filter(|d| time::weekday(first + d - 1) == weekday)
                            .filter(|d| month_days.is_empty() || month_days.contains(d))
                            .collect();
                        match nth {
                            0 => matching,
                            n if n > 0 => matching.get(n as usize - 1).copied().into_iter().collect(),
                            n => matching
                                .len()
                                .checked_sub(n.unsigned_abs() as usize)
                                .map(|i| matching[i])
                                .into_iter()
                                .collect(),
                        }
                    })
                    .collect(),
            };
            days.sort_unstable();
            days.dedup();
            for day in days.into_iter().filter(|d| (1..=length).contains(d)) {
                let onset = (first + day - 1) * 86_400 + time_of_day;
                // UNTIL is in UTC, the onset in wall-clock time: within a day is close enough,
                // as no zone changes its rules twice in one.
                if onset >= start && until.is_none_or(|until| onset <= until + 86_400) {
                    onsets.push(onset);
                }
            }
        }
    }
    onsets
}

/// `-1SU` → (-1, Sunday), `SU` → (0, Sunday); weekdays from Monday = 0, as `time::weekday`.
fn by_day(value: &str) -> Option<(i64, u32)> {
    const DAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
    let split = value.len().checked_sub(2)?;
    // Not `value[split..]`: a non-ASCII letter there would split a character (found by fuzzing).
    let weekday = DAYS.iter().position(|d| value.as_bytes()[split..].eq_ignore_ascii_case(d.as_bytes()))? as u32;
    let nth = match &value[..split] {
        "" => 0,
        n => n.trim_start_matches('+').parse().ok()?,
    };
    Some((nth, weekday))
}

/// `+0100`, `-0430`, `+013045` in seconds east of UTC.
fn utc_offset(value: &str) -> Option<i64> {
    let value = value.trim();
    let sign = match value.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &value[1..];
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits.get(range).map_or(Some(0), |d| d.parse::<i64>().ok());
    Some(sign * (number(0..2)? * 3600 + number(2..4)? * 60 + number(4..6)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTLOOK: &str = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:Microsoft Exchange Server 2010\r\n\
VERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:Central European Standard Time\r\nBEGIN:STANDARD\r\n\
DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\n\
DTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nORGANIZER;CN=\"Kowalski, Jan\":mailto:jan@example.pl\r\n\
ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Support:mailto:support@exa\r\n mple.com\r\n\
DESCRIPTION;LANGUAGE=pl-PL:Zapraszam na spotkanie.\\nAgenda: zwrot\\, faktura\\; reszta\r\n\
UID:040000008200E00074C5B7101A82E008\r\nSUMMARY;LANGUAGE=pl-PL:Przegląd zamówienia\r\n\
DTSTART;TZID=Central European Standard Time:20261124T100000\r\n\
DTEND;TZID=Central European Standard Time:20261124T110000\r\nSEQUENCE:2\r\nSTATUS:CONFIRMED\r\n\
LOCATION;LANGUAGE=pl-PL:Sala 2\r\nX-MICROSOFT-SKYPETEAMSMEETINGURL:https://teams.microsoft.com/l/meetup-join/x\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_weekday_rule_with_a_non_ascii_letter_is_no_weekday_and_no_panic() {
        assert_eq!(super::by_day("-1SU"), Some((-1, 6)));
        assert_eq!(super::by_day("x€"), None);
        assert_eq!(super::by_day("1S€"), None);
        // Found by fuzzing: a zone rule's BYDAY ending in a letter of more than one byte.
        let ics = "BEGIN:VCALENDAR\nBEGIN:VTIMEZONE\nTZID:X\nBEGIN:DAYLIGHT\nDTSTART:19700329T020000\n\
                   TZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=SU€\nEND:DAYLIGHT\n\
                   END:VTIMEZONE\nBEGIN:VEVENT\nDTSTART;TZID=X:20261124T100000\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(super::read(ics.as_bytes()).unwrap().start.unwrap().local, "2026-11-24T10:00:00");
    }

    #[test]
    fn an_outlook_invitation_reads_with_its_zone_placed_in_utc() {
        let calendar = read(OUTLOOK.as_bytes()).expect("an event");
        assert_eq!(calendar.method.as_deref(), Some("REQUEST"));
        assert_eq!(calendar.summary.as_deref(), Some("Przegląd zamówienia"));
        assert_eq!(calendar.description.as_deref(), Some("Zapraszam na spotkanie.\nAgenda: zwrot, faktura; reszta"));
        assert_eq!(calendar.sequence, 2);
        assert_eq!(calendar.status.as_deref(), Some("confirmed"));
        let start = calendar.start.expect("a start");
        assert_eq!(start.local, "2026-11-24T10:00:00");
        assert_eq!(start.time_zone.as_deref(), Some("Central European Standard Time"));
        assert_eq!(start.utc.as_deref(), Some("2026-11-24T09:00:00.000Z"));
        assert_eq!(calendar.end.and_then(|e| e.utc).as_deref(), Some("2026-11-24T10:00:00.000Z"));
        let organizer = calendar.organizer.expect("an organizer");
        assert_eq!((organizer.address.as_str(), organizer.name.as_deref()), ("jan@example.pl", Some("Kowalski, Jan")));
        assert_eq!(calendar.attendees.len(), 1);
        assert_eq!(calendar.attendees[0].address, "support@example.com");
        assert_eq!(calendar.attendees[0].status, "needs-action");
        assert_eq!(calendar.conference_url.as_deref(), Some("https://teams.microsoft.com/l/meetup-join/x"));
    }

    fn utc_of(local: &str) -> Option<String> {
        let ics = OUTLOOK.replace("20261124T100000", local);
        read(ics.as_bytes())?.start?.utc
    }

    #[test]
    fn summer_time_and_the_hours_the_clocks_change_read_as_rfc_5545_says() {
        assert_eq!(utc_of("20260701T120000").as_deref(), Some("2026-07-01T10:00:00.000Z"));
        // 29 March 2026, 02:30 does not exist in Warsaw: the offset before the gap.
        assert_eq!(utc_of("20260329T023000").as_deref(), Some("2026-03-29T01:30:00.000Z"));
        assert_eq!(utc_of("20260329T030000").as_deref(), Some("2026-03-29T01:00:00.000Z"));
        // 25 October 2026, 02:30 happens twice: the first time.
        assert_eq!(utc_of("20261025T023000").as_deref(), Some("2026-10-25T00:30:00.000Z"));
        assert_eq!(utc_of("20261025T030000").as_deref(), Some("2026-10-25T02:00:00.000Z"));
    }

    #[test]
    fn a_durations_hours_are_exact_and_its_days_nominal() {
        let with_duration = |start: &str, duration: &str| {
            let ics = OUTLOOK
                .replace("20261124T100000", start)
                .replace("DTEND;TZID=Central European Standard Time:20261124T110000", &format!("DURATION:{duration}"));
            let end = read(ics.as_bytes()).unwrap().end.unwrap();
            (end.local, end.utc.unwrap())
        };
        // Two hours from 01:30 on the night summer time starts: 04:30 by the clock.
        assert_eq!(
            with_duration("20260329T013000", "PT2H"),
            ("2026-03-29T04:30:00".into(), "2026-03-29T02:30:00.000Z".into())
        );
        // A day from 10:00 the day before: 10:00 again, 23 hours later.
        assert_eq!(
            with_duration("20260328T100000", "P1D"),
            ("2026-03-29T10:00:00".into(), "2026-03-29T08:00:00.000Z".into())
        );
        assert_eq!(duration("P1W2DT3H4M5S"), Some((9, 3 * 3600 + 4 * 60 + 5)));
        assert_eq!(duration("-PT15M"), Some((0, -900)));
        assert_eq!(duration("P99999999999999999D"), None);
        assert_eq!(duration("PT1H2D"), None);
    }

    #[test]
    fn all_day_floating_utc_and_duration() {
        let ics = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nDURATION:P2D\nSUMMARY:Closed\nEND:VEVENT\nEND:VCALENDAR\n";
        let calendar = read(ics.as_bytes()).unwrap();
        let (start, end) = (calendar.start.unwrap(), calendar.end.unwrap());
        assert_eq!((start.local.as_str(), start.all_day, start.utc), ("2026-12-24", true, None));
        assert_eq!(end.local, "2026-12-26");
        let ics = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261224T090000Z\nDURATION:PT1H30M\nDTSTAMP:1\nEND:VEVENT\nEND:VCALENDAR";
        let end = read(ics.as_bytes()).unwrap().end.unwrap();
        assert_eq!(end.utc.as_deref(), Some("2026-12-24T10:30:00.000Z"));
        let ics = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261224T090000\nEND:VEVENT\nEND:VCALENDAR";
        let start = read(ics.as_bytes()).unwrap().start.unwrap();
        assert_eq!((start.local.as_str(), start.utc, start.time_zone), ("2026-12-24T09:00:00", None, None));
    }

    #[test]
    fn text_escapes_are_undone() {
        assert_eq!(unescape("a\\nb\\Nc\\,d\\;e\\\\f\\"), "a\nb\nc,d;e\\f\\");
    }

    #[test]
    fn an_answer_says_who_answered_what() {
        let ics = "BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:x\r\n\
ATTENDEE;PARTSTAT=ACCEPTED;CN=Ann:MAILTO:ann@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let calendar = read(ics.as_bytes()).unwrap();
        assert_eq!(calendar.method.as_deref(), Some("REPLY"));
        assert_eq!(calendar.attendees[0].address, "ann@example.org");
        assert_eq!(calendar.attendees[0].status, "accepted");
    }

    /// A zone of thousands of observances, each with rules listing every day: read in bounded
    /// time (the caps), and the event still read.
    #[test]
    fn a_hostile_zone_is_read_within_its_caps() {
        let observance = "BEGIN:DAYLIGHT\nDTSTART:19700101T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\n\
RRULE:FREQ=YEARLY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYDAY=MO,TU,WE,TH,FR,SA,SU,1MO,2MO,3MO,4MO,-1MO,-2MO\n\
END:DAYLIGHT\n";
        let ics = format!(
            "BEGIN:VCALENDAR\nBEGIN:VTIMEZONE\nTZID:X\n{}END:VTIMEZONE\nBEGIN:VEVENT\nDTSTART;TZID=X:20261124T100000\n\
             SUMMARY:Still\nEND:VEVENT\nEND:VCALENDAR\n",
            observance.repeat(4000)
        );
        assert!(ics.len() < MAX_CALENDAR_BYTES);
        let calendar = read(ics.as_bytes()).unwrap();
        assert_eq!(calendar.start.and_then(|s| s.utc).as_deref(), Some("2026-11-24T08:00:00.000Z"));
        assert!(read(&vec![b' '; MAX_CALENDAR_BYTES + 1]).is_none());
    }

    #[test]
    fn what_is_no_calendar_gives_none_and_broken_lines_are_passed_over() {
        assert!(read(b"").is_none());
        assert!(read(b"BEGIN:VCARD\nFN:Ann\nEND:VCARD\n").is_none());
        assert!(read(b"BEGIN:VCALENDAR\nBEGIN:VTODO\nEND:VTODO\nEND:VCALENDAR\n").is_none());
        let ics = "BEGIN:VCALENDAR\nno colon here\nBEGIN:VEVENT\nDTSTART:2026\nSUMMARY:Still\nEND:VALARM\n";
        let calendar = read(ics.as_bytes()).unwrap();
        assert_eq!((calendar.summary.as_deref(), calendar.start.is_none()), (Some("Still"), true));
    }
}
