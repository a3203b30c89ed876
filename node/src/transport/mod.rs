//! The QUIC fabric between nodes: mutual TLS with the cluster CA ([`tls`]), quinn transport
//! tuned per link from the profile ([`config`]), the framing of transfers ([`frame`]) and the
//! peer mesh the collectives run on ([`mesh`]).

pub mod ca_command;
pub mod config;
pub mod tls;
