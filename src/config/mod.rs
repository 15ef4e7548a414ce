//! Job and mapping configuration: parsing, `${VAR}` interpolation, validation.

pub mod job;
pub mod notify;

// The located TOML reader lives below both `config` and `mapping`; its error
// types are part of loading's answer.
pub use crate::toml_reader::{ConfigError, ConfigErrors, SourceFile};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mapping::Mapping;
use crate::toml_reader::EnvLookup;
use job::Job;

/// A validated job and its compiled mapping.
#[derive(Clone)]
pub struct LoadedJob {
    pub job: Job,
    pub mapping: Arc<Mapping>,
    pub file: PathBuf,
    /// Allowed but probably wrong (e.g. a limit above the documented quota):
    /// `check` prints these.
    pub warnings: Vec<ConfigError>,
}

/// The job files of a config dir, by name, sorted.
pub fn job_files(config_dir: &Path) -> Result<Vec<(String, PathBuf)>, ConfigErrors> {
    let dir = config_dir.join("jobs");
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        ConfigErrors(vec![SourceFile::new(&dir, "").error(
            None,
            "",
            format!("cannot read the jobs folder ({e}); pass --config-dir with the folder that holds jobs/ and mappings/"),
        )])
    })?;
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| Some((job::job_name(&p)?, p)))
        .collect();
    out.sort();
    Ok(out)
}

fn read_file(path: &Path) -> Result<SourceFile, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| SourceFile::new(path, text))
        .map_err(|e| {
            SourceFile::new(path, "").error(None, "", format!("cannot read the file: {e}"))
        })
}

/// The line of the `mapping = …` key, to point at it when the file is missing.
fn mapping_key_error(file: &SourceFile, message: String) -> ConfigError {
    let offset = file
        .text
        .lines()
        .scan(0usize, |pos, line| {
            let start = *pos;
            *pos += line.len() + 1;
            Some((start, line))
        })
        .find(|(_, line)| line.trim_start().starts_with("mapping"))
        .map(|(start, _)| start);
    file.error(offset.map(|o| o..o), "mapping", message)
}

/// Loads and validates the selected jobs (every job when `only` is empty) and
/// their mappings, collecting every problem before reporting.
pub fn load(
    config_dir: &Path,
    only: &[String],
    env: EnvLookup<'_>,
) -> Result<Vec<LoadedJob>, ConfigErrors> {
    load_with(config_dir, only, env, false)
}

/// [`load`] for `run` and `rerun`: the `[events]` secrets are the daemon's
/// alone, so a job whose only problem is an unset variable there loads
/// without its events (a shell without the callback secrets can still rerun).
pub fn load_for_runs(
    config_dir: &Path,
    only: &[String],
    env: EnvLookup<'_>,
) -> Result<Vec<LoadedJob>, ConfigErrors> {
    load_with(config_dir, only, env, true)
}

