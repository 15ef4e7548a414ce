//! The status page's HTML: plain, server-rendered, no script, readable on a
//! phone; every time in the job's timezone; every text escaped.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::store::{MonthRow, RequestRow, RunMonth, RunRow};

/// What the page shows of one job.
pub struct JobView {
    pub name: String,
    pub source: String,
    /// `None`: runs only on request.
    pub schedule: Option<String>,
    pub timezone: Tz,
    pub next_fire: Option<DateTime<Utc>>,
    pub running: bool,
    pub queued: u64,
    pub months: Vec<MonthRow>,
    /// For a job with `[events]`.
    pub events: Option<EventsView>,
}

/// A job's events as SQLite holds them.
pub struct EventsView {
    pub link: Option<crate::store::EventLink>,
    pub waiting: u64,
    pub received: Vec<crate::store::EventCount>,
}

/// Everything on the status page.
pub struct StatusView {
    pub jobs: Vec<JobView>,
    /// Recent runs, newest first, each with its job's timezone.
    pub runs: Vec<(RunRow, Tz)>,
    /// Requested runs not done yet.
    pub requests: Vec<RequestRow>,
    pub csrf: String,
}

/// `text` safe inside HTML text and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one URL path segment: a job name (a file stem) may hold `#`,
/// `?` or `%`, which would otherwise cut or break the form's action.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A stored RFC 3339 time in `tz` (`2026-12-06 10:30 CST`); as stored when it does not parse.
pub fn local(text: &str, tz: Tz) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| at(t.with_timezone(&Utc), tz))
        .unwrap_or_else(|_| text.to_string())
}

