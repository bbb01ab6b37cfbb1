//! What users expect of a command-line tool beyond its commands: `sbr
//! completions` and `sbr man`, generated from the clap definitions (so they
//! list exactly the commands and options `sbr` has, and never drift), and
//! the `--version` text.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use shared_block_ring::layout;

use crate::common::{outln, CmdResult, Failure, EXIT_FATAL, EXIT_USAGE};

/// Arguments of `sbr completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells `sbr completions` writes a script for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Arguments of `sbr man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Print the page of this subcommand, sbr-SUBCOMMAND(1), instead of
    /// sbr(1).
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "dir")]
    page: Option<String>,

    /// Write every page (sbr.1 and one sbr-SUBCOMMAND.1 per subcommand)
    /// into DIR, creating it if needed, instead of printing one.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The command line of `C` (sbr's), with the `--version` text.
pub fn command<C: CommandFactory>() -> Command {
    let cmd = C::command();
    let version = long_version();
    cmd.long_version(version)
}

/// `sbr --version` (`-V` prints the first line only): the version and the
/// on-disk formats `sbr create --format` makes.
fn long_version() -> String {
    format!(
        "{}\nformats: 1 (shared-block-ring 1.0, OCaml-compatible), {} (checksummed, one flush per publication, owner lease)",
        env!("CARGO_PKG_VERSION"),
        layout::v2::VERSION
    )
}

/// Runs `sbr completions`.
pub fn completions(a: CompletionsArgs, cli: Command) -> CmdResult {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = visible(&cli);
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    write_out(&script)
}

/// `cmd` without its hidden options and subcommands (clap_complete's
/// scripts would offer them; clap_mangen leaves them out by itself). Clap
/// cannot remove an argument, so this builds a new command from the
/// visible parts of an unbuilt one: `help`, `--help` and `--version` are
/// added back, and global options propagated, when it is built. Argument
/// groups are left out: derived ones name hidden arguments too.
fn visible(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    out
}

/// Runs `sbr man`.
pub fn man(a: ManArgs, cli: Command) -> CmdResult {
    let (sbr, mut subcommands) = pages(cli);
    let page = match (a.dir, a.page) {
        (Some(dir), _) => {
            let failed =
                |e: std::io::Error| Failure::new(EXIT_FATAL, format!("{}: {e}", dir.display()));
            std::fs::create_dir_all(&dir).map_err(failed)?;
            for page in std::iter::once(&sbr).chain(subcommands.iter().map(|(_, p)| p)) {
                let path = page.generate_to(&dir).map_err(failed)?;
                outln!("wrote {}", path.display())?;
            }
            return Ok(());
        }
        (None, None) => sbr,
        (None, Some(name)) => {
            let Some(i) = subcommands.iter().position(|(n, _)| *n == name) else {
                let names: Vec<&str> = subcommands.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Failure::new(
                    EXIT_USAGE,
                    format!(
                        "sbr has no subcommand {name:?}; one of: {}",
                        names.join(", ")
                    ),
                ));
            };
            subcommands.swap_remove(i).1
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff)
        .map_err(|e| Failure::new(EXIT_FATAL, format!("rendering the man page: {e}")))?;
    write_out(&roff)
}

/// sbr(1), and sbr-SUBCOMMAND(1) for each visible subcommand with its
/// name, in the order of `sbr --help`.
fn pages(cli: Command) -> (Man, Vec<(String, Man)>) {
    // As clap_mangen::generate_to does: no page (nor mention) for `help`,
    // and a built command, whose subcommands know their full names
    // ("sbr-create", "sbr create") and have the global options.
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let subcommands = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| (s.get_name().to_string(), Man::new(s.clone())))
        .collect();
    (Man::new(cli), subcommands)
}

/// Writes `bytes` to standard output (a closed pipe ends the command
/// quietly, as everywhere in `sbr`).
fn write_out(bytes: &[u8]) -> CmdResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(&e))
}
