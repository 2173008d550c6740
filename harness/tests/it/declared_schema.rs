//! `--schema FILE`: the tables a user declares (SQL DDL, a SQLite database,
//! the protocol's JSON), what is refused and how, and cases on them.

use std::path::{Path, PathBuf};
use std::process::Command;

use syncgate::events::Event;
use syncgate::gate::{check, default_base_dir, CheckOptions};
use syncgate::mutants::hunt_options;
use syncgate::schema::{read_declared, DeclaredSchema, SchemaRefused};
use syncgate::subject::reference::ReferenceEngine;
use syncgate_engine::Mutant;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/schemas")
        .join(name)
}

fn declare(dir: &Path, ddl: &str) -> Result<DeclaredSchema, SchemaRefused> {
    let path = dir.join("schema.sql");
    std::fs::write(&path, ddl).unwrap();
    read_declared(&path)
}

/// The refusal of `ddl`, which must name `table` and `clause`.
fn refused(ddl: &str, table: &str, clause: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let e = declare(dir.path(), ddl).expect_err(ddl);
    assert_eq!(e.table, table, "{e}");
    assert!(e.clause.contains(clause), "clause {:?} lacks {clause:?}: {e}", e.clause);
    let text = e.to_string();
    assert!(text.contains("supported: `id INTEGER PRIMARY KEY`"), "{text}");
    text
}

#[test]
fn every_unsupported_clause_is_refused_naming_the_table_and_the_clause() {
    let id = "id INTEGER PRIMARY KEY";
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("CREATE TABLE t ({id}, a)"), "t", "no type"),
        (format!("CREATE TABLE t ({id}, a BOOLEAN)"), "t", "a BOOLEAN"),
        (format!("CREATE TABLE t ({id}, a DECIMAL(12, 2))"), "t", "a DECIMAL"),
        (format!("CREATE TABLE t ({id}, a REAL UNIQUE)"), "t", "a UNIQUE"),
        (format!("CREATE TABLE t ({id}, a BLOB REFERENCES t(id))"), "t", "a REFERENCES"),
        (format!("CREATE TABLE t ({id}, a INTEGER CHECK (a > 0))"), "t", "CHECK"),
        (format!("CREATE TABLE t ({id}, a TEXT) WITHOUT ROWID"), "t", "WITHOUT ROWID"),
        (format!("CREATE TABLE t ({id}, a TEXT COLLATE NOCASE UNIQUE)"), "t", "COLLATE"),
        (format!("CREATE TABLE t ({id}, a INTEGER, b INTEGER AS (a + 1))"), "t", "GENERATED"),
        ("CREATE TABLE t (a INTEGER, b INTEGER, PRIMARY KEY (a, b))".into(), "t", "composite PRIMARY KEY"),
        ("CREATE TABLE t (key INTEGER PRIMARY KEY, a TEXT)".into(), "t", "PRIMARY KEY"),
        ("CREATE TABLE t (id TEXT PRIMARY KEY, a TEXT)".into(), "t", "PRIMARY KEY"),
        (format!("CREATE TABLE t ({id}, a TEXT, b TEXT, UNIQUE (a, b))"), "t", "UNIQUE (a, b)"),
        (format!("CREATE TABLE t ({id}, a TEXT UNIQUE, b TEXT UNIQUE)"), "t", "a second natural key"),
        (format!("CREATE TABLE t ({id}, a INTEGER UNIQUE)"), "t", "a UNIQUE"),
        (
            format!("CREATE TABLE t ({id}, a TEXT); CREATE UNIQUE INDEX t_a ON t(a) WHERE a IS NOT NULL"),
            "t",
            "partial",
        ),
        (
            format!("CREATE TABLE p ({id}, x TEXT); CREATE TABLE c ({id}, p_id INTEGER REFERENCES p(id) ON DELETE SET NULL)"),
            "c",
            "ON DELETE SET NULL",
        ),
        (
            format!("CREATE TABLE p ({id}, x TEXT); CREATE TABLE c ({id}, p_id INTEGER REFERENCES p(id) ON DELETE RESTRICT)"),
            "c",
            "ON DELETE RESTRICT",
        ),
        (
            format!("CREATE TABLE p ({id}, x TEXT); CREATE TABLE c ({id}, p_id INTEGER REFERENCES p(id))"),
            "c",
            "ON DELETE NO ACTION",
        ),
        (
            format!("CREATE TABLE p ({id}, x TEXT UNIQUE); CREATE TABLE c ({id}, p_x TEXT REFERENCES p(x) ON DELETE CASCADE)"),
            "c",
            "REFERENCES p",
        ),
        (
            format!(
                "CREATE TABLE p (a INTEGER, b INTEGER, x TEXT, PRIMARY KEY (a, b)); \
                 CREATE TABLE c ({id}, a INTEGER, b INTEGER, FOREIGN KEY (a, b) REFERENCES p(a, b) ON DELETE CASCADE)"
            ),
            "p",
            "composite PRIMARY KEY",
        ),
        (
            format!(
                "CREATE TABLE a ({id}, b_id INTEGER REFERENCES b(id) ON DELETE CASCADE); \
                 CREATE TABLE b ({id}, a_id INTEGER REFERENCES a(id) ON DELETE CASCADE)"
            ),
            "a",
            "a circle of references (a -> b -> a)",
        ),
        (
            format!("CREATE TABLE t ({id}, a TEXT); CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN SELECT 1; END"),
            "t",
            "CREATE TRIGGER t_touch",
        ),
        (format!("CREATE TABLE _sg_t ({id}, a TEXT)"), "_sg_t", "the name"),
        (format!("CREATE TABLE t ({id})"), "t", "0 columns"),
        (format!("CREATE VIRTUAL TABLE t USING fts5(a); CREATE TABLE u ({id}, a TEXT)"), "(the schema)", "VIRTUAL"),
        (format!("CREATE TEMP TABLE t ({id}, a TEXT)"), "(the schema)", "CREATE TEMP TABLE"),
        (format!("CREATE TABLE t ({id}, a TEXT); INSERT INTO t VALUES (1, 'x')"), "(the schema)", "INSERT"),
        ("ATTACH 'elsewhere.db' AS other".into(), "(the schema)", "ATTACH"),
        ("CREATE TABLE t (".into(), "(the schema)", "the DDL"),
        ("-- nothing but a comment".into(), "(the schema)", "no CREATE TABLE"),
    ];
    for (ddl, table, clause) in &cases {
        refused(ddl, table, clause);
    }
}