fn at(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0 auto;max-width:60rem;padding:.75rem;line-height:1.4;color:#1b1f24}\
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.92rem}\
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;white-space:nowrap}\
td.err{white-space:normal;color:#a40e26}.ok{color:#1a7f37}.bad{color:#a40e26}\
form.rerun{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}\
input,textarea,button{font:inherit}textarea{width:14rem;height:2.2rem}\
button{padding:.35rem .8rem;border:1px solid #1f6feb;background:#1f6feb;color:#fff;border-radius:.3rem}\
.note{background:#ddf4ff;padding:.5rem .75rem;border-radius:.3rem}\
@media (max-width:40rem){table,tbody,tr,td{display:block;width:auto}tr.head{display:none}\
tr{border-bottom:1px solid #d0d7de;padding:.4rem 0}td{border:none;padding:.1rem .25rem;white-space:normal}\
td[data-label]::before{content:attr(data-label) ': ';font-weight:600}td:empty{display:none}}";

fn head(title: &str, refresh: Option<u32>) -> String {
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}

/// The login form; `failed` after a wrong token.
pub fn login(failed: bool) -> String {
    let mut html = head("attendsync — sign in", None);
    html.push_str("<h1>attendsync</h1>");
    if failed {
        html.push_str("<p class=\"bad\" id=\"login-failed\">That token is not right.</p>");
    }
    html.push_str(
        "<form method=\"post\" action=\"/login\"><label>API token<br>\
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label> \
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form></body></html>",
    );
    html
}

/// A header row (hidden on a phone, where each cell says its label).
fn header(html: &mut String, labels: &[&str]) {
    html.push_str("<tr class=\"head\">");
    for l in labels {
        let _ = write!(html, "<th>{}</th>", esc(l));
    }
    html.push_str("</tr>");
}

/// A row: (label, cell HTML already escaped, class).
fn row(html: &mut String, cells: &[(&str, String, &str)]) {
    html.push_str("<tr>");
    for (label, content, class) in cells {
        let _ = write!(
            html,
            "<td data-label=\"{}\" class=\"{class}\">{content}</td>",
            esc(label)
        );
    }
    html.push_str("</tr>");
}

fn status_class(status: &str) -> &'static str {
    match status {
        "ok" | "done" => "ok",
        "failed" | "partial" | "interrupted" => "bad",
        _ => "",
    }
}

/// The status page.
pub fn status(view: &StatusView) -> String {
    let mut html = head("attendsync", None);
    html.push_str("<h1>attendsync</h1><form method=\"post\" action=\"/logout\">");
    let _ = write!(
        html,
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&view.csrf)
    );
    html.push_str("<button type=\"submit\">Sign out</button></form>");
    jobs_table(&mut html, &view.jobs);
    events_table(&mut html, &view.jobs);
    requests_table(&mut html, &view.requests);
    for job in &view.jobs {
        months_table(&mut html, job, &view.csrf);
    }
    runs_table(&mut html, &view.runs);
    html.push_str("</body></html>");
    html
}

fn jobs_table(html: &mut String, jobs: &[JobView]) {
    html.push_str("<h2>Jobs</h2><div class=\"scroll\"><table id=\"jobs\">");
    header(html, &["Job", "Source", "Schedule", "Next run", "Now"]);
    for j in jobs {
        let next = j
            .next_fire
            .map(|t| at(t, j.timezone))
            .unwrap_or_else(|| "never".into());
        let now = match (j.running, j.queued) {
            (true, 0) => "running".to_string(),
            (true, q) => format!("running, {q} queued"),
            (false, 0) => "idle".to_string(),
            (false, q) => format!("{q} queued"),
        };
        let schedule = match &j.schedule {
            Some(text) => format!("<code>{}</code> ({})", esc(text), esc(j.timezone.name())),
            None => format!("on request only ({})", esc(j.timezone.name())),
        };
        row(
            html,
            &[
                ("Job", esc(&j.name), ""),
                ("Source", esc(&j.source), ""),
                ("Schedule", schedule, ""),
                ("Next run", esc(&next), ""),
                ("Now", esc(&now), ""),
            ],
        );
    }
    html.push_str("</table></div>");
}

fn events_table(html: &mut String, jobs: &[JobView]) {
    let with_events: Vec<(&JobView, &EventsView)> = jobs
        .iter()
        .filter_map(|j| j.events.as_ref().map(|e| (j, e)))
        .collect();
    if with_events.is_empty() {
        return;
    }
    html.push_str("<h2>Re-pulls on change</h2><div class=\"scroll\"><table id=\"events\">");
    header(html, &["Job", "Connection", "Waiting", "Received"]);
    for (j, e) in with_events {
        let link = match &e.link {
            Some(l) if l.detail.is_empty() => format!("{} ({})", l.state, local(&l.at, j.timezone)),
            Some(l) => format!("{}: {} ({})", l.state, l.detail, local(&l.at, j.timezone)),
            None => "not started".to_string(),
        };
        let received: Vec<String> = e
            .received
            .iter()
            .map(|c| format!("{} {}", c.kind, c.received))
            .collect();
        let class = match e.link.as_ref().map(|l| l.state.as_str()) {
            Some("connected" | "listening") => "ok",
            Some("retrying") => "failed",
            _ => "",
        };
        row(
            html,
            &[
                ("Job", esc(&j.name), ""),
                ("Connection", esc(&link), class),
                ("Waiting", format!("{} employee-month(s)", e.waiting), ""),
                ("Received", esc(&received.join(", ")), ""),
            ],
        );
    }
    html.push_str("</table></div>");
}

fn requests_table(html: &mut String, requests: &[RequestRow]) {
    if requests.is_empty() {
        return;
    }
    html.push_str("<h2>Requested runs</h2><div class=\"scroll\"><table id=\"requests\">");
    header(html, &["#", "Job", "Month", "Employees", "State"]);
    for r in requests {
        row(
            html,
            &[
                (
                    "#",
                    format!("<a href=\"/runs/{id}\">{id}</a>", id = r.id),
                    "",
                ),
                ("Job", esc(&r.job), ""),
                ("Month", esc(&r.request.month), ""),
                ("Employees", esc(&employees_text(&r.request.employees)), ""),
                ("State", esc(&r.state), ""),
            ],
        );
    }
    html.push_str("</table></div>");
}

fn employees_text(employees: &[String]) -> String {
    if employees.is_empty() {
        "everyone".into()
    } else {
        employees.join(", ")
    }
}

fn months_table(html: &mut String, job: &JobView, csrf: &str) {
    let _ = write!(html, "<h2>{} — months</h2>", esc(&job.name));
    if job.months.is_empty() {
        html.push_str("<p>No month synced yet.</p>");
        return;
    }
    html.push_str("<div class=\"scroll\"><table class=\"months\">");
    let labels = [
        "Month",
        "Pulled",
        "Created",
        "Updated",
        "Unchanged",
        "Failed",
        "Stored",
        "Last write",
        "Rerun",
    ];
    header(html, &labels);
    for m in &job.months {
        let c = &m.counts;
        let month = m.month.to_string();
        let form = format!(
            "<form class=\"rerun\" method=\"post\" action=\"/jobs/{job}/rerun\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"month\" value=\"{month}\">\
             <textarea name=\"employees\" placeholder=\"employee ids (optional)\" aria-label=\"employees\"></textarea>\
             <button type=\"submit\" class=\"rerun-button\" data-month=\"{month}\">Rerun this month</button></form>",
            job = segment(&job.name),
            csrf = esc(csrf),
        );
        let failed_class = if c.failed > 0 { "bad" } else { "" };
        let mut cells = vec![
            ("Month", month.clone(), ""),
            ("Pulled", c.pulled.to_string(), ""),
            ("Created", c.created.to_string(), ""),
            ("Updated", c.updated.to_string(), ""),
            ("Unchanged", c.unchanged.to_string(), ""),
            ("Failed", c.failed.to_string(), failed_class),
            ("Stored", m.stored.to_string(), ""),
            ("Last write", esc(&local(&m.at, job.timezone)), ""),
        ];
        if let Some(e) = &m.error {
            cells.push(("Error", esc(e), "err"));
        }
        cells.push(("Rerun", form, ""));
        row(html, &cells);
    }
    html.push_str("</table></div>");
}

fn runs_table(html: &mut String, runs: &[(RunRow, Tz)]) {
    html.push_str("<h2>Recent runs</h2><div class=\"scroll\"><table id=\"runs\">");
    header(html, &["#", "Job", "Command", "Started", "Status", "Error"]);
    for (r, tz) in runs {
        row(
            html,
            &[
                ("#", r.id.to_string(), ""),
                ("Job", esc(&r.job), ""),
                ("Command", esc(&r.command), ""),
                ("Started", esc(&local(&r.started_at, *tz)), ""),
                ("Status", esc(&r.status), status_class(&r.status)),
                ("Error", esc(r.message.as_deref().unwrap_or("")), "err"),
            ],
        );
    }
    html.push_str("</table></div>");
}

/// One requested run; refreshes itself every 2 s until it is done.
pub fn run(request: &RequestRow, run: Option<&(RunRow, Vec<RunMonth>)>, tz: Tz) -> String {
    let done = request.state != "queued" && request.state != "running";
    let mut html = head(
        &format!("attendsync — run {}", request.id),
        (!done).then_some(2),
    );
    let _ = write!(
        html,
        "<h1>Requested run {}</h1><p class=\"note\">{} {} for {}: <strong id=\"state\" class=\"{}\">{}</strong></p>",
        request.id,
        esc(&request.job),
        esc(&request.request.month),
        esc(&employees_text(&request.request.employees)),
        status_class(&request.state),
        esc(&request.state)
    );
    if let Some((r, months)) = run {
        let _ = write!(
            html,
            "<p>Run {} started {}; status <strong id=\"run-status\" class=\"{}\">{}</strong>{}</p>",
            r.id,
            esc(&local(&r.started_at, tz)),
            status_class(&r.status),
            esc(&r.status),
            r.message
                .as_deref()
                .map(|m| format!(": <span class=\"err\">{}</span>", esc(m)))
                .unwrap_or_default()
        );
        html.push_str("<div class=\"scroll\"><table id=\"run-months\">");
        header(
            &mut html,
            &[
                "Month",
                "Pulled",
                "Created",
                "Updated",
                "Unchanged",
                "Failed",
                "Error",
            ],
        );
        for m in months {
            let c = &m.counts;
            row(
                &mut html,
                &[
                    ("Month", esc(&m.month), ""),
                    ("Pulled", c.pulled.to_string(), ""),
                    ("Created", c.created.to_string(), ""),
                    ("Updated", c.updated.to_string(), ""),
                    ("Unchanged", c.unchanged.to_string(), ""),
                    ("Failed", c.failed.to_string(), ""),
                    ("Error", esc(m.error.as_deref().unwrap_or("")), "err"),
                ],
            );
        }
        html.push_str("</table></div>");
    }
    html.push_str("<p><a href=\"/\">Back to the status page</a></p></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_times_are_local() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let shanghai: Tz = "Asia/Shanghai".parse().expect("zone");
        assert_eq!(
            local("2026-12-05T18:30:00.000Z", shanghai),
            "2026-12-06 02:30 CST"
        );
        assert_eq!(local("not a time", shanghai), "not a time");
    }

    #[test]
    fn a_job_name_is_one_path_segment() {
        assert_eq!(segment("wecom_monthly-2.x~"), "wecom_monthly-2.x~");
        assert_eq!(segment("hr#2?x%/\"<"), "hr%232%3Fx%25%2F%22%3C");
        assert_eq!(segment("考勤"), "%E8%80%83%E5%8B%A4");
    }

    #[test]
    fn the_login_form_posts_the_token_and_the_page_fits_a_phone() {
        let html = login(true);
        assert!(html.contains("action=\"/login\"") && html.contains("type=\"password\""));
        assert!(html.contains("width=device-width"));
        assert!(html.contains("not right"));
    }

    #[test]
    fn a_job_with_events_shows_its_connection_waiting_marks_and_events() {
        let shanghai: Tz = "Asia/Shanghai".parse().expect("zone");
        let job = |name: &str, events: Option<EventsView>| JobView {
            name: name.into(),
            source: "dingtalk".into(),
            schedule: None,
            timezone: shanghai,
            next_fire: None,
            running: false,
            queued: 0,
            months: Vec::new(),
            events,
        };
        let events = EventsView {
            link: Some(crate::store::EventLink {
                job: "dt".into(),
                state: "retrying".into(),
                detail: "try 2: <refused>".into(),
                at: "2026-12-05T18:30:00.000Z".into(),
            }),
            waiting: 3,
            received: vec![crate::store::EventCount {
                kind: "attendance_check_record".into(),
                received: 12,
                last_at: "2026-12-05T18:30:00.000Z".into(),
            }],
        };
        let mut html = String::new();
        events_table(&mut html, &[job("plain", None), job("dt", Some(events))]);
        assert!(html.contains("Re-pulls on change"), "{html}");
        assert!(
            html.contains("retrying: try 2: &lt;refused&gt; (2026-12-06 02:30 CST)"),
            "{html}"
        );
        assert!(
            html.contains("3 employee-month(s)") && html.contains("attendance_check_record 12")
        );
        assert!(!html.contains("plain"), "a job without events has no row");
        let mut none = String::new();
        events_table(&mut none, &[job("plain", None)]);
        assert!(none.is_empty());
    }
}
