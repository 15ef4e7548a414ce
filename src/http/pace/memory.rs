//! What a pace remembers from one run to the next: when its recent calls left.
//!
//! A vendor counts its quota per corp or app, not per run: a run that starts
//! right after another one ended shares the vendor's sliding window with that
//! run's last calls. WeCom's `getcheckin_monthdata` is 60 a minute, so a run
//! that starts within a minute of another one ending could trip the quota
//! (blocked for 60 s) if its pace started from nothing. The calls of the last
//! counting window of every lane are kept as wall-clock times (the store keeps
//! them between processes, `store/pace.rs`) and the next run's pace takes them
//! in before its first call (docs/ARCHITECTURE.md, "Pacing by reserved slots").

use std::time::{Duration, Instant, SystemTime};

use super::{lock, Lane, Pacer, Sent, Shared, TOTAL};

/// How far apart a departure kept on the wall clock and one on the monotonic
/// clock may be and still be the same call: the two clocks drift apart by
/// microseconds between a run's end and the next one's start.
const SAME_CALL: Duration = Duration::from_millis(1);

/// Each lane's recent departures, the vendor-wide one under [`TOTAL`].
pub type Departures = Vec<(String, Vec<SystemTime>)>;

/// The two clocks read at once: departures are counted on the monotonic one
/// and kept on the wall clock.
struct Clocks {
    mono: Instant,
    wall: SystemTime,
}

