//! Fitting an event into a consumer's body limit.
//!
//! A mail's text and HTML go whole into its event (up to `server.max_body_bytes`), and so do its
//! recipient and attachment lists. What sits in front of a helpdesk often refuses large request
//! bodies: nginx's default `client_max_body_size` is 1 MiB, Express's `express.json()` takes
//! 100 kB. The refusal is a 413 that no retry mends. The event would be retried for days and end
//! as a dead letter, and the conversation's later events would wait behind it.
//!
//! So a webhook body over the consumer's `max_body_bytes` is cut to fit:
//! 1. `html` goes first (set to null): the text says the same, and cut HTML is broken HTML;
//! 2. then the largest values are shortened to a common size, just small enough for the body to
//!    fit: a string keeps its beginning, a list its first items. A long text beside a long Cc
//!    list loses from both, not all of one. Values of 128 bytes or less (ids, addresses,
//!    timestamps) are never touched.
//!
//! The envelope names what was cut in `truncated` (dotted paths into `data`). The whole object
//! is still in the log: `GET /v1/messages/{id}` and `/v1/events` return it uncut. Only webhook
//! bodies are ever cut, and the log is never changed.

use serde_json::{Map, Value};

use crate::model::Envelope;

/// Values this small are never shortened: they are ids, addresses and timestamps, and cutting
/// them would make the object useless rather than smaller.
const UNTOUCHABLE_BYTES: usize = 128;

/// A body that had to be cut: the new body and the paths of the values that were cut.
#[derive(Debug)]
pub struct CutBody {
    pub body: String,
    pub truncated: Vec<String>,
}

/// Cuts `envelope` (the JSON of a [`Envelope`]) down to `max_bytes`, or returns `None` when it
/// fits already. The result may still be over `max_bytes` when everything left is untouchable
/// (a limit far below any sensible one; the configuration refuses limits under 4 KiB).
pub fn fit(envelope: &str, max_bytes: usize) -> Option<CutBody> {
    if envelope.len() <= max_bytes {
        return None;
    }
    let parsed: Envelope = serde_json::from_str(envelope).ok()?;
    let mut data: Value = serde_json::from_str(parsed.data.get()).ok()?;
    let mut truncated = Vec::new();
    if let Some(html) = data.get_mut("html").filter(|h| h.is_string()) {
        *html = Value::Null;
        truncated.push("html".to_owned());
    }
    // One pass cuts enough; a second makes room for the names it added to `truncated`.
    for _ in 0..MAX_PASSES {
        let body = write(&parsed, &data, &truncated);
        if body.len() <= max_bytes {
            break;
        }
        let mut candidates = cuttable_values(&data);
        candidates.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
        let sizes: Vec<usize> = candidates.iter().map(|(size, _)| *size).collect();
        let Some(level) = common_size(&sizes, body.len() - max_bytes) else { break };
        for (_, path) in candidates.iter().filter(|(size, _)| *size > level) {
            shorten_to(value_at(&mut data, path), level);
            let name = path.join(".");
            if !truncated.contains(&name) {
                truncated.push(name);
            }
        }
    }
    let body = write(&parsed, &data, &truncated);
    Some(CutBody { body, truncated })
}

const MAX_PASSES: usize = 4;

/// The size the largest values (`sizes`, largest first) are cut to so that together they lose
/// `excess` bytes: the highest level with `sum(size - level for sizes above it) >= excess`.
fn common_size(sizes: &[usize], excess: usize) -> Option<usize> {
    if sizes.is_empty() {
        return None;
    }
    let mut total = 0;
    for (k, size) in sizes.iter().enumerate() {
        total += size;
        let level = total.saturating_sub(excess) / (k + 1);
        if level >= sizes.get(k + 1).copied().unwrap_or(0) {
            return Some(level);
        }
    }
    Some(0)
}

/// The envelope with `truncated` before `data`, in the order of the uncut one.
fn write(envelope: &Envelope, data: &Value, truncated: &[String]) -> String {
    format!(
        r#"{{"id":{},"seq":{},"type":{},"timestamp":{},"truncated":{},"data":{}}}"#,
        Value::from(envelope.id.as_str()),
        envelope.seq,
        Value::from(envelope.kind.as_str()),
        Value::from(envelope.timestamp.as_str()),
        serde_json::to_string(truncated).unwrap_or_default(),
        data
    )
}

/// The strings and lists that may be cut, with their size in JSON and their path (object keys
/// from `data`). Objects are looked into; lists are cut as a whole, never looked into.
fn cuttable_values(data: &Value) -> Vec<(usize, Vec<String>)> {
    fn visit(object: &Map<String, Value>, path: &mut Vec<String>, found: &mut Vec<(usize, Vec<String>)>) {
        for (key, value) in object {
            path.push(key.clone());
            match value {
                Value::Object(inner) => visit(inner, path, found),
                Value::String(_) | Value::Array(_) => {
                    let size = serialized_len(value);
                    if size > UNTOUCHABLE_BYTES {
                        found.push((size, path.clone()));
                    }
                }
                _ => {}
            }
            path.pop();
        }
    }
    let mut found = Vec::new();
    if let Some(object) = data.as_object() {
        visit(object, &mut Vec::new(), &mut found);
    }
    found
}

