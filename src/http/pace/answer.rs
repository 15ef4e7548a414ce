//! What an answer tells about when the vendor counted its call.
//!
//! The pace spaces calls on when they left. A vendor counts a call when it
//! reaches it, and a call held up on the way (a queue in the network, a busy
//! gateway, a simulator stalled on a shared core) is counted later than it
//! left: the call a quota after it, leaving on time, is then counted less
//! than a window after it, and the vendor answers "too many calls". The
//! answer shows such a hold-up, for it comes back late by as much. So each
//! endpoint's recent good answers are kept (a gateway's quick refusal is not
//! typical of it), and a call answered more than its
//! window's margin slower than the fastest of those given from a window
//! before it left on counts, for the calls after it, as having left that much
//! later, less the margin (which allows for that much already). A call slowed
//! by the vendor's own work after it was counted is counted late too: the
//! safe side, which costs the one call a quota after it the difference.
//!
//! Only a recent fastest, not the run's: calls all answered slower (a vendor
//! busier than at the run's start, a fast error answer) reach the vendor as
//! far apart as they left, yet each, measured against an earlier fastest,
//! would hold the call a quota after it, which is answered as slowly and
//! holds the next in turn: every window of the run longer by the difference
//! (measured: 10/s down to 6.8/s once answers came 500 ms slower). Against a
//! recent fastest such a change costs one window's worth of calls the
//! difference, once; and a call held up for longer than a window is still
//! measured against the answers from before it left (docs/ARCHITECTURE.md,
//! "Pacing by reserved slots").

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{lock, Pacer, Sent};

/// How long answers are kept, beyond a window: twice the default request
/// timeout ([`crate::http::REQUEST_TIMEOUT`]), so a call answered after a
/// long stall is still measured against the answers from before it left.
const ANSWERS_KEPT: Duration = Duration::from_secs(120);

/// An endpoint's recent answers, for the fastest of those given from a
/// window before a call left: each kept answer is faster than every one
/// after it (an answer slower than a later one is never again the fastest
/// of a span that ends now), so that fastest is the first one in the span.
#[derive(Default)]
pub(super) struct Answers {
    /// When each call was answered and how long it took.
    kept: VecDeque<(Instant, Duration)>,
}

impl Answers {
    /// A good answer at `now` that took `took`, on a lane counting per `window`.
    fn keep(&mut self, now: Instant, took: Duration, window: Duration) {
        while self.kept.back().is_some_and(|(_, t)| *t >= took) {
            self.kept.pop_back();
        }
        self.kept.push_back((now, took));
        if let Some(horizon) = now.checked_sub(window + ANSWERS_KEPT) {
            while self.kept.front().is_some_and(|(at, _)| *at < horizon) {
                self.kept.pop_front();
            }
        }
    }

    /// The fastest good answer given from `window` before `left` on, if any.
    /// A call held up for longer than a window is measured against the
    /// answers from before the hold-up; calls all slower than some time ago,
    /// against each other.
    fn fastest_since(&self, left: Instant, window: Duration) -> Option<Duration> {
        let from = left.checked_sub(window);
        let i = self
            .kept
            .partition_point(|(at, _)| from.is_some_and(|from| *at < from));
        self.kept.get(i).map(|(_, t)| *t)
    }

    /// [`Answers::keep`] then [`Answers::fastest_since`], for a good answer.
    #[cfg(test)]
    fn fastest(
        &mut self,
        left: Instant,
        now: Instant,
        took: Duration,
        window: Duration,
    ) -> Duration {
        self.keep(now, took, window);
        self.fastest_since(left, window).unwrap_or(took)
    }
}

impl Sent {
    /// The call that left at `left` was answered `slower` than its
    /// endpoint's fastest answer: beyond the margin, it counts as leaving
    /// that much later. A call no longer among the last quota's worth holds
    /// nothing and is left alone.
    fn answered_slowly(&mut self, left: Instant, slower: Duration) {
        let Some(later) = slower
            .checked_sub(self.quota.margin)
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        let i = self.times.partition_point(|t| *t < left);
        if self.times.get(i) != Some(&left) {
            return;
        }
        self.times.remove(i);
        // No later than now, so the times stay in order as later calls are
        // recorded at their own now.
        let counted = left + later;
        let j = self.times.partition_point(|t| *t <= counted);
        self.times.insert(j, counted);
    }
}

