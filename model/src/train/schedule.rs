//! The paper's learning-rate schedule: linear warmup, then cosine decay to a fraction of the peak.

use serde::{Deserialize, Serialize};

/// Linear warmup over `warmup_steps`, then cosine decay to `min_ratio · peak` at `total_steps`
/// (LLaMA: 2000 warmup steps, final rate 10% of the peak). Held at the floor after `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The peak learning rate, reached at the end of warmup.
    pub peak: f64,
    /// Steps of linear warmup.
    pub warmup_steps: u64,
    /// The step at which the cosine reaches its floor.
    pub total_steps: u64,
    /// The floor as a fraction of the peak.
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The rate for 0-based optimiser step `step`.
    ///
    /// Warmup starts at `peak / warmup_steps` rather than 0 so the first step moves the weights
    /// (as torchtitan's `linear_warmup` does).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let floor = self.peak * self.min_ratio;
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if decay_steps == 0 {
            return self.peak;
        }
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        floor + 0.5 * (self.peak - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAPER: LrSchedule = LrSchedule {
        peak: 3e-4,
        warmup_steps: 2000,
        total_steps: 10_000,
        min_ratio: 0.1,
    };

    #[test]
    fn warmup_is_linear_up_to_the_peak() {
        assert!((PAPER.at(0) - 3e-4 / 2000.0).abs() < 1e-15);
        assert!((PAPER.at(999) - 1.5e-4).abs() < 1e-15);
        assert!((PAPER.at(1999) - 3e-4).abs() < 1e-15);
    }

    #[test]
    fn cosine_decays_to_ten_percent_and_stays() {
        assert!((PAPER.at(2000) - 3e-4).abs() < 1e-15);
        // Halfway through the decay the cosine term is zero: the midpoint of peak and floor.
        assert!((PAPER.at(6000) - 0.5 * (3e-4 + 3e-5)).abs() < 1e-15);
        assert!((PAPER.at(10_000) - 3e-5).abs() < 1e-15);
        assert!((PAPER.at(50_000) - 3e-5).abs() < 1e-15);
        let rates: Vec<f64> = (2000..10_000).map(|s| PAPER.at(s)).collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]), "decay must be monotone");
    }

    #[test]
    fn no_decay_steps_means_constant_after_warmup() {
        let s = LrSchedule {
            total_steps: 10,
            warmup_steps: 10,
            ..PAPER
        };
        assert_eq!(s.at(10), 3e-4);
    }
}
