//! Pacing: every call takes a time slot on its endpoint's lane and on its
//! vendor's shared lane at once, and waits for it.
//!
//! Vendors that count per minute still ban bursts, so calls are spaced evenly at
//! the allowed rate (never two at once), with a margin. Three things a chain of
//! two ordinary rate limiters (governor's GCRA with burst 1, used before) gets
//! wrong, each measured by the benchmark:
//! - it spaces a call from when the previous one actually left, so every late
//!   timer wake-up is lost for good (4–15 % of the rate at 200/s);
//! - waiting for the vendor-wide limiter *after* the endpoint's moves calls of
//!   one endpoint closer together than their own pace (batch_create arrivals
//!   77 ms apart at a 103 ms pace);
//! - a call late by more than the margin still goes, next to the following one.
//!
//! Here a call reserves, in one step, the earliest time that is at least one
//! interval after the previous *slot* of its endpoint and at least one vendor
//! interval away from every other reserved call of the vendor. A wake-up late by
//! more than [`Pacer`]'s tolerance takes a new slot instead of going.
//!
//! The margin is per counting window and absolute, not a share of the rate:
//! what can push a window over its quota is only timing (a call leaving late
//! after the one before it left on time, or reaching the vendor later), and
//! that is milliseconds whatever the window's length. So the slots are spaced
//! at (window + margin) ÷ quota, and every call also checks, on the times
//! calls really left, that the call one quota before it left at least a
//! window plus the margin ago ([`Sent`]); a late wake-up then delays that call
//! a few milliseconds rather than filling a window.
//!
//! The margin starts small ([`base_margin`]); a throttling answer doubles it,
//! on the lane of the call and on the vendor's ([`Pacer::widen`]), and ten
//! windows' worth of calls without one halve it back ([`Quota::sent`]): a link
//! that proves jittery costs a few retried answers, a quiet one no speed
//! (docs/ARCHITECTURE.md, "Pacing by reserved slots").

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rate::Rate;

mod answer;
mod memory;
mod shared;

pub use memory::Departures;

/// The `[source.limits]` / `[target.limits]` key for all of a vendor's endpoints together.
pub const TOTAL: &str = "total";

/// Every span of quota + 1 calls is at least the window plus the margin, on
/// the times calls left: what a call may take longer than the one a quota
/// before it to be counted by the vendor without showing it in its answer. For
/// a one-second window it is [`MIN_MARGIN`]; a longer window gets a longer one
/// ([`base_margin`]). A call that reached the vendor late is answered late, and
/// [`Pacer::answered`] then counts it as leaving late, so the margin is what a
/// faster way back can hide, and the threshold below which an answer's delay
/// is taken as noise. It was 10 ms before that rule, measured as what kept the
/// simulators' arrival jitter (~15 ms on two shared cores) to a throttling
/// answer in one benchmark run in three; with the rule, 5 ms met none in any
/// run, 400 calls a second included, and runs bound by a one-second quota
/// finish ~0.5 % sooner (docs/benchmarks.md). [`Pacer::widen`] still doubles
/// it on a throttling answer.
const MIN_MARGIN: Duration = Duration::from_millis(5);
/// A throttling answer doubles the margin, up to this many times the base.
const MAX_MARGIN_FACTOR: u32 = 8;

/// The margin a window starts with: [`MIN_MARGIN`], or 1/200 of a longer
/// window (300 ms a minute). A per-minute quota tripped costs far more (WeCom
/// blocks the API for 60 s) than a per-second one (one retried answer), and
/// over the internet one call of a minute may reach the vendor a few hundred
/// milliseconds later than the one 60 calls after it (a lost packet resent);
/// the half per cent it costs a run at 60/min is what that is worth.
fn base_margin(window: Duration) -> Duration {
    MIN_MARGIN.max(window / 200)
}

/// A call woken at most this long after its slot still goes (the timer has
/// millisecond steps and a busy machine adds some); later, it takes a new slot,
/// so that it does not leave right next to the call of the following slot.
const LATE_TOLERANCE: Duration = Duration::from_millis(10);

