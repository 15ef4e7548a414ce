//! Job and mapping configuration: parsing, `${VAR}` interpolation, validation.

pub mod diag;
pub mod job;
pub mod reader;

pub use diag::{ConfigError, ConfigErrors, SourceFile};
