//! Dates as mail clients write them for people: the `Date:` / `Sent:` line of a forwarded
//! header block ("Mon, Nov 23, 2026 at 10:00 AM", "Montag, 23. November 2026 10:00",
//! "23 listopada 2026 o 10:00", "Mon, 23 Nov 2026 10:00:00 +0100"), in the languages the
//! forward reader knows.
//!
//! The reader is tolerant of order and filler words ("at", "um", "de", "o") and strict about
//! what it needs: a year, a month, a day and a time. Anything it cannot place for certain (a
//! slashed date that could be day/month or month/day, a month name it does not know) gives no
//! date rather than a wrong one. Most clients write the time without a zone: then it is the
//! forwarding client's own local time, whose offset the forward's `Date` header carries.

use crate::model::time;

/// Month names and abbreviations, lowercase, January first: English, German,
/// French, Spanish, Portuguese, Italian, Dutch, Polish, Czech and Slovak, in the nominative and
/// the genitive that dates use ("listopada", "června"). Only whole words match, so weekday
/// names never do ("martes", "mardi").
#[rustfmt::skip]
const MONTHS: [&[&str]; 12] = [
    &[
        "jan", "january", "januar", "jänner", "jän", "janvier", "janv", "enero", "ene", "janeiro", "gennaio", "gen",
        "januari", "styczeń", "stycznia", "sty", "leden", "ledna", "led", "január", "januára",
    ],
    &[
        "feb", "february", "februar", "février", "févr", "fév", "febrero", "fevereiro", "fev", "febbraio",
        "februari", "luty", "lutego", "lut", "únor", "února", "úno", "február", "februára",
    ],
    &[
        "mar", "march", "märz", "mär", "mrz", "mars", "marzo", "março", "maart", "mrt", "marzec", "marca", "březen",
        "března", "bře", "marec",
    ],
    &[
        "apr", "april", "avril", "avr", "abril", "abr", "aprile", "kwiecień", "kwietnia", "kwi", "duben", "dubna",
        "dub", "apríl", "apríla",
    ],
    &[
        "may", "mai", "mayo", "maio", "maggio", "mag", "mei", "maj", "maja", "květen", "května", "kvě", "máj",
        "mája",
    ],
    &[
        "jun", "june", "juni", "juin", "junio", "junho", "giugno", "giu", "czerwiec", "czerwca", "cze", "červen",
        "června", "čvn", "jún", "júna",
    ],
    &[
        "jul", "july", "juli", "juillet", "juil", "julio", "julho", "luglio", "lug", "lipiec", "lipca", "lip",
        "červenec", "července", "čvc", "júl", "júla",
    ],
    &[
        "aug", "august", "août", "agosto", "ago", "augustus", "sierpień", "sierpnia", "sie", "srpen", "srpna",
        "srp", "augusta",
    ],
    &[
        "sep", "sept", "september", "septembre", "septiembre", "setembro", "set", "settembre", "wrzesień",
        "września", "wrz", "září", "zář", "septembra",
    ],
    &[
        "oct", "october", "oktober", "okt", "octobre", "octubre", "outubro", "out", "ottobre", "ott", "październik",
        "października", "paź", "říjen", "října", "říj", "október", "októbra",
    ],
    &[
        "nov", "november", "novembre", "noviembre", "novembro", "listopad", "listopada", "lis", "listopadu",
        "novembra",
    ],
    &[
        "dec", "december", "dezember", "dez", "décembre", "déc", "diciembre", "dic", "dezembro", "dicembre",
        "grudzień", "grudnia", "gru", "prosinec", "prosince", "pro", "decembra",
    ],
];

