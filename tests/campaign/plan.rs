//! A trial's plan, drawn from its seed alone: the organisation, the form's
//! behaviour, and the runs with their faults. Nothing else is random, so
//! `--seed S --trials 1` replays the same plan.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The months a trial syncs: closed months, so every run sees whole months.
pub const MONTHS: [&str; 2] = ["2026-09", "2026-10"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Wecom,
    Dingtalk,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Wecom => "wecom",
            SourceKind::Dingtalk => "dingtalk",
        }
    }

    pub fn job(self) -> &'static str {
        match self {
            SourceKind::Wecom => "wecom_monthly",
            SourceKind::Dingtalk => "dingtalk_monthly",
        }
    }
}

/// What a step starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Rerun,
    RerunForce,
}

/// When a step's (first) process gets SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAt {
    /// This long after it started.
    After(Duration),
    /// While a `data/batch_create` is being answered (sent, not yet answered).
    BatchInFlight,
    /// Once the form holds at least this many more records than at the start.
    RecordsGrown(usize),
}

/// Done between two runs, before the step's processes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Between {
    /// This many employees' reports change at the source (every month).
    EditSource(usize),
    /// The SQLite file (and its `-wal`/`-shm`) removed.
    DeleteDb,
    /// This many form records edited or deleted by hand.
    EditForm(usize),
}

/// Fault ratios in force while a step's processes run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ratios {
    pub store_then_502: f64,
    pub store_then_drop: f64,
    pub throttle_source: f64,
    pub throttle_form: f64,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub month: &'static str,
    pub command: Command,
    /// Two processes started together.
    pub concurrent: bool,
    pub kill: Option<KillAt>,
    pub ratios: Ratios,
    pub before: Vec<Between>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub source: SourceKind,
    pub employees: usize,
    pub months: Vec<&'static str>,
    /// The form ignores `transaction_id` (the whole trial: it is the form's nature).
    pub tx_ignored: bool,
    /// Source tokens turn invalid after this many calls (the faulted runs).
    pub token_expiry: Option<u32>,
    /// How long a batch takes to commit while faults are on.
    pub commit_delay: Duration,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn draw(seed: u64) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let source = if rng.random_bool(0.5) {
            SourceKind::Wecom
        } else {
            SourceKind::Dingtalk
        };
        let employees = rng.random_range(30..=300);
        let months = if rng.random_bool(0.3) {
            MONTHS.to_vec()
        } else {
            vec![MONTHS[rng.random_range(0..MONTHS.len())]]
        };
        let tx_ignored = rng.random_bool(0.5);
        // Fewer calls than a DingTalk pull has under way (32) would fail every
        // call; a faulted run may fail, but should also get somewhere.
        let token_expiry = rng.random_bool(0.3).then(|| rng.random_range(10..=300));
        let commit_delay = if rng.random_bool(0.25) {
            Duration::from_millis(rng.random_range(100..=1500))
        } else {
            Duration::ZERO
        };
        let steps = (0..rng.random_range(2..=4))
            .map(|_| draw_step(&mut rng, source, employees, &months))
            .collect();
        Plan {
            seed,
            source,
            employees,
            months,
            tx_ignored,
            token_expiry,
            commit_delay,
            steps,
        }
    }

    /// The fault kinds the plan holds, in a fixed order, for the trial's line.
    pub fn labels(&self) -> Vec<&'static str> {
        let steps = &self.steps;
        let any = |f: &dyn Fn(&Step) -> bool| steps.iter().any(f);
        let before = |b: fn(&Between) -> bool| steps.iter().any(|s| s.before.iter().any(b));
        let mut out = Vec::new();
        let mut add = |on: bool, label| {
            if on {
                out.push(label);
            }
        };
        add(any(&|s| s.kill.is_some()), "kill9");
        add(any(&|s| s.ratios.store_then_502 > 0.0), "502");
        add(any(&|s| s.ratios.store_then_drop > 0.0), "drop");
        add(self.tx_ignored, "tx-ignored");
        add(!self.commit_delay.is_zero(), "slow-commit");
        add(
            any(&|s| s.ratios.throttle_source > 0.0 || s.ratios.throttle_form > 0.0),
            "throttle",
        );
        add(self.token_expiry.is_some(), "token-expiry");
        add(any(&|s| s.concurrent), "concurrent");
        add(
            before(|b| matches!(b, Between::EditSource(_))),
            "source-edit",
        );
        add(any(&|s| s.command == Command::RerunForce), "rerun-force");
        add(before(|b| *b == Between::DeleteDb), "db-deleted");
        add(before(|b| matches!(b, Between::EditForm(_))), "form-edit");
        out
    }

    /// Whether a form record was edited by hand: only `rerun` repairs that, so
    /// the clean phase adds one.
    pub fn edits_form(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.before.iter().any(|b| matches!(b, Between::EditForm(_))))
    }
}

fn draw_step(
    rng: &mut StdRng,
    source: SourceKind,
    employees: usize,
    months: &[&'static str],
) -> Step {
    let month = months[rng.random_range(0..months.len())];
    // `rerun --force` updates every record at the form's update quota (about
    // 20 a second): the rarest step, so that trials stay short.
    let command = match rng.random_range(0..10) {
        0 => Command::Rerun,
        1 => Command::RerunForce,
        _ => Command::Run,
    };
    let concurrent = rng.random_bool(0.2);
    let kill = rng.random_bool(0.5).then(|| match rng.random_range(0..10) {
        0..=3 => KillAt::After(Duration::from_millis(rng.random_range(0..=1500))),
        4..=6 => KillAt::BatchInFlight,
        _ => KillAt::RecordsGrown(rng.random_range(1..=employees)),
    });
    // A run makes only ⌈employees/100⌉ creates: ambiguous answers need high
    // ratios to be met at all.
    let mut ratio = |p: f64, low: f64, high: f64| {
        if rng.random_bool(p) {
            rng.random_range(low..high)
        } else {
            0.0
        }
    };
    let ratios = Ratios {
        store_then_502: ratio(0.35, 0.2, 0.6),
        store_then_drop: ratio(0.35, 0.2, 0.6),
        throttle_source: ratio(0.3, 0.05, 0.4),
        throttle_form: ratio(0.3, 0.05, 0.4),
    };
    let mut before = Vec::new();
    // Only WeCom's simulator can change a report after the fact (`bump_revision`).
    if source == SourceKind::Wecom && rng.random_bool(0.3) {
        before.push(Between::EditSource(rng.random_range(1..=10)));
    }
    if rng.random_bool(0.2) {
        before.push(Between::DeleteDb);
    }
    if rng.random_bool(0.12) {
        before.push(Between::EditForm(rng.random_range(1..=5)));
    }
    Step {
        month,
        command,
        concurrent,
        kill,
        ratios,
        before,
    }
}