#[test]
fn the_virtual_table_refusal_names_its_clause() {
    // The VIRTUAL refusal comes from the statement check, before SQLite
    // runs anything (an fts5 table would make shadow tables).
    let text = refused(
        "CREATE VIRTUAL TABLE t USING fts5(a)",
        "(the schema)",
        "CREATE VIRTUAL TABLE",
    );
    assert!(text.contains("virtual"), "{text}");
}

#[test]
fn files_that_are_not_schemas_are_refused_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let missing = read_declared(&dir.path().join("nope.sql")).expect_err("missing");
    assert!(missing.why.contains("cannot read it"), "{missing}");
    let binary = dir.path().join("garbage.bin");
    std::fs::write(&binary, [0xff_u8, 0xfe, 0x00, 0x01]).unwrap();
    let e = read_declared(&binary).expect_err("binary");
    assert!(e.why.contains("neither a SQLite database nor text"), "{e}");
    let json = dir.path().join("bad.json");
    std::fs::write(
        &json,
        r#"{"tables": [{"name": "c", "columns": [{"name": "p_id", "type": "integer", "references": "p"}]}]}"#,
    )
    .unwrap();
    let e = read_declared(&json).expect_err("unknown parent");
    assert_eq!(e.table, "c", "{e}");
    std::fs::write(&json, "{not json").unwrap();
    let e = read_declared(&json).expect_err("not JSON");
    assert!(e.why.contains("not the protocol's schema JSON"), "{e}");
}

#[test]
fn a_schema_reads_the_same_from_ddl_a_database_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let from_ddl = read_declared(&example("notes.sql")).expect("the notes example is supported");
    let db = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&std::fs::read_to_string(example("notes.sql")).unwrap())
        .unwrap();
    drop(conn);
    let from_db = read_declared(&db).expect("the database's tables");
    assert_eq!(from_db.tables, from_ddl.tables);
    let json = dir.path().join("schema.json");
    std::fs::write(&json, serde_json::to_string(&from_ddl.tables).unwrap()).unwrap();
    assert_eq!(read_declared(&json).expect("the JSON form").tables, from_ddl.tables);
    // What SQLite's pragmas show: self-reference, chain, natural key.
    let notes = from_ddl.tables.tables.iter().find(|t| t.name == "notes").unwrap();
    let parent = notes.columns.iter().find(|c| c.name == "parent_id").unwrap();
    assert_eq!(parent.references.as_deref(), Some("notes"));
    let tags = from_ddl.tables.tables.iter().find(|t| t.name == "tags").unwrap();
    assert_eq!(tags.natural_key.as_deref(), Some("label"));
}

