//! Replica ids and the row-id space each one mints in (rule I1).

use rusqlite::Connection;

use crate::aliases;
use crate::cache;
use crate::error::Result;
use crate::meta;
use crate::schema::Schema;
use crate::tombstones;

/// Bits of a row id that a replica numbers itself; the bits above are its
/// replica id, so no two replicas can mint the same id and ids still fit
/// SQLite's `INTEGER PRIMARY KEY`.
pub const ID_SPACE_BITS: u32 = 40;

/// Replica ids stay below this, so `(replica + 1) << ID_SPACE_BITS` fits an
/// `i64` with a bit to spare; the remote refuses to register more
/// (`Error::ReplicaIdsExhausted`).
pub const REPLICAS_MAX: u32 = 1 << 22;

/// The half-open range of ids only `replica` may mint.
pub fn id_space(replica: u32) -> (i64, i64) {
    assert!(
        replica < REPLICAS_MAX,
        "replica id {replica} is not below REPLICAS_MAX={REPLICAS_MAX}: the remote never hands it out"
    );
    let lo = i64::from(replica) << ID_SPACE_BITS;
    (lo, lo + (1_i64 << ID_SPACE_BITS))
}

/// The next id `replica` may mint in its cache: above every id reserved
/// (`_sg_meta.next_id`), every row of its space held here, and every id of
/// its space deleted or merged away — so an id is never minted twice, and
/// an explicit insert of `A+100` makes the next minted id `A+101` (rule I1).
/// Capture triggers keep no counter: this is read once per transaction.
pub(crate) fn next_free(conn: &Connection, schema: &Schema, replica: u32) -> Result<i64> {
    let (lo, hi) = id_space(replica);
    let mut next = meta::next_id(conn)?.max(lo);
    for t in schema.tables() {
        for used in [
            cache::max_id_in(conn, &t.name, lo, hi)?,
            tombstones::max_id_in(conn, &t.name, lo, hi)?,
            aliases::max_id_in(conn, &t.name, lo, hi)?,
        ]
        .into_iter()
        .flatten()
        {
            next = next.max(used + 1);
        }
    }
    assert!(
        (lo..=hi).contains(&next),
        "the next id {next} of replica {replica} left its space [{lo}, {hi})"
    );
    Ok(next)
}
