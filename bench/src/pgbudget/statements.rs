//! Statements grouped for reading: their kind and table, who sends them, and their text with
//! placeholder lists collapsed.

/// The statement's kind (first keyword) and the table it works on, for grouping.
pub(super) fn kind_and_table(query: &str) -> (String, String) {
    let words: Vec<String> = query
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    let kind = words.first().map(|w| w.to_uppercase()).unwrap_or_default();
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
            .cloned()
    };
    let table = match kind.as_str() {
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1).cloned(),
        "DELETE" | "SELECT" | "WITH" => after("FROM"),
        _ => None,
    };
    let table = match table {
        Some(table) => table,
        None if query.contains("advisory") => "(advisory lock)".into(),
        None if query.contains("pg_notify") => "(pg_notify)".into(),
        None => String::new(),
    };
    (kind, table)
}

/// Who sends a statement, from its text: the login and `/v1/me` themselves, or the runners
/// that follow the log (projections, the relay).
pub(super) fn area(query: &str) -> &'static str {
    let (kind, table) = kind_and_table(query);
    if table.starts_with("relay_") {
        "relay"
    } else if table.starts_with("projection_")
        || table.contains("_g")
        || table == "(advisory lock)"
        || query.contains("WHERE position >")
        || matches!(kind.as_str(), "BEGIN" | "COMMIT" | "ROLLBACK")
    {
        "runners"
    } else if table.is_empty() && kind != "SELECT" {
        "other"
    } else {
        "login + /v1/me"
    }
}

/// The text with every list of placeholders `($1, $2), ($3, $4)…` shown as one `(…)`, so
/// multi-row inserts of any size read as one statement.
pub(super) fn collapse(query: &str) -> String {
    let text = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("($") {
        let (head, tail) = rest.split_at(start);
        out.push_str(head);
        let end = tail.find(')').map_or(tail.len(), |e| e + 1);
        let inside = &tail[1..end.saturating_sub(1).max(1)];
        if inside
            .chars()
            .all(|c| c == '$' || c == ',' || c == ' ' || c.is_ascii_digit())
        {
            if !out.ends_with("(…), ") && !out.ends_with("(…),") {
                out.push_str("(…)");
            } else {
                // `(…), ` already written: drop the separator just added.
                let trimmed = out.trim_end_matches(' ').trim_end_matches(',').len();
                out.truncate(trimmed);
            }
            rest = &tail[end..];
        } else {
            out.push('(');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}
