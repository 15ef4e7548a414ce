//! The record store: ids, the text index behind `in` filters, and how a
//! stored record is rendered.

use std::collections::{BTreeSet, HashSet};

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::write::format_datetime;
use super::{JdyState, Shared, Stored};

impl JdyState {
    pub(super) fn new_id(&mut self) -> String {
        let id = format!("{:08x}{:016x}", self.id_prefix, self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn touch(&mut self) {
        self.data_modify_time = format_datetime(Utc::now());
    }

    /// Adds (`add`) or removes one field value of a record to or from the indexes.
    pub(super) fn index(&mut self, id: &str, field: &str, value: &Value, add: bool) {
        let set = match value {
            Value::Null => return,
            Value::String(text) => {
                let by_text = self.text_index.entry(field.to_owned()).or_default();
                if add {
                    by_text.entry(text.clone()).or_default()
                } else {
                    match by_text.get_mut(text) {
                        Some(set) => set,
                        None => return,
                    }
                }
            }
            _ => self.other_values.entry(field.to_owned()).or_default(),
        };
        if add {
            set.insert(id.to_owned());
        } else {
            set.remove(id);
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Stored> {
        let stored = self.records.remove(id)?;
        for (k, v) in &stored.fields {
            self.index(id, k, v, false);
        }
        Some(stored)
    }

    /// The ids, ascending, of every record whose `field` an `in` filter with these
    /// text values can match: a superset of the matches.
    pub(super) fn candidates(&self, field: &str, texts: &HashSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Some(by_text) = self.text_index.get(field) {
            for t in texts {
                if let Some(ids) = by_text.get(t) {
                    out.extend(ids.iter().cloned());
                }
            }
        }
        if let Some(ids) = self.other_values.get(field) {
            out.extend(ids.iter().cloned());
        }
        out
    }

    pub(super) fn insert(&mut self, fields: Map<String, Value>) -> String {
        let id = self.new_id();
        for (k, v) in &fields {
            self.index(&id, k, v, true);
        }
        let now = format_datetime(Utc::now());
        self.records.insert(
            id.clone(),
            Stored {
                fields,
                create_time: now.clone(),
                update_time: now.clone(),
            },
        );
        self.data_modify_time = now;
        id
    }

    pub(super) fn update(&mut self, id: &str, fields: Map<String, Value>) {
        let now = format_datetime(Utc::now());
        if self.records.contains_key(id) {
            for (k, v) in fields {
                let value = v.clone();
                let old = self
                    .records
                    .get_mut(id)
                    .and_then(|stored| stored.fields.insert(k.clone(), v));
                // The old value out of the indexes first: it may equal the new one.
                if let Some(old) = old {
                    self.index(id, &k, &old, false);
                }
                self.index(id, &k, &value, true);
            }
            if let Some(stored) = self.records.get_mut(id) {
                stored.update_time = now.clone();
            }
        }
        self.data_modify_time = now;
    }

    pub(super) fn render_id(&self, shared: &Shared, id: &str) -> Value {
        self.records
            .get(id)
            .map(|stored| render(shared, id, stored, None))
            .unwrap_or(Value::Null)
    }
}

pub(super) fn widget_list(shared: &Shared, state: &JdyState) -> Value {
    let widgets: Vec<Value> = shared
        .widgets
        .iter()
        .map(
            |w| json!({"name": w.name, "widgetName": w.widget_name, "label": w.name, "type": w.ty}),
        )
        .collect();
    let sys: Vec<Value> = [
        "creator",
        "createTime",
        "updater",
        "updateTime",
        "flowState",
    ]
    .iter()
    .map(|n| json!({"name": n}))
    .collect();
    json!({"widgets": widgets, "sysWidgets": sys, "dataModifyTime": state.data_modify_time})
}

pub(super) const SYSTEM_FIELDS: &[&str] = &[
    "appId",
    "entryId",
    "creator",
    "updater",
    "deleter",
    "createTime",
    "updateTime",
];

pub(super) fn system_field(shared: &Shared, stored: &Stored, name: &str) -> Option<Value> {
    let api_user = || json!({"name": "API", "username": "api", "status": 1, "type": 0});
    Some(match name {
        "appId" => json!(shared.app_id),
        "entryId" => json!(shared.entry_id),
        "creator" | "updater" => api_user(),
        "deleter" => Value::Null,
        "createTime" => json!(stored.create_time),
        "updateTime" => json!(stored.update_time),
        _ => return None,
    })
}

/// A record as `data/list` and friends return it: bare values keyed by alias.
pub(super) fn render(
    shared: &Shared,
    id: &str,
    stored: &Stored,
    fields: Option<&[String]>,
) -> Value {
    let mut out = Map::new();
    out.insert("_id".into(), json!(id));
    match fields {
        None => {
            for w in &shared.widgets {
                if let Some(v) = stored.fields.get(&w.name) {
                    out.insert(w.name.clone(), v.clone());
                }
            }
            for name in SYSTEM_FIELDS {
                if let Some(v) = system_field(shared, stored, name) {
                    out.insert((*name).to_owned(), v);
                }
            }
        }
        Some(names) => {
            for name in names {
                if let Some(w) = shared.widget(name) {
                    if let Some(v) = stored.fields.get(&w.name) {
                        out.insert(w.name.clone(), v.clone());
                    }
                } else if let Some(v) = system_field(shared, stored, name) {
                    out.insert(name.clone(), v);
                }
            }
        }
    }
    Value::Object(out)
}
