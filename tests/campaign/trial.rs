//! One trial: its plan's runs with their faults, then the faults off, a clean
//! run, the checks, and a second clean run that must write nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use attendsync_sim::Outcome;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::check::{check, Verdict};
use crate::plan::{Between, Command, KillAt, Plan, Ratios, Step};
use crate::world::{Ended, Proc, Side, World};

/// The longest one process may run before it counts as a hang. A clean run
/// of 300 employees takes seconds; waiting out sends that may still commit
/// adds 6 s per wait.
const PROCESS_DEADLINE: Duration = Duration::from_secs(120);
/// How long a kill point is waited for before the step goes on without it.
const KILL_POINT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct TrialResult {
    pub index: usize,
    pub plan_labels: Vec<&'static str>,
    /// Faults that really happened, by kind: kills delivered, 502s answered, …
    pub met: BTreeMap<&'static str, usize>,
    pub failures: Vec<String>,
    pub verdict: Verdict,
    pub crashes: usize,
    pub hangs: usize,
    pub elapsed: Duration,
    pub kept: Option<PathBuf>,
    /// Each process: its arguments, how it ended, how long it took.
    pub timeline: Vec<String>,
}

impl TrialResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.verdict.clean() && self.crashes == 0 && self.hangs == 0
    }
}

struct Trial<'a> {
    plan: &'a Plan,
    world: World,
    rng: StdRng,
    revisions: HashMap<String, u32>,
    result: TrialResult,
    /// When a process was last killed.
    last_kill: Option<Instant>,
}

