"""Calendar invitations written by the `icalendar` library (PyPI), with how it reads them back, as JSON.

The email tests put each invitation in a mail and compare the gateway's `calendar` with what
icalendar reads (`tests/it/calendar_corpus.rs`). The invitations vary what mail clients vary:
times in UTC, floating, whole days, and in named zones, each zone described by a VTIMEZONE of
one of two shapes — as icalendar writes it from the tz database (one RDATE per change), and as
Outlook writes it (a yearly RRULE per observance); end by DTEND or by DURATION; text with
commas, semicolons, backslashes, line breaks and non-ASCII letters, long enough to be folded;
names that need quoting; answers (REPLY) and cancellations; one meeting of a series changed
(RECURRENCE-ID, sometimes RANGE=THISANDFUTURE), alone or beside its series, which is then the
event read.

A zone described in a VTIMEZONE is given a TZID icalendar does not know ("Custom/…"), so that
icalendar, like the gateway, must place its times by the VTIMEZONE the invitation carries, not
by its own tz database (icalendar reads it with dateutil's `tzical`). A zone only named
(`TZID=Europe/Warsaw`, no VTIMEZONE) is read by both from the system's tz database: icalendar
through Python's `zoneinfo`, the gateway with its own TZif reader; years past 2037, which the
database gives by rule, included. So is a zone named the Windows way (`TZID=W. Europe Standard
Time`, no VTIMEZONE): icalendar and the gateway each map it to its IANA zone by CLDR's table.

In Outlook's zones, times are drawn around the hours clocks change. There the two readings part
in one place: a time in the hour the clocks skip, which dateutil reads with the offset after the
change and RFC 5545 §3.3.5 (and the gateway) with the offset before it; the expectation follows
the RFC there (`when`). The VTIMEZONEs icalendar writes from the tz database give a DAYLIGHT
onset as the wall-clock time after the change, where RFC 5545 (and Outlook, Google and Apple)
give the time before it, so read by the RFC they move the change an hour later; times in those
zones are drawn at least three hours away from a change.

Usage: icalendar_cases.py SEED COUNT

Output: {"cases": [{"ics": "...", "expected": {the gateway's `calendar` field, as icalendar reads it}}...],
         "skipped_times": how many of the times fall in an hour the clocks skipped}
"""

import datetime as dt
import json
import random
import sys
import zoneinfo

import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

UTC = dt.timezone.utc
# How many of the times read fell in an hour the clocks skipped (`skipped_times` in the output).
SKIPPED = [0]

# Outlook's VTIMEZONEs (Exchange writes these for Windows zones): yearly rules since 1601.
OUTLOOK_ZONES = {
    "W. Europe Standard Time": ("+0100", "+0200", "-1SU", 3, "020000", "-1SU", 10, "030000"),
    "Eastern Standard Time": ("-0500", "-0400", "2SU", 3, "020000", "1SU", 11, "020000"),
    "AUS Eastern Standard Time": ("+1000", "+1100", "1SU", 10, "020000", "1SU", 4, "030000"),
    "Newfoundland Standard Time": ("-0330", "-0230", "2SU", 3, "020000", "1SU", 11, "020000"),
    "GMT Standard Time": ("+0000", "+0100", "-1SU", 3, "010000", "-1SU", 10, "020000"),
    "India Standard Time": ("+0530", None, None, None, None, None, None, None),
}
IANA_ZONES = ["Europe/Warsaw", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "America/St_Johns",
              "Europe/London", "Pacific/Chatham", "America/Sao_Paulo", "Africa/Casablanca"]

WORDS = ["order", "Bestellung", "zamówienie", "commande", "pedido", "objednávka", "注文", "call", "review",
         "returns, refunds; and more", "back\\slash", "a: colon", "line\nbreak", "Grüße", "Łódź", "🙂",
         "\"quoted\"", "x" * 90]


def text(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words))


def outlook_vtimezone(tzid, spec):
    std, dst, dst_day, dst_month, dst_time, std_day, std_month, std_time = spec
    zone = icalendar.Timezone()
    zone.add("TZID", tzid)
    if dst is None:
        ob = icalendar.TimezoneStandard()
        ob.add("DTSTART", dt.datetime(1601, 1, 1))
        ob["TZOFFSETFROM"] = std
        ob["TZOFFSETTO"] = std
        zone.add_component(ob)
        return zone
    for kind, frm, to, day, month, at in (
        (icalendar.TimezoneStandard, dst, std, std_day, std_month, std_time),
        (icalendar.TimezoneDaylight, std, dst, dst_day, dst_month, dst_time),
    ):
        ob = kind()
        ob.add("DTSTART", dt.datetime(1601, 1, 1, int(at[:2]), int(at[2:4])))
        ob["TZOFFSETFROM"] = frm
        ob["TZOFFSETTO"] = to
        ob.add("RRULE", {"FREQ": "YEARLY", "INTERVAL": 1, "BYDAY": day, "BYMONTH": month})
        zone.add_component(ob)
    return zone


