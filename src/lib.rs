//! attendsync: monthly attendance reports from WeCom and DingTalk into Jiandaoyun.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod app;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub(crate) mod decimal;
pub mod http;
pub mod lease;
pub mod mapping;
pub mod month;
pub mod notify;
pub mod outcome;
pub mod pipeline;
pub mod progress;
pub mod roster;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod source;
pub mod stdout;
pub mod store;
pub mod target;
pub mod text;
pub mod toml_reader;