#[test]
fn real_and_blob_affinities_are_declared_with_their_kinds() {
    use syncgate_protocol::ColumnKind;
    let dir = tempfile::tempdir().unwrap();
    let declared = declare(
        dir.path(),
        "CREATE TABLE m (id INTEGER PRIMARY KEY, a REAL, b FLOAT, c DOUBLE PRECISION NOT NULL DEFAULT 0, \
         d BLOB, e BLOB NOT NULL DEFAULT x'')",
    )
    .expect("REAL and BLOB affinities are supported");
    let kinds: Vec<(String, ColumnKind, bool)> = declared.tables.tables[0]
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.kind, c.not_null))
        .collect();
    let want = [
        ("a", ColumnKind::Real, false),
        ("b", ColumnKind::Real, false),
        ("c", ColumnKind::Real, true),
        ("d", ColumnKind::Blob, false),
        ("e", ColumnKind::Blob, true),
    ];
    let want: Vec<(String, ColumnKind, bool)> = want.iter().map(|(n, k, nn)| (n.to_string(), *k, *nn)).collect();
    assert_eq!(kinds, want);
}

/// Reals and blobs at their edges (subnormals, the largest doubles, empty
/// and page-sized blobs) converge bit for bit: every place is compared with
/// the model's values, whose reals are equal only when their bits are.
#[test]
fn reals_and_blobs_converge_bit_for_bit_on_the_reference_engine() {
    let schema = read_declared(&example("notes.sql")).expect("supported");
    let summary = check(&ReferenceEngine::new(), &options(schema, 150, "reals-blobs")).expect("runs");
    assert!(
        summary.failures.is_empty(),
        "{:?}",
        summary.failures.first().map(|f| &f.detail)
    );
    // The edges are drawn: a replayed case shows them in its trace.
    let edges_seen = (0..150).any(|case| {
        let trace = replay_text("notes.sql", &format!("reals-blobs/{case}"));
        trace.contains("5e-324") || trace.contains("bytes, fnv")
    });
    assert!(edges_seen, "no case of 150 wrote a subnormal real or a long blob");
}

fn replay_text(schema: &str, seed: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["replay", "--seed", seed, "--schema"])
        .arg(example(schema))
        .output()
        .expect("syncgate runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn options(schema: DeclaredSchema, cases: u64, seed: &str) -> CheckOptions {
    let mut opts = hunt_options(cases, seed, 2);
    opts.gen.schema = Some(schema);
    opts.stop_at_first = false;
    opts.base_dir = default_base_dir();
    opts
}

#[test]
fn the_reference_engine_passes_cases_on_both_example_schemas() {
    for name in ["dns_manager.sql", "notes.sql"] {
        let schema = read_declared(&example(name)).expect("supported");
        let summary = check(&ReferenceEngine::new(), &options(schema, 120, "declared-pass")).expect("runs");
        assert!(
            summary.failures.is_empty(),
            "{name}: {:?}",
            summary.failures.first().map(|f| &f.detail)
        );
        assert_eq!(summary.passed, 120, "{name}");
        let cascades = summary.events.get(&Event::CascadeDelete).copied().unwrap_or(0);
        assert!(cascades > 0, "{name}: no cascade in 120 cases");
    }
}

#[test]
fn a_planted_bug_is_caught_on_a_declared_schema_and_its_replay_names_the_schema() {
    let schema = read_declared(&example("notes.sql")).expect("supported");
    let summary = check(
        &ReferenceEngine::mutant(Mutant::BypassCapture),
        &options(schema, 200, "declared-catch"),
    )
    .expect("runs");
    let failure = summary
        .failures
        .first()
        .expect("bypass-capture is caught on the notes schema");
    assert!(failure.scenario.schema.is_some(), "the shrunk case carries its tables");
    let text = syncgate::report::summary(
        &summary,
        &options(read_declared(&example("notes.sql")).unwrap(), 200, "x"),
    );
    assert!(
        text.contains("--schema "),
        "the replay command names the schema file:\n{text}"
    );
    assert!(text.contains("notes.sql"), "{text}");
}

#[test]
fn the_cli_refuses_an_unsupported_schema_with_exit_2_before_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sql");
    std::fs::write(
        &path,
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance DECIMAL(12, 2) NOT NULL DEFAULT 0)",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["check", "--cases", "5", "--schema"])
        .arg(&path)
        .args(["--work-dir".as_ref(), dir.path().as_os_str()])
        .output()
        .expect("syncgate runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("table \"accounts\""), "{stderr}");
    assert!(stderr.contains("balance DECIMAL"), "{stderr}");
    assert!(!dir.path().join("syncgate-failures").exists());
}

