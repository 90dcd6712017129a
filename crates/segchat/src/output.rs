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

    /// Whether the user asked for JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.json
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

/// A row for each item of a JSON array (none if it is not one).
pub(crate) fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| items.iter().map(row).collect())
        .unwrap_or_default()
}

/// Aligned columns, two spaces apart; `empty` if there are no rows.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    if rows.is_empty() {
        return empty.to_owned();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["USER", "ROLE"],
            vec![
                vec!["alice".into(), "owner".into()],
                vec!["bo".into(), "member".into()],
            ],
            "none",
        );
        assert_eq!(t, "USER   ROLE\nalice  owner\nbo     member");
        assert_eq!(table(&["A"], vec![], "none"), "none");
    }
}