impl Pacer {
    /// The call of `endpoint` that left at `left` ([`Pacer::depart`]) was
    /// answered `at`: if that was slower than the endpoint's fastest good
    /// answer by more than a window's margin, the vendor may have counted it
    /// that much later, and the calls after it are paced as if it had left
    /// then (see the module's comment). Only a `good` answer (the call done)
    /// is kept among the fastest: a gateway's quick refusal would make every
    /// ordinary answer look slow.
    pub fn answered(&self, endpoint: &str, left: Instant, at: Instant, good: bool) {
        let took = at.saturating_duration_since(left);
        // Lock order: the endpoint's lane, then the shared one.
        let mut lane = self.endpoints.get(endpoint).map(lock);
        let mut shared = lock(&self.global);
        // Read under the locks: the answers are kept in the order of `now`.
        let now = Instant::now();
        let window = lane
            .as_ref()
            .map_or(shared.sent.quota.rate.per, |l| l.sent.quota.rate.per);
        if !shared.answers.contains_key(endpoint) {
            shared
                .answers
                .insert(endpoint.to_owned(), Answers::default());
        }
        let Some(answers) = shared.answers.get_mut(endpoint) else {
            return;
        };
        if good {
            answers.keep(now, took, window);
        }
        let Some(fastest) = answers.fastest_since(left, window) else {
            return;
        };
        let slower = took.saturating_sub(fastest);
        if let Some(lane) = lane.as_mut() {
            lane.sent.answered_slowly(left, slower);
        }
        shared.sent.answered_slowly(left, slower);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Rate;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_call_answered_slowly_counts_as_leaving_later_less_the_margin() {
        let t0 = Instant::now();
        let mut sent = Sent::new(Rate::per_second(5));
        for i in 0..3 {
            sent.record(t0 + ms(200) * i);
        }
        // 5 ms margin: 4 ms slower is within it.
        sent.answered_slowly(t0, ms(4));
        assert_eq!(sent.times[0], t0);
        // 305 ms slower: counted 300 ms later, after the call that left at 200 ms.
        sent.answered_slowly(t0, ms(305));
        let times: Vec<Duration> = sent.times.iter().map(|t| *t - t0).collect();
        assert_eq!(times, [ms(200), ms(300), ms(400)]);
        // A call the lane no longer holds changes nothing.
        sent.answered_slowly(t0 + ms(1), ms(500));
        assert_eq!(sent.times.len(), 3);
    }

    #[test]
    fn the_fastest_answer_is_of_the_window_before_the_call_left() {
        let t0 = Instant::now() + ms(10_000);
        let w = ms(1000);
        let mut answers = Answers::default();
        // (left, answered) in ms after t0.
        let mut fastest = |left: u64, answered: u64| {
            answers.fastest(t0 + ms(left), t0 + ms(answered), ms(answered - left), w)
        };
        assert_eq!(fastest(0, 5), ms(5));
        // Slower answers of calls that left within a window of it: 5 ms.
        assert_eq!(fastest(100, 600), ms(5));
        assert_eq!(fastest(900, 1420), ms(5));
        // A call leaving more than a window after the fast one: the slow
        // ones are the norm.
        assert_eq!(fastest(1100, 1610), ms(500));
        assert_eq!(fastest(1700, 2230), ms(510));
        // A faster answer replaces every slower one before it.
        assert_eq!(fastest(2300, 2400), ms(100));
        // A call held up for three windows is measured against the answers
        // from before it left.
        assert_eq!(fastest(2500, 2510), ms(10));
        assert_eq!(fastest(2600, 5600), ms(10));
        assert_eq!(fastest(6700, 6800), ms(100));
    }

    #[tokio::test]
    async fn a_quick_refusal_does_not_make_good_answers_look_slow() {
        let pacer = Pacer::new(Rate::per_second(1000), &[("x", Rate::per_second(50))], &[]);
        let mut sent = Vec::new();
        for _ in 0..3 {
            pacer.slot("x").await;
            sent.push(pacer.depart("x").await);
        }
        // Good answers take 40 ms; a gateway refuses one call in 1 ms.
        pacer.answered("x", sent[0], sent[0] + ms(40), true);
        pacer.answered("x", sent[1], sent[1] + ms(1), false);
        pacer.answered("x", sent[2], sent[2] + ms(41), true);
        let times: Vec<Instant> = lock(&pacer.endpoints["x"])
            .sent
            .times
            .iter()
            .copied()
            .collect();
        assert_eq!(times, sent, "nothing counted later");
        // A refusal 60 ms slower than the fastest good answer does count later.
        pacer.answered("x", sent[1], sent[1] + ms(100), false);
        let moved = lock(&pacer.endpoints["x"]).sent.times[2];
        assert_eq!(moved, sent[1] + ms(55));
    }

    #[tokio::test]
    async fn a_call_answered_late_holds_the_one_a_quota_after_it() {
        // 5/s: slots 201 ms apart, a 5 ms margin. The first answer sets the
        // fastest; the second call's comes 40 ms slower than that, so the
        // seventh call (a quota after it) leaves 35 ms later than its slot.
        let pacer = Pacer::new(Rate::per_second(1000), &[("x", Rate::per_second(5))], &[]);
        pacer.slot("x").await;
        let first = pacer.depart("x").await;
        pacer.answered("x", first, Instant::now(), true);
        pacer.slot("x").await;
        let second = pacer.depart("x").await;
        std::thread::sleep(ms(41));
        pacer.answered("x", second, Instant::now(), true);
        for _ in 0..5 {
            pacer.ready("x").await;
        }
        let seventh = Instant::now();
        let span = seventh - second;
        assert!(span >= ms(1040), "{span:?}");
        assert!(span < ms(1140), "{span:?}");
    }
}
