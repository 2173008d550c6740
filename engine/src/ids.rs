//! Replica ids and the row-id space each one mints in (rule I1).

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
