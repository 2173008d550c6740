//! How proptest makes scenarios: each case draws its replica count, swarm
//! weights, engine limits and clock pace, then its steps.

use proptest::prelude::*;
use proptest::strategy::Union;
use syncgate_protocol::Limits;

use super::{
    CrashAt, IdChoice, LockKind, Reconnect, Scenario, Step, Swarm, SyncKind, Val, WhileDown, NEWER_CACHE_FORMAT,
};

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
        }
    }
}

/// Largest ordinary clock offset a step may set (a third of the default
/// drift bound; drawn limits may make the bound tighter).
pub const CLOCK_OFFSET_MAX_MS: i64 = 20_000;
/// A clock set past the default drift bound (60 s), so pulls refuse its
/// stamps (rule O4) or it refuses everyone else's.
pub const CLOCK_OFFSET_BEYOND_DRIFT_MS: i64 = 90_000;

const NAMES: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];
/// Natural keys at the edges: non-ASCII, and empty (a key like any other).
const ODD_NAMES: [&str; 2] = ["bücher.example", ""];
const WORDS: [&str; 7] = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "ñandú-日本"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.1"];
const KINDS: [&str; 3] = ["A", "MX", "TXT"];
/// Untagged text: empty, non-ASCII, and values several replicas write alike.
const RAW: [&str; 3] = ["", "ünïcødé ✓", "shared"];
/// Integers at the edges of SQLite's and JSON's range.
const EDGE_INTS: [i64; 5] = [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX];

fn text(pool: &'static [&'static str]) -> impl Strategy<Value = Val> {
    (0..pool.len()).prop_map(move |i| Val::Text(pool[i].to_string()))
}

/// A text column's value: mostly tagged words, sometimes NULL or raw text.
fn text_value(pool: &'static [&'static str]) -> BoxedStrategy<Val> {
    prop_oneof![
        16 => text(pool),
        2 => Just(Val::Null),
        2 => proptest::sample::select(&RAW[..]).prop_map(|s| Val::Raw(s.to_string())),
    ]
    .boxed()
}

/// An integer column's value: mostly small, sometimes NULL or at the edges.
fn int_value() -> BoxedStrategy<Val> {
    prop_oneof![
        16 => (0_i64..100).prop_map(Val::Int),
        2 => Just(Val::Null),
        2 => proptest::sample::select(&EDGE_INTS[..]).prop_map(Val::Int),
    ]
    .boxed()
}

/// A natural key: mostly the shared names (so replicas collide), sometimes
/// NULL (never collides) or an odd key.
fn key_value() -> BoxedStrategy<Val> {
    prop_oneof![
        18 => text(&NAMES),
        1 => Just(Val::Null),
        1 => proptest::sample::select(&ODD_NAMES[..]).prop_map(|s| Val::Text(s.to_string())),
    ]
    .boxed()
}

/// Values for a new row of `table` in the test schema.
fn row_values(table: usize) -> BoxedStrategy<Vec<Val>> {
    match table {
        0 => (key_value(), text_value(&WORDS), int_value())
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
        1 => (text_value(&WORDS), text_value(&IPS))
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        _ => (
            (0_usize..8).prop_map(Val::Parent),
            text_value(&KINDS),
            text_value(&WORDS),
        )
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
    }
}

/// An updatable column of `table` (never the natural key or a reference)
/// and a new value for it, NULL included (transitions to and from NULL).
fn update_value(table: usize) -> BoxedStrategy<(usize, Val)> {
    match table {
        0 => prop_oneof![
            text_value(&WORDS).prop_map(|v| (1, v)),
            int_value().prop_map(|v| (2, v)),
        ]
        .boxed(),
        1 => prop_oneof![
            text_value(&WORDS).prop_map(|v| (0, v)),
            text_value(&IPS).prop_map(|v| (1, v))
        ]
        .boxed(),
        _ => prop_oneof![
            text_value(&KINDS).prop_map(|v| (1, v)),
            text_value(&WORDS).prop_map(|v| (2, v))
        ]
        .boxed(),
    }
}

fn sync_kind() -> impl Strategy<Value = SyncKind> {
    prop_oneof![Just(SyncKind::Push), Just(SyncKind::Pull), Just(SyncKind::Full)]
}

