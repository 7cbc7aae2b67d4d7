//! What the writer's operations share: the clock as the store keeps it (INTEGER
//! milliseconds since the Unix epoch) and a request's state before a change, to note the
//! change in the kept counts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::Batch;
use crate::store::*;

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn after(d: Duration) -> i64 {
    now_ms() + d.as_millis().min(i64::MAX as u128) as i64
}

/// A request's tenant and state before a change, to note the change in the counts.
pub(super) struct Current {
    pub tenant: String,
    pub work: Option<String>,
    pub mode: Mode,
    pub status: RequestStatus,
    pub callback: Option<CallbackStatus>,
}

impl Current {
    pub fn read(c: &Connection, id: &str) -> StoreResult<Option<Self>> {
        let row = c
            .prepare_cached(
                "SELECT tenant, mode, status, callback_status, work FROM requests WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()?;
        let Some((tenant, mode, status, callback, work)) = row else {
            return Ok(None);
        };
        Ok(Some(Self {
            tenant,
            work,
            mode: parse_enum(&mode, Mode::parse)?,
            status: parse_enum(&status, RequestStatus::parse)?,
            callback: callback
                .map(|s| parse_enum(&s, CallbackStatus::parse))
                .transpose()?,
        }))
    }

    pub fn state(&self) -> i64 {
        state_code(self.mode, self.status, self.callback)
    }

    /// Notes the move to `status` and `callback` in the batch's counts.
    pub fn moved_to(
        &self,
        b: &mut Batch<'_>,
        status: RequestStatus,
        callback: Option<CallbackStatus>,
    ) {
        let to = state_code(self.mode, status, callback);
        b.deltas
            .moved(&self.tenant, self.work.as_deref(), self.state(), to);
    }
}