impl Clocks {
    fn now() -> Clocks {
        Clocks {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn to_wall(&self, t: Instant) -> SystemTime {
        self.wall - self.mono.saturating_duration_since(t)
    }

    /// How far the latest of a lane's kept `times` is ahead of the wall clock
    /// (set back since they were kept): all of them are moved back by as
    /// much. They were kept at once on one clock, so their spacing is real and
    /// only where they lie is not known; with the latest taken as now each is
    /// still no earlier than it really was. Counting each one as now instead
    /// held a run a whole window (a minute for WeCom's report quota). Per
    /// lane, so that one lane's bad time moves no other lane's.
    fn ahead(&self, times: &[SystemTime]) -> Duration {
        times
            .iter()
            .filter_map(|t| t.duration_since(self.wall).ok())
            .max()
            .unwrap_or_default()
    }

    /// A kept time on this process's clock. One still in the future counts as
    /// now: later is the safe side.
    fn to_mono(&self, t: SystemTime) -> Instant {
        match self.wall.duration_since(t) {
            Ok(age) => self.mono.checked_sub(age).unwrap_or(self.mono),
            Err(_) => self.mono,
        }
    }
}

impl Sent {
    /// Departures still inside their counting window (plus the margin): the
    /// only ones that can hold a later call.
    fn recent(&self, now: Instant) -> impl Iterator<Item = Instant> + '_ {
        let span = self.quota.rate.per + self.quota.margin;
        self.times.iter().copied().filter(move |t| *t + span > now)
    }

    /// Takes in departures of other runs: with this lane's own, the latest
    /// quota's worth is kept. A kept time within [`SAME_CALL`] of one this
    /// lane knows is that call, kept by this process's own earlier run.
    fn merge(&mut self, earlier: impl Iterator<Item = Instant>, now: Instant) {
        let span = self.quota.rate.per + self.quota.margin;
        let mut all: Vec<Instant> = self.recent(now).collect();
        let known = all.clone();
        let is_known = |t: &Instant| {
            let i = known.partition_point(|k| *k + SAME_CALL < *t);
            known.get(i).is_some_and(|k| *k <= *t + SAME_CALL)
        };
        all.extend(earlier.filter(|t| *t + span > now && !is_known(t)));
        all.sort();
        let keep = all.len().saturating_sub(self.count());
        self.times = all.into_iter().skip(keep).collect();
    }
}

impl Lane {
    /// The lane's next slot is at least one interval after its last departure.
    fn follow(&mut self) {
        if let Some(last) = self.sent.times.back() {
            let after = *last + self.interval();
            self.next = Some(self.next.map_or(after, |n| n.max(after)));
        }
    }
}

impl Shared {
    fn follow(&mut self) {
        if let Some(last) = self.sent.times.back() {
            self.reserved.insert(*last);
        }
    }
}

impl Pacer {
    /// The calls of each lane's last counting window, for the next run.
    pub fn departures(&self) -> Departures {
        let clocks = Clocks::now();
        let walls = |sent: &Sent| -> Vec<SystemTime> {
            sent.recent(clocks.mono)
                .map(|t| clocks.to_wall(t))
                .collect()
        };
        let mut out: Departures = self
            .endpoints
            .iter()
            .map(|(endpoint, lane)| (endpoint.clone(), walls(&lock(lane).sent)))
            .collect();
        out.push((TOTAL.to_string(), walls(&lock(&self.global).sent)));
        out.retain(|(_, times)| !times.is_empty());
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Takes in the departures kept by earlier runs (another process's, or
    /// this one's own, which it knows already): no call of this pace leaves
    /// before their windows allow it, and each lane's next slot is one
    /// interval after their last. Lanes this pace does not know are ignored
    /// (the job's limits changed since).
    pub fn remember(&self, earlier: &Departures) {
        let clocks = Clocks::now();
        for (lane_name, times) in earlier {
            let ahead = clocks.ahead(times);
            let times = times
                .iter()
                .map(|t| clocks.to_mono(t.checked_sub(ahead).unwrap_or(*t)));
            if lane_name == TOTAL {
                let mut shared = lock(&self.global);
                shared.sent.merge(times, clocks.mono);
                shared.follow();
            } else if let Some(lane) = self.endpoints.get(lane_name) {
                let mut lane = lock(lane);
                lane.sent.merge(times, clocks.mono);
                lane.follow();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::rate::Rate;

    fn pacer() -> Pacer {
        Pacer::new(
            Rate::per_second(1000),
            &[("report", Rate::per_second(4))],
            &[],
        )
    }

    #[tokio::test]
    async fn a_new_pace_waits_for_the_window_of_the_runs_before() {
        let before = pacer();
        for _ in 0..4 {
            before.ready("report").await;
        }
        let kept = before.departures();
        let report = kept
            .iter()
            .find(|(l, _)| l == "report")
            .map(|(_, t)| t.len());
        assert_eq!(report, Some(4));
        assert!(kept.iter().any(|(l, _)| l == TOTAL));

        // A fresh run right after: its first call would be the fifth in one
        // second without the kept departures.
        let after = pacer();
        after.remember(&kept);
        let start = Instant::now();
        after.ready("report").await;
        let waited = start.elapsed();
        // It leaves a window plus the margin after the earlier run's first
        // call, one interval (252.5 ms) after its last.
        assert!(waited >= Duration::from_millis(240), "{waited:?}");
        assert!(waited < Duration::from_millis(600), "{waited:?}");
    }

    #[tokio::test]
    async fn a_pace_told_its_own_departures_does_not_count_them_twice() {
        let pace = pacer();
        for _ in 0..3 {
            pace.ready("report").await;
        }
        let third = Instant::now();
        // The daemon's next run reads back what this pace kept.
        pace.remember(&pace.departures());
        pace.ready("report").await;
        // One interval after the third; counted twice, the first two would
        // hold it a second after the second call.
        let waited = third.elapsed();
        assert!(waited < Duration::from_millis(450), "{waited:?}");
    }

    #[tokio::test]
    async fn old_and_unknown_departures_are_ignored_and_future_ones_count_as_now() {
        let after = pacer();
        let long_ago = SystemTime::now() - Duration::from_secs(5);
        let later = SystemTime::now() + Duration::from_secs(3600);
        after.remember(&vec![
            ("report".to_string(), vec![long_ago; 4]),
            ("gone/endpoint".to_string(), vec![SystemTime::now(); 4]),
        ]);
        let start = Instant::now();
        after.ready("report").await;
        assert!(start.elapsed() < Duration::from_millis(100));

        // A kept time ahead of the wall clock is taken as just now: the next
        // call is one interval away, not an hour.
        let skewed = pacer();
        skewed.remember(&vec![("report".to_string(), vec![later])]);
        let start = Instant::now();
        skewed.ready("report").await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(240), "{waited:?}");
        assert!(waited < Duration::from_millis(600), "{waited:?}");
    }

    #[tokio::test]
    async fn kept_times_ahead_of_the_clock_keep_their_spacing() {
        // Four calls 250 ms apart, the last an hour ahead: moved back
        // together, the first left 750 ms ago and the next call may go
        // 250 ms after the last, not a second after all four.
        let last = SystemTime::now() + Duration::from_secs(3600);
        let times = (0..4u32)
            .rev()
            .map(|i| last - Duration::from_millis(250) * i)
            .collect();
        let skewed = pacer();
        skewed.remember(&vec![("report".to_string(), times)]);
        let start = Instant::now();
        skewed.ready("report").await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
    }

    #[test]
    fn departures_round_trip_through_the_wall_clock() {
        let clocks = Clocks::now();
        let t = clocks.mono - Duration::from_millis(1234);
        let back = clocks.to_mono(clocks.to_wall(t));
        let error = if back > t { back - t } else { t - back };
        assert!(error < Duration::from_millis(1), "{error:?}");
    }
}
