//! Job and mapping configuration: parsing, `${VAR}` interpolation, validation.

pub mod diag;
pub mod job;
pub mod limits;
pub mod notify;
pub mod reader;

pub use diag::{ConfigError, ConfigErrors, SourceFile};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::mapping::Mapping;
use job::Job;
use reader::EnvLookup;

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
            Ok(parsed) => parsed,
            Err(es) => {
                errors.extend(es);
                continue;
            }
        };
        let mapping = mappings
            .entry(job.mapping.clone())
            .or_insert_with(|| {
                let mpath = config_dir.join("mappings").join(&job.mapping);
                let mfile = match read_file(&mpath) {
                    Ok(f) => f,
                    Err(e) => {
                        errors.push(mapping_key_error(
                            &file,
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
            })
            .clone();
        if let Some(mapping) = mapping {
            // A path the job's source record cannot hold would blank its field
            // in every record: refused like any other configuration error. Jobs
            // sharing a mapping report a problem once.
            let (schema, record) = crate::source::schema::record_schema(&job.source);
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
