//! A counterexample as a page to look at (`replay --html`, and next to each
//! trace `check --failures-dir` saves): one self-contained HTML page,
//! replicas as lanes and steps as rows, each write with its tag marked,
//! syncs, crashes, locks and restarts as marks, the steps and writes the
//! failure's causal path names highlighted, and the failing step carrying
//! the property's message. No script and nothing fetched: it opens from a
//! file anywhere, and it is well-formed XML (XHTML), so a test can parse it.

/// What a timeline shows.
pub struct Timeline<'a> {
    /// A heading: the engine, the seed or the trace file.
    pub title: &'a str,
    pub replicas: usize,
    /// The trace lines as the runner wrote them (`  3. r1 sync -> ...`).
    pub trace: &'a [String],
    /// The step (1-based) and the property that failed, with its message.
    pub failure: Option<(usize, String, &'a str)>,
    /// Lines shown under the heading (configuration, replay command).
    pub notes: &'a [String],
}

/// The kind of a step, for its mark: by the words that start it (a
/// replica's step is `rK <verb> ...`), since its answer may mention others.
fn kind_of(text: &str) -> &'static str {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    let verb = if first.starts_with('r') && first[1..].chars().all(|c| c.is_ascii_digit()) {
        words.next().unwrap_or_default()
    } else {
        first
    };
    let head: String = text.chars().take(48).collect();
    match verb {
        "sync" | "push" | "pull" => "sync",
        "insert" | "update" | "delete" | "txn" => "write",
        "outside" => "outside",
        "clock" => "clock",
        _ if head.contains("crash") => "crash",
        _ if head.contains("restart") || head.contains(" down") => "restart",
        _ if head.contains("lock") => "lock",
        _ if text.contains("skipped") => "skipped",
        _ => "other",
    }
}

/// One trace line: its step number, its lane (a replica, or `None` for the
/// harness's own steps) and its text.
fn parse(line: &str) -> (Option<usize>, Option<usize>, &str) {
    let trimmed = line.trim_start();
    let (step, text) = match trimmed.split_once(". ") {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => (n.parse().ok(), rest),
        _ => (None, trimmed),
    };
    let lane = text
        .strip_prefix('r')
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok());
    (step, lane, text)
}

/// The steps a failure's message names (`pushed at step 2`, `step 7`).
fn steps_named(message: &str) -> Vec<usize> {
    let mut steps = Vec::new();
    let mut rest = message;
    while let Some(at) = rest.find("step ") {
        rest = &rest[at + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            steps.push(n);
        }
    }
    steps
}

