//! The stages of a job run.

pub mod write;
