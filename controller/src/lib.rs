//! spacefabric-controller: admits nodes, plans jobs, detects failures, keeps results; and the
//! profile tools (`profile check|show|timeline`).

pub mod profile_report;
