//! JUnit XML, the report CI systems read: one test case per property the
//! run checked (a failed one carries its shrunk counterexample, trace and
//! replay command), one for the failing cases left unshrunk, one for the
//! required events. A run the harness could not make is one test case in
//! error, said to be the harness's or the setup's, never the engine's.

use std::collections::BTreeSet;

use super::{counterexample, other_failures};
use crate::check::{Invariant, Oracle};
use crate::gate::Summary;

/// The JUnit document of a finished `check` run.
pub fn junit(s: &Summary) -> String {
    let mut cases = Vec::new();
    let failed: BTreeSet<Invariant> = s.failures.iter().map(|f| f.invariant).collect();
    let properties: BTreeSet<Invariant> = s.checked.iter().copied().chain(failed.iter().copied()).collect();
    for invariant in Invariant::ALL.into_iter().filter(|i| properties.contains(i)) {
        let oracle = match invariant.oracle() {
            Oracle::Contract => "contract",
            Oracle::Profile => "profile",
        };
        let mut case = TestCase::new(&format!("syncgate.{oracle}"), &invariant.to_string());
        let mine: Vec<String> = s
            .failures
            .iter()
            .filter(|f| f.invariant == invariant)
            .map(|f| counterexample(s, f))
            .collect();
        if let Some(first) = s.failures.iter().find(|f| f.invariant == invariant) {
            let message = format!(
                "{} at step {} of {}: {}",
                invariant, first.step, first.seed, first.detail
            );
            case.failure = Some((message, mine.join("\n")));
        }
        cases.push(case);
    }
    let mut unshrunk = TestCase::new("syncgate.run", "no failing case left unshrunk");
    if !s.other_failing_seeds.is_empty() {
        unshrunk.failure = Some((other_failures(s), other_failures(s)));
    }
    cases.push(unshrunk);
    let mut events = TestCase::new("syncgate.run", "required events reached");
    if !s.missing_events.is_empty() {
        let names: Vec<&str> = s.missing_events.iter().map(|e| e.name()).collect();
        let message = format!(
            "these required events never happened, so the generator no longer reaches them: {}",
            names.join(", ")
        );
        events.failure = Some((message.clone(), message));
    }
    cases.push(events);
    let mut out_text: Vec<String> = s.notes.iter().map(|n| format!("note: {n}")).collect();
    let counted: Vec<String> = s.events.iter().map(|(k, v)| format!("{}={v}", k.name())).collect();
    out_text.push(format!("events: {}", counted.join(" ")));
    out_text.extend(s.declared_breaches.iter().map(|b| format!("note: {}", b.note(s.cases))));
    let suite = Suite {
        name: format!("syncgate check: {} (remote {})", s.engine, s.remote),
        time_s: s.elapsed_s,
        properties: vec![
            ("engine", s.engine.clone()),
            ("remote", s.remote.clone()),
            ("seed", s.seed.clone()),
            ("cases", s.cases.to_string()),
            ("passed", s.passed.to_string()),
            ("oracles", s.oracles.clone()),
        ],
        cases,
        system_out: out_text.join("\n"),
    };
    suite.render()
}

/// The JUnit document of a run that could not be made: the harness failed
/// itself, or the setup (engine command, server, arguments) is wrong.
pub fn junit_not_run(engine: &str, error: &str) -> String {
    let mut case = TestCase::new("syncgate.run", "the gate ran");
    case.error = Some((
        format!("syncgate could not run the gate (the harness's or the setup's failure, not the engine's): {error}"),
        error.to_string(),
    ));
    Suite {
        name: format!("syncgate check: {engine}"),
        time_s: 0.0,
        properties: vec![("engine", engine.to_string())],
        cases: vec![case],
        system_out: String::new(),
    }
    .render()
}

struct TestCase {
    classname: String,
    name: String,
    /// `(message, body)` of a `<failure>`: the engine broke the property.
    failure: Option<(String, String)>,
    /// `(message, body)` of an `<error>`: nothing could be said.
    error: Option<(String, String)>,
}

impl TestCase {
    fn new(classname: &str, name: &str) -> TestCase {
        TestCase {
            classname: classname.to_string(),
            name: name.to_string(),
            failure: None,
            error: None,
        }
    }
}

struct Suite {
    name: String,
    time_s: f64,
    properties: Vec<(&'static str, String)>,
    cases: Vec<TestCase>,
    system_out: String,
}

impl Suite {
    fn render(&self) -> String {
        let failures = self.cases.iter().filter(|c| c.failure.is_some()).count();
        let errors = self.cases.iter().filter(|c| c.error.is_some()).count();
        let head = format!(
            "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\"",
            self.cases.len(),
            self.time_s
        );
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<testsuites name=\"syncgate\" {head}>\n"));
        out.push_str(&format!("  <testsuite name=\"{}\" {head}>\n", attr(&self.name)));
        out.push_str("    <properties>\n");
        for (name, value) in &self.properties {
            out.push_str(&format!(
                "      <property name=\"{name}\" value=\"{}\"/>\n",
                attr(value)
            ));
        }
        out.push_str("    </properties>\n");
        for case in &self.cases {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                attr(&case.classname),
                attr(&case.name)
            );
            let inner: Vec<(&str, &(String, String))> = [("failure", &case.failure), ("error", &case.error)]
                .into_iter()
                .filter_map(|(tag, x)| x.as_ref().map(|x| (tag, x)))
                .collect();
            if inner.is_empty() {
                out.push_str(&format!("{open}/>\n"));
                continue;
            }
            out.push_str(&format!("{open}>\n"));
            for (tag, (message, body)) in inner {
                out.push_str(&format!(
                    "      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n",
                    attr(message),
                    attr(&case.name),
                    text(body)
                ));
            }
            out.push_str("    </testcase>\n");
        }
        if !self.system_out.is_empty() {
            out.push_str(&format!("    <system-out>{}</system-out>\n", text(&self.system_out)));
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// XML text: markup escaped, and characters XML 1.0 cannot hold at all
/// (control characters but tab and newlines) shown as `\u{..}`.
fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// An attribute value: text, with quotes and line breaks escaped too.
fn attr(raw: &str) -> String {
    text(raw)
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_an_engine_prints_stays_well_formed() {
        // Engine logs and row values reach the report: markup, quotes,
        // control characters, non-ASCII.
        let nasty = "a <b> & \"c\" 'd'\n\t\u{1}\u{1b}[31m ñandú-日本 ]]> \u{FFFF}";
        let mut case = TestCase::new("syncgate.contract", "Convergence");
        case.failure = Some((nasty.to_string(), nasty.to_string()));
        let suite = Suite {
            name: nasty.to_string(),
            time_s: 1.5,
            properties: vec![("seed", nasty.to_string())],
            cases: vec![case, TestCase::new("syncgate.run", "ok")],
            system_out: nasty.to_string(),
        };
        let xml = suite.render();
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure");
        let shown = "a <b> & \"c\" 'd'\n\t\\u{1}\\u{1b}[31m ñandú-日本 ]]> \\u{ffff}";
        assert_eq!(failure.text(), Some(shown));
        assert_eq!(failure.attribute("message"), Some(shown));
        let root = doc.root_element();
        assert_eq!(
            (
                root.attribute("tests"),
                root.attribute("failures"),
                root.attribute("errors")
            ),
            (Some("2"), Some("1"), Some("0"))
        );
    }
}
