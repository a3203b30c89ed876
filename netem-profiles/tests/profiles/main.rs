//! netem-profiles' integration tests, one test binary (one link instead of six): profiles
//! through the TOML front end, the link model on a fake clock, relay routes, geometry-derived
//! profiles, the orbit module's accuracy and the ION contact-plan export; `fixtures` holds the
//! profile text they share. Run one with
//! `cargo test -p netem-profiles --test profiles MODULE`.

mod fixtures;
mod geometry_profiles;
mod ion_contact_plan;
mod link_model;
mod orbit_accuracy;
mod profile_validation;
mod relay_store;
