//! spacefabric-controller: admits nodes, plans jobs, detects failures, keeps results; and the
//! profile tools (`profile check|show|timeline|contact-plan`).

pub mod profile_report;
pub mod timeline_plot;
