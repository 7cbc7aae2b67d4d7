//! The guards of a destination's claims and due time on PostgreSQL (see `claim.rs`):
//! transaction-scoped advisory locks keyed by the destination's id. A claim takes the
//! claim guard (claims on one destination take turns) and, while it recomputes the
//! destination's due time, the delivery guard in exclusive mode; every write that makes
//! a delivery due takes the delivery guard in shared mode first.

use sqlx::postgres::PgConnection;

use crate::store::StoreResult;

/// The advisory lock class that makes claims on one destination take turns ("ccla"):
/// its rate, its probe and its due time are read and written by one claim at a time.
pub(super) const CLAIM_GUARD: i32 = 0x63_63_6c_61;
/// The advisory lock class of the delivery guard ("cdlv"): exclusive while a claim
/// recomputes a due time, shared by every write that makes a delivery due.
pub(super) const DELIVERY_GUARD: i32 = 0x63_64_6c_76;

/// Takes the guards of class `class` of the destinations `ids` (ascending), exclusive or
/// `shared`, until the transaction ends.
pub(super) async fn guard(
    c: &mut PgConnection,
    class: i32,
    ids: &[i64],
    shared: bool,
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = match shared {
        true => {
            "SELECT pg_advisory_xact_lock_shared($1, (u.id & 2147483647)::int4)
                 FROM unnest($2::bigint[]) AS u(id)"
        }
        false => {
            "SELECT pg_advisory_xact_lock($1, (u.id & 2147483647)::int4)
                  FROM unnest($2::bigint[]) AS u(id)"
        }
    };
    sqlx::query(sql)
        .bind(class)
        .bind(ids)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Takes the delivery guard of each destination in `ids` (ascending) in shared mode,
/// until the transaction ends: a write that makes one of their deliveries due takes it
/// first, so no claim recomputes their due time meanwhile.
pub(super) async fn share_deliveries(c: &mut PgConnection, ids: &[i64]) -> StoreResult<()> {
    guard(c, DELIVERY_GUARD, ids, true).await
}
