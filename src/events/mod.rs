//! Vendor events that tell which employee-months changed (README "Re-pulls on
//! change"): the callback crypto WeCom and DingTalk share.

pub mod crypto;