/// The writes a failure's message names (`w12`).
fn writes_named(message: &str) -> Vec<String> {
    let bytes = message.as_bytes();
    let mut writes = Vec::new();
    for (i, _) in message.match_indices('w') {
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.';
        let digits: String = message[i + 1..].chars().take_while(char::is_ascii_digit).collect();
        if before_ok && !digits.is_empty() {
            let name = format!("w{digits}");
            if !writes.contains(&name) {
                writes.push(name);
            }
        }
    }
    writes
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped, with each write tag (`.w12`) marked, and marked again as
/// named when the failure names that write.
fn with_tags(text: &str, named: &[String]) -> String {
    let escaped = escape(text);
    let mut out = String::new();
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find(".w") {
        let digits: String = rest[at + 2..].chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            out.push_str(&rest[..at + 2]);
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let write = format!("w{digits}");
        let class = if named.contains(&write) { "tag named" } else { "tag" };
        out.push_str(&format!("<span class=\"{class}\">.{write}</span>"));
        rest = &rest[at + 2 + digits.len()..];
    }
    out.push_str(rest);
    out
}

const STYLE: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}\
h1{font-size:17px;margin:0 0 6px}p.note{margin:2px 0;font-family:monospace;color:#555}\
.failure{border:2px solid #c62828;background:#ffebee;padding:8px 10px;margin:10px 0;white-space:pre-wrap}\
.failure b{color:#c62828}table{border-collapse:collapse;width:100%;table-layout:fixed}\
th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;font-family:monospace;font-size:12px;\
overflow-wrap:anywhere}th{background:#f5f5f5;position:sticky;top:0}.step{width:44px;text-align:right;color:#777}\
tr.quiescence td{background:#fafafa}tr.edge td.step{background:#fff3c4;font-weight:bold}\
td.failed{background:#ffcdd2;outline:2px solid #c62828}\
.mark{display:inline-block;border-radius:3px;padding:0 4px;margin-right:4px;font-size:11px;color:#fff}\
.write{background:#1565c0}.sync{background:#2e7d32}.crash{background:#c62828}.restart{background:#6a1b9a}\
.lock{background:#ef6c00}.outside{background:#00838f}.clock{background:#5d4037}.other{background:#757575}\
.skipped{background:#bdbdbd}\
.tag{background:#e3f2fd;border-radius:2px}.tag.named{background:#ffeb3b;font-weight:bold}\
.message{color:#c62828;white-space:pre-wrap;margin-top:3px}ul.legend{padding-left:18px;margin:4px 0}";

/// The page.
pub fn html(t: &Timeline<'_>) -> String {
    let (failed_step, named_steps, named_writes) = match &t.failure {
        Some((step, _, message)) => (Some(*step), steps_named(message), writes_named(message)),
        None => (None, Vec::new(), Vec::new()),
    };
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head><meta charset=\"utf-8\"/>",
    );
    out.push_str(&format!(
        "<title>syncgate: {}</title><style>{STYLE}</style></head><body>",
        escape(t.title)
    ));
    out.push_str(&format!("<h1>{}</h1>", escape(t.title)));
    for note in t.notes {
        out.push_str(&format!("<p class=\"note\">{}</p>", escape(note)));
    }
    match &t.failure {
        Some((step, property, message)) => {
            out.push_str(&format!(
                "<div class=\"failure\" id=\"failure\"><b>{}</b> at step {step}: {}",
                escape(property),
                with_tags(message, &named_writes)
            ));
            if !named_steps.is_empty() || !named_writes.is_empty() {
                out.push_str("<ul class=\"legend\">");
                if !named_steps.is_empty() {
                    let links: Vec<String> = named_steps
                        .iter()
                        .map(|n| format!("<a href=\"#s{n}\">step {n}</a>"))
                        .collect();
                    out.push_str(&format!(
                        "<li>the causal path it names: {} (highlighted)</li>",
                        links.join(" → ")
                    ));
                }
                if !named_writes.is_empty() {
                    out.push_str(&format!(
                        "<li>the writes it names, marked in yellow: {}</li>",
                        escape(&named_writes.join(", "))
                    ));
                }
                out.push_str("</ul>");
            }
            out.push_str("</div>");
        }
        None => out.push_str("<div class=\"note\">every check passed</div>"),
    }
    out.push_str("<table><thead><tr><th class=\"step\">step</th>");
    for r in 0..t.replicas {
        out.push_str(&format!("<th>r{r}</th>"));
    }
    out.push_str("<th>harness (remote, locks, clocks)</th></tr></thead><tbody>");
    for line in t.trace {
        let (step, lane, text) = parse(line);
        let quiescence = text.contains("(quiescence");
        let mut classes = Vec::new();
        if quiescence {
            classes.push("quiescence");
        }
        if step.is_some_and(|n| named_steps.contains(&n)) {
            classes.push("edge");
        }
        let id = step.map(|n| format!(" id=\"s{n}\"")).unwrap_or_default();
        let class = if classes.is_empty() {
            String::new()
        } else {
            format!(" class=\"{}\"", classes.join(" "))
        };
        out.push_str(&format!("<tr{class}{id}>"));
        out.push_str(&format!(
            "<td class=\"step\">{}</td>",
            step.map(|n| n.to_string()).unwrap_or_default()
        ));
        let column = lane.filter(|r| *r < t.replicas).unwrap_or(t.replicas);
        for c in 0..=t.replicas {
            if c != column {
                out.push_str("<td></td>");
                continue;
            }
            let failed = step.is_some() && step == failed_step;
            let kind = kind_of(text);
            out.push_str(&format!(
                "<td{}><span class=\"mark {kind}\">{kind}</span>{}",
                if failed { " class=\"failed\"" } else { "" },
                with_tags(text, &named_writes)
            ));
            if let (true, Some((_, property, message))) = (failed, &t.failure) {
                out.push_str(&format!(
                    "<div class=\"message\">{}: {}</div>",
                    escape(property),
                    escape(message)
                ));
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_find_their_lanes_and_messages_their_paths() {
        assert_eq!(parse("  3. r1 sync -> ok"), (Some(3), Some(1), "r1 sync -> ok"));
        assert_eq!(
            parse(" 12. lock remote exclusive"),
            (Some(12), None, "lock remote exclusive")
        );
        let message =
            "w3 on r1 causally follows w1 on r0 (r0 pushed at step 2, r1 pulled at step 3); hosts/1 holds \"a.w1\"";
        assert_eq!(steps_named(message), vec![2, 3]);
        assert_eq!(writes_named(message), vec!["w3", "w1"]);
        assert_eq!(kind_of("r2 clock offset -90000 ms"), "clock");
        assert_eq!(kind_of("r2 sync -> failed ClockDrift: refused"), "sync");
        assert_eq!(kind_of("r1 cache write lock for 2 steps"), "lock");
        assert_eq!(kind_of("r0 txn [insert domains new id] -> ok [1]"), "write");
        assert_eq!(
            with_tags("name=\"a.w1\" <x>", &["w1".into()]),
            "name=&quot;a<span class=\"tag named\">.w1</span>&quot; &lt;x&gt;"
        );
    }
}