#[test]
fn random_schemas_are_drawn_from_the_seed_and_are_schemas_the_gate_accepts() {
    let gen = syncgate::scenario::GenConfig {
        random_schemas: true,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = std::collections::BTreeSet::new();
    let mut self_references = 0;
    for i in 0..300 {
        let seed = format!("random-schemas/{i}");
        let a = syncgate::seed::generate(&seed, &gen).expect("generates");
        let b = syncgate::seed::generate(&seed, &gen).expect("generates");
        assert_eq!(a, b, "{seed} draws one case");
        let tables = a.schema.expect("a random case carries its schema");
        sizes.insert(tables.tables.len());
        self_references += tables
            .tables
            .iter()
            .filter(|t| {
                t.columns
                    .iter()
                    .any(|c| c.references.as_deref() == Some(t.name.as_str()))
            })
            .count();
        // What a user could declare: the JSON form reads back the same.
        let json = dir.path().join("drawn.json");
        std::fs::write(&json, serde_json::to_string(&tables).unwrap()).unwrap();
        assert_eq!(read_declared(&json).expect("accepted").tables, tables, "{seed}");
    }
    assert_eq!(
        sizes,
        (1..=syncgate::scenario::TABLES_MAX).collect(),
        "1 to 6 tables are drawn"
    );
    assert!(self_references > 0, "some drawn table references itself");
}

#[test]
fn the_reference_engine_passes_random_schemas_and_a_failure_replays_with_schema_random() {
    let mut opts = hunt_options(150, "random-pass", 2);
    opts.gen.random_schemas = true;
    opts.stop_at_first = false;
    let summary = check(&ReferenceEngine::new(), &opts).expect("runs");
    assert!(
        summary.failures.is_empty(),
        "{:?}",
        summary.failures.first().map(|f| &f.detail)
    );
    let caught = check(&ReferenceEngine::mutant(Mutant::NoTombstones), &opts).expect("runs");
    let failure = caught
        .failures
        .first()
        .expect("no-tombstones is caught on random schemas");
    // The drawn schema is printed (shrunk toward fewer tables: any may remain).
    assert!(
        failure.configuration.contains("; tables t"),
        "{}",
        failure.configuration
    );
    let text = syncgate::report::summary(&caught, &opts);
    assert!(text.contains("--schema random"), "{text}");
}

/// Regression (a deep run of 300 random-schema cases on PostgreSQL failed
/// on a required event it missed, `cache-from-older-version`): an older
/// cache format cannot hold REAL or BLOB columns, so only the cases that
/// drew a schema without them could reach it. A run now counts, per
/// required event, the cases whose schema could reach it, and judges the
/// event only over `REQUIRED_EVENTS_MIN_CASES` of them.
#[test]
fn an_event_only_some_drawn_schemas_can_reach_is_judged_over_those_cases() {
    use syncgate::events::Event;
    use syncgate::gate::{missing_events, REQUIRED_EVENTS_MIN_CASES};
    let mut opts = hunt_options(60, "eligible", 2);
    opts.gen.random_schemas = true;
    opts.stop_at_first = false;
    let summary = check(&ReferenceEngine::new(), &opts).expect("runs");
    let eligible = |e| summary.eligible_cases.get(&e).copied().unwrap_or(0);
    assert_eq!(eligible(Event::Busy), 60, "every schema can meet a busy remote");
    let older = eligible(Event::CacheFromOlderVersion);
    assert!(
        older > 0 && older < 60,
        "{older} of 60 drawn schemas hold an older format"
    );
    // Judged only over enough eligible cases.
    let required = [Event::CacheFromOlderVersion];
    let none = syncgate::events::Events::new();
    let mut counts = syncgate::events::Events::new();
    counts.insert(Event::CacheFromOlderVersion, REQUIRED_EVENTS_MIN_CASES - 1);
    assert_eq!(missing_events(&required, &none, &counts, true), Vec::<Event>::new());
    counts.insert(Event::CacheFromOlderVersion, REQUIRED_EVENTS_MIN_CASES);
    assert_eq!(missing_events(&required, &none, &counts, true), required.to_vec());
    assert_eq!(missing_events(&required, &none, &counts, false), Vec::<Event>::new());
}

#[test]
fn not_null_columns_never_get_null() {
    let dir = tempfile::tempdir().unwrap();
    let declared = declare(
        dir.path(),
        "CREATE TABLE folders (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, parent_id INTEGER NOT NULL \
         REFERENCES folders(id) ON DELETE CASCADE, note TEXT);
         CREATE TABLE files (id INTEGER PRIMARY KEY, folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE \
         CASCADE, title TEXT NOT NULL DEFAULT 'untitled', size INTEGER NOT NULL, note TEXT);",
    )
    .expect("NOT NULL is supported");
    let files = &declared.tables.tables[1];
    assert!(files.columns.iter().find(|c| c.name == "title").unwrap().not_null);
    assert!(!files.columns.iter().find(|c| c.name == "note").unwrap().not_null);
    let ddl = syncgate::schema::ddl(&syncgate::schema::model_schema(&declared.tables).unwrap());
    assert!(ddl[1].contains("\"size\" INTEGER NOT NULL"), "{ddl:?}");
    let gen = syncgate::scenario::GenConfig {
        schema: Some(declared.clone()),
        ..Default::default()
    };
    let not_null = |t: usize, c: usize| declared.tables.tables[t].columns[c].not_null;
    let mut nulls_elsewhere = 0;
    for i in 0..300 {
        let case = syncgate::seed::generate(&format!("not-null/{i}"), &gen).unwrap();
        let mut steps: Vec<&syncgate::scenario::Step> = case.steps.iter().collect();
        while let Some(step) = steps.pop() {
            use syncgate::scenario::{Step, Val};
            match step {
                Step::Insert { table, values, .. } => {
                    for (c, v) in values.iter().enumerate() {
                        assert!(
                            !(not_null(*table, c) && *v == Val::Null),
                            "NULL into a NOT NULL column: {step:?}"
                        );
                        nulls_elsewhere += usize::from(*v == Val::Null);
                    }
                }
                Step::Update {
                    table, column, value, ..
                } => {
                    assert!(!(not_null(*table, *column) && *value == Val::Null), "{step:?}");
                }
                Step::Outside(inner) | Step::Abort(inner) => steps.push(inner),
                _ => {}
            }
        }
    }
    assert!(nulls_elsewhere > 0, "nullable columns still get NULL");
    let summary = check(&ReferenceEngine::new(), &options(declared, 100, "not-null")).expect("runs");
    assert!(
        summary.failures.is_empty(),
        "{:?}",
        summary.failures.first().map(|f| &f.detail)
    );
}

#[test]
fn a_random_schema_shrinks_to_the_tables_and_columns_the_failure_needs() {
    let mut compared = 0;
    for k in 0..6 {
        let mut opts = hunt_options(60, &format!("shrink-schema-{k}"), 2);
        opts.gen.random_schemas = true;
        let summary = check(&ReferenceEngine::mutant(Mutant::NoTombstones), &opts).expect("runs");
        let Some(failure) = summary.failures.first() else {
            continue;
        };
        let original = syncgate::seed::generate(&failure.seed, &opts.gen_for(failure.case)).expect("generates");
        let size =
            |s: &syncgate_protocol::Schema| (s.tables.len(), s.tables.iter().map(|t| t.columns.len()).sum::<usize>());
        let (tables, columns) = size(original.schema.as_ref().expect("a drawn schema"));
        let (shrunk_tables, shrunk_columns) = size(failure.scenario.schema.as_ref().expect("kept"));
        assert!(shrunk_tables <= tables && shrunk_columns <= columns);
        if tables >= 3 {
            assert!(
                shrunk_tables < tables && shrunk_columns < columns,
                "{}: {tables} tables / {columns} columns shrunk only to {shrunk_tables} / {shrunk_columns}",
                failure.seed
            );
            compared += 1;
        }
        // The shrunk case, its smaller schema included, fails the same way.
        let again = syncgate::run::run_case(
            &ReferenceEngine::mutant(Mutant::NoTombstones),
            &failure.scenario,
            &default_base_dir(),
        );
        assert_eq!(again.failure.map(|(_, v)| v.invariant), Some(failure.invariant));
    }
    assert!(compared > 0, "no failing case had three tables or more");
}

#[test]
fn stress_writes_a_declared_schema_and_checks_its_plain_tables() {
    let dir = tempfile::tempdir().unwrap();
    let run = |schema: &std::ffi::OsStr| {
        Command::new(env!("CARGO_BIN_EXE_syncgate"))
            .args(["stress", "--replicas", "3", "--writes", "120", "--json", "--schema"])
            .arg(schema)
            .env("TMPDIR", dir.path())
            .output()
            .expect("syncgate runs")
    };
    let out = run(example("notes.sql").as_os_str());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["merge_checked_tables"], serde_json::json!(["notebooks"]));
    assert!(report["rows_checked"].as_u64().unwrap() > 0, "{report}");
    assert!(report["writes"].as_u64().unwrap() > 200, "{report}");
    // One schema for every thread: a random one is a usage error.
    let out = run("random".as_ref());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--schema FILE, not random"));
}
