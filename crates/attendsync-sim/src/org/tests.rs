use super::*;
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::HashSet;

#[test]
fn generation_is_deterministic_and_seed_dependent() {
    assert_eq!(Org::generate(300, 5), Org::generate(300, 5));
    assert_ne!(Org::generate(300, 5).users, Org::generate(300, 6).users);
}

#[test]
fn shape_of_a_mid_sized_org() {
    let org = Org::generate(3000, 0);
    assert_eq!(org.corp_name, "有家科技");
    assert_eq!(org.users.len(), 3000);
    let n = org.departments.len();
    assert!((150..=250).contains(&n), "{n} departments");
    for (i, d) in org.departments.iter().enumerate() {
        assert_eq!(d.id, i as u64 + 1);
        if d.id == 1 {
            assert_eq!(d.parent_id, 0);
        } else {
            assert!(d.parent_id < d.id);
        }
    }
    let ids: HashSet<_> = org.users.iter().map(|u| u.userid.as_str()).collect();
    assert_eq!(ids.len(), 3000);
    assert!(org.users.iter().all(|u| u.userid.is_ascii()));
    let two = org
        .users
        .iter()
        .filter(|u| u.departments.len() == 2)
        .count();
    assert!((150..=450).contains(&two), "{two} in two departments");
    let depth = |id| org.department_path(id).matches('/').count() + 1;
    let max_depth = org.departments.iter().map(|d| depth(d.id)).max();
    assert_eq!(max_depth, Some(4));
    let u = &org.users[41];
    assert!(u.userid.ends_with("0042"), "{}", u.userid);
    assert_eq!(u.job_number, "A00042");
    assert!(org
        .department_path(u.departments[0])
        .starts_with("有家科技/"));
}

#[test]
fn tiny_orgs_still_have_three_levels() {
    for n in [0, 1, 5, 20] {
        let org = Org::generate(n, 1);
        assert_eq!(org.users.len(), n);
        assert!(org.departments.len() >= 5);
        let last = org.departments.last().unwrap();
        assert_eq!(org.department_path(last.id).matches('/').count(), 2);
    }
}

#[test]
fn large_org_is_fast() {
    let started = std::time::Instant::now();
    let org = Org::generate(200_000, 3);
    let elapsed = started.elapsed();
    assert_eq!(org.users.len(), 200_000);
    let unique: HashSet<_> = org.users.iter().map(|u| u.userid.as_str()).collect();
    assert_eq!(unique.len(), 200_000);
    // Generous, since tests run unoptimised on a shared machine.
    assert!(elapsed.as_secs_f64() < 10.0, "{elapsed:?}");
}

#[test]
fn month_record_shape_and_realism() {
    let org = Org::generate(400, 9);
    let mut seen_missing_rest = false;
    for user in &org.users {
        let rec = wecom_month_record(&org, user, 2026, 10, 0);
        assert_eq!(rec, wecom_month_record(&org, user, 2026, 10, 0));
        let base = &rec["base_info"];
        assert_eq!(base["acctid"], json!(user.userid));
        assert_eq!(base["name"], json!(user.name));
        let departs = base["departs_name"].as_str().unwrap();
        assert_eq!(departs.split(';').count(), user.departments.len());
        assert!(base["rule_info"]["groupid"].is_i64());
        let s = &rec["summary_info"];
        if s.get("rest_days").is_none() {
            seen_missing_rest = true;
        }
        let over = &rec["overwork_info"];
        assert!(over.get("workday_over_sec").is_some());
        assert!(over.get("restdays_over_sec").is_some());
        let names: Vec<_> = rec["sp_items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"年假") && names.contains(&"事假"));
        assert!(names.contains(&"外勤次数"));
        if base["record_type"] == json!(1) {
            // October 2026: 22 weekdays, minus the 1st–7th holidays (5 weekdays).
            assert_eq!(s["work_days"], json!(17));
            let sec = s["regular_work_sec"].as_i64().unwrap();
            assert!((12 * 8 * 3600..=19 * 9 * 3600).contains(&sec), "{sec}");
            assert_eq!(s["standard_work_sec"], json!(17 * 8 * 3600));
        }
    }
    assert!(seen_missing_rest);
}

#[test]
fn revision_changes_record_and_prefix_is_consistent() {
    let org = Org::generate(50, 2);
    let user = &org.users[3];
    let r0 = wecom_month_record(&org, user, 2026, 9, 0);
    let r1 = wecom_month_record(&org, user, 2026, 9, 1);
    assert_ne!(r0, r1);
    assert_eq!(r0["base_info"], r1["base_info"]);
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    // Ending on the next month's 1st is the same as ending on the last day.
    let spill = wecom_period_record(&org, user, d(2026, 9, 1), d(2026, 10, 1), 0);
    assert_eq!(spill, r0);
    let part = wecom_period_record(&org, user, d(2026, 9, 1), d(2026, 9, 10), 0);
    let wd = |v: &Value| v["summary_info"]["work_days"].as_i64().unwrap();
    assert!(wd(&part) <= wd(&r0));
    let f = month_figures(&org, user, d(2026, 9, 1), d(2026, 9, 30), 1);
    assert_eq!(
        json!(f.regular_work_sec),
        r1["summary_info"]["regular_work_sec"]
    );
    assert_eq!(json!(f.work_days), r1["summary_info"]["work_days"]);
    // Invalid month: no panic, zero figures.
    let bad = wecom_month_record(&org, user, 2026, 13, 0);
    assert_eq!(bad["summary_info"]["work_days"], json!(0));
}

#[test]
fn generate_in_sets_the_number_of_departments() {
    assert_eq!(Org::generate_in(300, 20, 5), Org::generate(300, 5));
    for (employees, departments) in [(2000, 40), (20_000, 2000), (50, 2)] {
        let org = Org::generate_in(employees, departments, 7);
        assert_eq!(org.departments.len(), departments);
        assert_eq!(org.users.len(), employees);
        let known: HashSet<u64> = org.departments.iter().map(|d| d.id).collect();
        assert!(org
            .users
            .iter()
            .all(|u| u.departments.iter().all(|d| known.contains(d))));
    }
}
