//! Jiandaoyun codes the write protocol reacts to beyond their `Class`
//! (the table of classes is `http::codes::jiandaoyun`).

/// `data/batch_create`: "transaction_id already exists" — the id was used
/// before, so the batch may be stored (docs/vendors/jiandaoyun.md, "Uniqueness
/// and `transaction_id`"). Reported as `FormError::IdSpent`.
pub const TRANSACTION_EXISTS: i64 = 17026;
