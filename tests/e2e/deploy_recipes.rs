//! The deployment recipes in deploy/ keep their security properties:
//! the cron line opens no file as root, the systemd units carry the sandboxing
//! keys, and the Kubernetes CronJob runs without a service-account token. Plain file
//! checks; `systemd-analyze` is asked for the units' score when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// The job lines of a cron.d file: not comments, not `VAR=value` settings.
fn cron_jobs(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            !first.contains('=')
        })
        .collect()
}

/// Whether `cmd` (the command part of a cron line, run by root's /bin/sh) opens a
/// file or pipes before `runuser` has dropped to the service user. Returns the
/// reason when it does.
fn root_touches_files(cmd: &str) -> Option<String> {
    let Some(at) = cmd.find("runuser ") else {
        return Some("no runuser: the command would run as root".into());
    };
    let (before, after) = cmd.split_at(at);
    if let Some(c) = before.chars().find(|c| matches!(c, '>' | '<' | '|' | '`')) {
        return Some(format!("`{c}` before runuser runs as root: {before}"));
    }
    if before.contains("$(") {
        return Some(format!("command substitution before runuser: {before}"));
    }
    let Some(rest) = after.strip_prefix("runuser -u attendsync -- /bin/sh -c '") else {
        return Some(format!(
            "expected `runuser -u attendsync -- /bin/sh -c '…'`, got: {after}"
        ));
    };
    let Some(end) = rest.find('\'') else {
        return Some("unterminated quote after sh -c".into());
    };
    let tail = rest[end + 1..].trim();
    if !tail.is_empty() {
        return Some(format!(
            "text after the quoted command runs in root's shell: {tail}"
        ));
    }
    None
}

#[test]
fn crontab_opens_its_log_only_after_dropping_privileges() {
    let text = read("crontab");
    let jobs = cron_jobs(&text);
    assert_eq!(
        jobs.len(),
        1,
        "deploy/crontab should hold one job line: {jobs:?}"
    );
    for line in jobs {
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        assert_eq!(
            fields.len(),
            7,
            "five time fields, a user and a command: {line}"
        );
        assert_eq!(fields[5], "root", "a cron.d line names its user: {line}");
        let cmd = fields[6];
        if let Some(why) = root_touches_files(cmd) {
            panic!("deploy/crontab: {why}\n  line: {line}");
        }
        assert!(
            cmd.contains(">>/var/log/attendsync/run.log 2>&1'") || cmd.contains("systemd-cat"),
            "the run's output should go to the log file (inside the quotes) or the journal: {line}"
        );
        assert!(
            !cmd.contains('%'),
            "cron turns % into a newline; escape it: {line}"
        );
    }
}

#[test]
fn the_crontab_check_catches_a_redirection_outside_runuser() {
    // The recipe as it was before it was hardened: root's shell opened the log.
    let old = "set -a && . /etc/attendsync/attendsync.env && set +a && exec runuser -u attendsync -- /usr/local/bin/attendsync --config-dir /etc/attendsync run >>/var/log/attendsync/run.log 2>&1";
    assert!(root_touches_files(old).is_some());
    let after_quote = "set -a && exec runuser -u attendsync -- /bin/sh -c 'exec attendsync run' >>/var/log/x 2>&1";
    assert!(root_touches_files(after_quote).is_some());
    let before = "exec 2>>/var/log/x; runuser -u attendsync -- /bin/sh -c 'exec attendsync run'";
    assert!(root_touches_files(before).is_some());
    let fine = "set -a && . /etc/a.env && set +a && exec runuser -u attendsync -- /bin/sh -c 'exec attendsync run >>/var/log/x 2>&1'";
    assert_eq!(root_touches_files(fine), None);
}

