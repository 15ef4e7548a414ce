//! The `[source]` table of a job file: which vendor (`type`), dispatched to the
//! vendor's own section reader in its folder, and the scope both sources share.

use super::dingtalk::config::{read_dingtalk, DingtalkSource};
use super::wecom::config::{read_wecom, WecomSource};
use crate::toml_reader::{one_of, ConfigError, Table};

/// A job's source, as its `[source]` table configures it.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Wecom(WecomSource),
    Dingtalk(DingtalkSource),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Wecom(_) => "wecom",
            SourceConfig::Dingtalk(_) => "dingtalk",
        }
    }
}

/// Reads a vendor's `[source]` section (errors, then warnings).
type ReadSection =
    fn(&Table<'_, '_>, &mut Vec<ConfigError>, &mut Vec<ConfigError>) -> Option<SourceConfig>;

/// Each `type` and its section's reader, in the order `check` lists them: the
/// one line a new source adds here.
const SOURCE_TYPES: &[(&str, ReadSection)] = &[
    ("wecom", |t, e, w| {
        read_wecom(t, e, w).map(SourceConfig::Wecom)
    }),
    ("dingtalk", |t, e, w| {
        read_dingtalk(t, e, w).map(SourceConfig::Dingtalk)
    }),
];

/// `[source]`: its `type` chooses the vendor, whose reader checks the rest.
pub fn read_source(
    t: &Table<'_, '_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<SourceConfig> {
    let types: Vec<&str> = SOURCE_TYPES.iter().map(|(name, _)| *name).collect();
    let kind = if t.contains("type") {
        t.choice("type", &types, errors)
    } else {
        errors.push(t.error(
            t.span(),
            "type",
            format!("required key is missing; allowed: {}", one_of(&types)),
        ));
        None
    }?;
    let (_, read) = SOURCE_TYPES.iter().find(|(name, _)| *name == kind.value)?;
    read(t, errors, warnings)
}

/// Which employees a job covers: the whole visible organisation by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub departments: Vec<u64>,
    pub userids: Vec<String>,
}

/// `departments` or `userids`, the keys both sources read.
pub fn read_scope(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Scope> {
    let mut ok = true;
    let mut departments = Vec::new();
    if let Some(ids) = t.integer_array("departments", errors) {
        for id in ids {
            match u64::try_from(id.value) {
                Ok(v) if v > 0 => departments.push(v),
                _ => {
                    ok = false;
                    errors.push(t.error(
                        id.span,
                        "departments",
                        "department ids are positive integers",
                    ));
                }
            }
        }
    } else if t.contains("departments") {
        ok = false;
    }
    let userids = match t.string_array("userids", errors) {
        Some(ids) => {
            for id in ids.iter().filter(|u| u.value.trim().is_empty()) {
                ok = false;
                errors.push(t.error(id.span.clone(), "userids", "a userid is empty"));
            }
            ids.into_iter().map(|u| u.value).collect()
        }
        None => {
            ok &= !t.contains("userids");
            Vec::new()
        }
    };
    ok &= scope_is_usable(t, errors);
    ok.then_some(Scope {
        departments,
        userids,
    })
}

/// An empty list selects nobody, and `departments` with `userids` would leave
/// one of them unused: both are errors rather than a silent surprise.
fn scope_is_usable(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> bool {
    let before = errors.len();
    let span_of = |key: &str| t.get(key).map(|v| v.span()).unwrap_or_else(|| t.span());
    for key in ["departments", "userids"] {
        let empty = t
            .get(key)
            .and_then(|v| v.get_ref().as_array())
            .is_some_and(|items| items.is_empty());
        if empty {
            errors.push(t.error(
                span_of(key),
                key,
                "is empty, which selects nobody; remove the key to sync everyone the app can see",
            ));
        }
    }
    if t.contains("departments") && t.contains("userids") {
        errors.push(t.error(
            span_of("userids"),
            "userids",
            "`departments` and `userids` are both set, and only one can choose whom to sync; keep one of them",
        ));
    }
    errors.len() == before
}
