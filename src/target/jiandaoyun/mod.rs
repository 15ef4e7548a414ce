//! The Jiandaoyun (简道云) v5 target.

mod client;
pub mod form_check;

pub use client::*;
