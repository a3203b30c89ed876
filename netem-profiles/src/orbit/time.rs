//! Time for the orbit module: civil UTC dates as Julian Days, the UTC→TT offset the lunar
//! theory needs, and Greenwich mean sidereal time for rotating the Earth.
//!
//! Choices (see `docs/ORBITS.md`):
//! - Gregorian calendar only; years 1600–2400 are accepted (the truncated lunar series is meant
//!   for a few centuries around 2000).
//! - TT − UTC = 32.184 s + TAI − UTC from the leap-second table [`LEAP_SECONDS`] (IERS, every
//!   leap second 1972–2017). The table is complete as of IERS Bulletin C 70 (July 2025: no
//!   leap second at the end of December 2025), so it is known valid until
//!   [`LEAP_SECONDS_VALID_UNTIL_MJD`] (2026-07-01 0h UTC); later instants assume no further
//!   leap second (a new one would put everything after it 1 s off, i.e. the Moon ~1 km along
//!   its orbit). Before 1972 (UTC then had fractional steps and rate offsets) the 1972 value
//!   of 10 s is used.
//! - UT1 is taken equal to UTC (|UT1 − UTC| < 0.9 s by definition: < 0.4 km of station
//!   position).

use super::OrbitError;

/// TT − UTC in seconds since 2017-01-01 (37 leap seconds + 32.184 s): the value for every
/// instant after the last entry of [`LEAP_SECONDS`].
pub const TT_MINUS_UTC_S: f64 = 69.184;

/// TT − TAI, seconds (exact by definition).
pub const TT_MINUS_TAI_S: f64 = 32.184;

/// Every leap second: (year, month, Modified Julian Day of 0h UTC on the first day of that
/// month, TAI − UTC in seconds from that instant on). From the IERS table
/// (`Leap_Second.dat`, the same numbers as `leap-seconds.list`).
pub const LEAP_SECONDS: [(i64, i64, i64, i32); 28] = [
    (1972, 1, 41_317, 10),
    (1972, 7, 41_499, 11),
    (1973, 1, 41_683, 12),
    (1974, 1, 42_048, 13),
    (1975, 1, 42_413, 14),
    (1976, 1, 42_778, 15),
    (1977, 1, 43_144, 16),
    (1978, 1, 43_509, 17),
    (1979, 1, 43_874, 18),
    (1980, 1, 44_239, 19),
    (1981, 7, 44_786, 20),
    (1982, 7, 45_151, 21),
    (1983, 7, 45_516, 22),
    (1985, 7, 46_247, 23),
    (1988, 1, 47_161, 24),
    (1990, 1, 47_892, 25),
    (1991, 1, 48_257, 26),
    (1992, 7, 48_804, 27),
    (1993, 7, 49_169, 28),
    (1994, 7, 49_534, 29),
    (1996, 1, 50_083, 30),
    (1997, 7, 50_630, 31),
    (1999, 1, 51_179, 32),
    (2006, 1, 53_736, 33),
    (2009, 1, 54_832, 34),
    (2012, 7, 56_109, 35),
    (2015, 7, 57_204, 36),
    (2017, 1, 57_754, 37),
];

/// The table above is known complete up to this instant (Modified Julian Day of 2026-07-01
/// 0h UTC, the next date at which IERS could have inserted a leap second after Bulletin
/// C 70); beyond it no new leap second is assumed.
pub const LEAP_SECONDS_VALID_UNTIL_MJD: i64 = 61_222;

/// Julian Day − Modified Julian Day.
const MJD_OFFSET: f64 = 2_400_000.5;

/// TT − UTC at the UTC Julian Day `jd_utc`, seconds (see [`LEAP_SECONDS`]).
pub fn tt_minus_utc_s(jd_utc: f64) -> f64 {
    let mjd = jd_utc - MJD_OFFSET;
    let i = LEAP_SECONDS.partition_point(|&(_, _, start, _)| start as f64 <= mjd);
    let tai_minus_utc = match i.checked_sub(1) {
        Some(k) => LEAP_SECONDS[k].3,
        None => LEAP_SECONDS[0].3,
    };
    TT_MINUS_TAI_S + f64::from(tai_minus_utc)
}

