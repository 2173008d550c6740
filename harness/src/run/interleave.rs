//! Another replica's sync inside a sync (PROTOCOL.md and SEMANTICS.md,
//! "Interleavings inside a step").
//!
//! The outer sync runs held (`held.rs`): the replica's wire tap holds the
//! engine's first message after the drawn round trip, once the server
//! answered all the session sent; if the session then holds no lock a
//! writer could wait on (it is
//! idle, or inside a transaction that only read), the inner replica syncs
//! to the end here, is observed and checked by the contract, and the held
//! message goes on. Where the session holds such a lock, or the sync makes
//! fewer round trips, nothing runs inside it. The engine waits on its
//! socket meanwhile, so what it does depends only on the seed: same case,
//! same interleaving.
//!
//! The model cannot see where the engine was held, so under the reference
//! profile the step is accepted when one order of the two syncs explains
//! what both answered and what every place holds: the inner one before the
//! outer, after it, or between two of the outer push's batches (each a
//! remote transaction of its own). The history is told only what is
//! certain: the outer pull saw what the remote held when its sync began.

use syncgate_model as model;
use syncgate_protocol::PushPull;

use super::sync::{show_sync_answer, Synced};
use super::{Runner, StepOutcome};
use crate::check::{answers, profile, Violation};
use crate::events::{count, Event};
use crate::places::{PauseAt, Paused};
use crate::scenario::{Interleave, SyncKind};
use crate::show::kind_name;
use crate::subject::{Answer, SyncReport};

/// What happened at the held point.
enum Inside {
    /// The sync ended before the drawn point.
    NotReached,
    /// Nothing ran inside: why.
    Declined(String),
    /// The inner sync ran: its line, its verdict, and its answer.
    Ran {
        line: String,
        verdict: crate::check::Verdict,
        answer: Option<Answer<SyncReport>>,
        /// The held session was inside a transaction.
        in_transaction: bool,
        /// How many of the outer sync's remote transactions came before the
        /// inner sync (ended, or open with their snapshot taken), when the
        /// hold says so: the order the model tries first.
        position: Option<u64>,
    },
}

