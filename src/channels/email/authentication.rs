//! What the receiving mail server says of a mail's sender: its `Authentication-Results` header
//! (RFC 8601), read when the channel trusts that server (`authserv_id`).
//!
//! Anyone can write such a header into a mail, so only one is read: the first (topmost) whose
//! authserv-id is the channel's `authserv_id`, which the receiving server strips from what it
//! receives and writes itself (Gmail: `mx.google.com`); or, with `authserv_id = "*"`, the
//! topmost header whatever its id, for servers that write none (Microsoft 365 begins its header
//! with `spf=`) and always add theirs on top.
//!
//! Two things follow (see `MailAuthentication::failed`): the message carries the results
//! (`authentication`), so a helpdesk can warn of a forged sender; and a mail whose From is one
//! of our own addresses that failed is not taken for ours (an agent's answer from the mail
//! client), which would let anyone write into any conversation as us: it is refused.

use mail_parser::Message;

use crate::model::MailAuthentication;

/// `authserv_id` that trusts the topmost header whatever its id.
pub const TOPMOST: &str = "*";

/// The results of the trusted header of `message`, if it has one.
pub(super) fn read(message: &Message<'_>, authserv_id: &str) -> Option<MailAuthentication> {
    let mut values = super::report::raw_headers(message)
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(_, value)| parse(&value));
    if authserv_id == TOPMOST {
        // The topmost header is the receiving server's, whatever it says, or none is: one
        // below it, which the sender may have written, is never read in its place.
        return values.next().flatten();
    }
    values.flatten().find(|parsed| parsed.authserv_id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))
}

/// One header value: its authserv-id (none when it begins with a result, as Microsoft 365's
/// does) and the DMARC, DKIM and SPF results, lowercase. DKIM: `pass` when any signature
/// passed, else the first result. `None` for a value with no authserv-id and no result.
pub fn parse(value: &str) -> Option<MailAuthentication> {
    let value = without_comments(value);
    let mut statements = split_outside_quotes(&value, ';').into_iter().map(str::trim);
    let first = statements.next()?;
    let mut results = MailAuthentication::default();
    let mut rest: Vec<&str> = statements.collect();
    if first.contains('=') {
        rest.insert(0, first);
    } else {
        // `authserv-id [version]`; Yahoo adds properties after it, which say nothing here.
        let id = first.split_whitespace().next()?.trim_matches('"');
        results.authserv_id = Some(id.to_ascii_lowercase());
    }
    for statement in rest {
        let Some((method, result)) = statement.split_once('=') else { continue };
        // `method[/version]`, the result its first word.
        let method = method.split('/').next().unwrap_or_default().trim().to_ascii_lowercase();
        let result = result.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if result.is_empty() {
            continue;
        }
        let slot = match method.as_str() {
            "dmarc" => &mut results.dmarc,
            "dkim" => &mut results.dkim,
            "spf" => &mut results.spf,
            _ => continue,
        };
        if slot.is_none() || (method == "dkim" && result == "pass") {
            *slot = Some(result);
        }
    }
    let said_something = results.dmarc.is_some() || results.dkim.is_some() || results.spf.is_some();
    (results.authserv_id.is_some() || said_something).then_some(results)
}

