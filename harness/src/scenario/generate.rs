//! How proptest makes scenarios: each case draws its replica count, swarm
//! weights, engine limits and clock pace, then its steps.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::Union;
use syncgate_protocol::Limits;

use super::random_schema::random_schema;
use super::shape::{Shape, ROW_CHOICES};
use super::{
    CrashAt, IdChoice, Interleave, LockKind, Reconnect, Scenario, Step, Swarm, SyncKind, WhileDown, NEWER_CACHE_FORMAT,
};
use crate::schema::{DeclaredSchema, SchemaRefused};

/// The generator's knobs (CLI flags).
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub replicas_max: usize,
    /// Fixed replica count instead of 1..=replicas_max.
    pub replicas: Option<usize>,
    pub steps: usize,
    /// Default weight of each step kind before swarm thinning (the last,
    /// `abort`, only with `aborts`).
    pub weights: [u32; 11],
    /// The engine declares `aborts`: application rollbacks are drawn too.
    pub aborts: bool,
    /// The tables cases sync, when not the built-in schema (`--schema`).
    pub schema: Option<DeclaredSchema>,
    /// Each case draws a schema of its own (`--schema random`).
    pub random_schemas: bool,
    /// The integers the engine holds (`value_domain`): none beyond are drawn.
    pub integers: syncgate_protocol::IntegerDomain,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            replicas_max: 4,
            replicas: Some(3),
            steps: 40,
            // insert update delete sync crash restart lock-remote lock-cache clock outside abort
            weights: [30, 15, 8, 25, 4, 4, 5, 2, 8, 6, 6],
            aborts: false,
            schema: None,
            random_schemas: false,
            integers: syncgate_protocol::IntegerDomain::I64,
        }
    }
}

impl GenConfig {
    /// What `--schema` names for these cases: `random`, a file, or
    /// nothing (the built-in schema).
    pub fn schema_arg(&self) -> Option<String> {
        if self.random_schemas {
            Some("random".to_string())
        } else {
            self.schema.as_ref().map(|d| d.source.clone())
        }
    }
}

/// Largest ordinary clock offset a step may set (a third of the default
/// drift bound; drawn limits may make the bound tighter).
pub const CLOCK_OFFSET_MAX_MS: i64 = 20_000;
/// A clock set past the default drift bound (60 s), so pulls refuse its
/// stamps (rule O4) or it refuses everyone else's.
pub const CLOCK_OFFSET_BEYOND_DRIFT_MS: i64 = 90_000;
/// How far a clock jumps the way devices' clocks do (a dead battery, a user
/// setting the date, a restore from a backup): minutes, an hour, a day, a
/// month; forwards or back.
pub const CLOCK_JUMPS_MS: [i64; 4] = [6 * 60_000, 3_600_000, 86_400_000, 30 * 86_400_000];

/// A clock jump of one of `CLOCK_JUMPS_MS`, either way.
fn clock_jump() -> impl Strategy<Value = i64> {
    (proptest::sample::select(CLOCK_JUMPS_MS.to_vec()), any::<bool>())
        .prop_map(|(jump, back)| if back { -jump } else { jump })
}

fn sync_kind() -> impl Strategy<Value = SyncKind> {
    prop_oneof![Just(SyncKind::Push), Just(SyncKind::Pull), Just(SyncKind::Full)]
}

/// One strategy per entry of `STEP_KINDS`, weighted by the case's swarm.
fn step_strategy(shape: &Arc<Shape>, replicas: usize, swarm: &Swarm) -> BoxedStrategy<Step> {
    let r = 0..replicas;
    let kinds: Vec<BoxedStrategy<Step>> = vec![
        insert_strategy(shape, r.clone()),
        update_strategy(shape, r.clone()),
        delete_strategy(shape, r.clone()),
        sync_strategy(r.clone()),
        crash_strategy(r.clone()),
        restart_strategy(shape, r.clone()),
        lock_remote_strategy(),
        lock_cache_strategy(r.clone()),
        clock_strategy(r.clone()),
        outside_strategy(shape, r.clone()),
        abort_strategy(shape, r),
    ];
    let weighted: Vec<(u32, BoxedStrategy<Step>)> = swarm
        .weights
        .iter()
        .zip(kinds)
        .filter(|(w, _)| **w > 0)
        .map(|(w, s)| (*w, s))
        .collect();
    Union::new_weighted(weighted).boxed()
}

type Replicas = std::ops::Range<usize>;

/// The most round trips of a sync before another replica's sync runs
/// inside it (a reference sync makes 1 to 8).
const INTERLEAVE_AFTER_MAX: u8 = 6;