/// How late a call of a lane spaced `interval` apart may still go: at least
/// [`LATE_TOLERANCE`], and a tenth of a long interval. A call 30 ms late at
/// 60/min is nowhere near the next one, a second away, and a new slot would
/// cost it a whole second (measured: 1.4 % of a 20-second run on a busy
/// machine); the quota's windows are kept by [`Pacer::depart`] either way.
fn late_tolerance(interval: Duration) -> Duration {
    LATE_TOLERANCE.max(interval / 10)
}

/// The spacing of slots at `rate` with `margin`: the window plus the margin,
/// shared out.
fn spacing(rate: Rate, margin: Duration) -> Duration {
    (rate.per + margin) / rate.count.max(1)
}

/// Windows' worth of calls sent without a throttling answer after which a
/// widened margin halves back towards its base: a stall or a jittery spell
/// passes, and a long run should not pay for it to its end.
const QUIET_WINDOWS: u32 = 10;

/// One counting window's quota and its margin, as a lane keeps them.
#[derive(Clone, Copy)]
struct Quota {
    rate: Rate,
    margin: Duration,
    /// Calls sent since the margin last changed.
    quiet: u32,
}

impl Quota {
    fn new(rate: Rate) -> Quota {
        Quota {
            rate,
            margin: base_margin(rate.per),
            quiet: 0,
        }
    }

    /// A call left: a widened margin halves after [`QUIET_WINDOWS`] windows'
    /// worth of calls without a throttling answer, down to its base.
    fn sent(&mut self) {
        let base = base_margin(self.rate.per);
        if self.margin <= base {
            return;
        }
        self.quiet += 1;
        if self.quiet >= QUIET_WINDOWS.saturating_mul(self.rate.count.max(1)) {
            self.margin = (self.margin / 2).max(base);
            self.quiet = 0;
        }
    }

    fn interval(&self) -> Duration {
        spacing(self.rate, self.margin)
    }

    /// Twice the margin, up to [`MAX_MARGIN_FACTOR`] times its base; false
    /// when it is there already.
    fn widen(&mut self) -> bool {
        let most = base_margin(self.rate.per) * MAX_MARGIN_FACTOR;
        let wider = (self.margin * 2).min(most);
        let widened = wider > self.margin;
        self.margin = wider;
        self.quiet = 0;
        widened
    }
}

/// A lane's quota and when its last `count` calls left: a call goes only
/// once the one `count` calls before it left at least the window plus the
/// margin ago, so no window holds more than the quota however late some
/// calls left.
struct Sent {
    quota: Quota,
    times: VecDeque<Instant>,
}

impl Sent {
    fn new(rate: Rate) -> Sent {
        Sent {
            quota: Quota::new(rate),
            times: VecDeque::new(),
        }
    }

    fn count(&self) -> usize {
        self.quota.rate.count.max(1) as usize
    }

    /// When a call may leave, if not now.
    fn hold(&self, now: Instant) -> Option<Instant> {
        if self.times.len() < self.count() {
            return None;
        }
        let free = *self.times.front()? + self.quota.rate.per + self.quota.margin;
        (free > now).then_some(free)
    }

    fn record(&mut self, now: Instant) {
        self.quota.sent();
        self.times.push_back(now);
        while self.times.len() > self.count() {
            self.times.pop_front();
        }
    }
}

/// One endpoint's calls, one slot after the other.
struct Lane {
    /// The slot after the last one handed out.
    next: Option<Instant>,
    sent: Sent,
}

impl Lane {
    fn interval(&self) -> Duration {
        self.sent.quota.interval()
    }
}

/// The vendor-wide pace: the slots handed out and not yet long past.
struct Shared {
    reserved: BTreeSet<Instant>,
    sent: Sent,
    /// Each endpoint's recent answers, for the fastest ([`Pacer::answered`]).
    answers: HashMap<String, answer::Answers>,
}

