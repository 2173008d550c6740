//! The reports CI systems read (`--junit`, `--github`), through the binary
//! as a pipeline runs it.

use std::path::Path;
use std::process::Command;

fn syncgate(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(args)
        .args(["--work-dir".as_ref(), dir.as_os_str()])
        .args(["--failures-dir".as_ref(), dir.join("failures").as_os_str()])
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .output()
        .expect("syncgate runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Whether `xml` validates against the common JUnit schema (`junit.xsd`,
/// beside this file), by xmllint where `SYNCGATE_XMLLINT` names it (as
/// `.ci/run` sets it): `None` (and SKIPPED said) without it, else xmllint's
/// verdict and its words.
fn junit_schema_verdict(xml: &Path, test: &str) -> Option<(bool, String)> {
    let Some(xmllint) = std::env::var_os("SYNCGATE_XMLLINT").filter(|x| !x.is_empty()) else {
        eprintln!(
            "SKIPPED the JUnit schema half of {test}: SYNCGATE_XMLLINT is not set. Run it with \
             SYNCGATE_XMLLINT=$(command -v xmllint) cargo test --workspace (Debian's libxml2-utils)"
        );
        return None;
    };
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/junit.xsd");
    let out = Command::new(xmllint)
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(xml)
        .output()
        .expect("xmllint runs");
    Some((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Fails unless `xml` validates (where xmllint is given).
fn assert_valid_junit(xml: &Path, test: &str) {
    if let Some((valid, words)) = junit_schema_verdict(xml, test) {
        assert!(
            valid,
            "not valid JUnit: {words}\n{}",
            std::fs::read_to_string(xml).unwrap_or_default()
        );
    }
}

/// `(name, child tag names)` of every test case of a JUnit document.
fn test_cases(xml: &str) -> Vec<(String, Vec<String>)> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML: {e}\n{xml}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let name = n.attribute("name").unwrap_or_default().to_string();
            let children = n
                .children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name().to_string());
            (name, children.collect())
        })
        .collect()
}

#[test]
fn a_counterexample_is_a_failed_property_in_junit_and_an_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (code, stdout) = syncgate(
        &[
            "check",
            "--engine",
            "mutant:memory-outbox",
            "--cases",
            "30",
            "--seed",
            "j1",
            "--each-property",
            "--shrink-runs-max",
            "50",
            "--github",
            "--junit",
            junit.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{stdout}");
    assert_valid_junit(
        &junit,
        "a_counterexample_is_a_failed_property_in_junit_and_an_annotation",
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = test_cases(&xml);
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(_, tags)| tags.iter().any(|t| t == "failure"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(failed.contains(&"PendingAgreement"), "{xml}");
    // Every property the reference profile is checked on is listed, the
    // ones of other declarations (aborts, moving ids) are not.
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    for checked in [
        "Convergence",
        "NoLostWrite",
        "TruthfulStatus",
        "OutcomeAgreement",
        "required events reached",
    ] {
        assert!(names.contains(&checked), "{checked} missing: {names:?}");
    }
    for unchecked in ["NoAbortedRead", "RenumberingReported", "WriteOnWrongRow"] {
        assert!(!names.contains(&unchecked), "{unchecked} listed: {names:?}");
    }
    // The failure carries its trace and the replay command.
    assert!(
        xml.contains("replay: syncgate replay --engine mutant:memory-outbox --seed"),
        "{xml}"
    );
    // One annotation per counterexample, its message on one line.
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::error ")).collect();
    assert_eq!(annotations.len(), failed.len(), "{stdout}");
    assert!(
        annotations
            .iter()
            .any(|a| a.starts_with("::error title=syncgate%3A PendingAgreement at step ")),
        "{stdout}"
    );
    let counterexamples = annotations.iter().filter(|a| a.contains("::COUNTEREXAMPLE "));
    assert!(counterexamples.clone().count() >= 1, "{stdout}");
    assert!(
        counterexamples
            .clone()
            .all(|a| a.contains("%0A  replay: syncgate replay")),
        "{stdout}"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.starts_with("### syncgate check: FAIL"), "{summary}");
    assert!(
        summary.contains("| `PendingAgreement` | **failed** at step"),
        "{summary}"
    );
    assert!(summary.contains("| `Convergence` | passed |"), "{summary}");
}

#[test]
fn a_passing_run_is_all_passed_and_says_nothing_to_annotate() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (code, stdout) = syncgate(
        &[
            "check",
            "--cases",
            "5",
            "--seed",
            "j2",
            "--github",
            "--junit",
            junit.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}");
    assert_valid_junit(&junit, "a_passing_run_is_all_passed_and_says_nothing_to_annotate");
    let cases = test_cases(&std::fs::read_to_string(&junit).unwrap());
    assert!(cases.len() > 10, "{cases:?}");
    assert!(cases.iter().all(|(_, tags)| tags.is_empty()), "{cases:?}");
    assert!(!stdout.contains("::error"), "{stdout}");
}

#[test]
fn a_run_that_could_not_be_made_is_an_error_not_a_failure_of_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (code, stdout) = syncgate(
        &[
            "check",
            "--engine",
            "exec:/nonexistent/adapter",
            "--github",
            "--junit",
            junit.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{stdout}");
    assert_valid_junit(
        &junit,
        "a_run_that_could_not_be_made_is_an_error_not_a_failure_of_the_engine",
    );
    let cases = test_cases(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(cases, vec![("the gate ran".to_string(), vec!["error".to_string()])]);
    assert!(
        stdout.starts_with(
            "::error title=syncgate could not run (the harness's or the setup's failure%2C not the engine's)::"
        ),
        "{stdout}"
    );
}

/// The schema the reports are validated against rejects what CI systems
/// would: a test case without a name, a count that is not one, a failure
/// outside a test case (so validating says something).
#[test]
fn the_junit_schema_rejects_what_ci_systems_would() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, xml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, xml).unwrap();
        path
    };
    let good = write(
        "good.xml",
        r#"<testsuites><testsuite name="s" tests="1" failures="1" errors="0" time="0.5"><properties><property name="seed" value="x"/></properties><testcase classname="c" name="t" time="0"><failure message="m" type="t">trace</failure></testcase><system-out>o</system-out></testsuite></testsuites>"#,
    );
    let Some((valid, words)) = junit_schema_verdict(&good, "the_junit_schema_rejects_what_ci_systems_would") else {
        return;
    };
    assert!(valid, "{words}");
    for (name, xml) in [
        (
            "no-name.xml",
            r#"<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase classname="c"/></testsuite></testsuites>"#,
        ),
        (
            "bad-count.xml",
            r#"<testsuites><testsuite name="s" tests="many" failures="0" errors="0"/></testsuites>"#,
        ),
        (
            "stray-failure.xml",
            r#"<testsuites><testsuite name="s" tests="0" failures="1" errors="0"><failure message="m"/></testsuite></testsuites>"#,
        ),
    ] {
        let path = write(name, xml);
        let (valid, _) =
            junit_schema_verdict(&path, "the_junit_schema_rejects_what_ci_systems_would").expect("xmllint");
        assert!(!valid, "{name} validated");
    }
}

/// A run that checked nothing (`--cases 0`, a shard with no case) is no
/// pass: exit 2, said in words, and a JUnit error, as test runners treat
/// "no tests ran".
#[test]
fn a_run_that_checked_nothing_is_not_a_pass() {
    for (seed, extra) in [
        ("n0", vec!["--cases", "0"]),
        ("n1", vec!["--cases", "3", "--shard", "5/9"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let mut args = vec!["check", "--seed", seed, "--github", "--junit", junit.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let (code, stdout) = syncgate(&args, dir.path());
        assert_eq!(code, 2, "{extra:?}: {stdout}");
        assert!(
            stdout.contains("NOTHING CHECKED: nothing was checked: no case ran"),
            "{stdout}"
        );
        assert!(!stdout.contains("\nPASS"), "{stdout}");
        assert!(stdout.contains("::error title=syncgate could not run"), "{stdout}");
        assert_valid_junit(&junit, "a_run_that_checked_nothing_is_not_a_pass");
        let cases = test_cases(&std::fs::read_to_string(&junit).unwrap());
        assert_eq!(cases, vec![("the gate ran".to_string(), vec!["error".to_string()])]);
    }
}
