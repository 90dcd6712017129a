//! How the verbs print: the API's JSON as it is (`--json`) or a line of
//! text, and the small readers of that JSON every verb shares.

use serde_json::Value;

/// Text or JSON, as the user asked.
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints `v` pretty as JSON, or else what `text` makes of it.
    pub(crate) fn print(&self, v: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", text());
        }
    }
}

/// A message's `ts_ms` in local time, as `format` says (empty if absent).
pub(crate) fn local_time(m: &Value, format: &str) -> String {
    m["ts_ms"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.with_timezone(&chrono::Local).format(format).to_string())
        .unwrap_or_default()
}

/// A JSON string's text, or `?`.
pub(crate) fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}
