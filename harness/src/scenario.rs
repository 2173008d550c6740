//! What a case is: its configuration and its steps, and how proptest makes them.
//!
//! Steps name rows by position ("the 2nd host replica 1 can see"), not by id,
//! so a step still means something after shrinking removed the steps before
//! it. They are resolved against the model's state when they run.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde::{Deserialize, Serialize};

/// A value as a trace file stores it. `Parent(n)` is a reference to the n-th
/// parent row the writing replica can see (resolved when the step runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Parent(usize),
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
    },
    /// A sync that crashes at `at`; the replica stays down until `Restart`.
    Crash {
        replica: usize,
        kind: SyncKind,
        at: CrashAt,
    },
    Restart {
        replica: usize,
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
            | Step::Restart { replica }
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub replicas: usize,
    pub swarm: Swarm,
    pub steps: Vec<Step>,
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

/// Largest clock offset a step may set. Kept below half the engine's
/// allowed drift so the default scenario never trips the drift refusal
/// (that refusal has its own engine test).
pub const CLOCK_OFFSET_MAX_MS: i64 = 20_000;

const NAMES: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];
const WORDS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "fox"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.1"];
const KINDS: [&str; 3] = ["A", "MX", "TXT"];

fn text(pool: &'static [&'static str]) -> impl Strategy<Value = Val> {
    (0..pool.len()).prop_map(move |i| Val::Text(pool[i].to_string()))
}

/// Values for a new row of `table` in the test schema.
fn row_values(table: usize) -> BoxedStrategy<Vec<Val>> {
    match table {
        0 => (text(&NAMES), text(&WORDS), (0_i64..100).prop_map(Val::Int))
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
        1 => (text(&WORDS), text(&IPS)).prop_map(|(a, b)| vec![a, b]).boxed(),
        _ => ((0_usize..8).prop_map(Val::Parent), text(&KINDS), text(&WORDS))
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
    }
}

/// An updatable column of `table` (never the natural key or a reference)
/// and a new value for it.
fn update_value(table: usize) -> BoxedStrategy<(usize, Val)> {
    match table {
        0 => prop_oneof![
            text(&WORDS).prop_map(|v| (1, v)),
            (0_i64..100).prop_map(|v| (2, Val::Int(v))),
        ]
        .boxed(),
        1 => prop_oneof![text(&WORDS).prop_map(|v| (0, v)), text(&IPS).prop_map(|v| (1, v))].boxed(),
        _ => prop_oneof![text(&KINDS).prop_map(|v| (1, v)), text(&WORDS).prop_map(|v| (2, v))].boxed(),
    }
}

fn sync_kind() -> impl Strategy<Value = SyncKind> {
    prop_oneof![Just(SyncKind::Push), Just(SyncKind::Pull), Just(SyncKind::Full)]
}

fn step_strategy(replicas: usize, swarm: &Swarm) -> BoxedStrategy<Step> {
    let r = 0..replicas;
    let id_choice = prop_oneof![
        6 => Just(IdChoice::Mint),
        2 => (0_usize..8).prop_map(IdChoice::Foreign),
        1 => (0_usize..8).prop_map(IdChoice::Taken),
        1 => (0_usize..8).prop_map(IdChoice::Deleted),
        2 => (0_usize..8).prop_map(IdChoice::MergedAway),
    ];
    let single_insert = (r.clone(), 0_usize..3, id_choice).prop_flat_map(|(replica, table, id)| {
        row_values(table).prop_map(move |values| Step::Insert {
            replica,
            table,
            id: id.clone(),
            values,
        })
    });
    // A multi-write local transaction: a domain and its records at once.
    let family = (
        r.clone(),
        row_values(0),
        proptest::collection::vec((text(&KINDS), text(&WORDS)).prop_map(|(k, v)| vec![k, v]), 1..=3),
    )
        .prop_map(|(replica, domain, records)| Step::InsertFamily {
            replica,
            domain,
            records,
        });
    let outside_insert = (r.clone(), 0_usize..3).prop_flat_map(|(replica, table)| {
        row_values(table).prop_map(move |values| Step::Insert {
            replica,
            table,
            id: IdChoice::Mint,
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
        (r.clone(), sync_kind())
            .prop_map(|(replica, kind)| Step::Sync { replica, kind })
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
        r.clone().prop_map(|replica| Step::Restart { replica }).boxed(),
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

/// The strategy for whole scenarios.
pub fn scenario_strategy(config: &GenConfig) -> BoxedStrategy<Scenario> {
    let replicas = match config.replicas {
        Some(n) => (n..=n).boxed(),
        None => (1..=config.replicas_max).boxed(),
    };
    let steps = config.steps;
    let base = config.weights;
    (replicas, swarm_strategy(base))
        .prop_flat_map(move |(replicas, swarm)| {
            let strategy = step_strategy(replicas, &swarm);
            proptest::collection::vec(strategy, steps.max(1)).prop_map(move |steps| Scenario {
                replicas,
                swarm: swarm.clone(),
                steps,
            })
        })
        .boxed()
}
