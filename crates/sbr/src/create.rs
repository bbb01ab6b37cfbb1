//! `sbr create`: initialise a ring, creating its file if needed.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use std::time::Duration;

use shared_block_ring::{create_with, layout, Created, Geometry, Options, RingFormat};

use crate::common::{
    outln, parse_duration, parse_size, CmdResult, DeviceArgs, Failure, OnDevice, EXIT_FATAL,
    EXIT_USAGE,
};
use crate::contents::{self, Found};

/// Arguments of `sbr create`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    /// Size of the file to create when it does not exist (10MiB, 1G, or
    /// bytes). Written in full with zeroes, never left sparse.
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,

    /// Overwrite the whole device with zeroes before initialising
    /// (implies --force).
    #[arg(long)]
    erase: bool,

    /// Initialise a ring even over data that is not zeros, an erase
    /// pattern or a ring (a filesystem, a partition table, anything):
    /// without it such a device is refused, naming what was found.
    #[arg(long)]
    force: bool,

    /// Permissions of a new file, in octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,

    /// With --erase: do not ask before erasing an existing ring.
    #[arg(long)]
    yes: bool,

    /// The ring's format: 1 (the OCaml library's, the default for a new
    /// ring) or 2 (checksummed records, one flush per publication, an owner
    /// lease per side; not readable by the OCaml library). Without it, a
    /// device that already holds a ring keeps its format.
    #[arg(long, value_name = "N")]
    format: Option<RingFormat>,

    /// Format 2: the owner lease (30s by default): how long a side's owner
    /// may go without a heartbeat before another process may take it over
    /// with --take-over. Hosts' clocks must agree within half of it.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    lease: Option<Duration>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode {s:?}: expected octal permissions such as 600"))
}

/// Runs `sbr create`.
pub fn run(a: Args) -> CmdResult {
    let name = &a.dev.device;
    let is_uri = name.contains("://");
    if !is_uri && !Path::new(name).exists() {
        let Some(size) = a.size else {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("{name}: no such file; pass --size to create it"),
            ));
        };
        make_file(name, size, a.mode)?;
        let sector_size = a
            .dev
            .how
            .sector_size
            .unwrap_or(layout::DEFAULT_FILE_SECTOR_SIZE);
        warn_partial_sector(name, size, sector_size as u64);
    } else if let Some(size) = a.size {
        if !is_uri {
            let actual = std::fs::metadata(name)
                .map_err(|e| Failure::new(EXIT_FATAL, format!("{name}: {e}")))?
                .len();
            let is_file = std::fs::metadata(name)
                .map(|m| m.is_file())
                .unwrap_or(false);
            if is_file && actual != size {
                return Err(Failure::new(
                    EXIT_FATAL,
                    format!(
                        "{name} already exists with {actual} bytes, not {size}; \
                         refusing to resize it (remove it, or omit --size)"
                    ),
                ));
            }
        }
    }
    let device = a.dev.open(false)?;
    let geometry = Geometry::new(device.sector_size(), device.sectors()).on(name)?;
    if a.erase {
        crate::erase::confirm_if_ring(&*device, name, a.yes)?;
        crate::erase::erase_with_progress(&*device, name, b"")?;
    } else if !a.force {
        refuse_data(&*device, name)?;
    }
    let format = match a.format {
        Some(f) => f,
        None if contents::holds_format_2(&*device) => RingFormat::V2,
        None => RingFormat::V1,
    };
    if a.lease.is_some() && format != RingFormat::V2 {
        return Err(Failure::new(
            EXIT_USAGE,
            format!("{name}: --lease applies to format 2 only (pass --format 2)"),
        ));
    }
    let mut options = Options::new().format(format);
    if let Some(lease) = a.lease {
        options = options.lease(lease);
    }
    let created = create_with(&*device, &options).on(name)?;
    let format_2 = if format == RingFormat::V2 {
        "format-2 "
    } else {
        ""
    };
    match created {
        Created::Created => outln!(
            "created a {format_2}ring on {name}: capacity {} bytes ({} data sector{} of {} bytes){}",
            geometry.capacity(),
            geometry.data_sectors(),
            if geometry.data_sectors() == 1 {
                ""
            } else {
                "s"
            },
            geometry.sector_size(),
            match format {
                RingFormat::V2 => format!(
                    ", owner lease {}",
                    humantime::format_duration(options.ring_lease())
                ),
                _ => String::new(),
            }
        )?,
        Created::AlreadyInitialised => {
            // A ring made with another sector size has the same signature:
            // say so rather than report a wrong capacity.
            if let Some(hint) = a.dev.sector_size_hint() {
                return Err(Failure::new(
                    EXIT_FATAL,
                    format!(
                        "{name} already holds a ring, but not with {}-byte sectors: {hint}",
                        geometry.sector_size()
                    ),
                ));
            }
            outln!(
                "{name} already holds a {format_2}ring (capacity {} bytes); nothing changed",
                geometry.capacity()
            )?
        }
    }
    Ok(())
}

/// Refuses a device holding something a ring must not overwrite unasked.
fn refuse_data(device: &dyn shared_block_ring::BlockDevice, name: &str) -> CmdResult {
    let what = match contents::look(device).on(name)? {
        Found::Zeros | Found::Pattern | Found::Ring | Found::UnfinishedRing => return Ok(()),
        Found::Known(what) => format!("it holds {what}"),
        Found::Data { sector } => format!("it holds non-zero data at sector {sector}"),
    };
    Err(Failure::new(
        EXIT_FATAL,
        format!(
            "{name}: refusing to initialise a ring: {what} (pass --force to overwrite it, \
             or --erase to zero the whole device first)"
        ),
    ))
}

/// Warns when a new file's size leaves a partial sector at its end.
fn warn_partial_sector(name: &str, size: u64, sector_size: u64) {
    let rest = size % sector_size;
    if rest != 0 {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {name}: --size {size} is not a multiple of the {sector_size}-byte sector size; \
             the last {rest} bytes are not used"
        );
    }
}

/// Creates `path` with `mode` and writes `size` zero bytes to it.
pub fn make_file(path: &str, size: u64, mode: u32) -> CmdResult {
    let fail = |e: std::io::Error| Failure::new(EXIT_FATAL, format!("{path}: {e}"));
    let min = layout::MIN_SECTORS * layout::DEFAULT_FILE_SECTOR_SIZE as u64;
    if size < min {
        return Err(Failure::new(
            EXIT_FATAL,
            format!(
                "{path}: the block device is too small for a ring: {size} bytes; \
                 the minimum size is {} sectors ({min} bytes)",
                layout::MIN_SECTORS
            ),
        ));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    // Written in full: sync writes into space that is only allocated (or a
    // hole) make the filesystem journal every extent change.
    let chunk = vec![0u8; 1 << 20];
    let progress = std::io::stderr().is_terminal() && size >= 256 << 20;
    let bar = progress.then(|| crate::erase::progress_bar(size, "zeroing"));
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).map_err(fail)?;
        left -= n as u64;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    }
    file.sync_all().map_err(fail)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}
