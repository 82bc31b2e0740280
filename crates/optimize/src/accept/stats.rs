//! The statistics the policies decide by: the paired, stratified z over per-task pass rates and
//! the Beta distribution's cumulative function (for the flakiness classes).

use super::Tally;

/// One task's evidence in a paired comparison: candidate and incumbent tallies.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub candidate: Tally,
    pub incumbent: Tally,
}

/// The stratified (Cochran–Mantel–Haenszel-like) z of the sum of per-task differences of pass
/// rates: `Σ (p̂c − p̂i) / √Σ p̄(1 − p̄)(1/nc + 1/ni)` with `p̄` the pooled rate of the task. Tasks
/// without attempts on either side are left out. Returns the z and the summed difference (in
/// tasks, so `100 × diff / N` is the estimated gain in points).
///
/// Zero variance means every compared task passed (or failed) every attempt on both sides, so
/// there is no difference either: the z is 0.
pub fn strat_z(pairs: impl IntoIterator<Item = Pair>) -> (f64, f64) {
    let mut diff = 0.0;
    let mut var = 0.0;
    for p in pairs {
        let (nc, ni) = (p.candidate.attempts, p.incumbent.attempts);
        if nc == 0 || ni == 0 {
            continue;
        }
        let (nc, ni) = (f64::from(nc), f64::from(ni));
        let (sc, si) = (f64::from(p.candidate.passes), f64::from(p.incumbent.passes));
        diff += sc / nc - si / ni;
        let pooled = (sc + si) / (nc + ni);
        var += pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / ni);
    }
    let z = if var > 0.0 { diff / var.sqrt() } else { 0.0 };
    (z, diff)
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-14 {
            break;
        }
    }
    h
}

/// The cumulative distribution function of Beta(a, b) at `x` (the regularized incomplete beta
/// function `I_x(a, b)`), for `a, b > 0`.
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast only on one side of the mean.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn beta_cdf_matches_closed_forms() {
        // Beta(1,1) is uniform; Beta(2,1) has CDF x²; Beta(1,3) has 1 − (1−x)³.
        assert!(close(beta_cdf(0.3, 1.0, 1.0), 0.3));
        assert!(close(beta_cdf(0.3, 2.0, 1.0), 0.09));
        assert!(close(beta_cdf(0.2, 1.0, 3.0), 1.0 - 0.8f64.powi(3)));
        // Symmetry: I_x(a, a) = 1 − I_{1−x}(a, a), and the median of a symmetric Beta is ½.
        assert!(close(
            beta_cdf(0.1, 0.3, 0.3),
            1.0 - beta_cdf(0.9, 0.3, 0.3)
        ));
        assert!(close(beta_cdf(0.5, 0.3, 0.3), 0.5));
        // Beta(0.5, 0.5) is the arcsine law: (2/π) asin(√x).
        let x: f64 = 0.1;
        assert!(close(
            beta_cdf(x, 0.5, 0.5),
            2.0 / std::f64::consts::PI * x.sqrt().asin()
        ));
    }

    #[test]
    fn z_of_identical_arms_is_zero_and_sign_follows_difference() {
        let t = |passes, attempts| Tally { passes, attempts };
        let same = (0..10).map(|_| Pair {
            candidate: t(1, 2),
            incumbent: t(2, 4),
        });
        assert_eq!(strat_z(same), (0.0, 0.0));
        let better = [Pair {
            candidate: t(3, 3),
            incumbent: t(1, 3),
        }];
        let (z, d) = strat_z(better);
        assert!(z > 0.0 && close(d, 2.0 / 3.0));
        let flip = [Pair {
            candidate: t(1, 1),
            incumbent: t(0, 0),
        }];
        assert_eq!(
            strat_z(flip).0,
            0.0,
            "a task missing on one side is left out"
        );
    }
}