/// Zone abbreviations mail clients print (Apple Mail: "at 10:00:00 CET"), as seconds east of UTC.
#[rustfmt::skip]
const ZONES: &[(&str, i64)] = &[
    ("utc", 0), ("gmt", 0), ("z", 0), ("wet", 0), ("west", 3600), ("bst", 3600), ("cet", 3600), ("cest", 7200),
    ("mez", 3600), ("mesz", 7200), ("eet", 7200), ("eest", 10800), ("msk", 10800), ("est", -18000), ("edt", -14400),
    ("cst", -21600), ("cdt", -18000), ("mst", -25200), ("mdt", -21600), ("pst", -28800), ("pdt", -25200),
];

/// The instant `value` names, in ms since the epoch; `local_offset` (seconds east of UTC) is
/// the zone of a time written without one.
pub fn parse(value: &str, local_offset: Option<i64>) -> Option<i64> {
    let mut date: Option<(i64, u32, u32)> = None;
    let (mut year, mut month, mut day) = (None, None, None);
    let mut clock: Option<(i64, i64, i64)> = None;
    let mut afternoon: Option<bool> = None;
    let mut zone: Option<i64> = None;
    let words = value.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')');
    for word in words.filter(|w| !w.is_empty()) {
        let lower = word.to_lowercase();
        let bare = lower.trim_end_matches('.');
        if let Some(offset) = numeric_zone(bare) {
            zone = Some(offset);
        } else if clock.is_none() && bare.contains(':') {
            clock = time_of_day(bare);
        } else if let Some(ymd) = numeric_date(bare) {
            date = Some(ymd?);
        } else if let Some(m) = MONTHS.iter().position(|names| names.contains(&bare)) {
            month = month.or(Some(m as u32 + 1));
        } else if ["am", "a.m", "vorm"].contains(&bare) {
            afternoon = Some(false);
        } else if ["pm", "p.m", "nachm"].contains(&bare) {
            afternoon = Some(true);
        } else if let Some(&(_, offset)) = ZONES.iter().find(|(name, _)| *name == bare) {
            zone = zone.or(Some(offset));
        } else if bare.len() == 4 && bare.bytes().all(|b| b.is_ascii_digit()) {
            year = year.or(bare.parse().ok());
        } else if (1..=2).contains(&bare.len()) && bare.bytes().all(|b| b.is_ascii_digit()) {
            day = day.or(bare.parse().ok());
        }
    }
    let (year, month, day) = match date {
        Some(date) => date,
        None => (year?, month?, day?),
    };
    let (mut hour, minute, second) = clock?;
    match afternoon {
        Some(_) if !(1..=12).contains(&hour) => return None,
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    if !(1970..=2200).contains(&year) || !(1..=31).contains(&day) || day > time::days_in_month(year, month) {
        return None;
    }
    let offset = zone.or(local_offset)?;
    let seconds = time::days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * 1000)
}

/// `10:00` or `10:00:00`: hour 0–23, minute and second 0–59.
fn time_of_day(word: &str) -> Option<(i64, i64, i64)> {
    let mut parts = word.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (parts.next()??, parts.next()??);
    let second = parts.next().map_or(Some(0), |s| s)?;
    (parts.next().is_none() && hour < 24 && minute < 60 && second < 61).then_some((hour, minute, second))
}