/// Rows of one table, or of any (by position).
fn rows() -> std::ops::Range<usize> {
    0..ROW_CHOICES
}

/// An insert of one row, or a multi-write local transaction: a parent row
/// and children under it at once.
fn insert_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    // Only a natural-key table has rows merged away: there reusing their ids
    // weighs more.
    let id_choice = |merged_away: bool| {
        prop_oneof![
            6 => Just(IdChoice::Mint),
            2 => rows().prop_map(IdChoice::Foreign),
            1 => rows().prop_map(IdChoice::Taken),
            1 => rows().prop_map(IdChoice::Deleted),
            if merged_away { 4 } else { 0 } => rows().prop_map(IdChoice::MergedAway),
        ]
    };
    let own = Arc::clone(shape);
    let single_insert = (r.clone(), shape.written_table()).prop_flat_map(move |(replica, table)| {
        (id_choice(own.has_natural_key(table)), own.row_values(table)).prop_map(move |(id, values)| Step::Insert {
            replica,
            table,
            id,
            values,
        })
    });
    let (Some((parent, _)), Some(record)) = (shape.family(), shape.family_record()) else {
        return single_insert.boxed();
    };
    let family = (r, shape.row_values(parent), proptest::collection::vec(record, 1..=3)).prop_map(
        |(replica, domain, records)| Step::InsertFamily {
            replica,
            domain,
            records,
        },
    );
    prop_oneof![5 => single_insert, 1 => family].boxed()
}

/// Updates favour the first few rows so replicas collide on the same row
/// and column, which is where ordering bugs show.
fn update_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    update_steps(shape, r)
}

/// Updates as both the application and outside writes draw them.
fn update_steps(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    let tables = shape.updatable_tables();
    if tables.is_empty() {
        // No table has a column an update may set: a delete instead.
        return delete_strategy(shape, r);
    }
    let own = Arc::clone(shape);
    (r, 0..tables.len(), 0_usize..3)
        .prop_flat_map(move |(replica, i, row)| {
            let table = tables[i];
            own.update_value(table).prop_map(move |(column, value)| Step::Update {
                replica,
                table,
                row,
                column,
                value,
            })
        })
        .boxed()
}

fn delete_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    (r, shape.written_table(), rows())
        .prop_map(|(replica, table, row)| Step::Delete { replica, table, row })
        .boxed()
}

/// A sync, sometimes just after the server closed the replica's sessions.
fn sync_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (
        r.clone(),
        sync_kind(),
        prop_oneof![
            32 => Just(None),
            4 => Just(Some(Reconnect::Accepted)),
            1 => Just(Some(Reconnect::StartingUp)),
            1 => Just(Some(Reconnect::RoleMissing)),
            1 => Just(Some(Reconnect::PasswordRefused)),
            1 => Just(Some(Reconnect::DatabaseMissing)),
        ],
    )
        .prop_flat_map(move |(replica, kind, sessions_cut)| {
            let interleave = match sessions_cut {
                Some(_) => Just(None).boxed(),
                // Early round trips most: a pull's snapshot begins at its first.
                None => prop_oneof![
                    1 => Just(None),
                    1 => (
                        prop_oneof![2 => 1..=2_u8, 1 => 3..=INTERLEAVE_AFTER_MAX],
                        r.clone(),
                        sync_kind()
                    )
                        .prop_map(|(after, replica, kind)| Some(Interleave { after, replica, kind })),
                ]
                .boxed(),
            };
            interleave.prop_map(move |interleave| Step::Sync {
                replica,
                kind,
                sessions_cut,
                interleave,
            })
        })
        .boxed()
}

fn crash_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (
        r,
        sync_kind(),
        prop_oneof![
            Just(CrashAt::BeforeRemoteCommit),
            Just(CrashAt::AfterRemoteCommit),
            Just(CrashAt::BeforeLocalCommit)
        ],
    )
        .prop_map(|(replica, kind, at)| Step::Crash { replica, kind, at })
        .boxed()
}