fn value_at<'a>(data: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(data, |value, key| &mut value[key.as_str()])
}

/// Cuts `value` to at most `size` bytes of JSON: a string keeps its first characters, a list
/// its first items.
fn shorten_to(value: &mut Value, size: usize) {
    let mut used = 2; // the quotes or brackets
    match value {
        Value::String(s) => {
            let keep = s
                .char_indices()
                .find(|(_, c)| {
                    used += json_len(*c);
                    used > size
                })
                .map_or(s.len(), |(at, _)| at);
            s.truncate(keep);
        }
        Value::Array(items) => {
            let keep = items
                .iter()
                .position(|item| {
                    used += serialized_len(item) + 1;
                    used > size + 1 // no comma after the last item
                })
                .unwrap_or(items.len());
            items.truncate(keep);
        }
        _ => {}
    }
}

/// Bytes a character takes inside a JSON string as serde_json writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn serialized_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(data: Value) -> String {
        format!(
            r#"{{"id":"evt_01","seq":7,"type":"message.received","timestamp":"2026-11-30T10:00:00.000Z","data":{data}}}"#
        )
    }

    fn cut(data: Value, max: usize) -> (Value, Vec<String>) {
        let cut = fit(&envelope(data), max).expect("cut");
        assert!(cut.body.len() <= max, "{} bytes over a limit of {max}", cut.body.len());
        (serde_json::from_str(&cut.body).unwrap(), cut.truncated)
    }

    #[test]
    fn a_body_that_fits_is_sent_as_it_is() {
        assert!(fit(&envelope(json!({"id": "msg_1", "text": "hello"})), 4096).is_none());
    }

    #[test]
    fn html_goes_first_and_the_text_stays_whole_when_that_is_enough() {
        let text = "Dzień dobry, ".repeat(100);
        let data = json!({"id": "msg_1", "text": text, "html": "<p>x</p>".repeat(2000), "subject": "Zamówienie"});
        let (event, truncated) = cut(data, 8192);
        assert_eq!(truncated, ["html"]);
        assert_eq!(event["data"]["html"], Value::Null);
        assert_eq!(event["data"]["text"], text.as_str());
        assert_eq!(event["truncated"], json!(["html"]));
        assert_eq!((event["id"].as_str(), event["seq"].as_u64()), (Some("evt_01"), Some(7)));
        assert_eq!(event["type"], "message.received");
    }

    #[test]
    fn a_long_text_keeps_its_beginning_cut_on_a_character_boundary() {
        let text = "ěščřžýáíé\"\n".repeat(5000);
        let data = json!({"id": "msg_1", "text": text, "reply_text": "Děkuji", "html": null});
        let (event, truncated) = cut(data, 10_000);
        assert_eq!(truncated, ["text"]);
        let kept = event["data"]["text"].as_str().unwrap();
        // Cut just enough: escapes (\" and \n) take two bytes of JSON each.
        assert!(kept.len() > 8500, "kept only {} bytes", kept.len());
        assert!(text.starts_with(kept));
        assert_eq!(event["data"]["reply_text"], "Děkuji");
    }

    #[test]
    fn long_lists_keep_their_first_items_and_nested_values_are_named_by_path() {
        let cc: Vec<Value> = (0..5000).map(|n| json!({"address": format!("user{n}@example.com")})).collect();
        let failed: Vec<Value> = (0..3000).map(|n| json!(format!("gone{n}@example.net"))).collect();
        let data = json!({
            "id": "msg_1",
            "text": "short",
            "to": [{"address": "support@example.com"}],
            "cc": cc,
            "delivery_report": {"action": "failed", "failed_recipients": failed},
        });
        let (event, truncated) = cut(data, 20_000);
        assert_eq!(truncated, ["cc", "delivery_report.failed_recipients"]);
        let kept = event["data"]["cc"].as_array().unwrap();
        assert_eq!(kept[0]["address"], "user0@example.com");
        assert!(kept.len() < 5000);
        // Both lists were cut to a common size, so each keeps about half of the room.
        let failed = event["data"]["delivery_report"]["failed_recipients"].as_array().unwrap();
        assert!(failed.len() > 300 && kept.len() > 200, "{} failed, {} cc kept", failed.len(), kept.len());
        assert_eq!(event["data"]["to"][0]["address"], "support@example.com");
        assert_eq!(event["data"]["delivery_report"]["action"], "failed");
        assert_eq!(event["data"]["text"], "short");
    }

    #[test]
    fn short_values_are_never_cut_even_when_the_body_stays_over() {
        let data = json!({"id": "msg_1", "conversation_id": "cnv_1", "subject": "s".repeat(100)});
        let cut = fit(&envelope(data.clone()), 100).expect("cut");
        assert!(cut.truncated.is_empty());
        let event: Value = serde_json::from_str(&cut.body).unwrap();
        assert_eq!(event["data"], data);
    }
}