fn load_with(
    config_dir: &Path,
    only: &[String],
    env: EnvLookup<'_>,
    events_optional: bool,
) -> Result<Vec<LoadedJob>, ConfigErrors> {
    let all = job_files(config_dir)?;
    let mut errors = Vec::new();
    let mut selected = Vec::new();
    if only.is_empty() {
        selected = all.clone();
        if all.is_empty() {
            errors.push(SourceFile::new(config_dir.join("jobs"), "").error(
                None,
                "",
                "no job files (*.toml) found",
            ));
        }
    } else {
        for name in only {
            match all.iter().find(|(n, _)| n == name) {
                Some(found) => selected.push(found.clone()),
                None => {
                    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
                    errors.push(SourceFile::new(config_dir.join("jobs"), "").error(
                        None,
                        "",
                        format!(
                            "unknown job \"{name}\"; available jobs: {}",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    let mut mappings: HashMap<String, Option<Arc<Mapping>>> = HashMap::new();
    let mut loaded = Vec::new();
    for (name, path) in selected {
        let file = match read_file(&path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let (job, warnings) = match job::parse_job_with_warnings(&name, &file, env) {
            Ok((job, warnings)) => (job, Some(warnings)),
            Err(es) if events_optional && only_events_secrets(&es) => {
                match job_without_events(&name, &file, env) {
                    Some(job) => (job, Some(Vec::new())),
                    None => {
                        errors.extend(es);
                        continue;
                    }
                }
            }
            Err(es) => {
                errors.extend(es);
                // Mapping problems are still worth reporting when the job only
                // failed for want of its secrets: `check` on a laptop without
                // them must still catch a typo in a mapping edit.
                match job_with_stand_ins(&name, &file, env) {
                    Some(job) => (job, None),
                    None => continue,
                }
            }
        };
        let mapping = mappings
            .entry(job.mapping.clone())
            .or_insert_with(|| read_mapping(config_dir, &file, &job, &mut errors))
            .clone();
        let Some(mapping) = mapping else { continue };
        check_mapping(&job, &mapping, &mut errors);
        if let Some(warnings) = warnings {
            loaded.push(LoadedJob {
                job,
                mapping,
                file: path,
                warnings,
            });
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Whether every problem is an unset variable in `[events]`.
fn only_events_secrets(errors: &[ConfigError]) -> bool {
    errors
        .iter()
        .all(|e| e.key.starts_with("events.") && e.message.contains("is not set"))
}

/// The job read with a stand-in for each unset variable (only `[events]`'s
/// are, by [`only_events_secrets`]), its events dropped: never used.
fn job_without_events(name: &str, file: &SourceFile, env: EnvLookup<'_>) -> Option<Job> {
    // 43 letters and digits pass both the token's and the aes_key's checks.
    let stand_in = |var: &str| env(var).or_else(|| Some("a".repeat(43)));
    let (mut job, _) = job::parse_job_with_warnings(name, file, &stand_in).ok()?;
    job.events = None;
    Some(job)
}

/// The job as it reads with every unset or empty `${VAR}` given a stand-in value, or
/// `None` when it has problems of its own. Used only to find its mapping and
/// source kind; the stand-ins never leave this function.
fn job_with_stand_ins(name: &str, file: &SourceFile, env: EnvLookup<'_>) -> Option<Job> {
    // A loopback https URL passes every check a variable's value can meet
    // (URLs, ids, secrets); it is never contacted.
    let stand_in = |var: &str| {
        env(var)
            .filter(|value| !value.is_empty())
            .or_else(|| Some("https://127.0.0.1/unset".to_string()))
    };
    job::parse_job_with_warnings(name, file, &stand_in)
        .ok()
        .map(|(job, _)| job)
}

/// The job's mapping file, parsed and compiled; its problems go to `errors`.
fn read_mapping(
    config_dir: &Path,
    job_file: &SourceFile,
    job: &Job,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<Mapping>> {
    let mpath = config_dir.join("mappings").join(&job.mapping);
    let mfile = match read_file(&mpath) {
        Ok(f) => f,
        Err(e) => {
            errors.push(mapping_key_error(
                job_file,
                format!("{}: {}", mpath.display(), e.message),
            ));
            return None;
        }
    };
    match Mapping::parse(&mfile) {
        Ok(m) => Some(Arc::new(m)),
        Err(es) => {
            errors.extend(es);
            None
        }
    }
}

/// A path the job's source record cannot hold would blank its field in every
/// record: refused like any other configuration error. Jobs sharing a mapping
/// report a problem once.
fn check_mapping(job: &Job, mapping: &Mapping, errors: &mut Vec<ConfigError>) {
    let (schema, record) = job.source.record_schema();
    let key_error = mapping.check_key_names_the_month();
    for e in mapping
        .check_paths(&schema, record)
        .into_iter()
        .chain(key_error)
    {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config dir holding the shipped jobs and mappings, with `edit` applied
    /// to the WeCom mapping.
    fn shipped_dir(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["jobs", "mappings"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create dir");
            for name in ["wecom_monthly.toml", "dingtalk_monthly.toml"] {
                let text = std::fs::read_to_string(root.join(sub).join(name)).expect("shipped");
                let text = if sub == "mappings" && name.starts_with("wecom") {
                    edit(&text)
                } else {
                    text
                };
                std::fs::write(dir.path().join(sub).join(name), text).expect("write");
            }
        }
        dir
    }

    fn messages(result: Result<Vec<LoadedJob>, ConfigErrors>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(es) => es.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn typo(text: &str) -> String {
        text.replacen("\"seconds_to_hours\"", "\"seconds_to_hour\"", 1)
    }

    #[test]
    fn mapping_problems_are_reported_without_the_secrets() {
        let dir = shipped_dir(typo);
        let unset = |_: &str| None;
        let errors = messages(load(dir.path(), &[], &unset));
        for var in [
            "WECOM_CORP_ID",
            "WECOM_CHECKIN_SECRET",
            "JDY_API_KEY",
            "DINGTALK_APP_KEY",
            "DINGTALK_APP_SECRET",
        ] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(var) && e.contains("is not set")),
                "{var} not reported: {errors:#?}"
            );
        }
        let convert: Vec<&String> = errors
            .iter()
            .filter(|e| e.contains("wecom_monthly.toml:38:") && e.contains("seconds_to_hour"))
            .collect();
        assert_eq!(convert.len(), 1, "{errors:#?}");
        // Nothing derived from a stand-in value is shown.
        assert!(
            !errors.iter().any(|e| e.contains("127.0.0.1")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_mapping_error_is_reported_once_with_or_without_the_secrets() {
        let dir = shipped_dir(typo);
        let set = |_: &str| Some("s3cret-value".to_string());
        let with = messages(load(dir.path(), &[], &set));
        assert_eq!(with.len(), 1, "{with:#?}");
        assert!(with[0].contains("seconds_to_hour"), "{with:#?}");
        let unset = |_: &str| None;
        let without = messages(load(dir.path(), &[], &unset));
        assert!(without.contains(&with[0]), "{without:#?}");
    }

    #[test]
    fn mapping_problems_are_reported_when_the_variables_are_empty() {
        let dir = shipped_dir(typo);
        let empty = |_: &str| Some(String::new());
        let errors = messages(load(dir.path(), &[], &empty));
        assert!(
            errors.iter().any(|e| e.contains("set but empty")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("wecom_monthly.toml:38:") && e.contains("seconds_to_hour")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_clean_config_without_secrets_lists_only_the_variables() {
        let dir = shipped_dir(str::to_string);
        let unset = |_: &str| None;
        let errors = messages(load(dir.path(), &[], &unset));
        assert!(!errors.is_empty());
        assert!(
            errors.iter().all(|e| e.contains("is not set")),
            "{errors:#?}"
        );
    }
}