/// `Key=value` pairs of a unit's `[Service]` section, in order (keys may repeat).
fn service_section(text: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

const UNITS: [&str; 2] = ["attendsync.service", "attendsync-daemon.service"];

#[test]
fn systemd_units_carry_the_hardening_keys() {
    let required: &[(&str, &str)] = &[
        ("User", "attendsync"),
        ("UMask", "0077"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("PrivateUsers", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        // What the job needs: the network to the vendors and its state directory.
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("StateDirectory", "attendsync"),
    ];
    for unit in UNITS {
        let keys = service_section(&read(unit));
        for (key, want) in required {
            assert!(
                keys.iter().any(|(k, v)| k == key && v == want),
                "deploy/{unit}: [Service] lacks {key}={want}"
            );
        }
        for (key, v) in &keys {
            // Both would hide what the lease check reads under /proc.
            assert!(
                !(key == "ProtectProc" && v != "default") && key != "ProcSubset",
                "deploy/{unit}: {key}={v} hides /proc entries the job lease needs"
            );
            assert!(
                !(key == "PrivateNetwork" && v == "yes"),
                "deploy/{unit}: the job needs the network"
            );
            assert!(
                key != "AmbientCapabilities" || v.is_empty(),
                "deploy/{unit}: no capabilities: {key}={v}"
            );
        }
    }
}

#[test]
fn systemd_analyze_rates_the_units_at_most_2_0() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed; skipped");
        return;
    };
    if !out.status.success() {
        eprintln!("systemd-analyze --version failed; skipped");
        return;
    }
    for unit in UNITS {
        // --threshold is on the 0–100 scale: 20 is an exposure of 2.0.
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20"])
            .arg(deploy(unit))
            .output()
            .expect("run systemd-analyze");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Unknown option") || err.contains("unrecognized option") {
            eprintln!("systemd-analyze has no --offline/--threshold (older than 250); skipped");
            return;
        }
        assert!(
            out.status.success(),
            "deploy/{unit} is rated above 2.0:\n{}\n{err}",
            text.lines().last().unwrap_or("")
        );
    }
}

#[test]
fn kubernetes_cronjob_runs_without_token_or_privileges() {
    let text = read("kubernetes/cronjob.yaml");
    let cronjob = text
        .split("\n---")
        .find(|doc| doc.lines().any(|l| l.trim() == "kind: CronJob"))
        .expect("a CronJob in deploy/kubernetes/cronjob.yaml");
    let lines: Vec<&str> = cronjob
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let find = |want: &str| -> Option<&str> {
        lines
            .iter()
            .copied()
            .find(|l| l.split('#').next().unwrap_or("").trim() == want)
    };
    let token = find("automountServiceAccountToken: false")
        .expect("the CronJob's pod sets automountServiceAccountToken: false");
    let restart = find("restartPolicy: Never").expect("the pod spec's restartPolicy");
    assert_eq!(
        indent(token),
        indent(restart),
        "automountServiceAccountToken belongs in the pod spec, beside restartPolicy"
    );
    assert!(!text.contains("automountServiceAccountToken: true"));
    for want in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "type: RuntimeDefault",
    ] {
        assert!(find(want).is_some(), "the CronJob lacks `{want}`");
    }
    assert!(!cronjob.contains("privileged: true"));
    assert!(
        !cronjob.contains("add: ["),
        "no capabilities are added back"
    );
}

/// The Prometheus rules alert on the metrics the daemon really serves, and the
/// Grafana dashboard is JSON that queries them.
#[test]
fn the_prometheus_rules_and_the_dashboard_use_served_metrics() {
    let rules = read("prometheus/attendsync-alerts.yml");
    assert!(rules.contains("time() - attendsync_last_success_timestamp_seconds > 26 * 3600"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/attendsync-dashboard.json"))
            .unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"));
    let served = [
        "attendsync_runs_total",
        "attendsync_records_total",
        "attendsync_vendor_calls_total",
        "attendsync_vendor_throttled_total",
        "attendsync_metered_calls_spent",
        "attendsync_metered_calls_budget",
        "attendsync_last_success_timestamp_seconds",
        "attendsync_queued_runs",
    ];
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    assert!(!panels.is_empty());
    for text in panels
        .iter()
        .filter_map(|p| p["targets"][0]["expr"].as_str())
        .chain(
            rules
                .lines()
                .filter(|l| l.trim_start().starts_with("expr:")),
        )
    {
        let names: Vec<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("attendsync_"))
            .collect();
        for name in names {
            assert!(served.contains(&name), "{name} (in `{text}`) is not served");
        }
    }
}
