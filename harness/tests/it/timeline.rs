//! A counterexample's timeline page (`replay --html`, and beside each trace
//! `check --failures-dir` saves): well-formed, every step in its lane, the
//! failure at its step; and, where Chromium is given (`SYNCGATE_CHROMIUM`,
//! which `.ci/run` sets), rendered headless: a screenshot taken and the
//! page's text read back from the browser, nothing fetched.

use std::path::Path;
use std::process::Command;

use syncgate::gate::{check, CheckOptions, Summary};
use syncgate::mutants::hunt_options;
use syncgate::report::counterexample_timeline;
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::ContractOnly;

/// A shrunk counterexample of the contract: a pull that overwrites a
/// pending local write (NoLostWrite, with the causal edge it used).
fn counterexample(dir: &Path) -> Summary {
    let engine = ContractOnly(Box::new(ReferenceEngine::with(syncgate_reference_adapter::Options {
        mutant: Some(syncgate_engine::Mutant::PullOverwritesPending),
        ..Default::default()
    })));
    let opts = CheckOptions {
        failures_dir: Some(dir.to_path_buf()),
        ..hunt_options(300, "timeline", 2)
    };
    let summary = check(&engine, &opts).expect("runs");
    assert!(!summary.failures.is_empty(), "the mutant was not caught");
    summary
}

/// The text of an element and everything in it.
fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

#[test]
fn a_counterexample_timeline_has_every_step_in_its_lane_and_the_failure_at_its_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = counterexample(dir.path());
    let f = &summary.failures[0];
    let page = counterexample_timeline(&summary, f);
    let xml = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&page, xml).unwrap_or_else(|e| panic!("not well-formed: {e}\n{page}"));
    let rows: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("tr")).skip(1).collect();
    assert_eq!(rows.len(), f.trace.len(), "one row per trace line");
    for (row, line) in rows.iter().zip(&f.trace) {
        let text = text_of(*row);
        let (_, step_text) = line.trim_start().split_once(". ").expect("numbered");
        assert!(text.contains(step_text), "{text:?} lacks {step_text:?}");
    }
    let failed: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("failed"))
        .collect();
    assert_eq!(failed.len(), 1, "exactly the failing step's cell is marked");
    let failed_text = text_of(failed[0]);
    assert!(failed_text.contains(&f.invariant.to_string()), "{failed_text}");
    let row_of_failure = failed[0].parent().and_then(|r| r.attribute("id"));
    assert_eq!(row_of_failure, Some(format!("s{}", f.step).as_str()));
    assert!(
        !page.contains("http://") || page.matches("http://").count() == 1,
        "only the XHTML namespace"
    );
}

#[test]
fn a_counterexample_timeline_renders_in_headless_chromium() {
    let Some(chromium) = std::env::var_os("SYNCGATE_CHROMIUM").filter(|c| !c.is_empty()) else {
        eprintln!(
            "SKIPPED a_counterexample_timeline_renders_in_headless_chromium: SYNCGATE_CHROMIUM is not set. Run it \
             with SYNCGATE_CHROMIUM=$(command -v chromium) cargo test --workspace"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = counterexample(dir.path());
    let f = &summary.failures[0];
    let trace = f.trace_file.as_ref().expect("check saved the trace");
    let page = trace.with_extension("html");
    std::fs::write(&page, counterexample_timeline(&summary, f)).expect("write the page");
    let url = format!("file://{}", page.display());
    let profile = tempfile::tempdir().expect("a fresh profile");
    let browser = |extra: &[&str]| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1200,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium starts");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let shot = dir.path().join("timeline.png");
    browser(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a screenshot of {} bytes shows nothing", png.len());
    // What the browser made of the page: the failure and every step.
    let dom = String::from_utf8(browser(&["--dump-dom"]).stdout).expect("utf-8");
    assert!(dom.contains(&f.invariant.to_string()), "{dom}");
    assert!(dom.contains("class=\"failed\""), "{dom}");
    for line in &f.trace {
        let (_, step_text) = line.trim_start().split_once(". ").expect("numbered");
        let escaped = step_text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let shown = escaped.split(".w").next().unwrap_or_default();
        assert!(dom.contains(shown), "the page lacks {shown:?}");
    }
}