pub async fn run_trial(index: usize, plan: &Plan, keep: bool) -> TrialResult {
    let started = Instant::now();
    let mut result = TrialResult {
        index,
        plan_labels: plan.labels(),
        ..TrialResult::default()
    };
    let world = match World::start(plan).await {
        Ok(w) => w,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let mut trial = Trial {
        plan,
        world,
        // The faults' own choices (which users, which records) come from the
        // seed too, apart from the plan's draws.
        rng: StdRng::seed_from_u64(plan.seed ^ 0x5eed_f00d),
        revisions: HashMap::new(),
        result,
        last_kill: None,
    };
    trial.faulted_steps().await;
    trial.clean_phase().await;
    trial.count_met();
    let Trial {
        world, mut result, ..
    } = trial;
    result.elapsed = started.elapsed();
    if keep || !result.passed() {
        result.kept = Some(world.keep());
    }
    result
}

impl Trial<'_> {
    fn meet(&mut self, kind: &'static str, n: usize) {
        if n > 0 {
            *self.result.met.entry(kind).or_default() += n;
        }
    }

    fn fail(&mut self, text: String) {
        self.result.failures.push(text);
    }

    fn set_ratios(&self, r: Ratios, commit_delay: Duration) {
        let jdy = self.world.jdy();
        jdy.set_store_then_502_ratio(r.store_then_502);
        jdy.set_store_then_drop_ratio(r.store_then_drop);
        jdy.set_throttle_ratio(r.throttle_form);
        jdy.set_commit_delay(commit_delay);
        self.world.set_source_throttle(r.throttle_source);
    }

    async fn faulted_steps(&mut self) {
        for step in &self.plan.steps {
            for between in &step.before {
                if *between == Between::DeleteDb {
                    self.wait_out_the_last_kill().await;
                }
                self.between(*between);
            }
            self.set_ratios(step.ratios, self.plan.commit_delay);
            self.step(step).await;
            if self.result.hangs > 0 {
                return;
            }
        }
    }

    /// A database is deleted only once a killed run's sends can no longer
    /// commit: the record of a batch in flight lives in the database, and
    /// README "Guarantees" tells users to wait `request_timeout` + 5 s after a
    /// kill before deleting it (`campaign_regressions_e2e` shows why).
    async fn wait_out_the_last_kill(&mut self) {
        let Some(killed) = self.last_kill else { return };
        let left = crate::world::IN_FLIGHT_WINDOW.saturating_sub(killed.elapsed());
        if !left.is_zero() {
            tokio::time::sleep(left).await;
            self.meet("db-delete-waited-after-kill", 1);
        }
    }

    fn between(&mut self, between: Between) {
        match between {
            Between::EditSource(n) => {
                let Side::Wecom(env) = &self.world.side else {
                    return;
                };
                let users = &env.wecom.org().users;
                for _ in 0..n {
                    let userid = users[self.rng.random_range(0..users.len())].userid.clone();
                    env.wecom.bump_revision(&userid);
                    *self.revisions.entry(userid).or_default() += 1;
                }
                self.meet("source-edit", n);
            }
            Between::DeleteDb => match self.world.delete_db() {
                Ok(()) => self.meet("db-deleted", 1),
                Err(e) => self.fail(e),
            },
            Between::EditForm(n) => {
                let edited = self.edit_form(n);
                self.meet("form-edit", edited);
            }
        }
    }

    /// Edits or deletes up to `n` form records by hand; how many it touched.
    fn edit_form(&mut self, n: usize) -> usize {
        let jdy = self.world.jdy();
        let records = jdy.records();
        let mut touched = 0;
        for _ in 0..n.min(records.len()) {
            let record = &records[self.rng.random_range(0..records.len())];
            let Some(id) = record.get("_id").and_then(Value::as_str) else {
                continue;
            };
            let editable: Vec<(&String, &Value)> = record
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "_id" | "userid" | "month"))
                .collect();
            let done = if editable.is_empty() || self.rng.random_bool(0.3) {
                jdy.delete_record(id)
            } else {
                let (field, old) = editable[self.rng.random_range(0..editable.len())];
                let value = match old {
                    Value::Number(_) => json!(987_654),
                    _ => json!("edited by hand"),
                };
                jdy.edit_record(id, field, value)
            };
            touched += usize::from(done);
        }
        touched
    }

    fn args(&self, step: &Step) -> Vec<String> {
        let job = self.world.kind.job();
        let mut args: Vec<String> = match step.command {
            Command::Run => vec!["run".into()],
            Command::Rerun | Command::RerunForce => vec!["rerun".into(), job.into()],
        };
        args.extend(["--month".into(), step.month.into()]);
        if step.command == Command::RerunForce {
            args.push("--force".into());
        }
        args
    }

    /// Starts the step's process(es), kills as planned, and waits for them.
    async fn step(&mut self, step: &Step) {
        let args = self.args(step);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let count = if step.concurrent { 2 } else { 1 };
        let mut procs: Vec<Proc> = Vec::new();
        let records_at_start = self.world.jdy().records().len();
        for _ in 0..count {
            match self.world.spawn(&args) {
                Ok(p) => procs.push(p),
                Err(e) => return self.fail(e),
            }
        }
        if step.command == Command::RerunForce {
            self.meet("rerun-force", count);
        }
        if step.concurrent {
            self.meet("concurrent", 1);
        }
        if let (Some(kill), Some(first)) = (step.kill, procs.first_mut()) {
            if self.reach(kill, first, records_at_start).await && first.kill() {
                self.meet("kill9", 1);
                self.last_kill = Some(Instant::now());
            }
        }
        let deadline = Instant::now() + PROCESS_DEADLINE;
        for proc in procs {
            let ended = proc.wait(deadline).await;
            self.judge(&args, &ended, false);
        }
    }

    /// Waits until the kill point is reached while `proc` runs (bounded).
    async fn reach(&self, kill: KillAt, proc: &mut Proc, records_at_start: usize) -> bool {
        let started = Instant::now();
        let jdy = self.world.jdy();
        loop {
            if !proc.running() {
                return false;
            }
            let reached = match kill {
                KillAt::After(d) => started.elapsed() >= d,
                KillAt::BatchInFlight => jdy
                    .call_log()
                    .iter()
                    .any(|c| c.endpoint == "data/batch_create" && c.outcome == Outcome::Pending),
                KillAt::RecordsGrown(n) => jdy.records().len() >= records_at_start + n,
            };
            if reached {
                return true;
            }
            if started.elapsed() > KILL_POINT_WAIT {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    /// Counts a crash or a hang; a clean run must also exit 0.
    fn judge(&mut self, args: &[&str], ended: &Ended, clean: bool) {
        let what = format!("attendsync {}", args.join(" "));
        let how = match (ended.code, ended.killed) {
            (_, true) => "killed".to_string(),
            (Some(code), false) => format!("exit {code}"),
            (None, false) => format!("signal {:?}", ended.signal),
        };
        self.result.timeline.push(format!(
            "{what}: {how} after {:.1} s",
            ended.took.as_secs_f64()
        ));
        if ended.hung {
            self.result.hangs += 1;
            self.fail(format!("{what} did not end within {PROCESS_DEADLINE:?}"));
        } else if ended.crashed() {
            self.result.crashes += 1;
            let tail = tail(&ended.output);
            self.fail(format!(
                "{what} crashed (code {:?}, signal {:?}):\n{tail}",
                ended.code, ended.signal
            ));
        } else if clean && ended.code != Some(0) {
            let tail = tail(&ended.output);
            self.fail(format!("clean {what} exited {:?}:\n{tail}", ended.code));
        }
    }

    async fn clean_run(&mut self, args: &[&str]) {
        let proc = match self.world.spawn(args) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let ended = proc.wait(Instant::now() + PROCESS_DEADLINE).await;
        self.judge(args, &ended, true);
    }

    /// Faults off; a clean run of each month (and a `rerun` where the form was
    /// edited by hand: a plain `run` trusts the store); the checks; then a
    /// second clean run that must write nothing.
    async fn clean_phase(&mut self) {
        if self.result.hangs > 0 {
            return;
        }
        self.set_ratios(Ratios::default(), Duration::ZERO);
        self.world.set_token_expiry(None);
        let job = self.world.kind.job();
        for month in self.plan.months.clone() {
            self.clean_run(&["run", "--month", month]).await;
            if self.plan.edits_form() {
                self.clean_run(&["rerun", job, "--month", month]).await;
            }
        }
        self.result.verdict = check(&self.world, &self.plan.months, &self.revisions);
        let writes = self.world.jdy().write_calls();
        for month in self.plan.months.clone() {
            self.clean_run(&["run", "--month", month]).await;
        }
        let again = self.world.jdy().write_calls() - writes;
        if again > 0 {
            self.fail(format!("the second clean run made {again} write calls"));
        }
    }

    /// The faults the simulators answered, by kind.
    fn count_met(&mut self) {
        let log = self.world.jdy().call_log();
        let creates = log.iter().filter(|c| c.endpoint == "data/batch_create");
        let (mut bad_gateway, mut dropped) = (0, 0);
        for c in creates {
            match c.outcome {
                Outcome::Http(502) => bad_gateway += 1,
                Outcome::Dropped => dropped += 1,
                _ => {}
            }
        }
        self.meet("502", bad_gateway);
        self.meet("drop", dropped);
        let throttles = self.world.jdy().injected_throttles() + self.world.source_throttles();
        self.meet("throttle", throttles);
        let expired = self.world.expired_tokens();
        self.meet("token-expiry", expired);
        if self.plan.tx_ignored {
            self.meet("tx-ignored", 1);
        }
        if !self.plan.commit_delay.is_zero() {
            self.meet("slow-commit", 1);
        }
    }
}

/// The last lines of a process's output, for a failure's report.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The checks checked: a synced form passes them, and the same form with a
/// record deleted, one edited, one copied and one changed at the source does
/// not, each counted where it belongs. Run before every campaign, so a check
/// that cannot fail is found at once.
pub async fn check_the_checks() -> Result<(), String> {
    let month = crate::plan::MONTHS[1];
    let plan = Plan {
        seed: 1,
        source: crate::plan::SourceKind::Wecom,
        employees: 30,
        months: vec![month],
        tx_ignored: false,
        token_expiry: None,
        commit_delay: Duration::ZERO,
        steps: Vec::new(),
    };
    let world = World::start(&plan).await?;
    let ended = world
        .spawn(&["run", "--month", month])?
        .wait(Instant::now() + PROCESS_DEADLINE)
        .await;
    if ended.code != Some(0) {
        return Err(format!(
            "the self-test's run failed:\n{}",
            tail(&ended.output)
        ));
    }
    let synced = check(&world, &plan.months, &HashMap::new());
    if !synced.clean() {
        return Err(format!("a synced form fails the checks: {synced:?}"));
    }
    let jdy = world.jdy();
    let records = jdy.records();
    let id = |i: usize| records[i]["_id"].as_str().unwrap_or_default().to_string();
    jdy.delete_record(&id(0));
    jdy.edit_record(&id(1), "work_hours", json!(987_654));
    let mut copy = records[2].clone();
    copy.remove("_id");
    jdy.add_record(copy);
    let Side::Wecom(env) = &world.side else {
        return Err("the self-test's world is WeCom".into());
    };
    let changed = records[3]["userid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    env.wecom.bump_revision(&changed);
    let revisions = HashMap::from([(changed, 1)]);
    let broken = check(&world, &plan.months, &revisions);
    let (d, l, w) = (broken.duplicates, broken.lost, broken.wrong);
    if (d, l, w) != (1, 1, 2) {
        return Err(format!(
            "the checks miss faults: duplicates {d}, lost {l}, wrong {w} (want 1, 1, 2): {broken:?}"
        ));
    }
    Ok(())
}
