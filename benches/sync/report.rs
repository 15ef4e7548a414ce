//! The figures of a case and the Markdown tables they become.

use std::time::Duration;

use crate::calls::rate_text;
use crate::run::RunResult;
use crate::{Args, Kind, MONTH};

/// The figures of one source and size, for the tables.
pub(crate) struct Case {
    pub(crate) kind: Kind,
    pub(crate) employees: usize,
    /// [`reference_cpu`], just before the first run.
    pub(crate) reference: Duration,
    pub(crate) first: RunResult,
    pub(crate) second: RunResult,
    /// The plain sequential client's one run (`plain.rs`), unless `--no-plain`.
    pub(crate) plain: Option<RunResult>,
    /// Departments of the organisation, when given (`--departments`, `--shapes`).
    pub(crate) departments: Option<usize>,
    /// Report calls expected by the formula.
    pub(crate) expected_report_calls: usize,
    pub(crate) report_endpoint: &'static str,
}

/// CPU time of a fixed workload like attendsync's own (JSON read into trees and
/// written out again, with allocations), taken on one thread of this process just
/// before a case runs. On a shared host the same binary's CPU time drifts with the
/// host's state (by a third within an hour here); this figure drifts with it, so
/// CPU figures taken apart are compared through it.
pub(crate) fn reference_cpu() -> Duration {
    let reports: Vec<serde_json::Value> = (0..500)
        .map(|i| {
            serde_json::json!({
                "base_info": {"acctid": format!("user{i:05}"), "name": format!("张三{i}"), "departs_name": "研发部/平台组"},
                "summary_info": {"work_days": 21, "regular_days": 20, "except_days": 1, "standard_work_sec": 604_800, "work_sec": 600_000 + i},
                "sp_items": (0..5).map(|k| serde_json::json!({"type": 1, "vacation_id": k, "count": k, "duration": 28_800 * k, "time_type": 0, "name": "年假"})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let text = serde_json::to_string(&reports).unwrap_or_default();
    let start = thread_cpu_time();
    for _ in 0..40 {
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        std::hint::black_box(serde_json::to_string(&tree).unwrap_or_default());
    }
    thread_cpu_time().saturating_sub(start)
}

pub(crate) fn thread_cpu_time() -> Duration {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it in.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `user + sys` seconds.
pub(crate) fn cpu_split(r: &RunResult) -> String {
    format!(
        "{:.2} + {:.2}",
        r.user.as_secs_f64(),
        r.system.as_secs_f64()
    )
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

pub(crate) fn mib(kib: i64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

pub(crate) fn ok(b: bool) -> &'static str {
    if b {
        "✓"
    } else {
        "✗"
    }
}
/// `2000 / 40`, or `2000` when the departments were left to the generator.
pub(crate) fn shape(c: &Case) -> String {
    match c.departments {
        Some(d) => format!("{} / {d}", c.employees),
        None => c.employees.to_string(),
    }
}

/// attendsync's two runs and the plain client side by side, against the first
/// run's quota-bound minimum (the plain client makes the same report and
/// `batch_create` calls, so its own minimum is the same).
pub(crate) fn comparison(kind: Kind, cases: &[&Case]) -> String {
    let mut out = format!(
        "\n### {} → Jiandaoyun: attendsync and the plain client\n\n\
         | employees / departments | quota-bound min (s) | attendsync first (s) | ÷ min | attendsync second (s) | ÷ min (pull alone) | plain client (s) | ÷ min | plain throttled / violations | attendsync throttled / violations | first run vs plain |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n",
        kind.name()
    );
    for c in cases {
        let (min, _) = c.first.bound(&[kind.name(), "jiandaoyun"]);
        let (pull_min, _) = c.second.bound(&[kind.name()]);
        let (plain_wall, plain_ratio, plain_faults, speedup) = match &c.plain {
            Some(p) if p.exit == 0 => (
                secs(p.wall),
                format!("{:.3}", p.wall.as_secs_f64() / min),
                format!("{} / {}", p.throttled, p.violations),
                format!("{:.2}×", p.wall.as_secs_f64() / c.first.wall.as_secs_f64()),
            ),
            Some(p) => (
                format!("failed ({})", secs(p.wall)),
                "—".into(),
                "—".into(),
                "—".into(),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        out.push_str(&format!(
            "| {} | {:.1} | {:.2} | {:.3} | {:.2} | {:.3} | {} | {} | {} | {} / {} | {} |\n",
            shape(c),
            min,
            c.first.wall.as_secs_f64(),
            c.first.wall.as_secs_f64() / min,
            c.second.wall.as_secs_f64(),
            c.second.wall.as_secs_f64() / pull_min,
            plain_wall,
            plain_ratio,
            plain_faults,
            c.first.throttled + c.second.throttled,
            c.first.violations + c.second.violations,
            speedup,
        ));
    }
    out
}

/// `batch_create` calls of a first sync that creates `created` records: one
/// per chunk of 100, and for DingTalk one more, since its first chunk starts
/// with the first employees found, as many as it pulls at once (16 at the
/// benchmark's rates; `Source::first_chunk_size`).
fn expected_creates(kind: Kind, created: usize) -> usize {
    let first = attendsync::source::dingtalk::EMPLOYEES_IN_FLIGHT;
    match kind {
        Kind::Dingtalk if created > first => 1 + (created - first).div_ceil(100),
        _ => created.div_ceil(100),
    }
}

/// The per-endpoint table of one case.
pub(crate) fn case_detail(c: &Case) -> String {
    let mut out = format!(
        "\n#### {} × {} employees: calls per endpoint\n\n\
         | run | vendor | endpoint | calls | per employee-month | quota | calls ÷ rate (s) | first call (s) | last call (s) | smallest gap (ms) | tightest quota+1 calls (s) |\n\
         |---|---|---|---:|---:|---|---:|---:|---:|---:|---:|\n",
        c.kind.name(),
        shape(c)
    );
    let plain = c.plain.iter().map(|p| ("plain", p));
    for (label, run) in [("first", &c.first), ("second", &c.second)]
        .into_iter()
        .chain(plain)
    {
        for r in &run.rows {
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {:.3} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
                r.vendor,
                r.endpoint,
                r.calls,
                r.calls as f64 / c.employees as f64,
                r.quota.map_or("—".into(), |(n, p)| rate_text(n, p)),
                r.bound.map_or("—".into(), |b| format!("{b:.2}")),
                r.first,
                r.last,
                r.min_gap_ms.map_or("—".into(), |g| format!("{g:.1}")),
                r.tightest.map_or("—".into(), |t| format!("{t:.3}")),
            ));
        }
        for (endpoint, n) in &run.throttled_by {
            out.push_str(&format!(
                "\n{label} run: {n} throttling answer(s) on {endpoint}\n"
            ));
        }
    }
    out
}

pub(crate) fn tables(cases: &[Case], args: &Args) -> String {
    let mut out = format!(
        "Latency {} ms per request (+ up to {} ms drawn for each); WeCom monthdata quota {}/min; DingTalk per-API quota {}/s; \
         month {MONTH}; departments {}; job's source limits {}.\n",
        args.latency.as_millis(),
        args.jitter.as_millis(),
        args.wecom_monthdata_rate,
        args.dingtalk_rate,
        args.departments
            .map_or_else(|| "~employees/15".to_string(), |d| d.to_string()),
        args.source_limits.name(),
    );
    for kind in [Kind::Wecom, Kind::Dingtalk] {
        let of_kind: Vec<&Case> = cases.iter().filter(|c| c.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        out.push_str(&comparison(kind, &of_kind));
        out.push_str(&format!(
            "\n### {} → Jiandaoyun, first run (empty form)\n\n\
             | employees | wall (s) | quota-bound min (s) | bounding endpoint | wall ÷ min | report calls (expected) | batch_create (expected) | calls / employee-month | throttled answers / injected | quota violations | peak RSS (MiB) | CPU user + sys (s) | CPU ÷ wall | reference (ms) | exit |\n\
             |---:|---:|---:|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
            kind.name()
        ));
        for c in &of_kind {
            let r = &c.first;
            let (min, by) = r.bound(&[kind.name(), "jiandaoyun"]);
            let created = r.counts["created"].as_u64().unwrap_or(0) as usize;
            let batches = r.calls("data/batch_create");
            let expected_batches = expected_creates(kind, created);
            let report = r.calls(c.report_endpoint);
            out.push_str(&format!(
                "| {} | {} | {:.1} | {} | {:.3} | {} ({}) {} | {} ({}) {} | {:.3} | {} / {} {} | {} {} | {} | {} | {:.1} % | {} | {} |\n",
                c.employees,
                secs(r.wall),
                min,
                by,
                r.wall.as_secs_f64() / min,
                report,
                c.expected_report_calls,
                ok(report == c.expected_report_calls),
                batches,
                expected_batches,
                ok(batches == expected_batches),
                (r.source_calls + r.jdy_calls) as f64 / c.employees as f64,
                r.throttled,
                r.injected,
                ok(r.throttled as usize <= r.injected),
                r.violations,
                ok(r.violations == 0),
                mib(r.max_rss_kib),
                cpu_split(r),
                100.0 * r.cpu().as_secs_f64() / r.wall.as_secs_f64(),
                c.reference.as_millis(),
                r.exit,
            ));
        }
        out.push_str(&format!(
            "\n### {} → Jiandaoyun, second run (nothing changed)\n\n\
             | employees | wall (s) | pull-alone min (s) | wall ÷ min | Jiandaoyun writes | Jiandaoyun calls (reads) | unchanged | throttled / violations | peak RSS (MiB) | CPU user + sys (s) | CPU ÷ wall | exit |\n\
             |---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
            kind.name()
        ));
        for c in &of_kind {
            let r = &c.second;
            let (min, _) = r.bound(&[kind.name()]);
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.3} | {} {} | {} | {} | {} / {} | {} | {} | {:.1} % | {} |\n",
                c.employees,
                secs(r.wall),
                min,
                r.wall.as_secs_f64() / min,
                r.jdy_writes,
                ok(r.jdy_writes == 0),
                r.jdy_calls,
                r.counts["unchanged"].as_u64().unwrap_or(0),
                r.throttled,
                r.violations,
                mib(r.max_rss_kib),
                cpu_split(r),
                100.0 * r.cpu().as_secs_f64() / r.wall.as_secs_f64(),
                r.exit,
            ));
        }
    }
    for c in cases {
        out.push_str(&case_detail(c));
    }
    out
}
