//! What a case is: its configuration and its steps, and how proptest makes them.
//!
//! Steps name rows by position ("the 2nd host replica 1 can see"), not by id,
//! so a step still means something after shrinking removed the steps before
//! it. They are resolved against the model's state when they run.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde::{Deserialize, Serialize};
use syncgate_protocol::Limits;

/// A value as a trace file stores it. `Parent(n)` is a reference to the n-th
/// parent row the writing replica can see (resolved when the step runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Val {
    Null,
    Int(i64),
    /// Text that gets its write's tag (`alpha.w12`), except in natural keys.
    Text(String),
    Parent(usize),
    /// Text written as it is: empty, shared by several writes, or equal to
    /// another replica's value.
    Raw(String),
}

/// Which id an insert asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdChoice {
    /// Let the replica mint one.
    Mint,
    /// The id of the n-th row of this table that another replica or the
    /// remote holds: a collision with a row made elsewhere.
    Foreign(usize),
    /// The id of the n-th row this replica holds.
    Taken(usize),
    /// The id of the n-th row this replica deleted (or had merged away).
    Deleted(usize),
    /// The id of the n-th row of this replica that a pull merged away by
    /// natural key (rule N4: it is gone too).
    MergedAway(usize),
    /// Outside inserts, for engines that mint their ids: the application
    /// first mints this many ids for rows it then gives up on (its
    /// transaction rolled back), then mints the one it inserts with. A
    /// minted id is reserved: it is never minted again, used or not.
    /// Elsewhere it is `Mint`.
    MintAbandoning(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncKind {
    Push,
    Pull,
    Full,
}

/// Where an injected crash stops a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrashAt {
    /// Push: after the outbox was read and applied, before the remote commit.
    BeforeRemoteCommit,
    /// Push: after the remote commit, before the local acknowledgement.
    AfterRemoteCommit,
    /// Pull: rows read and partly applied, before the local commit (so
    /// before the cursor advances).
    BeforeLocalCommit,
}

/// How the server answers a replica's new connections during the sync
/// after it closed the replica's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconnect {
    /// As always: the restart is over, or only the connection dropped.
    Accepted,
    /// SQLSTATE 57P03: the server is starting up (retry later).
    StartingUp,
    /// SQLSTATE 28000: the role no longer exists.
    RoleMissing,
    /// SQLSTATE 28P01: the password is refused.
    PasswordRefused,
    /// SQLSTATE 3D000: the database no longer exists.
    DatabaseMissing,
}

