//! Format 2 beside format 1, in the same run: push+advance one item at a
//! time and push_many(256) (T9: one flush per publication), the journal
//! with 4 pushing threads (T11), and push-to-pop latency on an idle ring
//! (T10), each on a format-2 ring, with the scenarios of format 1's
//! families (named "format 2 ...").

use shared_block_ring::RingFormat;

use super::latency::{latency, Pause};
use super::{journal::journal, publish::publish, Case, Ctx, Family};
use crate::bench::measure::BenchError;
use crate::bench::report::Findings;

/// The format-2 rows.
pub struct Format2;

impl Family for Format2 {
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        let v2 = RingFormat::V2;
        for batch in [1, 256] {
            let name = if batch == 1 {
                "format 2 push+advance"
            } else {
                "format 2 push_many"
            };
            ctx.row(out, name, case, || {
                publish(ctx, case.durability, case.payload, batch, v2)
            })?;
        }
        if case.payload == 100 {
            ctx.row(out, "format 2 journal", case, || {
                journal(ctx, case.durability, case.payload, 4, v2)
            })?;
            ctx.row(out, "format 2 latency", case, || {
                latency(ctx, case, Pause::Idle, v2)
            })?;
        }
        Ok(())
    }
}