impl Runner<'_> {
    /// Replica `r`'s sync with replica `inner.replica`'s sync inside it.
    pub(super) fn sync_with_inner(
        &mut self,
        r: usize,
        kind: SyncKind,
        title: String,
        inner: Interleave,
    ) -> StepOutcome {
        let s = inner.replica;
        let inner_kind = match self.caps().push_pull {
            PushPull::Together => SyncKind::Full,
            PushPull::Separate => inner.kind,
        };
        let world_before = self.model.take();
        let remote_before = self.history.remote_known();
        let held = self.sync_held(
            r,
            kind,
            PauseAt::RoundTrips(u64::from(inner.after)),
            |runner, paused| runner.run_inside(r, s, inner_kind, paused),
        );
        let (answer, tries, round_trips) = (held.answer, held.tries, held.round_trips);
        let inside = held.inside.unwrap_or(Inside::NotReached);
        // Where the sync was held: on the wire, or at the seam between
        // two of its remote transactions.
        let point = if self.places.tapped(r) {
            format!("round trip {}", inner.after)
        } else {
            format!("remote transaction {}", inner.after)
        };
        let (title, inner_verdict, inner_answer, in_transaction, position) = match inside {
            Inside::NotReached => (
                format!("{title} [the sync ended before {point}: nothing ran inside]"),
                Ok(()),
                None,
                false,
                None,
            ),
            Inside::Declined(why) => (
                format!("{title} [nothing ran inside: {why}]"),
                Ok(()),
                None,
                false,
                None,
            ),
            Inside::Ran {
                line,
                verdict,
                answer,
                in_transaction,
                position,
            } => {
                count(&mut self.events, Event::StepInterleaved, 1);
                (
                    format!("{title} [after {point}, inside it: {line}]"),
                    verdict,
                    answer,
                    in_transaction,
                    position,
                )
            }
        };
        if let Err(stop) = inner_verdict {
            self.model = world_before;
            return StepOutcome::new(format!("{title} -> (stopped inside)"), Err(stop));
        }
        let pushed_inside =
            matches!(&inner_answer, Some(Answer::Ok(rep)) if rep.pushed > 0 && inner_kind != SyncKind::Pull);
        if in_transaction && pushed_inside && kind != SyncKind::Push {
            count(&mut self.events, Event::PushBetweenPullPages, 1);
        }
        let expected = match world_before {
            Some(world) => match self.linearize(
                world,
                (r, kind),
                (s, inner_kind),
                position,
                &answer,
                inner_answer.as_ref(),
            ) {
                Ok(expected) => Some(expected),
                Err(v) => {
                    let line = format!("{title} -> {}", show_sync_answer(&answer));
                    return StepOutcome::checked(line, Err(v));
                }
            },
            None => None,
        };
        let synced = Synced {
            r,
            kind,
            crash: None,
            cut: None,
            answer,
            tries,
            round_trips,
        };
        self.judge_sync(&title, synced, expected.as_ref(), Some(&remote_before))
    }

    /// At the held point: runs replica `s`'s sync, unless the held session
    /// holds a lock that sync could wait on.
    fn run_inside(&mut self, r: usize, s: usize, kind: SyncKind, paused: Paused) -> Inside {
        if !paused.quiet {
            return Inside::Declined(format!("the server had not answered all r{r}'s session sent"));
        }
        let in_transaction = paused.status != b'I';
        if in_transaction {
            let Some(pid) = paused.pid else {
                return Inside::Declined(format!("r{r}'s session is in a transaction and its pid is unknown"));
            };
            match self.places.session_write_locks(pid) {
                Ok(locks) if locks.is_empty() => {}
                Ok(locks) => {
                    return Inside::Declined(format!("r{r}'s session held {}", locks.join(", ")));
                }
                Err(e) => return Inside::Declined(format!("r{r}'s locks could not be read: {e}")),
            }
        }
        self.last_sync = None;
        // The orders are run on the model with the remote's lock as it was:
        // it cannot end inside the inner sync.
        let lock_ends = std::mem::take(&mut self.remote_lock_ends_when_busy);
        let outcome = self.sync(s, kind, None, None, None);
        self.remote_lock_ends_when_busy = lock_ends;
        let answer = self
            .last_sync
            .take()
            .filter(|(replica, _, _)| *replica == s)
            .map(|(_, _, answer)| answer);
        Inside::Ran {
            line: outcome.line,
            verdict: outcome.verdict,
            answer,
            in_transaction,
            position: paused.transactions.map(|ended| ended + u64::from(in_transaction)),
        }
    }

    /// Under the reference profile: the order of the two syncs that
    /// explains both answers and every place, and the outer sync's answer
    /// in it. The model moves to the world of that order.
    /// Orders that explain what one can see may still differ in what
    /// nobody sees (a cursor), so the order at the held `position` (the
    /// outer sync's remote transactions before the inner one) is tried
    /// first.
    fn linearize(
        &mut self,
        world: model::World,
        (r, kind): (usize, SyncKind),
        (s, inner_kind): (usize, SyncKind),
        position: Option<u64>,
        answer: &Answer<SyncReport>,
        inner_answer: Option<&Answer<SyncReport>>,
    ) -> Result<Result<model::SyncReport, model::SyncFailure>, Violation> {
        let (now_r, now_s) = (self.now(r), self.now(s));
        let Some(inner_answer) = inner_answer else {
            // Nothing ran inside (or it stopped the case): the outer sync alone.
            let mut world = world;
            let expected = world.sync(r, now_r, model_kind(kind), None);
            self.model = Some(world);
            return Ok(expected);
        };
        let observed = Observed {
            outer: self.places.read_cache(r).ok(),
            inner: self.caches[s].clone(),
            remote: if self.places.remote_readable() {
                self.places.read_remote().ok()
            } else {
                None
            },
        };
        let mut orders = orders(&world, r, kind, now_r, s, inner_kind, now_s);
        orders.sort_by_key(|order| position != Some(order.position));
        let mut first_mismatch = None;
        for order in orders {
            match order.explains(r, kind, s, inner_kind, answer, inner_answer, &observed, &self.schema) {
                Ok(()) => {
                    let Order { world, outer, .. } = order;
                    self.model = Some(world);
                    return Ok(outer);
                }
                Err(v) => {
                    first_mismatch.get_or_insert((v, order.name));
                }
            }
        }
        let (v, name) = first_mismatch.unwrap_or_else(|| unreachable!("there is always an order to try"));
        Err(profile::no_order_explains(
            (s, kind_name(inner_kind)),
            (r, kind_name(kind)),
            &name,
            v,
        ))
    }
}