impl Reconnect {
    /// The SQLSTATE and message the server refuses a new connection with.
    pub fn refusal(self) -> Option<(&'static str, &'static str)> {
        match self {
            Reconnect::Accepted => None,
            Reconnect::StartingUp => Some(("57P03", "the database system is starting up")),
            Reconnect::RoleMissing => Some(("28000", "role \"syncgate\" does not exist")),
            Reconnect::PasswordRefused => Some(("28P01", "password authentication failed for user \"syncgate\"")),
            Reconnect::DatabaseMissing => Some(("3D000", "database \"syncgate\" does not exist")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A read transaction: writers cannot commit.
    Shared,
    /// `BEGIN IMMEDIATE`: no other writer may begin.
    Reserved,
    /// `BEGIN EXCLUSIVE`: nobody may read or write.
    Exclusive,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Insert {
        replica: usize,
        table: usize,
        id: IdChoice,
        values: Vec<Val>,
    },
    Update {
        replica: usize,
        table: usize,
        row: usize,
        column: usize,
        value: Val,
    },
    Delete {
        replica: usize,
        table: usize,
        row: usize,
    },
    /// One local transaction of several writes: a new domain (minted id)
    /// and `records` dns_records under it. Generated as a kind of insert.
    InsertFamily {
        replica: usize,
        /// The domain's columns.
        domain: Vec<Val>,
        /// Each record's columns after its reference to the new domain.
        records: Vec<Vec<Val>>,
    },
    Sync {
        replica: usize,
        kind: SyncKind,
        /// Just before the sync, the server closed the replica's sessions
        /// with a PostgreSQL remote (a server restart, an idle timeout, a
        /// dropped connection), and answers its new ones as this says; the
        /// harness does both in its wire tap. On a SQLite remote nothing
        /// happens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sessions_cut: Option<Reconnect>,
    },
    /// A sync that crashes at `at`; the replica stays down until `Restart`.
    Crash {
        replica: usize,
        kind: SyncKind,
        at: CrashAt,
    },
    Restart {
        replica: usize,
        /// The clock the process finds after the restart, relative to true
        /// time (a clock that went backwards across the restart), if it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset_ms: Option<i64>,
        /// While the replica was down, a migration rebuilt this table of its
        /// cache (by index), as schema tools do on SQLite; a rebuild drops
        /// the table's triggers with it, so an engine that captures by
        /// trigger must notice at open, or its writes go uncaptured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rebuilt: Option<usize>,
        /// The process that comes back is another version of the engine than
        /// the one that wrote the cache (reference-format caches only, see
        /// `places/legacy_cache.rs`): the cache is in this format. 0 or 1: an
        /// older version wrote it, and the engine must upgrade it at open and
        /// lose nothing. `NEWER_CACHE_FORMAT`: a newer version wrote it (the
        /// app went back a version), and the engine must refuse to open it;
        /// then the newer version comes back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_format: Option<u8>,
        /// Another part of the application holds the cache's write lock
        /// while the engine starts (reference-profile engines, and only when
        /// the cache needs no change at open: no rebuilt table, no other
        /// format): opening a cache that is up to date must write nothing,
        /// or the sync process cannot start while the application writes.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        app_holds_cache: bool,
        /// While the replica was down, a newer version of the application
        /// added a column to this table (by index) of the remote, which the
        /// case's schema does not declare (reference-profile engines): the
        /// engine must refuse to open the remote rather than sync against
        /// tables it does not know; then the column goes again and the
        /// restart goes on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote_drifted: Option<usize>,
    },
    /// Another connection locks the remote for the next `hold` steps.
    LockRemote {
        lock: LockKind,
        hold: usize,
    },
    /// Another connection takes the cache's write lock for the next `hold` steps.
    LockCache {
        replica: usize,
        hold: usize,
    },
    /// The replica's clock is set `offset_ms` away from true time.
    Clock {
        replica: usize,
        offset_ms: i64,
    },
    /// An insert, update or delete made straight into the replica's cache
    /// file over another connection, as another part of the application
    /// would (inserts always take a fresh id).
    Outside(Box<Step>),
}

impl Step {
    /// The replica a step acts on, if it acts on one.
    pub fn replica(&self) -> Option<usize> {
        match self {
            Step::Insert { replica, .. }
            | Step::Update { replica, .. }
            | Step::Delete { replica, .. }
            | Step::InsertFamily { replica, .. }
            | Step::Sync { replica, .. }
            | Step::Crash { replica, .. }
            | Step::Restart { replica, .. }
            | Step::LockCache { replica, .. }
            | Step::Clock { replica, .. } => Some(*replica),
            Step::Outside(inner) => inner.replica(),
            Step::LockRemote { .. } => None,
        }
    }
}

/// Kinds of step, for swarm weights.
pub const STEP_KINDS: [&str; 10] = [
    "insert",
    "update",
    "delete",
    "sync",
    "crash",
    "restart",
    "lock-remote",
    "lock-cache",
    "clock",
    "outside",
];

/// Per-case weights of each step kind (swarm testing): a zero leaves that
/// kind out of the case entirely, so some cases are all writes and syncs
/// while others hammer locks or crashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swarm {
    /// One weight per entry of [`STEP_KINDS`] (older trace files have fewer:
    /// the missing kinds weigh 0).
    pub weights: Vec<u32>,
}

impl std::fmt::Display for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = STEP_KINDS
            .iter()
            .zip(&self.weights)
            .map(|(name, w)| format!("{name}={w}"))
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

/// One generated case.
/// The format of a cache "a newer version of the engine wrote", in a
/// restart's `cache_format`: one above the reference engine's.
pub const NEWER_CACHE_FORMAT: u8 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub replicas: usize,
    pub swarm: Swarm,
    /// Engine limits drawn for this case ("buggify"), so boundaries such as
    /// a pull page or a push batch are crossed; the shrinker moves them back
    /// toward the engine's defaults.
    #[serde(default)]
    pub limits: Limits,
    /// How far true time moves at each step, in ms: `None` is
    /// `run::STEP_MS` (a second). `Some(0)` is a clock that stands still
    /// (a coarse or frozen clock), so replicas that write at different
    /// steps stamp from the same ms and their HLCs tie across replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<i64>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The drawn configuration, as a trace shows it: the limits that differ
    /// from the engine's defaults, and the clock's pace.
    pub fn config_line(&self) -> String {
        let l = &self.limits;
        let knobs = [
            ("pull_page_rows", l.pull_page_rows.map(|v| v.to_string())),
            ("push_batch_max", l.push_batch_max.map(|v| v.to_string())),
            ("busy_retries_max", l.busy_retries_max.map(|v| v.to_string())),
            ("backoff_base_ms", l.backoff_base_ms.map(|v| v.to_string())),
            ("backoff_max_ms", l.backoff_max_ms.map(|v| v.to_string())),
            ("max_drift_ms", l.max_drift_ms.map(|v| v.to_string())),
            ("statement_cache", l.statement_cache.map(|v| v.to_string())),
        ];
        let drawn: Vec<String> = knobs
            .iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
            .collect();
        let limits = if drawn.is_empty() {
            "engine defaults".to_string()
        } else {
            drawn.join(" ")
        };
        let clock = match self.step_ms {
            None => "1 s per step".to_string(),
            Some(0) => "stands still".to_string(),
            Some(ms) => format!("{ms} ms per step"),
        };
        format!("limits {limits}; clock {clock}")
    }
}

/// The generator's knobs (CLI flags).
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub replicas_max: usize,
    /// Fixed replica count instead of 1..=replicas_max.
    pub replicas: Option<usize>,
    pub steps: usize,
    /// Default weight of each step kind before swarm thinning.
    pub weights: [u32; 10],
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            replicas_max: 4,
            replicas: Some(3),
            steps: 40,
            // insert update delete sync crash restart lock-remote lock-cache clock outside
            weights: [30, 15, 8, 25, 4, 4, 5, 2, 8, 6],
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

fn step_strategy(replicas: usize, swarm: &Swarm) -> BoxedStrategy<Step> {
    let r = 0..replicas;
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
    // A multi-write local transaction: a domain and its records at once.
    let family = (
        r.clone(),
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
        (r.clone(), 0_usize..3, 0_usize..8).prop_map(|(replica, table, row)| Step::Delete { replica, table, row });
    let outside = prop_oneof![3 => outside_insert, 3 => outside_update, 1 => outside_delete]
        .prop_map(|write| Step::Outside(Box::new(write)));
    let kinds: Vec<BoxedStrategy<Step>> = vec![
        prop_oneof![5 => single_insert, 1 => family].boxed(),
        // Updates favour the first few rows so replicas collide on the same
        // row and column, which is where ordering bugs show.
        (r.clone(), 0_usize..3, 0_usize..3)
            .prop_flat_map(|(replica, table, row)| {
                update_value(table).prop_map(move |(column, value)| Step::Update {
                    replica,
                    table,
                    row,
                    column,
                    value,
                })
            })
            .boxed(),
        (r.clone(), 0_usize..3, 0_usize..8)
            .prop_map(|(replica, table, row)| Step::Delete { replica, table, row })
            .boxed(),
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
            .prop_map(|(replica, kind, sessions_cut)| Step::Sync {
                replica,
                kind,
                sessions_cut,
            })
            .boxed(),
        (
            r.clone(),
            sync_kind(),
            prop_oneof![
                Just(CrashAt::BeforeRemoteCommit),
                Just(CrashAt::AfterRemoteCommit),
                Just(CrashAt::BeforeLocalCommit)
            ],
        )
            .prop_map(|(replica, kind, at)| Step::Crash { replica, kind, at })
            .boxed(),
        (
            r.clone(),
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
                |(replica, offset_ms, rebuilt, cache_format, app_holds_cache, remote_drifted)| Step::Restart {
                    replica,
                    offset_ms,
                    rebuilt,
                    cache_format,
                    app_holds_cache,
                    remote_drifted,
                },
            )
            .boxed(),
        (
            prop_oneof![
                Just(LockKind::Shared),
                Just(LockKind::Reserved),
                Just(LockKind::Exclusive)
            ],
            1_usize..4,
        )
            .prop_map(|(lock, hold)| Step::LockRemote { lock, hold })
            .boxed(),
        (r.clone(), 1_usize..4)
            .prop_map(|(replica, hold)| Step::LockCache { replica, hold })
            .boxed(),
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
            .boxed(),
        outside.boxed(),
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

/// Swarm weights: each kind is left out with probability 1/4, except that
/// inserts and syncs always stay (without them nothing happens).
fn swarm_strategy(base: [u32; 10]) -> impl Strategy<Value = Swarm> {
    proptest::collection::vec(0_u32..4, base.len()).prop_map(move |rolls| {
        let mut weights = base.to_vec();
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
            |(pull_page_rows, push_batch_max, busy_retries_max, backoff_base_ms, max_drift_ms)| Limits {
                pull_page_rows,
                push_batch_max,
                busy_retries_max,
                backoff_base_ms,
                backoff_max_ms: backoff_base_ms.map(|b| b * 4),
                max_drift_ms,
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
    let base = config.weights;
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
