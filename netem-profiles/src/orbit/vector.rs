//! A small 3-vector in kilometres (or unit-less directions) and the rotations between the
//! frames the orbit module uses.

use std::ops::{Add, Mul, Neg, Sub};

/// A Cartesian 3-vector.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    /// x component.
    pub x: f64,
    /// y component.
    pub y: f64,
    /// z component.
    pub z: f64,
}

impl Vec3 {
    /// Builds a vector from its components.
    pub const fn new(x: f64, y: f64, z: f64) -> Self {
        Self { x, y, z }
    }

    /// Dot product.
    pub fn dot(self, o: Self) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    /// Cross product.
    pub fn cross(self, o: Self) -> Self {
        Self::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    /// Euclidean length.
    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// The unit vector along `self` (the zero vector stays zero).
    pub fn unit(self) -> Self {
        let n = self.norm();
        if n > 0.0 { self * (1.0 / n) } else { self }
    }

    /// Rotation about the x axis by `angle` radians (counter-clockwise seen from +x).
    pub fn rotate_x(self, angle: f64) -> Self {
        let (s, c) = angle.sin_cos();
        Self::new(self.x, c * self.y - s * self.z, s * self.y + c * self.z)
    }

    /// Rotation about the y axis by `angle` radians (counter-clockwise seen from +y).
    pub fn rotate_y(self, angle: f64) -> Self {
        let (s, c) = angle.sin_cos();
        Self::new(c * self.x + s * self.z, self.y, -s * self.x + c * self.z)
    }

    /// Rotation about the z axis by `angle` radians (counter-clockwise seen from +z).
    pub fn rotate_z(self, angle: f64) -> Self {
        let (s, c) = angle.sin_cos();
        Self::new(c * self.x - s * self.y, s * self.x + c * self.y, self.z)
    }

    /// The vector from spherical coordinates: longitude and latitude in radians, radius.
    pub fn from_spherical(lon: f64, lat: f64, r: f64) -> Self {
        let (slat, clat) = lat.sin_cos();
        let (slon, clon) = lon.sin_cos();
        Self::new(r * clat * clon, r * clat * slon, r * slat)
    }
}

impl Add for Vec3 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for Vec3 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for Vec3 {
    type Output = Self;
    fn mul(self, k: f64) -> Self {
        Self::new(self.x * k, self.y * k, self.z * k)
    }
}

impl Neg for Vec3 {
    type Output = Self;
    fn neg(self) -> Self {
        Self::new(-self.x, -self.y, -self.z)
    }
}

/// Does the segment from `a` to `b` pass within `radius` of `centre`? (Line of sight blocked
/// by a sphere; the end points themselves are not tested.)
pub fn segment_blocked_by_sphere(a: Vec3, b: Vec3, centre: Vec3, radius: f64) -> bool {
    let d = b - a;
    let len2 = d.dot(d);
    if len2 == 0.0 {
        return false;
    }
    let t = ((centre - a).dot(d) / len2).clamp(0.0, 1.0);
    let closest = a + d * t;
    (closest - centre).norm() < radius
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_and_products() {
        let x = Vec3::new(1.0, 0.0, 0.0);
        let y = x.rotate_z(std::f64::consts::FRAC_PI_2);
        assert!((y - Vec3::new(0.0, 1.0, 0.0)).norm() < 1e-12);
        let z = y.rotate_x(std::f64::consts::FRAC_PI_2);
        assert!((z - Vec3::new(0.0, 0.0, 1.0)).norm() < 1e-12);
        assert!((x.cross(y) - Vec3::new(0.0, 0.0, 1.0)).norm() < 1e-12);
    }

    #[test]
    fn sphere_blocks_only_through_lines() {
        let c = Vec3::default();
        let a = Vec3::new(-10.0, 0.5, 0.0);
        let b = Vec3::new(10.0, 0.5, 0.0);
        assert!(segment_blocked_by_sphere(a, b, c, 1.0));
        assert!(!segment_blocked_by_sphere(a, b, c, 0.4));
        // Both ends on the same side: the closest point is an end point, outside.
        assert!(!segment_blocked_by_sphere(
            Vec3::new(2.0, 0.0, 0.0),
            Vec3::new(5.0, 0.0, 0.0),
            c,
            1.0
        ));
    }
}
