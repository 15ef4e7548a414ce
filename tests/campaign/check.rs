//! The checks after a trial's clean run: exactly one record per key, and every
//! value what the mapping makes of what the source says now.

use std::collections::{BTreeMap, HashMap};

use attendsync::mapping::{Mapping, Vars};
use attendsync::month::Month;
use serde_json::{Map, Value};

use crate::common;
use crate::world::{Side, World};

/// The shipped DingTalk job's `columns` and `leave_names`.
const DING_COLUMNS: [&str; 8] = [
    "出勤天数",
    "休息天数",
    "工作时长",
    "迟到次数",
    "迟到时长",
    "早退次数",
    "缺卡次数",
    "旷工天数",
];
const DING_LEAVE: [&str; 4] = ["年假", "事假", "病假", "调休"];

#[derive(Debug, Default)]
pub struct Verdict {
    /// Extra copies of a key.
    pub duplicates: usize,
    /// Keys the source has and the form lacks.
    pub lost: usize,
    /// Records whose values differ from the source's, or that the source has no key for.
    pub wrong: usize,
    /// The first few findings, for the trial's report.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.lost == 0 && self.wrong == 0
    }

    fn note(&mut self, text: String) {
        if self.notes.len() < 5 {
            self.notes.push(text);
        }
    }
}

type Key = Vec<String>;

/// Compares the form with the source for `months`; `revisions` are the WeCom
/// report changes made during the trial.
pub fn check(world: &World, months: &[&str], revisions: &HashMap<String, u32>) -> Verdict {
    let mut verdict = Verdict::default();
    let mapping = mapping(world);
    let skip = mapping.volatile_fields();
    let keys = mapping.key_fields().to_vec();
    let expected = match expected(world, &mapping, months, revisions) {
        Ok(rows) => rows,
        Err(e) => {
            verdict.wrong += 1;
            verdict.note(format!("cannot compute the expected records: {e}"));
            return verdict;
        }
    };
    let mut held: BTreeMap<Key, Vec<Map<String, Value>>> = BTreeMap::new();
    for record in world.jdy().records() {
        held.entry(key_of(&record, &keys)).or_default().push(record);
    }
    for (key, copies) in &held {
        if copies.len() > 1 {
            verdict.duplicates += copies.len() - 1;
            verdict.note(format!("{key:?} held {} times", copies.len()));
        }
        let Some(want) = expected.get(key) else {
            verdict.wrong += copies.len();
            verdict.note(format!("{key:?} is in the form but not at the source"));
            continue;
        };
        for record in copies {
            let diff: Vec<String> = want
                .iter()
                .filter(|(field, _)| !skip.contains(field))
                .filter(|(field, value)| record.get(field.as_str()) != Some(value))
                .map(|(field, value)| {
                    format!(
                        "{field}: form {:?}, source {value}",
                        record.get(field.as_str())
                    )
                })
                .collect();
            if !diff.is_empty() {
                verdict.wrong += 1;
                verdict.note(format!("{key:?} differs: {}", diff.join("; ")));
            }
        }
    }
    for key in expected.keys().filter(|k| !held.contains_key(*k)) {
        verdict.lost += 1;
        verdict.note(format!("{key:?} is missing from the form"));
    }
    verdict
}

fn mapping(world: &World) -> Mapping {
    match &world.side {
        Side::Wecom(_) => {
            let file = attendsync::config::SourceFile::new(
                "wecom_monthly.toml",
                common::shipped_mapping(),
            );
            match Mapping::parse(&file) {
                Ok(m) => m,
                Err(e) => panic!("the shipped WeCom mapping must parse: {e:?}"),
            }
        }
        Side::Dingtalk(_) => common::dingtalk::mapping(),
    }
}

fn key_of(record: &Map<String, Value>, keys: &[String]) -> Key {
    keys.iter()
        .map(|k| match record.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect()
}

/// Per key, the fields the mapping makes of each employee's source record.
fn expected(
    world: &World,
    mapping: &Mapping,
    months: &[&str],
    revisions: &HashMap<String, u32>,
) -> Result<BTreeMap<Key, Vec<(String, Value)>>, String> {
    let keys = mapping.key_fields().to_vec();
    let mut out = BTreeMap::new();
    for text in months {
        let month: Month = text.parse().map_err(|e| format!("month {text}: {e}"))?;
        let vars = Vars {
            month,
            timezone: chrono_tz::Asia::Shanghai,
            job: world.kind.job().into(),
            source: world.kind.name().into(),
            synced_at: chrono::Utc::now(),
        };
        let (year, number) = text
            .split_once('-')
            .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
            .ok_or_else(|| format!("month {text}"))?;
        let columns: Vec<String> = DING_COLUMNS.iter().map(|s| s.to_string()).collect();
        let leave: Vec<String> = DING_LEAVE.iter().map(|s| s.to_string()).collect();
        let org = match &world.side {
            Side::Wecom(env) => env.wecom.org(),
            Side::Dingtalk(env) => env.dingtalk.org(),
        };
        for user in &org.users {
            let record = match &world.side {
                Side::Wecom(_) => {
                    let revision = revisions.get(&user.userid).copied().unwrap_or(0);
                    attendsync_sim::wecom_month_record(org, user, year, number, revision)
                }
                Side::Dingtalk(env) => env
                    .dingtalk
                    .expected_record(&user.userid, month, &columns, &leave)
                    .ok_or_else(|| format!("no DingTalk record for {}", user.userid))?,
            };
            // A record the mapping refuses is never written: none expected.
            let Ok(row) = mapping.apply(&record, &vars) else {
                continue;
            };
            let fields: Vec<(String, Value)> = row
                .fields()
                .map(|(f, v)| (f.to_string(), v.clone()))
                .collect();
            let as_map: Map<String, Value> = fields.iter().cloned().collect();
            out.insert(key_of(&as_map, &keys), fields);
        }
    }
    Ok(out)
}
