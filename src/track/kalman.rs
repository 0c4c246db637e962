//! Constant-velocity Kalman filter for one box, one independent filter per coordinate.
//!
//! ByteTrack's 8-state filter (x, y, a, h and their rates) has block-diagonal matrices: the
//! transition, measurement and noise matrices never couple one coordinate with another, so its
//! covariance stays block-diagonal and it is exactly four 2-state filters. Writing it that way
//! costs a handful of multiplications per coordinate instead of 8x8 matrix products, and lets
//! the time step vary from frame to frame (analytics frames arrive at ~5 fps with drops), which
//! ByteTrack's fixed-step filter does not.
//!
//! Coordinates are source pixels (centre x, centre y, width, height), so noise is isotropic.

/// Position and rate of one coordinate, with their covariance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    pub pos: f32,
    pub vel: f32,
    p00: f32,
    p01: f32,
    p11: f32,
}

/// Noise model, in multiples of the box's size (its larger side, in pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Measurement noise: detector box jitter, std in box sizes (ByteTrack: 1/20).
    pub measure: f32,
    /// Process noise: std of acceleration, box sizes per s² (continuous white-noise model).
    pub accel: f32,
    /// Initial velocity std, box sizes per s (a new object may move at any speed).
    pub init_vel: f32,
}

impl Default for Noise {
    fn default() -> Self {
        Self {
            measure: 0.05,
            accel: 1.0,
            init_vel: 1.5,
        }
    }
}

impl Axis {
    /// A new filter at a first measurement, standing still, with wide velocity uncertainty.
    pub fn new(z: f32, size: f32, n: &Noise) -> Self {
        let r = n.measure * size;
        let v = n.init_vel * size;
        Self {
            pos: z,
            vel: 0.0,
            p00: (2.0 * r) * (2.0 * r),
            p01: 0.0,
            p11: v * v,
        }
    }

    /// Moves the state `dt` seconds ahead.
    pub fn predict(&mut self, dt: f32, size: f32, n: &Noise) {
        if dt <= 0.0 {
            return;
        }
        self.pos += self.vel * dt;
        // F P F^T + Q, with Q of a white-noise acceleration of spectral density q.
        let q = (n.accel * size) * (n.accel * size);
        let (dt2, dt3) = (dt * dt, dt * dt * dt);
        self.p00 += 2.0 * dt * self.p01 + dt2 * self.p11 + q * dt3 / 3.0;
        self.p01 += dt * self.p11 + q * dt2 / 2.0;
        self.p11 += q * dt;
    }

    /// Folds in a measurement `z` of the position.
    pub fn update(&mut self, z: f32, size: f32, n: &Noise) {
        let r = (n.measure * size) * (n.measure * size);
        let s = self.p00 + r;
        if s.is_nan() || s <= 0.0 || !z.is_finite() {
            return;
        }
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.pos;
        self.pos += k0 * y;
        self.vel += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }

    /// Variance of the position estimate.
    pub fn pos_var(&self) -> f32 {
        self.p00
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_constant_velocity_with_varying_steps() {
        let n = Noise::default();
        let size = 50.0;
        let mut a = Axis::new(100.0, size, &n);
        let mut t = 0.0f32;
        // 40 px/s, frames at irregular steps (drops included)
        for dt in [0.2, 0.2, 0.4, 0.2, 0.6, 0.2, 0.2, 0.2, 0.2, 0.2] {
            t += dt;
            a.predict(dt, size, &n);
            a.update(100.0 + 40.0 * t, size, &n);
        }
        assert!((a.vel - 40.0).abs() < 4.0, "vel {}", a.vel);
        assert!((a.pos - (100.0 + 40.0 * t)).abs() < 2.0, "pos {}", a.pos);
    }

    #[test]
    fn uncertainty_grows_while_coasting_and_shrinks_on_update() {
        let n = Noise::default();
        let mut a = Axis::new(0.0, 10.0, &n);
        let v0 = a.pos_var();
        a.predict(1.0, 10.0, &n);
        let v1 = a.pos_var();
        assert!(v1 > v0);
        a.update(0.0, 10.0, &n);
        assert!(a.pos_var() < v1);
        // zero and negative steps change nothing; non-finite measurements are ignored
        let before = a;
        a.predict(0.0, 10.0, &n);
        a.predict(-1.0, 10.0, &n);
        a.update(f32::NAN, 10.0, &n);
        assert_eq!(a, before);
    }
}