/// `+0100`, `-0500`, `+01:00`, `gmt+01:00`, `utc-5`: seconds east of UTC.
fn numeric_zone(word: &str) -> Option<i64> {
    let word = word.trim_start_matches("gmt").trim_start_matches("utc");
    let (sign, digits) = match word.as_bytes().first()? {
        b'+' => (1, &word[1..]),
        b'-' => (-1, &word[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i64>().ok()?, 0),
        _ => (digits[..digits.len() - 2].parse::<i64>().ok()?, digits[digits.len() - 2..].parse::<i64>().ok()?),
    };
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// A date written in digits: `23.11.2026` (day first, as in Europe), `2026-11-23`, and
/// `23/11/2026` or `11/23/2026` when one of the first two numbers is over 12. `None`: not a date
/// in digits; `Some(None)`: one that cannot be placed for certain.
fn numeric_date(word: &str) -> Option<Option<(i64, u32, u32)>> {
    let separator = ['.', '-', '/'].into_iter().find(|s| word.matches(*s).count() == 2)?;
    let parts: Vec<&str> = word.split(separator).collect();
    if !parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let numbers: Vec<i64> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let placed = match (separator, parts[0].len()) {
        (_, 4) => Some((numbers[0], numbers[1], numbers[2])),
        ('.', _) => Some((numbers[2], numbers[1], numbers[0])),
        ('/', _) if numbers[0] > 12 => Some((numbers[2], numbers[1], numbers[0])),
        ('/', _) if numbers[1] > 12 => Some((numbers[2], numbers[0], numbers[1])),
        _ => None,
    };
    Some(placed.and_then(|(y, m, d)| {
        let y = if (0..100).contains(&y) && parts[2].len() == 2 { 2000 + y } else { y };
        ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m as u32, d as u32))
    }))
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// 2026-11-23T10:00:00Z.
    const TEN_UTC: i64 = 1_795_428_000_000;
    const CET: Option<i64> = Some(3600);

    #[test]
    fn each_clients_date_line_is_read() {
        for (client, value) in [
            ("Thunderbird", "Mon, 23 Nov 2026 11:00:00 +0100"),
            ("Gmail", "Mon, Nov 23, 2026 at 11:00 AM"),
            ("Gmail, German", "Mo., 23. Nov. 2026 um 11:00 Uhr"),
            ("Gmail, Polish", "pon., 23 lis 2026 o 11:00"),
            ("Gmail, Spanish", "lun, 23 nov 2026 a las 11:00"),
            ("Outlook", "Monday, November 23, 2026 11:00 AM"),
            ("Outlook, French", "lundi 23 novembre 2026 11:00"),
            ("Outlook, German", "Montag, 23. November 2026 11:00"),
            ("Outlook, Polish", "poniedziałek, 23 listopada 2026 11:00"),
            ("Outlook, Czech", "pondělí 23. listopadu 2026 11:00"),
            ("Outlook, Slovak", "pondelok 23. novembra 2026 11:00"),
            ("Outlook, numeric", "23.11.2026 11:00"),
            ("Apple Mail", "23 November 2026 at 11:00:00 CET"),
            ("Apple Mail, zone name in full", "23 November 2026 at 10:00:00 GMT"),
            ("ISO", "2026-11-23 11:00"),
            ("Spanish", "lunes, 23 de noviembre de 2026 11:00"),
            ("a zone written", "Monday, November 23, 2026 5:00 AM -0500"),
        ] {
            assert_eq!(parse(value, CET), Some(TEN_UTC), "{client}: {value}");
        }
        assert_eq!(parse("Mon, Nov 23, 2026 at 12:30 PM", Some(0)), Some(TEN_UTC + 9_000_000), "half past noon");
        assert_eq!(parse("Mon, Nov 23, 2026 at 12:30 AM", Some(0)), Some(TEN_UTC - 34_200_000), "half past midnight");
        assert_eq!(parse("Mon, Nov 23, 2026 at 1:00 PM", Some(0)), Some(TEN_UTC + 3 * 3_600_000));
    }

    #[test]
    fn what_cannot_be_placed_for_certain_gives_no_date() {
        for value in [
            "Monday",                        // no date
            "Mon, 23 Nov 2026",              // no time
            "11/10/2026 11:00",              // day and month either way round
            "Mon, 31 Nov 2026 11:00",        // no such day
            "Mon, 23 Brumaire 2026 11:00",   // no month we know
            "Mon, Nov 23, 2026 at 13:00 PM", // no such hour
            "Mon, 23 Nov 2026 25:00",
        ] {
            assert_eq!(parse(value, CET), None, "{value}");
        }
        assert_eq!(parse("23.11.2026 11:00", None), None, "no zone written and none known");
        assert_eq!(parse("11/23/2026 11:00", CET), Some(TEN_UTC), "month first, the day over 12");
        assert_eq!(parse("23/11/2026 11:00", CET), Some(TEN_UTC), "day first, the day over 12");
    }
}
