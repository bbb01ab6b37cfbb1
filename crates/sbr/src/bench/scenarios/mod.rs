//! The scenario families, one file each: what is measured, and against
//! which device limit. A family runs its rows for each durability mode
//! and payload size ([`Family::ring_rows`], step 2 of the table), or once
//! per run ([`Family::once`], the system measurements), through the
//! machinery of [`measure`](super::measure), and hands rows and figures
//! to the [`report`](super::report).
//!
//! Adding a family (format-2 rows, the async API):
//! a file here with a unit struct implementing [`Family`], and its line in
//! the `families!` list below, at the place its rows should take in the
//! table. A target reading the new rows goes in
//! [`report::targets`](super::report::targets).

use std::cell::RefCell;
use std::path::Path;

use shared_block_ring::{Durability, Geometry};

use super::measure::basis::{Kind, Paired};
use super::measure::clock::median;
use super::measure::device::{Access, RingDev};
use super::measure::limits::{Limits, Meter};
use super::measure::{BenchError, Config};
use super::report::row::Row;
use super::report::Findings;

/// A family of scenarios.
pub trait Family: Sync {
    /// Runs the family's rows for one durability mode and payload size,
    /// on the bench device (step 2), adding them to `out` in table order.
    fn ring_rows(&self, ctx: &Ctx, case: Case, out: &mut Findings) -> Result<(), BenchError> {
        let _ = (ctx, case, out);
        Ok(())
    }

    /// Runs what the family measures once per run, after step 2 (the
    /// system measurements).
    fn once(&self, ctx: &Ctx, out: &mut Findings) -> Result<(), BenchError> {
        let _ = (ctx, out);
        Ok(())
    }
}

/// Declares each family's module and lists the family in [`FAMILIES`].
macro_rules! families {
    ($($module:ident :: $family:ident),* $(,)?) => {
        $(mod $module;)*
        /// Every family, in the order of their rows in the table.
        pub const FAMILIES: &[&dyn Family] = &[$(&$module::$family),*];
    };
}

families![
    publish::Publish,
    stream::Stream,
    consume::Consume,
    latency::Latency,
    io_paths::IoPaths,
    journal::Journal,
    format2::Format2,
    allocations::Allocs,
    idle::Idle,
    cli::Cli,
    nbd::Nbd,
];

pub use latency::{run_peer, PeerArgs, MIN_PAYLOAD};

/// One durability mode and payload size: step 2 runs every family for
/// each.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The durability mode.
    pub durability: Durability,
    /// Bytes per item.
    pub payload: usize,
}

/// What every scenario is handed.
pub struct Ctx<'a> {
    /// How much to measure.
    pub cfg: &'a Config,
    /// Where the rings live (on the bench device).
    pub ring: RingDev,
    /// How every device is opened.
    pub access: &'a Access,
    /// Step 1's results.
    pub limits: Limits,
    /// The ring's geometry on the bench device.
    pub geometry: Geometry,
    /// Measures the device's limits again, on the scratch area, beside
    /// each row's repetitions.
    pub meter: &'a RefCell<Meter>,
    /// The durability modes to measure.
    pub modes: &'a [Durability],
    /// Where the bench's other files go.
    pub dir: &'a Path,
    /// `--only`: run only the measurements whose name contains this.
    pub only: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    /// The same context with every device opened through `access` (the
    /// other I/O path, for [`io_paths`]).
    pub fn with_access<'b>(&self, access: &'b Access) -> Ctx<'b>
    where
        'a: 'b,
    {
        Ctx {
            cfg: self.cfg,
            ring: RingDev {
                access: access.clone(),
                ..self.ring.clone()
            },
            access,
            limits: self.limits.clone(),
            geometry: self.geometry,
            meter: self.meter,
            modes: self.modes,
            dir: self.dir,
            only: self.only,
        }
    }

    /// Whether `--only` lets the measurement `name` run.
    pub fn wanted(&self, name: &str) -> bool {
        self.only.is_none_or(|o| name.contains(o))
    }

    /// The limit of a row of `kind`, to be measured alongside it.
    pub fn paired(&self, kind: Kind, durability: Durability, payload: usize) -> Paired<'_> {
        Paired::new(
            self.meter,
            &self.limits,
            self.cfg.budget,
            kind,
            durability,
            payload,
        )
    }

    /// Runs the scenario `name` when `--only` wants it, adding its row;
    /// a failure names the scenario, mode and payload.
    pub fn row(
        &self,
        out: &mut Findings,
        name: &str,
        case: Case,
        measure: impl FnOnce() -> Result<Row, BenchError>,
    ) -> Result<(), BenchError> {
        if self.wanted(name) {
            let Case {
                durability,
                payload,
            } = case;
            let row = measure()
                .map_err(|e| BenchError(format!("{name}, {durability}, {payload} B: {e}")))?;
            out.add(row);
        }
        Ok(())
    }
}

/// A row of the bench device: the median of the repetitions' `rates`
/// (items/s), against the limit `paired` measured alongside them.
pub fn bench_row(
    scenario: impl Into<String>,
    durability: Durability,
    payload: usize,
    batch: u64,
    mut rates: Vec<f64>,
    paired: Paired,
) -> Row {
    let (limit, step1) = paired.finish();
    let samples = rates.len();
    Row::new(
        scenario,
        durability,
        "bench device",
        payload,
        batch,
        median(&mut rates),
        limit,
        samples,
    )
    .step1(step1)
}
