//! The `attendsync` binary: parse arguments, call the library, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use attendsync::app::{self, Output};
use attendsync::cli::{Cli, Command};
use attendsync::pipeline::{Mode, Prune};
use clap::Parser;

// glibc's malloc spent about a third of the sync's CPU in its own bookkeeping
// (consolidation, chunk unlinking) over the many small JSON values a sync makes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` (enum `mi_option_e` in mimalloc.h, v3).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commits mimalloc's memory as it is used rather than a whole arena at once:
/// with eager commit a 20,000-employee sync peaked at 56 MiB RSS instead of
/// 35 MiB. The option is read when the first arena is reserved, at the first
/// allocation, which Rust's runtime makes before `main`; so on Linux this runs
/// from `.init_array`, as a C constructor would (elsewhere, first thing in `main`).
extern "C" fn tune_allocator() {
    // SAFETY: sets a plain integer option of mimalloc; no allocation involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// SIGHUP is ignored from the first instant, before `main` runs: its default
/// action (exit) would kill a daemon that `systemctl reload` reaches while it
/// starts. The daemon's reload and the one-shot commands' log line are tokio
/// handlers installed later, which take over from this.
#[cfg(unix)]
extern "C" fn ignore_early_hangups() {
    // SAFETY: sets SIGHUP's disposition to SIG_IGN; no handler code runs.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static IGNORE_EARLY_HANGUPS: extern "C" fn() = ignore_early_hangups;

/// Without `RUST_LOG`: attendsync's own INFO lines, other crates' warnings only
/// (dependencies' INFO start-up lines are noise to an operator).
const DEFAULT_LOG_FILTER: &str = "warn,attendsync=info";

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Bad usage: clap's text on stderr (help and version on stdout, exit 0), and
/// with `--json` also a JSON answer on stdout, as for every other error.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || !std::env::args().any(|a| a == "--json")
    {
        e.exit();
    }
    let _ = e.print();
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let text = first.strip_prefix("error: ").unwrap_or(first);
    attendsync::outln!("{}", serde_json::json!({ "error": text, "exit_code": 2 }));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    tune_allocator();
    #[cfg(all(unix, not(target_os = "linux")))]
    ignore_early_hangups();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging();
    let json = matches!(
        cli.command,
        Command::Run { json: true, .. } | Command::Rerun { json: true, .. }
    );
    // One thread does all the IO: a sync waits on quotas, not the CPU, and a
    // single-threaded scheduler spends far less CPU handing wake-ups between
    // threads. CPU-heavy work (mapping, SQLite) runs on blocking threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            if json {
                let answer = serde_json::json!({
                    "error": format!("cannot start the async runtime: {e}"),
                    "exit_code": app::EXIT_FAILED,
                });
                attendsync::outln!("{answer}");
            }
            return ExitCode::from(app::EXIT_FAILED);
        }
    };
    // SIGHUP never kills (a reload right after a restart, a closed terminal):
    // its default action is replaced before the job files or the database are
    // read. The daemon reloads on it, a one-shot command logs it.
    let _hangups = runtime.block_on(async { attendsync::shutdown::Hangups::listen() });
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
                let output = Output { json, dry_run };
                app::sync(&global, &jobs, months, Vec::new(), mode, output).await
            }
            Command::Rerun {
                job,
                month,
                employees,
                force,
                prune,
                prune_all,
                dry_run,
                json,
            } => {
                let output = Output { json, dry_run };
                let prune = match (prune, prune_all) {
                    (_, true) => Prune::All,
                    (true, false) => Prune::Guarded,
                    (false, false) => Prune::Keep,
                };
                let mode = Mode::Rerun { force, prune };
                app::sync(&global, &[job], vec![month], employees, mode, output).await
            }
            Command::Daemon => app::daemon(&global).await,
            Command::Check { remote } => app::check(&global, remote).await,
            Command::Status { job } => app::status(&global, job.as_deref()),
            Command::Demo { employees } => attendsync::app::demo::run(employees).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let text = e.to_string();
            eprint!("error: {text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            if json {
                // A caller parsing stdout gets an answer even when nothing ran.
                let answer = serde_json::json!({
                    "error": text.trim_end(),
                    "exit_code": e.exit_code(),
                });
                attendsync::outln!("{answer}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
