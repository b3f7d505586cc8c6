//! Outgoing HTTP shared by webhook delivery and HTTP-based channels: the client, and reading a
//! response into "done / retry later / give up" terms.

use std::time::{Duration, SystemTime};

/// A rustls client with a per-request timeout, trusting the webpki roots and the certificates of
/// `ca_pem` (a `ca_file`, read by `config::load_ca_file`); redirects are not followed (a 3xx is a
/// failure, as the Standard Webhooks spec asks).
pub fn client(timeout: Duration, ca_pem: Option<&[u8]>) -> reqwest::Client {
    let extra_roots = ca_pem.and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok()).unwrap_or_default();
    extra_roots
        .into_iter()
        .fold(reqwest::Client::builder(), |builder, cert| builder.add_root_certificate(cert))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}

/// `Retry-After` as delta-seconds or an HTTP-date, relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, if any.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// What a 3xx answer means here: redirects are not followed (a POST redirected would arrive as
/// a GET without its body, or not at all), so the URL must be the one it points to — often
/// `https://` for `http://`, or a trailing slash.
pub fn redirect_error(response: &reqwest::Response) -> String {
    let status = response.status().as_u16();
    let target = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
    match target.map(|location| response.url().join(location)) {
        Some(Ok(target)) => {
            format!("HTTP {status}: redirects to {target}, and redirects are not followed; set the url to it")
        }
        _ => format!("HTTP {status}: a redirect, which is not followed"),
    }
}

/// A short description of a transport error for logs and `last_error`. A failed connection
/// keeps its cause, which says what to mend: refused, no such host, or a certificate no root
/// vouches for (`ca_file`).
pub fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        let mut cause = std::error::Error::source(error);
        while let Some(deeper) = cause.and_then(|c| c.source()) {
            cause = Some(deeper);
        }
        match cause.map(|c| c.to_string()) {
            Some(cause) if cause.contains("UnknownIssuer") => {
                format!("connection failed: {cause} (a certificate of a private CA needs ca_file)")
            }
            Some(cause) => format!("connection failed: {cause}"),
            None => "connection failed".to_owned(),
        }
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
