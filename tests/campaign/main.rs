//! The randomised fault campaign (docs/reliability.md): trials of the real
//! binary against the simulators, each a random mix of kills, ambiguous
//! commits, a form that ignores `transaction_id`, throttling, expiring tokens,
//! concurrent runs, source and form edits, `rerun --force` and a deleted
//! database, then a clean run and the checks.
//!
//! `cargo test --test campaign` runs a handful of seeded trials;
//! `cargo test --release --test campaign -- --trials 1000 --jobs 4` the full
//! campaign; `-- --seed S --trials 1` replays the trial printed with seed S.

// The end-to-end harness, shared rather than copied; the campaign uses only
// part of it.
#[allow(dead_code)]
#[path = "../e2e/common/mod.rs"]
mod common;

mod check;
mod plan;
mod trial;
mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;

use plan::Plan;
use trial::{run_trial, TrialResult};

/// CI's trials: fixed seeds, so a run of `cargo test` is repeatable.
const DEFAULT_SEED: u64 = 0x00a7_7e4d_5eed;
const DEFAULT_TRIALS: usize = 5;
const DEFAULT_JOBS: usize = 3;
/// A trial that takes longer than this counts as hung (its processes are
/// bounded one by one; this catches the harness itself).
const TRIAL_DEADLINE: Duration = Duration::from_secs(20 * 60);

struct Options {
    trials: usize,
    seed: u64,
    jobs: usize,
    /// Keep every trial's config dir (a failed trial's is always kept).
    keep: bool,
    /// Print each process of each trial: arguments, end, time.
    verbose: bool,
}

enum Parsed {
    Run(Options),
    /// `--list`, or a test-name filter that does not select "campaign".
    Nothing,
}

fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a number: {e}"))
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut options = Options {
        trials: DEFAULT_TRIALS,
        seed: DEFAULT_SEED,
        jobs: DEFAULT_JOBS,
        keep: false,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--trials" => options.trials = parse_number(&value()?)? as usize,
            "--seed" => options.seed = parse_number(&value()?)?,
            "--jobs" => options.jobs = (parse_number(&value()?)? as usize).max(1),
            "--keep" => options.keep = true,
            "--verbose" => options.verbose = true,
            "--list" => {
                println!("campaign: test");
                return Ok(Parsed::Nothing);
            }
            // What `cargo test -- …` passes to every test binary's libtest.
            "--test-threads" | "--color" | "--format" | "--skip" | "-Z" if inline.is_none() => {
                it.next();
            }
            "--ignored" => return Ok(Parsed::Nothing),
            _ if name.starts_with('-') => {}
            filter if !"campaign".contains(filter) => return Ok(Parsed::Nothing),
            _ => {}
        }
    }
    Ok(Parsed::Run(options))
}

/// Trial `i`'s seed: `--seed S --trials 1` runs exactly the trial printed with seed S.
fn seed_of(base: u64, i: usize) -> u64 {
    base.wrapping_add(i as u64)
}

fn line(result: &TrialResult, plan: &Plan, verbose: bool) -> String {
    let months = plan.months.join("+");
    let verdict = if result.passed() { "ok" } else { "FAILED" };
    let mut text = format!(
        "trial {} seed {:#x} {} {} employees {} ({} runs) faults: {} … {} {:.1} s",
        result.index,
        plan.seed,
        plan.source.name(),
        plan.employees,
        months,
        plan.steps.len(),
        result.plan_labels.join(","),
        verdict,
        result.elapsed.as_secs_f64()
    );
    if verbose || !result.passed() {
        for process in &result.timeline {
            text.push_str(&format!("\n    {process}"));
        }
    }
    for failure in &result.failures {
        text.push_str(&format!("\n    {}", failure.replace('\n', "\n    ")));
    }
    let v = &result.verdict;
    if !v.clean() {
        text.push_str(&format!(
            "\n    duplicates {}, lost {}, wrong {}",
            v.duplicates, v.lost, v.wrong
        ));
        for note in &v.notes {
            text.push_str(&format!("\n    {note}"));
        }
    }
    if let Some(dir) = &result.kept {
        text.push_str(&format!("\n    config dir kept: {}", dir.display()));
    }
    text
}