/// Julian Day of J2000.0 (2000 January 1, 12h).
pub const J2000: f64 = 2_451_545.0;

const SECONDS_PER_DAY: f64 = 86_400.0;

/// An instant as a Julian Day on the UTC time scale (days and fraction since noon UT,
/// 4713 BC January 1).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct JulianDay(pub f64);

fn check_int(what: &str, v: i64, min: i64, max: i64) -> Result<(), OrbitError> {
    if v < min || v > max {
        return Err(OrbitError::Invalid {
            what: what.to_string(),
            value: v as f64,
            why: "out of range",
        });
    }
    Ok(())
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl JulianDay {
    /// The Julian Day of a Gregorian UTC date and time (Meeus, Astronomical Algorithms,
    /// ch. 7). Every field is range-checked; `second` may carry a fraction.
    pub fn from_civil(
        year: i64,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: f64,
    ) -> Result<Self, OrbitError> {
        check_int("year", year, 1600, 2400)?;
        check_int("month", month, 1, 12)?;
        check_int("day", day, 1, days_in_month(year, month))?;
        check_int("hour", hour, 0, 23)?;
        check_int("minute", minute, 0, 59)?;
        super::check_range("second", second, 0.0, 60.0 - f64::EPSILON * 64.0)?;
        let (y, m) = if month <= 2 {
            (year - 1, month + 12)
        } else {
            (year, month)
        };
        let a = y.div_euclid(100);
        let b = 2 - a + a.div_euclid(4);
        let day_number = (365.25 * (y + 4716) as f64).floor() + (30.6001 * (m + 1) as f64).floor();
        let frac = (hour as f64 * 3600.0 + minute as f64 * 60.0 + second) / SECONDS_PER_DAY;
        Ok(Self(day_number + day as f64 + frac + b as f64 - 1524.5))
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]Z` (the `Z`, or `+00:00`, is required
    /// when a time is given: epochs are UTC).
    pub fn parse_utc(text: &str) -> Result<Self, OrbitError> {
        let bad = |why: &str| OrbitError::Epoch {
            text: text.to_string(),
            why: why.to_string(),
        };
        let t = text.trim();
        let (date, time) = match t.split_once(['T', ' ']) {
            Some((d, rest)) => {
                let rest = rest
                    .strip_suffix('Z')
                    .or_else(|| rest.strip_suffix("+00:00"))
                    .ok_or_else(|| {
                        bad("a time must end in `Z` (UTC), e.g. 2026-12-01T06:00:00Z")
                    })?;
                (d, Some(rest))
            }
            None => (t, None),
        };
        let num = |s: &str, what: &str| -> Result<i64, OrbitError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(&format!("the {what} `{s}` is not a number")));
            }
            s.parse::<i64>()
                .map_err(|_| bad(&format!("the {what} `{s}` is not a number")))
        };
        let parts: Vec<&str> = date.split('-').collect();
        let [y, mo, d] = parts.as_slice() else {
            return Err(bad("expected a date YYYY-MM-DD"));
        };
        let (year, month, day) = (num(y, "year")?, num(mo, "month")?, num(d, "day")?);
        let (mut hour, mut minute, mut second) = (0, 0, 0.0);
        if let Some(time) = time {
            let fields: Vec<&str> = time.split(':').collect();
            match fields.as_slice() {
                [h, m] => {
                    hour = num(h, "hour")?;
                    minute = num(m, "minute")?;
                }
                [h, m, s] => {
                    hour = num(h, "hour")?;
                    minute = num(m, "minute")?;
                    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
                    let whole = num(whole, "second")?;
                    let frac = if frac.is_empty() {
                        0.0
                    } else {
                        num(frac, "second fraction")? as f64 / 10f64.powi(frac.len() as i32)
                    };
                    second = whole as f64 + frac;
                }
                _ => return Err(bad("expected a time HH:MM or HH:MM:SS")),
            }
        }
        Self::from_civil(year, month, day, hour, minute, second).map_err(|e| bad(&e.to_string()))
    }

    /// `seconds` later (or earlier when negative).
    pub fn plus_seconds(self, seconds: f64) -> Self {
        Self(self.0 + seconds / SECONDS_PER_DAY)
    }

    /// Seconds from `earlier` to `self`.
    pub fn seconds_since(self, earlier: Self) -> f64 {
        (self.0 - earlier.0) * SECONDS_PER_DAY
    }

    /// The same instant on the TT (≈ TD, dynamical time) scale, as a Julian Ephemeris Day.
    pub fn tt(self) -> f64 {
        self.0 + tt_minus_utc_s(self.0) / SECONDS_PER_DAY
    }

    /// The UTC instant of a TT Julian Ephemeris Day (the inverse of [`Self::tt`], away from
    /// the second that follows a leap second).
    pub fn from_tt(jde: f64) -> Self {
        let guess = jde - TT_MINUS_UTC_S / SECONDS_PER_DAY;
        Self(jde - tt_minus_utc_s(guess) / SECONDS_PER_DAY)
    }

    /// Is the leap-second table known complete at this instant (see
    /// [`LEAP_SECONDS_VALID_UNTIL_MJD`])?
    pub fn leap_seconds_known(self) -> bool {
        self.0 - MJD_OFFSET < LEAP_SECONDS_VALID_UNTIL_MJD as f64
    }

    /// Julian centuries of TT since J2000.0 (the argument of the lunar series).
    pub fn tt_centuries(self) -> f64 {
        (self.tt() - J2000) / 36_525.0
    }

    /// Greenwich mean sidereal time in radians, in [0, 2π) (Meeus eq. 12.4, UT1 = UTC).
    pub fn gmst_rad(self) -> f64 {
        let d = self.0 - J2000;
        let t = d / 36_525.0;
        let deg = 280.460_618_37 + 360.985_647_366_29 * d + 0.000_387_933 * t * t
            - t * t * t / 38_710_000.0;
        deg.rem_euclid(360.0).to_radians()
    }

    /// The Gregorian civil date and time (year, month, day, hour, minute, second) of this
    /// instant (Meeus ch. 7), for reports.
    pub fn to_civil(self) -> (i64, i64, i64, i64, i64, f64) {
        let jd = self.0 + 0.5;
        let z = jd.floor();
        let f = jd - z;
        let alpha = ((z - 1_867_216.25) / 36_524.25).floor();
        let a = z + 1.0 + alpha - (alpha / 4.0).floor();
        let b = a + 1524.0;
        let c = ((b - 122.1) / 365.25).floor();
        let d = (365.25 * c).floor();
        let e = ((b - d) / 30.6001).floor();
        let day = (b - d - (30.6001 * e).floor()) as i64;
        let month = if e < 14.0 { e - 1.0 } else { e - 13.0 } as i64;
        let year = if month > 2 { c - 4716.0 } else { c - 4715.0 } as i64;
        let secs = (f * SECONDS_PER_DAY * 1000.0).round() / 1000.0;
        let hour = (secs / 3600.0).floor();
        let minute = ((secs - hour * 3600.0) / 60.0).floor();
        let second = secs - hour * 3600.0 - minute * 60.0;
        (year, month, day, hour as i64, minute as i64, second)
    }

    /// ISO 8601 UTC text, to the second (`2026-12-01T06:00:00Z`).
    pub fn to_iso(self) -> String {
        let (y, mo, d, h, mi, s) = self.plus_seconds(0.0005).to_civil();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{:02}Z",
            s.floor() as i64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn julian_days_of_meeus_chapter_7() {
        // Examples 7.a and 7.b and the table of ch. 7.
        let cases = [
            ((1957, 10, 4, 19, 26, 24.0), 2_436_116.31),
            ((2000, 1, 1, 12, 0, 0.0), 2_451_545.0),
            ((1987, 1, 27, 0, 0, 0.0), 2_446_822.5),
            ((1988, 6, 19, 12, 0, 0.0), 2_447_332.0),
            ((1600, 12, 31, 0, 0, 0.0), 2_305_812.5),
            ((1992, 4, 12, 0, 0, 0.0), 2_448_724.5),
        ];
        for ((y, mo, d, h, mi, s), jd) in cases {
            let got = JulianDay::from_civil(y, mo, d, h, mi, s).unwrap().0;
            assert!((got - jd).abs() < 1e-6, "{y}-{mo}-{d}: {got} vs {jd}");
        }
    }

    #[test]
    fn civil_round_trip() {
        let jd = JulianDay::parse_utc("2026-12-01T06:30:15Z").unwrap();
        assert_eq!(jd.to_civil(), (2026, 12, 1, 6, 30, 15.0));
        assert_eq!(jd.to_iso(), "2026-12-01T06:30:15Z");
        assert_eq!(
            JulianDay::parse_utc("2024-02-29").unwrap().to_iso(),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn bad_epochs_are_refused_with_the_reason() {
        for bad in [
            "2026-13-01",
            "2025-02-29",
            "2026-12-01T25:00:00Z",
            "2026-12-01T06:00:00",
            "yesterday",
            "2026-12-01T06:61Z",
            "1200-01-01",
        ] {
            let e = JulianDay::parse_utc(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    /// Each table entry's MJD is 0h UTC on the first of its month, steps are +1 s, and TT −
    /// UTC switches exactly there.
    #[test]
    fn leap_second_table_is_consistent() {
        let mut prev = 9;
        for &(y, m, mjd, tai) in &LEAP_SECONDS {
            let jd = JulianDay::from_civil(y, m, 1, 0, 0, 0.0).unwrap();
            assert!((jd.0 - MJD_OFFSET - mjd as f64).abs() < 1e-9, "{y}-{m}");
            assert_eq!(tai, prev + 1, "{y}-{m}");
            prev = tai;
            assert_eq!(tt_minus_utc_s(jd.0 + 1e-6), 32.184 + f64::from(tai));
            assert_eq!(
                tt_minus_utc_s(jd.0 - 1e-6),
                32.184 + f64::from(tai - 1).max(10.0)
            );
        }
        let valid = JulianDay::from_civil(2026, 7, 1, 0, 0, 0.0).unwrap();
        assert!((valid.0 - MJD_OFFSET - LEAP_SECONDS_VALID_UNTIL_MJD as f64).abs() < 1e-9);
        assert!(valid.plus_seconds(-1.0).leap_seconds_known());
        assert!(!valid.leap_seconds_known());
        assert_eq!(tt_minus_utc_s(valid.0 + 3650.0), TT_MINUS_UTC_S);
        // 1992-04-12 (Meeus' examples): 26 leap seconds, TT − UTC = 58.184 s.
        let jd = JulianDay::from_civil(1992, 4, 12, 0, 0, 0.0).unwrap();
        assert_eq!(tt_minus_utc_s(jd.0), 58.184);
        let back = JulianDay::from_tt(jd.tt());
        assert!((back.0 - jd.0).abs() * SECONDS_PER_DAY < 1e-4);
    }

    #[test]
    fn sidereal_time_of_meeus_examples_12a_12b() {
        // 12.a: 1987 April 10, 0h UT → 13h10m46.3668s = 197.693195°.
        let jd = JulianDay::from_civil(1987, 4, 10, 0, 0, 0.0).unwrap();
        assert!((jd.gmst_rad().to_degrees() - 197.693_195).abs() < 1e-5);
        // 12.b: 1987 April 10, 19h21m00s UT → 8h34m57.0896s = 128.737_873_4°.
        let jd = JulianDay::from_civil(1987, 4, 10, 19, 21, 0.0).unwrap();
        assert!((jd.gmst_rad().to_degrees() - 128.737_873_4).abs() < 1e-5);
    }
}
