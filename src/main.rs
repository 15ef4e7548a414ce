//! The `attendsync` binary: parse arguments, call the library, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use attendsync::app::{self, Output};
use attendsync::cli::{Cli, Command};
use attendsync::sync::Mode;
use clap::Parser;

// glibc's malloc spent about a third of the sync's CPU in its own bookkeeping
// (consolidation, chunk unlinking) over the many small JSON values a sync makes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(app::EXIT_FAILED);
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                jobs,
                months,
                dry_run,
                json,
            } => {
                let mode = Mode::Run;
                app::sync(&global, &jobs, months, mode, Output { json, dry_run }).await
            }
            Command::Rerun {
                job,
                month,
                force,
                prune,
                json,
            } => {
                let output = Output {
                    json,
                    dry_run: false,
                };
                let mode = Mode::Rerun { force, prune };
                app::sync(&global, &[job], vec![month], mode, output).await
            }
            Command::Daemon => app::daemon(&global).await,
            Command::Check { remote } => app::check(&global, remote).await,
            Command::Status { job } => app::status(&global, job.as_deref()),
            Command::Demo { employees } => attendsync::demo::run(employees).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprint!("error: {e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(e.exit_code())
        }
    }
}