/// `value` with its comments (RFC 5322 §3.2.2: parenthesised, nested, with `\` escapes) taken
/// out, and quoted strings left as they are. A comment becomes a space: `pass(p=REJECT)`.
fn without_comments(value: &str) -> String {
    let (mut out, mut depth, mut quoted, mut escaped) = (String::with_capacity(value.len()), 0usize, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                out.push(' ');
            }
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(value: &str) -> (Option<String>, Option<String>, Option<String>, Option<String>) {
        let r = parse(value).unwrap();
        (r.authserv_id, r.dmarc, r.dkim, r.spf)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn the_headers_of_the_large_providers_are_read() {
        let gmail = "mx.google.com;\r\n       dkim=pass header.i=@example.org header.s=20230601 header.b=Ab1/Cd2+;\r\n       spf=pass (google.com: domain of ann@example.org designates 2a00:1450::1 as permitted sender) smtp.mailfrom=ann@example.org;\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.org";
        assert_eq!(results(gmail), (some("mx.google.com"), some("pass"), some("pass"), some("pass")));
        let microsoft = "spf=pass (sender IP is 40.107.22.1)\r\n smtp.mailfrom=example.org; dkim=pass (signature was verified)\r\n header.d=example.org;dmarc=fail action=quarantine\r\n header.from=example.org;compauth=fail reason=000";
        assert_eq!(results(microsoft), (None, some("fail"), some("pass"), some("pass")));
        let yahoo = "atlas-production.v2-mail-prod1-gq1.omega.yahoo.com;\r\n dkim=pass header.i=@example.org header.s=s1;\r\n spf=softfail smtp.mailfrom=example.org;\r\n dmarc=pass(p=REJECT) header.from=example.org;";
        assert_eq!(
            results(yahoo),
            (some("atlas-production.v2-mail-prod1-gq1.omega.yahoo.com"), some("pass"), some("pass"), some("softfail"))
        );
        // Two signatures, the first broken in transit: one passed.
        let two = "mx.example.com 1; dkim=fail reason=\"signature; verification failed\" header.d=list.example; dkim=pass header.d=example.org; spf=none";
        assert_eq!(results(two), (some("mx.example.com"), None, some("pass"), some("none")));
        assert_eq!(results("mx.example.com; none"), (some("mx.example.com"), None, None, None));
    }

    /// DMARC decides when the server checked it; without it, a sender fails only when neither
    /// DKIM nor SPF passed and one of them failed (a mail a list or a forwarder passed on may
    /// lose one of them on the way).
    #[test]
    fn what_counts_as_failed() {
        let failed = |value: &str| parse(value).unwrap().failed();
        assert!(failed("mx; dmarc=fail; dkim=pass; spf=pass"));
        assert!(!failed("mx; dmarc=pass; dkim=fail; spf=fail"));
        assert!(!failed("mx; dmarc=none; spf=softfail"));
        assert!(!failed("mx; dmarc=temperror"));
        assert!(failed("mx; spf=softfail"));
        assert!(failed("mx; dkim=fail; spf=none"));
        assert!(!failed("mx; dkim=fail; spf=pass"));
        assert!(!failed("mx; spf=neutral; dkim=none"));
        assert!(!failed("mx; none"));
    }

    /// With `*`, only the topmost header counts: when it says nothing readable, a "pass" the
    /// sender wrote below it is not read instead. With an authserv-id, the first with that id.
    #[test]
    fn only_the_trusted_header_is_read() {
        let mail = |headers: &str| format!("{headers}From: support@example.com\r\nSubject: x\r\n\r\nbody\r\n");
        let read_with = |headers: &str, id: &str| {
            let text = mail(headers);
            let message = mail_parser::MessageParser::default().parse(text.as_bytes()).unwrap();
            read(&message, id)
        };
        let unreadable_on_top =
            "Authentication-Results: (nothing here)\r\nAuthentication-Results: forged.example; dmarc=pass\r\n";
        assert_eq!(read_with(unreadable_on_top, TOPMOST), None);
        let two = "Authentication-Results: other.example; dmarc=pass\r\nAuthentication-Results: mx.example.com; dmarc=fail\r\nAuthentication-Results: mx.example.com; dmarc=pass\r\n";
        assert_eq!(read_with(two, "mx.example.com").and_then(|r| r.dmarc).as_deref(), Some("fail"));
        assert_eq!(read_with(two, TOPMOST).and_then(|r| r.dmarc).as_deref(), Some("pass"));
        assert_eq!(read_with("", TOPMOST), None);
    }

    #[test]
    fn comments_and_quotes_do_not_fool_the_reader() {
        let tricky =
            "mx.example.com; spf=fail (a comment; dmarc=pass (nested) \\) still) smtp.mailfrom=x; dkim=\"pass\"";
        assert_eq!(results(tricky), (some("mx.example.com"), None, some("\"pass\""), some("fail")));
        assert_eq!(parse(""), None);
        assert_eq!(parse("(only a comment)"), None);
    }
}
