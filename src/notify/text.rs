//! The alert text, in Chinese (the default) or English (`[notify] language`).
//!
//! Every text names the job, what the alert is about ([`Alert`]), the time to
//! the second in the job's timezone (so a reminder never repeats an earlier
//! text: DingTalk drops an identical message to the same person on the same
//! day), the per-month counts and the first errors. It is bounded to
//! [`MAX_TEXT_BYTES`] and scrubbed of every secret of the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{as_strs, is_failure, job_secrets, MAX_ERRORS_SHOWN};
use crate::config::job::{Job, Language};
use crate::http::{redact, redact_secrets};
use crate::pipeline::JobReport;
use crate::store::FailureStreak;

/// How many months a message lists one by one.
const MAX_MONTHS_SHOWN: usize = 12;
/// The longest error line, in characters.
const MAX_ERROR_CHARS: usize = 300;
/// The longest text, in bytes: WeCom robots take 2048 bytes of text content.
pub(super) const MAX_TEXT_BYTES: usize = 2000;

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A run failed: the first alert of its failure streak (`None`: the streak
    /// is not known, e.g. the stateless [`super::notify`]).
    Failed { streak: Option<FailureStreak> },
    /// A reminder (`repeat_after`), or with `on = "always"` any later failed
    /// run of the streak: the job is still failing.
    StillFailing { streak: FailureStreak },
    /// The first successful run after a failure streak.
    Recovered { streak: FailureStreak },
    /// A successful run (`on = "always"`).
    Ok,
    /// Another process held the job's lease (`on = "always"`).
    Skipped,
}

impl Alert {
    /// The alert a run calls for when no streak is known.
    pub fn of_run(report: &JobReport, exit_code: u8) -> Alert {
        if report.busy.is_some() {
            Alert::Skipped
        } else if is_failure(report, exit_code) {
            Alert::Failed { streak: None }
        } else {
            Alert::Ok
        }
    }

    /// Its name in the webhook's JSON (`alert`).
    pub fn key(&self) -> &'static str {
        match self {
            Alert::Failed { .. } => "failed",
            Alert::StillFailing { .. } => "still_failing",
            Alert::Recovered { .. } => "recovered",
            Alert::Ok => "ok",
            Alert::Skipped => "skipped",
        }
    }

    /// The failure streak it is about, if any.
    pub fn streak(&self) -> Option<&FailureStreak> {
        match self {
            Alert::Failed { streak } => streak.as_ref(),
            Alert::StillFailing { streak } | Alert::Recovered { streak } => Some(streak),
            Alert::Ok | Alert::Skipped => None,
        }
    }

    fn is_failure(&self) -> bool {
        matches!(self, Alert::Failed { .. } | Alert::StillFailing { .. })
    }
}

/// A time to the second in `tz`, with its offset and zone name:
/// `2026-11-03 02:30:05 +08:00 (Asia/Shanghai)`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    format!(
        "{} ({})",
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z"),
        tz.name()
    )
}

/// `24h`, `90 min`; in Chinese `24 小时`, `90 分钟`.
fn span(d: Duration, lang: Language) -> String {
    let secs = d.as_secs();
    match (secs % 3600 == 0, lang) {
        (true, Language::En) => format!("{}h", secs / 3600),
        (true, Language::Zh) => format!("{} 小时", secs / 3600),
        (false, Language::En) => format!("{} min", secs / 60),
        (false, Language::Zh) => format!("{} 分钟", secs / 60),
    }
}

/// An error of a month without a leading `"{month}: "`, for a line that names
/// the month itself (the sync engine's month errors start with it).
pub fn without_month<'e>(month: &str, error: &'e str) -> &'e str {
    error
        .strip_prefix(month)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(error)
}

