//! A case's starting files, made once per process: engines whose files
//! depend on nothing but the replica count (`Subject::files_are_copyable`)
//! start every case from a copy, which skips the schema setup that
//! otherwise dominates short cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use syncgate_protocol::{RemoteLocation, Schema};

use super::T0_MS;
use crate::check::{answers, Stop};
use crate::error::HarnessFault;
use crate::subject::{OpenSpec, Subject};

/// Fresh starting files per (engine, replica count, schema).
type Key = (String, usize, String);
/// Most templates kept (engines x replica counts x schemas).
const TEMPLATES_MAX: usize = 24;
static TEMPLATES: Mutex<BTreeMap<Key, Arc<tempfile::TempDir>>> = Mutex::new(BTreeMap::new());

/// Copies the fresh starting files of `n` replicas into `dir`, making them
/// first if needed. The lock is held only to find or make the template,
/// never while a case's files are copied.
pub(super) fn copy(subject: &dyn Subject, n: usize, schema: &Schema, dir: &Path) -> Result<bool, Stop> {
    let template = {
        let mut templates = TEMPLATES.lock().map_err(|_| {
            Stop::Fault(HarnessFault::new(
                "use the case template",
                "a template builder panicked",
            ))
        })?;
        let key = (subject.name(), n, schema.ddl.join(";"));
        match templates.get(&key) {
            Some(template) => Arc::clone(template),
            // Random schemas would keep a template per case: past a few
            // templates, a case makes its own files.
            None if templates.len() >= TEMPLATES_MAX => return Ok(false),
            None => {
                let template = Arc::new(make(subject, n, schema, dir.parent().unwrap_or(dir))?);
                templates.insert(key, Arc::clone(&template));
                template
            }
        }
    };
    let fault = |e: std::io::Error| {
        Stop::Fault(HarnessFault::new(
            format!(
                "copy the case template {} into {}",
                template.path().display(),
                dir.display()
            ),
            e,
        ))
    };
    for entry in std::fs::read_dir(template.path()).map_err(fault)? {
        let entry = entry.map_err(fault)?;
        std::fs::copy(entry.path(), dir.join(entry.file_name())).map_err(fault)?;
    }
    Ok(true)
}

/// Starts every replica of a case once in a folder of its own under `base`.
fn make(subject: &dyn Subject, n: usize, schema: &Schema, base: &Path) -> Result<tempfile::TempDir, Stop> {
    let template = tempfile::Builder::new()
        .prefix("syncgate-template-")
        .tempdir_in(base)
        .map_err(|e| {
            Stop::Fault(HarnessFault::new(
                format!("make a template folder in {}", base.display()),
                e,
            ))
        })?;
    for r in 0..n {
        let spec = OpenSpec {
            replica: r,
            replicas: n,
            cache: template.path().join(format!("replica{r}.db")),
            remote: RemoteLocation::Sqlite {
                path: template.path().join("remote.db").display().to_string(),
            },
            create_remote: r == 0,
            fresh: true,
            clock_ms: T0_MS,
            limits: Default::default(),
            schema: schema.clone(),
        };
        match subject.open_replica(&spec) {
            Ok(opened) => drop(opened),
            Err(e) if e.is_harness() => {
                return Err(Stop::Fault(HarnessFault::new(
                    format!("start r{r}'s engine for the case template"),
                    e,
                )))
            }
            Err(e) => return Err(answers::start_refused(&e.to_string()).into()),
        }
    }
    Ok(template)
}