#[derive(Default)]
struct Tally {
    trials: usize,
    failed: Vec<u64>,
    /// Per kind: occurrences, trials that met it.
    met: BTreeMap<&'static str, (usize, usize)>,
    duplicates: usize,
    lost: usize,
    wrong: usize,
    crashes: usize,
    hangs: usize,
}

impl Tally {
    fn add(&mut self, seed: u64, result: &TrialResult) {
        self.trials += 1;
        if !result.passed() {
            self.failed.push(seed);
        }
        for (kind, n) in &result.met {
            let entry = self.met.entry(kind).or_default();
            entry.0 += n;
            entry.1 += 1;
        }
        self.duplicates += result.verdict.duplicates;
        self.lost += result.verdict.lost;
        self.wrong += result.verdict.wrong;
        self.crashes += result.crashes;
        self.hangs += result.hangs;
    }

    fn print(&self, wall: Duration) {
        let passed = self.trials - self.failed.len();
        println!(
            "\ncampaign: {} trials, {passed} passed, {} failed, {:.0} s",
            self.trials,
            self.failed.len(),
            wall.as_secs_f64()
        );
        if !self.failed.is_empty() {
            let seeds: Vec<String> = self.failed.iter().map(|s| format!("{s:#x}")).collect();
            println!(
                "failed seeds (replay with --seed S --trials 1): {}",
                seeds.join(" ")
            );
        }
        println!("faults met (kind: occurrences in trials):");
        for (kind, (n, trials)) in &self.met {
            println!("  {kind:<13} {n:>7} in {trials:>4}");
        }
        println!(
            "duplicates {}, lost {}, wrong {}, crashes {}, hangs {}",
            self.duplicates, self.lost, self.wrong, self.crashes, self.hangs
        );
    }
}

async fn campaign(options: Options) -> bool {
    let started = Instant::now();
    if let Err(e) = trial::check_the_checks().await {
        println!("campaign: the checks' self-test failed: {e}");
        return false;
    }
    println!("campaign: the checks catch a lost, an edited, a copied and a stale record");
    println!(
        "campaign: {} trials from seed {:#x}, {} at once",
        options.trials, options.seed, options.jobs
    );
    let mut results = futures::stream::iter(0..options.trials)
        .map(|i| {
            let seed = seed_of(options.seed, i);
            let plan = Plan::draw(seed);
            let keep = options.keep;
            let task = tokio::spawn(async move {
                let outcome = tokio::time::timeout(TRIAL_DEADLINE, run_trial(i, &plan, keep)).await;
                let result = outcome.unwrap_or_else(|_| TrialResult {
                    index: i,
                    plan_labels: plan.labels(),
                    hangs: 1,
                    failures: vec![format!("the trial outlived {TRIAL_DEADLINE:?}")],
                    ..TrialResult::default()
                });
                (plan, result)
            });
            async move { (seed, task.await) }
        })
        .buffer_unordered(options.jobs);
    let mut tally = Tally::default();
    while let Some((seed, joined)) = results.next().await {
        match joined {
            Ok((plan, result)) => {
                println!("{}", line(&result, &plan, options.verbose));
                tally.add(plan.seed, &result);
            }
            Err(e) => {
                // A panic of the harness itself: a failure like any other.
                println!("trial seed {seed:#x} … FAILED: its task ended: {e}");
                tally.trials += 1;
                tally.crashes += 1;
                tally.failed.push(seed);
            }
        }
        let _ = std::io::stdout().flush();
    }
    tally.print(started.elapsed());
    tally.failed.is_empty()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Nothing) => return,
        Err(e) => {
            eprintln!("campaign: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("campaign: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    if !runtime.block_on(campaign(options)) {
        std::process::exit(1);
    }
}
