//! The admin console's pages (interim: the framework lands from branch `console`).

pub mod chart;
pub mod csv_export;
pub mod dashboard_data;
pub mod event_log;
pub mod filters;
pub mod key_admin;