def near_change(rng):
    """A wall-clock time in 2008-2036, often within hours of a spring or autumn change."""
    year = rng.randint(2008, 2036)
    if rng.random() < 0.6:
        month = rng.choice([3, 4, 10, 11])
        day = rng.randint(1, 28) if rng.random() < 0.3 else rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                                       24, 25, 26, 27, 28])
        hour = rng.choice([0, 1, 2, 2, 2, 3, 3, 4, 23])
    else:
        month, day, hour = rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23)
    return dt.datetime(year, month, day, hour, rng.choice([0, 15, 30, 45]), rng.choice([0, 0, 30]))


def changes_in(tz, year):
    """When the zone `tz` (a tzinfo: icalendar's of a VTIMEZONE, or zoneinfo's) changes its
    offset in `year` (UTC, to the quarter hour), with the offset before."""
    offset_at = lambda t: t.astimezone(tz).utcoffset()
    at = dt.datetime(year, 1, 1, tzinfo=UTC)
    changes = []
    offset = offset_at(at)
    # Day by day, then to the quarter hour where the offset changed.
    while at.year == year:
        day = at + dt.timedelta(days=1)
        if offset_at(day) != offset:
            while offset_at(at + dt.timedelta(minutes=15)) == offset:
                at += dt.timedelta(minutes=15)
            changes.append((at + dt.timedelta(minutes=15), offset))
            offset = offset_at(at + dt.timedelta(minutes=15))
            day = at + dt.timedelta(minutes=15)
        at = day
    return changes


def away_from_changes(tz, local):
    """`local`, moved a day on while it is within three hours of a change of the zone's offset."""
    while any(abs((change + before).replace(tzinfo=None) - local) < dt.timedelta(hours=3)
              for change, before in changes_in(tz, local.year)):
        local += dt.timedelta(days=1)
    return local


def near_transition(rng, tz, local):
    """Half the time, a wall-clock time within two hours of one of the zone's changes in the year
    of `local`: in the hour skipped, the hour repeated, or just around them. Otherwise (or when
    the zone does not change that year) `local`."""
    if rng.random() < 0.5:
        return local
    changes = changes_in(tz, local.year)
    if not changes:
        return local
    change, before = rng.choice(changes)
    wall = (change + before).replace(tzinfo=None)
    return wall + dt.timedelta(minutes=rng.choice([-120, -61, -60, -30, -1, 0, 1, 15, 30, 45, 59, 60, 61, 90, 120]))