/// A restart after what befell the replica while down, each thing drawn
/// as a separate option (the draws stay those of the fields they once
/// were) and listed in that order.
fn restart_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    let tables = shape.tables();
    (
        r,
        prop_oneof![
            6 => Just(None),
            2 => Just(Some(-30_000_i64)),
            2 => Just(Some(-5_000_i64)),
            1 => clock_jump().prop_map(Some)
        ],
        prop_oneof![1 => Just(None), 2 => (0..tables).prop_map(Some)],
        // Older formats often: a run of 200 cases must reach an upgrade
        // (a required event) however its seed falls.
        prop_oneof![
            3 => Just(None),
            2 => Just(Some(0_u8)),
            1 => Just(Some(1_u8)),
            1 => Just(Some(2_u8)),
            1 => Just(Some(NEWER_CACHE_FORMAT))
        ],
        prop_oneof![Just(false), Just(true)],
        prop_oneof![2 => Just(None), 1 => (0..tables).prop_map(Some)],
    )
        .prop_map(
            |(replica, offset_ms, rebuilt, cache_format, app_holds_cache, remote_drifted)| {
                let mut while_down = Vec::new();
                while_down.extend(offset_ms.map(|offset_ms| WhileDown::ClockMoved { offset_ms }));
                while_down.extend(rebuilt.map(|table| WhileDown::TableRebuilt { table }));
                while_down.extend(cache_format.map(|format| match format {
                    NEWER_CACHE_FORMAT => WhileDown::CacheFromNewerVersion,
                    format => WhileDown::CacheFromOlderVersion { format },
                }));
                while_down.extend(app_holds_cache.then_some(WhileDown::AppHoldsCache));
                while_down.extend(remote_drifted.map(|table| WhileDown::RemoteDrifted { table }));
                Step::Restart { replica, while_down }
            },
        )
        .boxed()
}

fn lock_remote_strategy() -> BoxedStrategy<Step> {
    (
        prop_oneof![
            Just(LockKind::Shared),
            Just(LockKind::Reserved),
            Just(LockKind::Exclusive)
        ],
        1_usize..4,
        prop_oneof![1 => Just(false), 3 => Just(true)],
    )
        .prop_map(|(lock, hold, ends_when_busy)| Step::LockRemote {
            lock,
            hold,
            ends_when_busy,
        })
        .boxed()
}

fn lock_cache_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (r, 1_usize..4)
        .prop_map(|(replica, hold)| Step::LockCache { replica, hold })
        .boxed()
}

fn clock_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (
        r,
        prop_oneof![
            2 => Just(-CLOCK_OFFSET_MAX_MS),
            2 => Just(CLOCK_OFFSET_MAX_MS),
            1 => Just(0),
            2 => -CLOCK_OFFSET_MAX_MS..=CLOCK_OFFSET_MAX_MS,
            // Whole steps: two replicas writing a step or two apart then
            // stamp the same HLC, and the tie-break decides.
            2 => (-3_i64..=3).prop_map(|k| k * 1_000),
            // Beyond the default drift bound, both ways.
            1 => prop_oneof![Just(-CLOCK_OFFSET_BEYOND_DRIFT_MS), Just(CLOCK_OFFSET_BEYOND_DRIFT_MS)],
            // Far beyond it, as devices' clocks jump.
            1 => clock_jump(),
        ],
    )
        .prop_map(|(replica, offset_ms)| Step::Clock { replica, offset_ms })
        .boxed()
}

/// An application write the application rolls back: any write an
/// application makes, a transaction of several included.
fn abort_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    prop_oneof![
        3 => insert_strategy(shape, r.clone()),
        2 => update_strategy(shape, r.clone()),
        1 => delete_strategy(shape, r),
    ]
    .prop_map(|write| Step::Abort(Box::new(write)))
    .boxed()
}

/// A write straight into the cache file: an insert (with ids minted and
/// maybe given up first), an update or a delete.
fn outside_strategy(shape: &Arc<Shape>, r: Replicas) -> BoxedStrategy<Step> {
    let outside_id = prop_oneof![2 => Just(IdChoice::Mint), 1 => (1_u8..=2).prop_map(IdChoice::MintAbandoning)];
    let own = Arc::clone(shape);
    let outside_insert = (r.clone(), shape.written_table(), outside_id).prop_flat_map(move |(replica, table, id)| {
        own.row_values(table).prop_map(move |values| Step::Insert {
            replica,
            table,
            id: id.clone(),
            values,
        })
    });
    let outside_update = update_steps(shape, r.clone());
    let keys = shape.key_tables();
    let key_shape = Arc::clone(shape);
    let outside_key_update = (r.clone(), 0..keys.len().max(1), 0_usize..3).prop_flat_map(move |(replica, i, row)| {
        let (table, column) = keys.get(i).copied().unwrap_or((0, 0));
        key_shape
            .key_update_value(table, column)
            .prop_map(move |value| Step::Update {
                replica,
                table,
                row,
                column,
                value,
            })
    });
    let key_weight = if shape.key_tables().is_empty() { 0 } else { 1 };
    let outside_delete = delete_strategy(shape, r);
    prop_oneof![3 => outside_insert, 3 => outside_update, 1 => outside_delete, key_weight => outside_key_update]
        .prop_map(|write| Step::Outside(Box::new(write)))
        .boxed()
}

