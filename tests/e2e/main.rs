//! attendsync's integration tests, one test binary (`cargo test --test e2e`):
//! the crate and its dependencies are linked once instead of once per file.
//! Run one file's tests with its module name, e.g.
//! `cargo test --test e2e wecom_e2e::`.

mod common;

mod answered_pace_e2e;
mod api_e2e;
mod api_regressions_e2e;
mod campaign_regressions_e2e;
mod closed_pipe_e2e;
mod daemon_e2e;
mod data_safety_e2e;
mod data_safety_regressions_e2e;
mod deploy_recipes;
mod dingtalk_e2e;
mod events_e2e;
mod events_regressions_e2e;
mod first_sync_e2e;
mod first_sync_regressions_e2e;
mod lease_e2e;
mod mapping_e2e;
mod mapping_fixtures;
mod months_owed_e2e;
mod notify;
mod notify_e2e;
mod operator_e2e;
mod operator_regressions_e2e;
mod pace_memory_e2e;
mod pace_memory_regressions_e2e;
mod page_e2e;
mod recovery_e2e;
mod rerun_employee_e2e;
mod reshape_regressions_e2e;
mod schedule_regressions_e2e;
mod security_regressions_e2e;
mod speed_regressions_e2e;
mod tree_rules;
mod vendor_text_e2e;
mod wecom_e2e;