def case(rng):
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//switchboard tests//icalendar//EN")
    cal.add("VERSION", "2.0")
    method = rng.choice(["REQUEST", "REQUEST", "REPLY", "CANCEL", "PUBLISH", None])
    if method:
        cal.add("METHOD", method)
    event = icalendar.Event()
    event.add("UID", f"{rng.getrandbits(64):016x}@example.org")
    event.add("DTSTAMP", dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    if rng.random() < 0.8:
        event.add("SEQUENCE", rng.randint(0, 5))
    if rng.random() < 0.7:
        event.add("STATUS", rng.choice(["CONFIRMED", "TENTATIVE", "CANCELLED"]))
    for prop, words in (("SUMMARY", 4), ("LOCATION", 2), ("DESCRIPTION", 30)):
        if rng.random() < 0.85:
            event.add(prop, text(rng, rng.randint(1, words)))

    shape = rng.choice(["utc", "floating", "all_day", "outlook", "outlook", "iana", "iana", "named", "named",
                        "windows"])
    local = near_change(rng)
    # The zone icalendar wrote, whose times keep away from its changes (see the module's note).
    written_zone = None
    if shape == "all_day":
        start = local.date()
        end = start + dt.timedelta(days=rng.randint(1, 3))
    elif shape == "utc":
        start = local.replace(tzinfo=UTC)
        end = start + dt.timedelta(minutes=rng.choice([30, 60, 90]))
    elif shape == "floating":
        start = local
        end = start + dt.timedelta(minutes=rng.choice([30, 60, 90]))
    elif shape == "outlook":
        name = rng.choice(sorted(OUTLOOK_ZONES))
        tzid = "Custom/" + name
        vtimezone = outlook_vtimezone(tzid, OUTLOOK_ZONES[name])
        cal.add_component(vtimezone)
        local = near_transition(rng, vtimezone.to_tz(), local)
        start, end = local, local + dt.timedelta(minutes=rng.choice([30, 60, 90, 180]))
    elif shape in ("named", "windows"):
        # Named, not described: icalendar reads it by Python's zoneinfo, the gateway by the same
        # system tz database, each with its own reader. Years past 2037 are the footer rule's.
        # A Windows name is read as the IANA zone each side's copy of CLDR's table says.
        if shape == "windows":
            tzid = rng.choice(sorted(WINDOWS_TO_OLSON))
            name = WINDOWS_TO_OLSON[tzid]
        else:
            name = rng.choice(IANA_ZONES)
            tzid = name
        local = local.replace(year=rng.choice([local.year, rng.randint(1975, 2007), rng.randint(2038, 2070)]))
        local = near_transition(rng, zoneinfo.ZoneInfo(name), local)
        start, end = local, local + dt.timedelta(minutes=rng.choice([30, 60, 90, 180]))
    else:
        name = rng.choice(IANA_ZONES)
        zone = zoneinfo.ZoneInfo(name)
        probe = icalendar.Calendar()
        e = icalendar.Event()
        e.add("DTSTART", local.replace(tzinfo=zone))
        probe.add_component(e)
        probe.add_missing_timezones()
        vtimezone = probe.walk("VTIMEZONE")[0]
        tzid = "Custom/" + name
        vtimezone["TZID"] = tzid
        cal.add_component(vtimezone)
        # Not near a change: see the module's note.
        written_zone = vtimezone.to_tz()
        local = away_from_changes(written_zone, local)
        start, end = local, local + dt.timedelta(minutes=rng.choice([30, 60, 90, 180]))
    event.add("DTSTART", start)
    if rng.random() < 0.3:
        event.add("DURATION", end - start)
    else:
        event.add("DTEND", end)
    # Zoned times are written as wall-clock times with the zone's TZID.
    for prop in ("DTSTART", "DTEND"):
        if shape in ("outlook", "iana", "named", "windows") and prop in event:
            event[prop].params["TZID"] = tzid

    if rng.random() < 0.2:
        event.add("RRULE", {"FREQ": "WEEKLY", "BYDAY": ["TU", "TH"], "COUNT": rng.randint(2, 9)})
    organizer = icalendar.vCalAddress("mailto:organizer@example.org")
    organizer.params["CN"] = rng.choice(["Kowalski, Jan", "Ann Lee", "Jörg; Müller", "Support: Team"])
    if rng.random() < 0.9:
        event.add("ORGANIZER", organizer)
    for i in range(rng.randint(0, 3)):
        attendee = icalendar.vCalAddress(f"MAILTO:guest{i}@example.{rng.choice(['com', 'pl', 'de'])}")
        if rng.random() < 0.7:
            attendee.params["CN"] = rng.choice(["Guest, One", "Gość Drugi", "Third"])
        if rng.random() < 0.8:
            attendee.params["PARTSTAT"] = rng.choice(["NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"])
        event.add("ATTENDEE", attendee)
    if rng.random() < 0.3:
        event.add("X-GOOGLE-CONFERENCE", "https://meet.google.com/abc-defg-hij")
    events = [event]
    if rng.random() < 0.2:
        # One meeting of a series, moved: RECURRENCE-ID is its original time, in DTSTART's zone.
        original = start - (dt.timedelta(days=rng.choice([0, 1, 7])) if shape == "all_day"
                            else dt.timedelta(hours=rng.choice([0, 1, 2, 24, 168])))
        if written_zone is not None:
            original = away_from_changes(written_zone, original)
        event.add("RECURRENCE-ID", original)
        if "TZID" in event["DTSTART"].params:
            event["RECURRENCE-ID"].params["TZID"] = event["DTSTART"].params["TZID"]
        if rng.random() < 0.3:
            event["RECURRENCE-ID"].params["RANGE"] = "THISANDFUTURE"
        if rng.random() < 0.4:
            # With its series, before or after it: the series is the event read.
            series = icalendar.Event()
            series.add("UID", event["UID"])
            series.add("DTSTAMP", dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
            series.add("SUMMARY", "The series")
            series.add("DTSTART", original)
            if "TZID" in event["DTSTART"].params:
                series["DTSTART"].params["TZID"] = event["DTSTART"].params["TZID"]
            series.add("RRULE", {"FREQ": "DAILY", "COUNT": 10})
            events.insert(rng.randint(0, 1), series)
    for component in events:
        cal.add_component(component)
    ics = cal.to_ical().decode()
    return {"ics": ics, "expected": read_back(ics)}


def rfc_utc(value):
    """The instant of an aware wall-clock time, as RFC 5545 §3.3.5 reads it."""
    utc = value.astimezone(UTC)
    wall = value.replace(tzinfo=None)
    if utc.astimezone(value.tzinfo).replace(tzinfo=None) != wall:
        # Skipped when the clocks went forward. icalendar reads such a time with the offset
        # after the change; RFC 5545 §3.3.5 says the offset before it, as the gateway does.
        before = (wall - dt.timedelta(hours=3)).replace(tzinfo=value.tzinfo).utcoffset()
        utc = (wall - before).replace(tzinfo=UTC)
        SKIPPED[0] += 1
    return utc


def when(prop, value, utc=None):
    """How the gateway shows a DTSTART/DTEND icalendar decoded to `value` (at the instant
    `utc`, when given)."""
    if not isinstance(value, dt.datetime):
        return {"local": value.isoformat(), "all_day": True}
    shown = {"local": value.strftime("%Y-%m-%dT%H:%M:%S")}
    if value.tzinfo is not None:
        utc = rfc_utc(value) if utc is None else utc
        shown["utc"] = utc.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    tzid = prop.params.get("TZID")
    if tzid:
        shown["time_zone"] = tzid
    return shown


def read_back(ics):
    """The `calendar` field as icalendar reads `ics`: the gateway's JSON shape, keys it leaves
    out when empty left out here too."""
    cal = icalendar.Calendar.from_ical(ics)
    # The series when the calendar has it, else the first meeting changed.
    events = cal.walk("VEVENT")
    event = next((e for e in events if "RECURRENCE-ID" not in e), events[0])
    out = {}
    if "METHOD" in cal:
        out["method"] = str(cal["METHOD"]).upper()
    out["uid"] = str(event["UID"])
    out["sequence"] = int(event.get("SEQUENCE", 0))
    if "STATUS" in event:
        out["status"] = str(event["STATUS"]).lower()
    for prop in ("SUMMARY", "LOCATION", "DESCRIPTION"):
        if prop in event and str(event[prop]).strip():
            out[prop.lower()] = str(event[prop]).strip()
    start = event.decoded("DTSTART")
    out["start"] = when(event["DTSTART"], start)
    if "DTEND" in event:
        out["end"] = when(event["DTEND"], event.decoded("DTEND"))
    elif "DURATION" in event:
        # Days nominal (Python's arithmetic on an aware time is wall-clock arithmetic), hours,
        # minutes and seconds exact (RFC 5545 §3.3.6), then shown on the zone's clock.
        duration = event.decoded("DURATION")
        days = dt.timedelta(days=duration.days)
        if isinstance(start, dt.datetime) and start.tzinfo is not None:
            utc = rfc_utc(start + days) + (duration - days)
            out["end"] = when(event["DTSTART"], utc.astimezone(start.tzinfo), utc)
        else:
            out["end"] = when(event["DTSTART"], start + duration)
    if "RRULE" in event:
        out["recurrence"] = event["RRULE"].to_ical().decode()
    if "RECURRENCE-ID" in event:
        out["occurrence"] = when(event["RECURRENCE-ID"], event.decoded("RECURRENCE-ID"))
        if event["RECURRENCE-ID"].params.get("RANGE") == "THISANDFUTURE":
            out["occurrence_range"] = "this_and_future"
    if "ORGANIZER" in event:
        organizer = event["ORGANIZER"]
        out["organizer"] = {"address": str(organizer)[len("mailto:"):]}
        if organizer.params.get("CN"):
            out["organizer"]["name"] = organizer.params["CN"]
    attendees = event.get("ATTENDEE", [])
    if not isinstance(attendees, list):
        attendees = [attendees]
    if attendees:
        out["attendees"] = []
        for attendee in attendees:
            shown = {"address": str(attendee)[len("mailto:"):]}
            if attendee.params.get("CN"):
                shown["name"] = attendee.params["CN"]
            shown["status"] = attendee.params.get("PARTSTAT", "NEEDS-ACTION").lower()
            out["attendees"].append(shown)
    if "X-GOOGLE-CONFERENCE" in event:
        out["conference_url"] = str(event["X-GOOGLE-CONFERENCE"])
    return out


def main():
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    cases = [case(rng) for _ in range(count)]
    json.dump({"cases": cases, "skipped_times": SKIPPED[0]}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