/// What the places held after both syncs.
struct Observed {
    outer: Option<model::Tables>,
    inner: model::Tables,
    remote: Option<model::Tables>,
}

/// One order of the two syncs, run on the model.
struct Order {
    name: String,
    /// The outer sync's remote transactions before the inner sync.
    position: u64,
    world: model::World,
    outer: Result<model::SyncReport, model::SyncFailure>,
    inner: Result<model::SyncReport, model::SyncFailure>,
}

impl Order {
    #[allow(clippy::too_many_arguments, reason = "the two syncs, each with its answer")]
    fn explains(
        &self,
        r: usize,
        kind: SyncKind,
        s: usize,
        inner_kind: SyncKind,
        answer: &Answer<SyncReport>,
        inner_answer: &Answer<SyncReport>,
        observed: &Observed,
        schema: &model::Schema,
    ) -> Result<(), Violation> {
        answers::sync_agrees(r, kind, &self.outer, answer, &show_sync_answer(answer))?;
        answers::sync_agrees(
            s,
            inner_kind,
            &self.inner,
            inner_answer,
            &show_sync_answer(inner_answer),
        )?;
        let none = Default::default();
        if let Some(outer) = &observed.outer {
            profile::compare_tables(schema, &format!("r{r}"), self.world.visible(r), outer, &none)?;
        }
        profile::compare_tables(schema, &format!("r{s}"), self.world.visible(s), &observed.inner, &none)?;
        if let Some(remote) = &observed.remote {
            profile::compare_tables(schema, "remote", &self.world.remote_visible(), remote, &none)?;
        }
        Ok(())
    }
}

/// Every order the two syncs may take: the inner one after the outer, before
/// it, then between the outer push's batches.
fn orders(
    world: &model::World,
    r: usize,
    kind: SyncKind,
    now_r: i64,
    s: usize,
    inner_kind: SyncKind,
    now_s: i64,
) -> Vec<Order> {
    let mut out = Vec::new();
    let mut after = world.clone();
    let outer = after.sync(r, now_r, model_kind(kind), None);
    let inner = after.sync(s, now_s, model_kind(inner_kind), None);
    out.push(Order {
        name: "after".into(),
        position: push_batches(world, r, kind) + u64::from(kind != SyncKind::Push),
        world: after,
        outer,
        inner,
    });
    let mut before = world.clone();
    let inner = before.sync(s, now_s, model_kind(inner_kind), None);
    let outer = before.sync(r, now_r, model_kind(kind), None);
    out.push(Order {
        name: "before".into(),
        position: 0,
        world: before,
        outer,
        inner,
    });
    if kind == SyncKind::Pull {
        return out;
    }
    for batches in 1.. {
        let mut between = world.clone();
        let Ok(first) = between.push_batches(r, batches) else {
            break;
        };
        let done = between.pending(r) == 0;
        if done && kind == SyncKind::Push {
            break;
        }
        let inner = between.sync(s, now_s, model_kind(inner_kind), None);
        let outer = between
            .sync(r, now_r, model_kind(kind), None)
            .map(|rest| model::SyncReport {
                pushed: first.pushed + rest.pushed,
                pulled: rest.pulled,
                conflicts: first.conflicts + rest.conflicts,
            });
        out.push(Order {
            name: format!("between, after {batches} batch(es)"),
            position: batches as u64,
            world: between,
            outer,
            inner,
        });
        if done {
            break;
        }
    }
    out
}

/// How many remote transactions (batches) the outer sync's push makes.
fn push_batches(world: &model::World, r: usize, kind: SyncKind) -> u64 {
    if kind == SyncKind::Pull {
        return 0;
    }
    let mut pushed = world.clone();
    let mut batches = 0;
    while pushed.pending(r) > 0 && pushed.push_batches(r, 1).is_ok_and(|rep| rep.pushed > 0) {
        batches += 1;
    }
    batches
}

fn model_kind(kind: SyncKind) -> model::SyncKind {
    match kind {
        SyncKind::Push => model::SyncKind::Push,
        SyncKind::Pull => model::SyncKind::Pull,
        SyncKind::Full => model::SyncKind::Full,
    }
}
