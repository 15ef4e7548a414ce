//! One pace per vendor app and limits in a process: runs that overlap in the
//! daemon (two jobs of one WeCom corp) share the vendor's quota, so they share
//! its pace, and a run after them takes up where they left off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::{effective_rates, lock, Pacer};
use crate::http::rate::Rate;

/// The paces made so far, by holder (the vendor app the quota belongs to)
/// and the limits they were made with. Never emptied: a process has a handful.
type Registry = Mutex<HashMap<(String, String), Arc<Pacer>>>;

fn registry() -> &'static Registry {
    static PACES: OnceLock<Registry> = OnceLock::new();
    PACES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Pacer {
    /// The process's pace for `holder` with these limits ([`Pacer::new`]),
    /// made on first use. Jobs of one app with different `limits` get
    /// separate paces: each keeps to what it was told.
    pub fn shared(
        holder: &str,
        global: Rate,
        defaults: &[(&str, Rate)],
        overrides: &[(String, Rate)],
    ) -> Arc<Pacer> {
        // Keyed by the rates in effect, not by how a job file lists them: jobs
        // with the same limits in another order, or a documented one spelt
        // out, must share one pace (two paces in one daemon each fill the quota).
        let limits = format!("{:?}", effective_rates(global, defaults, overrides));
        lock(registry())
            .entry((holder.to_string(), limits))
            .or_insert_with(|| Arc::new(Pacer::new(global, defaults, overrides)))
            .clone()
    }

    /// Every holder this process made a pace for.
    pub fn holders() -> Vec<String> {
        let mut out: Vec<String> = lock(registry()).keys().map(|(h, _)| h.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every pace this process made for `holder`.
    pub fn of_holder(holder: &str) -> Vec<Arc<Pacer>> {
        lock(registry())
            .iter()
            .filter(|((h, _), _)| h == holder)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::pace::TOTAL;

    #[test]
    fn one_pace_per_holder_and_limits() {
        let a = Pacer::shared("test-holder-a", Rate::per_second(5), &[], &[]);
        let again = Pacer::shared("test-holder-a", Rate::per_second(5), &[], &[]);
        assert!(Arc::ptr_eq(&a, &again));
        let other_limits = Pacer::shared(
            "test-holder-a",
            Rate::per_second(5),
            &[],
            &[("x".to_string(), Rate::per_second(1))],
        );
        assert!(!Arc::ptr_eq(&a, &other_limits));
        let other_app = Pacer::shared("test-holder-b", Rate::per_second(5), &[], &[]);
        assert!(!Arc::ptr_eq(&a, &other_app));
        assert_eq!(Pacer::of_holder("test-holder-a").len(), 2);
    }

    #[test]
    fn the_same_rates_listed_in_another_order_or_spelt_out_share_a_pace() {
        let defaults = [("report", Rate::per_minute(60))];
        let x = || ("x".to_string(), Rate::per_second(1));
        let y = || ("y".to_string(), Rate::per_second(2));
        let a = Pacer::shared("test-holder-c", Rate::per_second(5), &defaults, &[x(), y()]);
        let reordered = Pacer::shared("test-holder-c", Rate::per_second(5), &defaults, &[y(), x()]);
        assert!(Arc::ptr_eq(&a, &reordered));
        let spelt_out = [x(), ("report".to_string(), Rate::per_minute(60)), y()];
        let b = Pacer::shared("test-holder-c", Rate::per_second(5), &defaults, &spelt_out);
        assert!(Arc::ptr_eq(&a, &b));
        let total = [x(), y(), (TOTAL.to_string(), Rate::per_second(5))];
        let c = Pacer::shared("test-holder-c", Rate::per_second(9), &defaults, &total);
        assert!(Arc::ptr_eq(&a, &c));
    }
}
