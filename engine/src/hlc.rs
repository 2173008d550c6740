//! The replica's hybrid logical clock (rules O1, O2). It is stored as
//! `(hlc, hlc_seq)` in `_sg_meta` and moves with the outbox: every captured
//! write takes the next outbox seq and the stamp `hlc + (seq - hlc_seq)`, so
//! a capture trigger reads the clock but never writes it. Its value now is
//! `hlc + (seq_max - hlc_seq)`, `seq_max` being the highest seq handed out.

use rusqlite::Connection;

use crate::error::Result;
use crate::meta;
use crate::outbox;

/// The clock's value now, in a write transaction. Outbox seqs never go
/// back; if entries were removed from the top of the outbox by hand (a
/// repair of a corrupt entry), the seqs they held are kept as a floor row
/// first, so the next write is still stamped above the clock.
pub(crate) fn now(tx: &Connection) -> Result<i64> {
    let (hlc, hlc_seq) = meta::clock(tx)?;
    if outbox::seq_max(tx)? < hlc_seq {
        outbox::keep_seqs_up_to(tx, hlc_seq)?;
    }
    let seq_max = outbox::seq_max(tx)?;
    assert!(
        seq_max >= hlc_seq,
        "outbox seqs never go back: the clock was taken at seq {hlc_seq}, the outbox is at {seq_max}"
    );
    Ok(hlc + (seq_max - hlc_seq))
}

/// Starts a local transaction (rule O1): `hlc = max(hlc, floor)`, or
/// `hlc = floor` when `wall_clock` (the wall-clock-lww mutant), and a new txn.
pub(crate) fn tick(tx: &Connection, floor: i64, wall_clock: bool) -> Result<()> {
    let hlc = if wall_clock { floor } else { now(tx)?.max(floor) };
    meta::set_clock(tx, hlc, outbox::seq_max(tx)?, true)
}

/// Raises the clock to `to` if it is behind (rule O2).
pub(crate) fn raise(tx: &Connection, to: i64) -> Result<()> {
    let hlc = now(tx)?.max(to);
    meta::set_clock(tx, hlc, outbox::seq_max(tx)?, false)
}