impl Shared {
    /// The earliest time from `from` on that is one interval away from every
    /// reserved slot.
    fn first_free(&mut self, from: Instant, now: Instant) -> Instant {
        let gap = self.sent.quota.interval();
        // Slots more than one interval past can no longer conflict with a new one.
        if let Some(horizon) = now.checked_sub(gap) {
            while self.reserved.first().is_some_and(|r| *r < horizon) {
                self.reserved.pop_first();
            }
        }
        let mut t = from;
        let start = from.checked_sub(gap).unwrap_or(from);
        for &r in self.reserved.range(start..) {
            if r >= t + gap {
                break;
            }
            if r + gap > t {
                t = r + gap;
            }
        }
        t
    }
}

/// The vendor-wide rate and each endpoint's that `defaults` with
/// `overrides` come to: an override wins, one keyed [`TOTAL`] replaces
/// `global`.
fn effective_rates(
    global: Rate,
    defaults: &[(&str, Rate)],
    overrides: &[(String, Rate)],
) -> (Rate, BTreeMap<String, Rate>) {
    let mut rates: BTreeMap<String, Rate> =
        defaults.iter().map(|(e, r)| (e.to_string(), *r)).collect();
    rates.extend(overrides.iter().cloned());
    let global = rates.remove(TOTAL).unwrap_or(global);
    (global, rates)
}

