//! Logs (tracing-subscriber: text for terminals and journald, JSON by config) and the metrics
//! recorder (Prometheus text, rendered by `/metrics`).
//!
//! Metric names: `switchboard_inbound_total{channel,outcome}`,
//! `switchboard_outbound_total{channel,status}`, `switchboard_webhook_attempts_total{consumer,outcome}`,
//! `switchboard_webhook_backlog{consumer}`, `switchboard_delivery_latency_seconds` (event
//! committed → consumer acknowledged), `switchboard_store_commit_seconds` (one group commit),
//! `switchboard_config_reloads_total{result="applied"|"refused"}`, and the storage gauges.
//! Gauges of what a reload may remove — `switchboard_webhook_backlog{consumer}` and
//! `switchboard_smime_certificate_expiry_timestamp_seconds{channel}` — are not kept in the
//! recorder, which forgets nothing, but worked out at each scrape from what is configured now
//! (`render_gauges`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`. Under journald
/// (`JOURNAL_STREAM` set) lines carry no timestamp or colour (the journal adds its own) and
/// start with the sd-daemon priority (`<3>` error … `<7>` debug), so `journalctl -p` works.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let journald = under_journald();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match (config.format, journald) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).with_current_span(false).try_init(),
        (LogFormat::Text, true) => builder
            .with_ansi(false)
            .event_format(JournalPriority(format().without_time().with_ansi(false).with_target(false)))
            .try_init(),
        // Colour only on a terminal (and not with NO_COLOR): a log redirected to a file or a
        // pipe stays plain text.
        (LogFormat::Text, false) => builder.with_target(false).with_ansi(colour()).try_init(),
    };
    // A second init (tests start several servers in one process) keeps the first subscriber.
    let _ = result;
}

/// Whether stderr goes to the journal (systemd sets `JOURNAL_STREAM` for a unit's output).
fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// What begins a line written straight to stderr (outside the log) that is an error: under
/// journald the sd-daemon(3) priority `<3>`, so `journalctl -p err` shows it; else nothing.
pub fn error_line_mark() -> &'static str {
    if under_journald() {
        "<3>"
    } else {
        ""
    }
}

fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn format() -> format::Format {
    format::Format::default()
}

/// Prefixes each line with its sd-daemon(3) priority for journald.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The process-wide metrics recorder, installed on first use.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Appends `gauges` (name, label value, value) to `text` in the Prometheus text format, each
/// name once under its `# TYPE` line, labelled `label`: gauges worked out when scraped rather
/// than kept in the recorder.
pub fn render_gauges(text: &mut String, label: &str, mut gauges: Vec<(&str, &str, f64)>) {
    use std::fmt::Write;
    gauges.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut named = None;
    for (name, labelled, value) in gauges {
        if named != Some(name) {
            let _ = writeln!(text, "# TYPE {name} gauge");
            named = Some(name);
        }
        let labelled = labelled.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(text, "{name}{{{label}=\"{labelled}\"}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::render_gauges;

    #[test]
    fn scraped_gauges_are_grouped_under_one_type_line_with_their_labels_escaped() {
        let mut text = String::from("# TYPE other counter\nother 1");
        let gauges =
            vec![("b_seconds", "support", 1_800_000_000.0), ("a", "x\"y\\z", 2.5), ("b_seconds", "sales", 7.0)];
        render_gauges(&mut text, "channel", gauges);
        let expected = "# TYPE other counter\nother 1\n# TYPE a gauge\na{channel=\"x\\\"y\\\\z\"} 2.5\n\
                        # TYPE b_seconds gauge\nb_seconds{channel=\"sales\"} 7\nb_seconds{channel=\"support\"} 1800000000\n";
        assert_eq!(text, expected);
    }
}
