//! attendsync: monthly attendance reports from WeCom and DingTalk into Jiandaoyun.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod config;
pub mod secret;
pub mod sim;
