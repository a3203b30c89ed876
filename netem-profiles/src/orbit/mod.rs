//! Orbital geometry for geometry-derived links: where the Moon, ground stations, lunar sites,
//! lunar relay orbiters and LEO satellites are at a given instant, who sees whom, and the
//! light time between them.
//!
//! Everything here is pure: no I/O, no wall clock. Time is always a parameter — a UTC epoch as
//! a Julian Day ([`time::JulianDay`]) or scenario seconds since a profile's epoch — so the same
//! inputs give the same tables on every node.
//!
//! Layout:
//! - [`time`]: civil date → Julian Day, sidereal time, the UTC→TT offset used;
//! - [`vector`]: the small 3-vector type and frame rotations;
//! - [`moon`]: the Moon's geocentric position (truncated ELP-2000/82, Meeus ch. 47);
//! - [`earth`]: ground stations on the rotating Earth, elevation, station networks;
//! - [`moon_orientation`]: the Moon's body-fixed axes (IAU WGCCRE rotation model) and the
//!   precession from J2000 to date;
//! - [`lunar`]: lunar surface sites and Keplerian relay orbiters around the Moon;
//! - [`refraction`]: optional atmospheric refraction at ground stations;
//! - [`leo`]: LEO satellites from TLEs through SGP4, Earth blocking between satellites;
//! - [`escape`]: satellites leaving the Moon on hyperbolic escape (the mass-driver swarm);
//! - [`endpoint`]: one enum over all of the above, and the link geometry between two of them;
//! - [`scenario`]: an epoch and named endpoints; tables of paths through them (relays);
//! - [`contact_plan`]: a profile's schedule as ION `a contact` / `a range` lines;
//! - [`schedule`]: precomputed per-link tables (delay, up/down) cheap enough for the packet path.
//!
//! Frame: every position is geocentric, in kilometres, in the mean equator and equinox of
//! date (x towards the mean equinox, z towards the mean celestial pole). SGP4's TEME frame is
//! taken as that frame (they differ by the equation of the equinoxes, under 1.2 s of time,
//! i.e. under 0.5 km at LEO radius). See `docs/ORBITS.md` for what the model ignores.

pub mod contact_plan;
pub mod earth;
pub mod endpoint;
pub mod escape;
pub mod leo;
pub mod lunar;
pub mod moon;
pub mod moon_orientation;
pub mod refraction;
pub mod scenario;
pub mod schedule;
pub mod time;
pub mod vector;

pub use endpoint::{Endpoint, GeometryOptions, LinkGeometry};
pub use schedule::{GeometrySample, GeometryTable};
pub use time::JulianDay;
pub use vector::Vec3;

/// Equatorial radius of the Earth (WGS-84), km.
pub const EARTH_RADIUS_KM: f64 = 6378.137;
/// Flattening of the Earth (WGS-84).
pub const EARTH_FLATTENING: f64 = 1.0 / 298.257_223_563;
/// Mean radius of the Moon (IAU), km.
pub const MOON_RADIUS_KM: f64 = 1737.4;
/// Gravitational parameter of the Moon, km³/s² (DE-series value).
pub const MOON_MU_KM3_S2: f64 = 4_902.800_066;

/// Why an orbital input was refused. Each names the parameter and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrbitError {
    /// A number outside its valid range (or NaN / infinite).
    #[error("{what} = {value} is invalid: {why}")]
    Invalid {
        /// The parameter, e.g. `relay.eccentricity`.
        what: String,
        /// The value given.
        value: f64,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A date or epoch text that could not be read.
    #[error("invalid UTC epoch `{text}`: {why}")]
    Epoch {
        /// The text given.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// A geometry path names an endpoint that does not exist (or repeats one).
    #[error("unknown geometry endpoint `{0}`")]
    UnknownEndpoint(String),
    /// A two-line element set the SGP4 parser or initialiser refused.
    #[error("invalid TLE for `{name}`: {why}")]
    Tle {
        /// The satellite name.
        name: String,
        /// The parser's or initialiser's message.
        why: String,
    },
    /// SGP4 could not propagate the elements to the requested time (the orbit decayed or
    /// diverged).
    #[error("SGP4 cannot propagate `{name}` to {minutes:.1} min after its epoch: {why}")]
    Propagation {
        /// The satellite name.
        name: String,
        /// Minutes since the TLE epoch.
        minutes: f64,
        /// SGP4's message.
        why: String,
    },
}

/// Checks that `value` is finite and within `[min, max]`.
pub(crate) fn check_range(what: &str, value: f64, min: f64, max: f64) -> Result<f64, OrbitError> {
    if !value.is_finite() {
        return Err(OrbitError::Invalid {
            what: what.to_string(),
            value,
            why: "must be a finite number",
        });
    }
    if value < min || value > max {
        return Err(OrbitError::Invalid {
            what: what.to_string(),
            value,
            why: "out of range",
        });
    }
    Ok(value)
}