/// The first line's outcome: what the alert is about.
fn outcome(
    job: &Job,
    report: &JobReport,
    alert: &Alert,
    exit_code: u8,
    clean: &dyn Fn(&str) -> String,
) -> String {
    let lang = language(job);
    let tz = job.timezone;
    match (alert, lang) {
        (Alert::Skipped, Language::En) => {
            format!("skipped: {}", clean(report.busy.as_deref().unwrap_or("")))
        }
        (Alert::Skipped, Language::Zh) => {
            format!("已跳过：{}", clean(report.busy.as_deref().unwrap_or("")))
        }
        (Alert::Ok, Language::En) => "ok".to_string(),
        (Alert::Ok, Language::Zh) => "同步成功".to_string(),
        (Alert::Failed { streak }, Language::En) => match streak {
            Some(s) if s.failures > 1 => format!(
                "FAILED (exit {exit_code}), {} failed runs in a row since {}",
                s.failures,
                local_time(s.since, tz)
            ),
            _ => format!("FAILED (exit {exit_code})"),
        },
        (Alert::Failed { streak }, Language::Zh) => match streak {
            Some(s) if s.failures > 1 => format!(
                "同步失败（退出码 {exit_code}），自 {} 起已连续失败 {} 次",
                local_time(s.since, tz),
                s.failures
            ),
            _ => format!("同步失败（退出码 {exit_code}）"),
        },
        (Alert::StillFailing { streak: s }, Language::En) => format!(
            "STILL FAILING (exit {exit_code}): {} failed runs in a row since {}",
            s.failures,
            local_time(s.since, tz)
        ),
        (Alert::StillFailing { streak: s }, Language::Zh) => format!(
            "仍然失败（退出码 {exit_code}）：自 {} 起已连续失败 {} 次",
            local_time(s.since, tz),
            s.failures
        ),
        (Alert::Recovered { streak: s }, Language::En) => format!(
            "RECOVERED: this run succeeded after {} failed runs since {}",
            s.failures,
            local_time(s.since, tz)
        ),
        (Alert::Recovered { streak: s }, Language::Zh) => format!(
            "已恢复：本次运行成功，此前自 {} 起连续失败 {} 次",
            local_time(s.since, tz),
            s.failures
        ),
    }
}

fn language(job: &Job) -> Language {
    job.notify.as_ref().map(|n| n.language).unwrap_or_default()
}

/// The alert text for a run when no streak is known ([`Alert::of_run`]).
pub fn message_text(job: &Job, report: &JobReport, exit_code: u8, now: DateTime<Utc>) -> String {
    message_for(
        job,
        report,
        exit_code,
        now,
        &Alert::of_run(report, exit_code),
    )
}

/// The alert text: job, what the alert is about, time, per-month counts, the
/// first errors. Bounded to 2000 bytes and free of the job's secrets.
pub fn message_for(
    job: &Job,
    report: &JobReport,
    exit_code: u8,
    now: DateTime<Utc>,
    alert: &Alert,
) -> String {
    let secrets = job_secrets(job);
    let secrets = as_strs(&secrets);
    let clean = |s: &str| truncate_chars(&redact(s, &secrets), MAX_ERROR_CHARS);
    let lang = language(job);
    let zh = lang == Language::Zh;
    let outcome = outcome(job, report, alert, exit_code, &clean);
    let at = local_time(now, job.timezone);
    let mut s = if zh {
        let prefix = if report.dry_run { "[试运行] " } else { "" };
        let source = match job.source.kind() {
            "wecom" => "企业微信",
            "dingtalk" => "钉钉",
            other => other,
        };
        format!(
            "{prefix}attendsync：任务 {}（{source} → 简道云）{outcome}，运行时间 {at}\n",
            report.job
        )
    } else {
        let prefix = if report.dry_run { "[dry run] " } else { "" };
        format!(
            "{prefix}attendsync: job {} ({} → Jiandaoyun) {outcome}, run at {at}\n",
            report.job,
            job.source.kind()
        )
    };
    push_months(&mut s, report, lang);
    if let Some(e) = &report.error {
        let label = if zh {
            "任务失败："
        } else {
            "job failed: "
        };
        s.push_str(&format!("{label}{}\n", clean(e)));
    }
    push_errors(&mut s, report, lang, &clean);
    if !report.dry_run && alert.is_failure() {
        push_footer(&mut s, job, report, alert);
    }
    truncate_bytes(redact_secrets(s.trim_end(), &secrets), MAX_TEXT_BYTES)
}

fn push_months(s: &mut String, report: &JobReport, lang: Language) {
    for m in report.months.iter().take(MAX_MONTHS_SHOWN) {
        let c = &m.counts;
        let (pulled, created, updated, unchanged, failed) =
            (c.pulled, c.created, c.updated, c.unchanged, c.failed);
        s.push_str(&match lang {
            Language::En => format!(
                "{}: pulled {pulled}, created {created}, updated {updated}, unchanged {unchanged}, failed {failed}",
                m.month
            ),
            Language::Zh => format!(
                "{}：拉取 {pulled}，新建 {created}，更新 {updated}，未变 {unchanged}，失败 {failed}",
                m.month
            ),
        });
        if m.month_error.is_some() {
            s.push_str(match lang {
                Language::En => " (month stopped early)",
                Language::Zh => "（该月提前停止）",
            });
        }
        s.push('\n');
    }
    if report.months.len() > MAX_MONTHS_SHOWN {
        let more = report.months.len() - MAX_MONTHS_SHOWN;
        s.push_str(&match lang {
            Language::En => format!("… and {more} more months\n"),
            Language::Zh => format!("… 另有 {more} 个月\n"),
        });
    }
}

