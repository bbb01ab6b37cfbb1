//! `sbr`: create, feed, drain, pause and inspect shared block rings.
//!
//! A thin layer over the `shared_block_ring` library: each command parses
//! its arguments, calls the library, and maps the outcome to an exit status
//! (0 success, 1 fatal, 2 usage, 69 suspended, 75 try again later).

use std::process::ExitCode;

use clap::{FromArgMatches, Parser, Subcommand};

mod bench;
mod common;
mod consume;
mod contents;
mod conventions;
mod create;
mod demo;
mod diagnostics;
mod erase;
mod exec;
mod handshake;
mod lines;
mod produce;
mod sync;
mod watch;

use common::{CmdResult, EXIT_OK};

/// Counts allocations per thread, for `sbr bench`'s check that the hot
/// paths allocate nothing per item; otherwise the system allocator.
#[global_allocator]
static ALLOCATOR: bench::alloc::CountingAlloc = bench::alloc::CountingAlloc;

/// Shared block rings: durable single-producer single-consumer queues on a
/// block device, compatible with the OCaml shared-block-ring.
#[derive(Parser, Debug)]
#[command(name = "sbr", version, about, long_about = None)]
struct Cli {
    /// Log to stderr (-v info and warnings, -vv debug, -vvv trace); none by
    /// default. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Initialise a ring on a device, creating the file if needed.
    Create(create::Args),
    /// Push standard input, one item per line, and publish it.
    Produce(produce::Args),
    /// Print items, one per line, and release them.
    Consume(consume::Args),
    /// Ask the producer to pause (the consumer's half of the handshake).
    Suspend(handshake::Args),
    /// Ask a paused producer to continue.
    Resume(handshake::Args),
    /// Show the state of a ring and everything wrong with it; never writes.
    Diagnostics(diagnostics::Args),
    /// Overwrite a whole device with a repeating pattern.
    Erase(erase::Args),
    /// Move items between a producer and a consumer process through a ring
    /// in a temporary file, check them, and report the speed.
    Demo(demo::Args),
    /// A demo child process (internal).
    #[command(hide = true)]
    DemoPeer(demo::PeerArgs),
    /// Measure the device's limits and the ring's speed against them, in
    /// one run; check the performance targets.
    Bench(bench::Args),
    /// A bench child process (internal).
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(conventions::CompletionsArgs),
    /// Print the man page, or a subcommand's, or write them all to a
    /// directory.
    Man(conventions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&conventions::command::<Cli>().get_matches())
        .unwrap_or_else(|e| e.exit());
    init_logging(cli.verbose);
    let result: CmdResult = match cli.command {
        Command::Create(a) => create::run(a),
        Command::Produce(a) => produce::run(a),
        Command::Consume(a) => consume::run(a),
        Command::Suspend(a) => handshake::run(a, true),
        Command::Resume(a) => handshake::run(a, false),
        Command::Diagnostics(a) => diagnostics::run(a),
        Command::Erase(a) => erase::run(a),
        Command::Demo(a) => demo::run(a),
        Command::DemoPeer(a) => demo::run_peer(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchPeer(a) => bench::run_peer(a),
        Command::Completions(a) => conventions::completions(a, conventions::command::<Cli>()),
        Command::Man(a) => conventions::man(a, conventions::command::<Cli>()),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => f.report(),
    }
}

/// Logs go to stderr only when asked for (-v, or RUST_LOG): by default a
/// command says what it did on stdout and, on failure, one `error:` line
/// on stderr, nothing else. Colour only when stderr is a terminal.
fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