pub struct Pacer {
    global: Mutex<Shared>,
    endpoints: HashMap<String, Mutex<Lane>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pacer {
    /// `defaults` are the documented limits; `overrides` come from the job file and
    /// win over them, and an override keyed [`TOTAL`] replaces `global`. Endpoints
    /// in neither are paced by the global lane alone.
    pub fn new(global: Rate, defaults: &[(&str, Rate)], overrides: &[(String, Rate)]) -> Pacer {
        let (global, rates) = effective_rates(global, defaults, overrides);
        let lane = |rate| {
            Mutex::new(Lane {
                next: None,
                sent: Sent::new(rate),
            })
        };
        Pacer {
            global: Mutex::new(Shared {
                reserved: BTreeSet::new(),
                sent: Sent::new(global),
                answers: HashMap::new(),
            }),
            endpoints: rates.into_iter().map(|(e, r)| (e, lane(r))).collect(),
        }
    }

    /// Takes the earliest slot the endpoint's and the vendor's pace both allow.
    fn reserve(&self, endpoint: &str) -> Instant {
        let now = Instant::now();
        // Lock order: the endpoint's lane, then the shared one.
        let mut lane = self.endpoints.get(endpoint).map(lock);
        let mut shared = lock(&self.global);
        // A lane whose next slot passed long ago was idle: it starts from now,
        // without catching up in a burst.
        let from = match lane.as_ref().and_then(|l| l.next) {
            Some(next) if next + LATE_TOLERANCE >= now => next,
            _ => now,
        };
        let slot = shared.first_free(from, now);
        shared.reserved.insert(slot);
        if let Some(lane) = lane.as_mut() {
            lane.next = Some(slot + lane.interval());
        }
        slot
    }

    /// Records the call as leaving now and returns now, unless a quota's
    /// window of calls that really left would then be too short: then when it
    /// may leave.
    fn leave(&self, endpoint: &str) -> Result<Instant, Instant> {
        let mut lane = self.endpoints.get(endpoint).map(lock);
        let mut shared = lock(&self.global);
        let now = Instant::now();
        let hold = lane
            .as_ref()
            .and_then(|l| l.sent.hold(now))
            .max(shared.sent.hold(now));
        if let Some(until) = hold {
            return Err(until);
        }
        if let Some(lane) = lane.as_mut() {
            lane.sent.record(now);
        }
        shared.sent.record(now);
        Ok(now)
    }

    /// A throttling answer came for `endpoint`: its lane's margin and the
    /// vendor's are doubled (up to a bound) until quiet windows halve them back. Which
    /// window the vendor counted is not said, so both widen; the slots already
    /// handed out keep their times.
    pub fn widen(&self, endpoint: &str) {
        let mut lane = self.endpoints.get(endpoint).map(lock);
        let mut shared = lock(&self.global);
        let lane_wider = lane.as_mut().is_some_and(|l| l.sent.quota.widen());
        if shared.sent.quota.widen() || lane_wider {
            let margin = lane
                .as_ref()
                .map_or(shared.sent.quota.margin, |l| l.sent.quota.margin);
            tracing::info!(
                endpoint,
                margin_ms = margin.as_millis() as u64,
                "a throttling answer: pacing this endpoint with a wider margin from now on"
            );
        }
    }

    /// The margin `endpoint`'s calls are paced with now: its lane's, or the
    /// vendor's for an endpoint without a lane of its own.
    #[cfg(test)]
    pub fn margin(&self, endpoint: &str) -> Duration {
        match self.endpoints.get(endpoint) {
            Some(lane) => lock(lane).sent.quota.margin,
            None => lock(&self.global).sent.quota.margin,
        }
    }

    /// Waits until this call's slot comes, and until its quota's windows allow
    /// it: [`Pacer::slot`] then [`Pacer::depart`], for a call sent right after.
    pub async fn ready(&self, endpoint: &str) {
        self.slot(endpoint).await;
        self.depart(endpoint).await;
    }

    /// Waits until this call's slot comes. What runs between this and the send
    /// (a before-send hook writing to SQLite) may take a few milliseconds, so
    /// the call is counted as leaving only by [`Pacer::depart`], right before it
    /// is sent.
    pub async fn slot(&self, endpoint: &str) {
        loop {
            let slot = self.reserve(endpoint);
            if slot > Instant::now() {
                tokio::time::sleep_until(slot.into()).await;
            }
            // Woken much too late (a stalled process): going now would put this
            // call right next to the ones of the following slots, if any.
            if Instant::now() <= slot + self.tolerance(endpoint) || self.resume(endpoint, slot) {
                return;
            }
        }
    }

    /// How late `endpoint`'s calls may still go ([`late_tolerance`]).
    fn tolerance(&self, endpoint: &str) -> Duration {
        self.endpoints
            .get(endpoint)
            .map_or(LATE_TOLERANCE, |l| late_tolerance(lock(l).interval()))
    }

    /// A call woken late whose slot is still its lane's last one (a lane
    /// called one call at a time, like a month's report calls in turn) goes
    /// now and moves the lane on from now, when no other call of the vendor is
    /// reserved within the vendor interval: nobody else's slot is taken, and
    /// a new slot at the lane's end would cost a whole interval for a few
    /// milliseconds late (on a loaded machine, a few per cent of a run).
    fn resume(&self, endpoint: &str, slot: Instant) -> bool {
        let mut lane = self.endpoints.get(endpoint).map(lock);
        let mut shared = lock(&self.global);
        if lane
            .as_ref()
            .is_some_and(|l| l.next != Some(slot + l.interval()))
        {
            return false;
        }
        let now = Instant::now();
        shared.reserved.remove(&slot);
        if shared.first_free(now, now) != now {
            shared.reserved.insert(slot);
            return false;
        }
        shared.reserved.insert(now);
        if let Some(lane) = lane.as_mut() {
            lane.next = Some(now + lane.interval());
        }
        true
    }

    /// Waits until the quota's windows, on the times calls really left, allow
    /// this call, and counts it as leaving now; returns that time, for
    /// [`Pacer::answered`]. Held only when a call a quota earlier left (or
    /// was answered) late: a wait of milliseconds, after which nothing can
    /// fill the window.
    pub async fn depart(&self, endpoint: &str) -> Instant {
        loop {
            match self.leave(endpoint) {
                Ok(left) => return left,
                Err(until) => tokio::time::sleep_until(until.into()).await,
            }
        }
    }
}

#[cfg(test)]
mod tests;
