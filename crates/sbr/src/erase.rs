//! `sbr erase`: overwrite a whole device with a repeating pattern.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use shared_block_ring::BlockDevice;

use crate::common::{outln, CmdResult, DeviceArgs, Failure, OnDevice, EXIT_FATAL};

/// Arguments of `sbr erase`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    dev: DeviceArgs,

    /// The text to repeat over the device; default: zero bytes, so the
    /// device then reads as blank.
    #[arg(long, value_name = "TEXT")]
    pattern: Option<String>,

    /// Erase even if the device holds a ring and standard input is a
    /// terminal.
    #[arg(long)]
    yes: bool,
}

/// Runs `sbr erase`.
pub fn run(a: Args) -> CmdResult {
    let name = &a.dev.device;
    let device = a.dev.open(false)?;
    confirm_if_ring(&*device, name, a.yes)?;
    let pattern = a.pattern.as_deref().unwrap_or("").as_bytes();
    erase_with_progress(&*device, name, pattern)?;
    outln!(
        "erased {name}: {} bytes",
        device.sectors() * device.sector_size() as u64
    )?;
    Ok(())
}

/// Refuses to go on when `device` holds a ring, standard input is a
/// terminal (someone typing, who may have named the wrong device) and
/// `--yes` was not given.
pub fn confirm_if_ring(device: &dyn BlockDevice, name: &str, yes: bool) -> CmdResult {
    if !yes && std::io::stdin().is_terminal() && crate::contents::holds_ring(device) {
        return Err(Failure::new(
            EXIT_FATAL,
            format!("{name} holds a shared block ring; pass --yes to erase it"),
        ));
    }
    Ok(())
}

/// Erases with a progress bar on a terminal, none when piped.
pub fn erase_with_progress(device: &dyn BlockDevice, name: &str, pattern: &[u8]) -> CmdResult {
    let total = device.sectors() * device.sector_size() as u64;
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(total, "erasing"));
    shared_block_ring::erase::erase(device, pattern, |done, _| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    })
    .on(name)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// A byte-count progress bar on stderr.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