/// Swarm weights: each kind is left out with probability 1/4, except that
/// inserts and syncs always stay (without them nothing happens).
fn swarm_strategy(base: Vec<u32>) -> impl Strategy<Value = Swarm> {
    proptest::collection::vec(0_u32..4, base.len()).prop_map(move |rolls| {
        let mut weights = base.clone();
        for (i, roll) in rolls.iter().enumerate() {
            let essential = i == 0 || i == 3;
            if *roll == 0 && !essential {
                weights[i] = 0;
            }
        }
        Swarm { weights }
    })
}

/// Each limit is left at the engine's default half the time, else drawn
/// from small and edge values, so most cases cross some boundary.
fn limits_strategy() -> impl Strategy<Value = Limits> {
    fn knob<T: Clone + std::fmt::Debug + 'static>(values: &'static [T]) -> BoxedStrategy<Option<T>> {
        prop_oneof![1 => Just(None), 1 => proptest::sample::select(values).prop_map(Some)].boxed()
    }
    (
        knob(&[1_u64, 2, 3, 7]),
        knob(&[1_u64, 2, 3, 5]),
        knob(&[0_u32, 1, 3]),
        knob(&[0_u64, 1, 50]),
        knob(&[5_000_i64, 15_000, 30_000]),
    )
        .prop_map(
            |(pull_page_rows, push_batch_max, busy_retries_max, backoff_base_ms, drift_ms_max)| Limits {
                pull_page_rows,
                push_batch_max,
                busy_retries_max,
                backoff_base_ms,
                backoff_max_ms: backoff_base_ms.map(|b| b * 4),
                drift_ms_max,
                statement_cache: None,
            },
        )
}

/// The strategy for whole scenarios: on the built-in schema, the declared
/// one, or (`random_schemas`) a schema each case draws first.
pub fn scenario_strategy(config: &GenConfig) -> Result<BoxedStrategy<Scenario>, SchemaRefused> {
    if config.random_schemas {
        let config = config.clone();
        return Ok(random_schema()
            .prop_flat_map(move |tables| match crate::schema::model_schema(&tables) {
                Ok(schema) => cases_on(&config, Shape::of(&schema, config.integers), Some(tables)),
                Err(e) => unreachable!("every drawn schema is one --schema accepts: {e}"),
            })
            .boxed());
    }
    let declared = config.schema.as_ref().map(|d| d.tables.clone());
    let schema = crate::schema::of_case(declared.as_ref())?;
    Ok(cases_on(config, Shape::of(&schema, config.integers), declared))
}

/// Cases on one schema (`schema`: the case's own, `None` for the built-in).
fn cases_on(config: &GenConfig, shape: Shape, schema: Option<syncgate_protocol::Schema>) -> BoxedStrategy<Scenario> {
    let tables = shape.tables();
    // A declared schema's case writes a few related tables (`Shape::focused`);
    // the built-in schema's draws stay what they always were.
    let focus = if schema.is_some() {
        (0..tables, 0..tables).prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    let replicas = match config.replicas {
        Some(n) => (n..=n).boxed(),
        None => (1..=config.replicas_max).boxed(),
    };
    let steps = config.steps;
    // Without `aborts` the weights (and so every draw) are those of the
    // ten kinds before aborts existed.
    let kinds = if config.aborts { 11 } else { 10 };
    let base = config.weights[..kinds].to_vec();
    // One case in three on a clock that stands still: HLC ties across
    // replicas, and the tie-break, become common instead of rare.
    let step_ms = prop_oneof![2 => Just(None), 1 => Just(Some(0_i64))];
    (replicas, swarm_strategy(base), limits_strategy(), step_ms, focus)
        .prop_flat_map(move |(replicas, swarm, limits, step_ms, focus)| {
            let shape = Arc::new(match focus {
                Some((a, b)) => shape.focused(&[a, b]),
                None => shape.clone(),
            });
            let strategy = step_strategy(&shape, replicas, &swarm);
            let schema = schema.clone();
            proptest::collection::vec(strategy, steps.max(1)).prop_map(move |steps| Scenario {
                replicas,
                swarm: swarm.clone(),
                limits,
                step_ms,
                schema: schema.clone(),
                steps,
            })
        })
        .boxed()
}