fn push_errors(s: &mut String, report: &JobReport, lang: Language, clean: &dyn Fn(&str) -> String) {
    let errors: Vec<String> = report
        .months
        .iter()
        .flat_map(|m| {
            m.month_error
                .iter()
                .chain(m.errors.iter())
                .map(move |e| format!("{}: {}", m.month, without_month(&m.month, e)))
        })
        .collect();
    if errors.is_empty() {
        return;
    }
    let total: u64 = report
        .months
        .iter()
        .map(|m| m.counts.failed.max(m.errors.len() as u64) + u64::from(m.month_error.is_some()))
        .sum();
    let total = total.max(errors.len() as u64);
    let shown = errors.len().min(MAX_ERRORS_SHOWN);
    s.push_str(&match lang {
        Language::En => format!("first errors ({shown} of {total}):\n"),
        Language::Zh => format!("前 {shown} 条错误（共 {total} 条）：\n"),
    });
    for e in errors.iter().take(MAX_ERRORS_SHOWN) {
        s.push_str(&format!("- {}\n", clean(e)));
    }
}

/// What happens next: the next run retries; until the job recovers, no alert
/// but the reminders.
fn push_footer(s: &mut String, job: &Job, report: &JobReport, alert: &Alert) {
    let lang = language(job);
    let repeat = job.notify.as_ref().and_then(|n| n.repeat_after);
    s.push_str(&match lang {
        Language::En => format!(
            "The next run retries what failed; details: attendsync status {}\n",
            report.job
        ),
        Language::Zh => format!(
            "下次运行会重试失败的部分；详情：attendsync status {}\n",
            report.job
        ),
    });
    // Only a streak-aware alert knows the next failures stay quiet.
    if alert.streak().is_none() {
        return;
    }
    let always = job
        .notify
        .as_ref()
        .is_some_and(|n| n.on == crate::config::job::NotifyOn::Always);
    if always {
        return;
    }
    s.push_str(&match (lang, repeat) {
        (Language::En, Some(d)) => format!(
            "No further alert until it recovers, but a reminder every {} while it stays broken.\n",
            span(d, lang)
        ),
        (Language::En, None) => "No further alert until it recovers.\n".to_string(),
        (Language::Zh, Some(d)) => {
            format!(
                "恢复之前不再逐次告警，仍失败时每 {}提醒一次。\n",
                span(d, lang)
            )
        }
        (Language::Zh, None) => "恢复之前不再告警。\n".to_string(),
    });
}