/// One strategy per entry of `STEP_KINDS`, weighted by the case's swarm.
fn step_strategy(replicas: usize, swarm: &Swarm) -> BoxedStrategy<Step> {
    let r = 0..replicas;
    let kinds: Vec<BoxedStrategy<Step>> = vec![
        insert_strategy(r.clone()),
        update_strategy(r.clone()),
        delete_strategy(r.clone()),
        sync_strategy(r.clone()),
        crash_strategy(r.clone()),
        restart_strategy(r.clone()),
        lock_remote_strategy(),
        lock_cache_strategy(r.clone()),
        clock_strategy(r.clone()),
        outside_strategy(r.clone()),
        abort_strategy(r),
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

/// An insert of one row, or a multi-write local transaction: a domain and
/// its records at once.
fn insert_strategy(r: Replicas) -> BoxedStrategy<Step> {
    // Only a natural-key table has rows merged away: there reusing their ids
    // weighs more.
    let id_choice = |table: usize| {
        let merged_away = if table == 0 { 4 } else { 0 };
        prop_oneof![
            6 => Just(IdChoice::Mint),
            2 => (0_usize..8).prop_map(IdChoice::Foreign),
            1 => (0_usize..8).prop_map(IdChoice::Taken),
            1 => (0_usize..8).prop_map(IdChoice::Deleted),
            merged_away => (0_usize..8).prop_map(IdChoice::MergedAway),
        ]
    };
    let single_insert = (r.clone(), 0_usize..3).prop_flat_map(move |(replica, table)| {
        (id_choice(table), row_values(table)).prop_map(move |(id, values)| Step::Insert {
            replica,
            table,
            id,
            values,
        })
    });
    let family = (
        r,
        row_values(0),
        proptest::collection::vec(
            (text_value(&KINDS), text_value(&WORDS)).prop_map(|(k, v)| vec![k, v]),
            1..=3,
        ),
    )
        .prop_map(|(replica, domain, records)| Step::InsertFamily {
            replica,
            domain,
            records,
        });
    prop_oneof![5 => single_insert, 1 => family].boxed()
}

/// Updates favour the first few rows so replicas collide on the same row
/// and column, which is where ordering bugs show.
fn update_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (r, 0_usize..3, 0_usize..3)
        .prop_flat_map(|(replica, table, row)| {
            update_value(table).prop_map(move |(column, value)| Step::Update {
                replica,
                table,
                row,
                column,
                value,
            })
        })
        .boxed()
}

fn delete_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (r, 0_usize..3, 0_usize..8)
        .prop_map(|(replica, table, row)| Step::Delete { replica, table, row })
        .boxed()
}

/// A sync, sometimes just after the server closed the replica's sessions.
fn sync_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (
        r,
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
        .prop_map(|(replica, kind, sessions_cut)| Step::Sync {
            replica,
            kind,
            sessions_cut,
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
fn restart_strategy(r: Replicas) -> BoxedStrategy<Step> {
    (
        r,
        prop_oneof![3 => Just(None), 1 => Just(Some(-30_000_i64)), 1 => Just(Some(-5_000_i64))],
        prop_oneof![1 => Just(None), 2 => (0_usize..3).prop_map(Some)],
        prop_oneof![
            4 => Just(None),
            1 => Just(Some(0_u8)),
            1 => Just(Some(1_u8)),
            1 => Just(Some(NEWER_CACHE_FORMAT))
        ],
        prop_oneof![Just(false), Just(true)],
        prop_oneof![2 => Just(None), 1 => (0_usize..3).prop_map(Some)],
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
    )
        .prop_map(|(lock, hold)| Step::LockRemote { lock, hold })
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
        ],
    )
        .prop_map(|(replica, offset_ms)| Step::Clock { replica, offset_ms })
        .boxed()
}

/// An application write the application rolls back: any write an
/// application makes, a transaction of several included.
fn abort_strategy(r: Replicas) -> BoxedStrategy<Step> {
    prop_oneof![
        3 => insert_strategy(r.clone()),
        2 => update_strategy(r.clone()),
        1 => delete_strategy(r),
    ]
    .prop_map(|write| Step::Abort(Box::new(write)))
    .boxed()
}

/// A write straight into the cache file: an insert (with ids minted and
/// maybe given up first), an update or a delete.
fn outside_strategy(r: Replicas) -> BoxedStrategy<Step> {
    let outside_id = prop_oneof![2 => Just(IdChoice::Mint), 1 => (1_u8..=2).prop_map(IdChoice::MintAbandoning)];
    let outside_insert = (r.clone(), 0_usize..3, outside_id).prop_flat_map(|(replica, table, id)| {
        row_values(table).prop_map(move |values| Step::Insert {
            replica,
            table,
            id: id.clone(),
            values,
        })
    });
    let outside_update = (r.clone(), 0_usize..3, 0_usize..3).prop_flat_map(|(replica, table, row)| {
        update_value(table).prop_map(move |(column, value)| Step::Update {
            replica,
            table,
            row,
            column,
            value,
        })
    });
    let outside_delete =
        (r, 0_usize..3, 0_usize..8).prop_map(|(replica, table, row)| Step::Delete { replica, table, row });
    prop_oneof![3 => outside_insert, 3 => outside_update, 1 => outside_delete]
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

/// The strategy for whole scenarios.
pub fn scenario_strategy(config: &GenConfig) -> BoxedStrategy<Scenario> {
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
    (replicas, swarm_strategy(base), limits_strategy(), step_ms)
        .prop_flat_map(move |(replicas, swarm, limits, step_ms)| {
            let strategy = step_strategy(replicas, &swarm);
            proptest::collection::vec(strategy, steps.max(1)).prop_map(move |steps| Scenario {
                replicas,
                swarm: swarm.clone(),
                limits,
                step_ms,
                steps,
            })
        })
        .boxed()
}