/// At most `max` characters, with "…" when cut.
pub(super) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// At most `max` bytes (cut on a character boundary), with "…" when cut.
fn truncate_bytes(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = "…";
    let mut cut = max.saturating_sub(ellipsis.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ellipsis}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::{job, report};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn streak(failures: u64) -> FailureStreak {
        FailureStreak {
            since: at("2026-11-02T18:30:05Z"),
            failures,
            alerted_at: None,
        }
    }

    #[test]
    fn chinese_is_the_default_with_seconds_in_the_jobs_timezone() {
        let j = job("[notify]\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let r = report(3, vec!["employee u1: field 工时: bad value".into()]);
        let alert = Alert::Failed {
            streak: Some(streak(1)),
        };
        let text = message_for(&j, &r, 1, at("2026-11-02T18:30:05Z"), &alert);
        assert!(
            text.starts_with(
                "attendsync：任务 j（企业微信 → 简道云）同步失败（退出码 1），运行时间 2026-11-03 02:30:05 +08:00 (Asia/Shanghai)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("2026-10：拉取 10，新建 2，更新 1，未变 4，失败 3"),
            "{text}"
        );
        assert!(text.contains("前 1 条错误（共 3 条）："), "{text}");
        assert!(text.contains("下次运行会重试失败的部分"), "{text}");
        assert!(text.contains("每 24 小时提醒一次"), "{text}");
        // A second later is another text: DingTalk delivers it.
        let later = message_for(&j, &r, 1, at("2026-11-02T18:30:06Z"), &alert);
        assert_ne!(text, later);

        let reminder = Alert::StillFailing { streak: streak(7) };
        let text = message_for(&j, &r, 1, at("2026-11-03T18:30:05Z"), &reminder);
        assert!(
            text.contains("仍然失败（退出码 1）：自 2026-11-03 02:30:05 +08:00 (Asia/Shanghai) 起已连续失败 7 次"),
            "{text}"
        );
        let recovered = Alert::Recovered { streak: streak(7) };
        let text = message_for(
            &j,
            &report(0, vec![]),
            0,
            at("2026-11-04T00:00:00Z"),
            &recovered,
        );
        assert!(
            text.contains("已恢复：本次运行成功，此前自 2026-11-03 02:30:05 +08:00 (Asia/Shanghai) 起连续失败 7 次"),
            "{text}"
        );
        assert!(!text.contains("重试"), "{text}");
    }

    #[test]
    fn english_texts_name_the_streak() {
        let j = job("[notify]\nlanguage = \"en\"\nrepeat_after = \"90m\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let r = report(0, vec![]);
        let now = at("2026-11-04T00:00:00Z");
        let text = message_for(
            &j,
            &r,
            1,
            now,
            &Alert::Failed {
                streak: Some(streak(1)),
            },
        );
        assert!(
            text.contains("FAILED (exit 1), run at 2026-11-04 08:00:00 +08:00"),
            "{text}"
        );
        assert!(
            text.contains("a reminder every 90 min while it stays broken"),
            "{text}"
        );
        let text = message_for(&j, &r, 1, now, &Alert::StillFailing { streak: streak(3) });
        assert!(
            text.contains("STILL FAILING (exit 1): 3 failed runs in a row since 2026-11-03 02:30:05 +08:00 (Asia/Shanghai)"),
            "{text}"
        );
        let text = message_for(&j, &r, 0, now, &Alert::Recovered { streak: streak(3) });
        assert!(
            text.contains(
                "RECOVERED: this run succeeded after 3 failed runs since 2026-11-03 02:30:05"
            ),
            "{text}"
        );
        let never = job("[notify]\nlanguage = \"en\"\nrepeat_after = \"never\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let text = message_for(
            &never,
            &r,
            1,
            now,
            &Alert::Failed {
                streak: Some(streak(1)),
            },
        );
        assert!(
            text.ends_with("No further alert until it recovers."),
            "{text}"
        );
    }

    #[test]
    fn local_time_shows_the_offset_on_both_sides_of_a_dst_change() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            local_time(at("2026-11-01T05:30:05Z"), ny),
            "2026-11-01 01:30:05 -04:00 (America/New_York)"
        );
        assert_eq!(
            local_time(at("2026-11-01T06:30:05Z"), ny),
            "2026-11-01 01:30:05 -05:00 (America/New_York)"
        );
    }

    #[test]
    fn text_is_bounded_shows_five_errors_and_no_secret() {
        let j = job(
            "[notify]\nlanguage = \"en\"\nwecom_robot = \"https://qyapi.example/cgi-bin/webhook/send?key=robot-key-789\"\n",
        );
        let mut errors: Vec<String> = (0..20)
            .map(|i| format!("employee u{i}: field 工时: bad value {}", "长".repeat(400)))
            .collect();
        errors[0] = "token wecom-secret-123 echoed; key robot-key-789; jdy-key-456".into();
        let r = report(37, errors);
        let now = DateTime::parse_from_rfc3339("2026-10-05T18:31:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let text = message_text(&j, &r, 1, now);
        assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
        assert!(
            text.starts_with(
                "attendsync: job j (wecom → Jiandaoyun) FAILED (exit 1), run at 2026-10-06 02:31:00 +08:00 (Asia/Shanghai)"
            ),
            "{text}"
        );
        assert!(
            text.contains("2026-10: pulled 10, created 2, updated 1, unchanged 0, failed 37"),
            "{text}"
        );
        assert!(text.contains("first errors (5 of 37):"), "{text}");
        assert!(
            text.contains("- 2026-10: token *** echoed; key ***; ***"),
            "{text}"
        );
        assert!(!text.contains("u5:"), "{text}");
        for s in ["wecom-secret-123", "robot-key-789", "jdy-key-456"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
    }

    #[test]
    fn a_failed_month_is_named_once_per_error_line() {
        let j = job("[notify]\nlanguage = \"en\"\nwebhook = \"http://127.0.0.1:9/h\"\n");
        let mut r = report(0, vec![]);
        r.months[0].month_error =
            Some("2026-10: Jiandaoyun data/batch_create: code 3000 (form not found)".into());
        let now = Utc::now();
        let text = message_text(&j, &r, 1, now);
        assert!(
            text.contains("- 2026-10: Jiandaoyun data/batch_create: code 3000"),
            "{text}"
        );
        assert!(!text.contains("2026-10: 2026-10"), "{text}");
        // An error that does not start with its month is shown as it is.
        assert_eq!(without_month("2026-10", "2026-1: x"), "2026-1: x");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("考勤同步", 2), "考勤…");
        assert_eq!(truncate_chars("abc", 3), "abc");
        let t = truncate_bytes("考勤同步".to_string(), 8);
        assert_eq!(t, "考…");
        assert!(t.len() <= 8);
    }
}
