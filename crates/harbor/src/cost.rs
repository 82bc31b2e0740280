//! Dollar costs, where `None` means unknown (a model without a known price). The one rule:
//! an unknown cost makes every sum it enters unknown. It is never counted as 0, which would
//! report a run as cheaper than it was.

/// `a + b`, unknown when either is.
pub fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

/// The sum of `costs`, unknown when any of them is. The empty sum is a known 0.
pub fn sum(costs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    costs.into_iter().try_fold(0.0, |acc, c| Some(acc + c?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_makes_the_sum_unknown() {
        assert_eq!(add(Some(1.0), Some(0.5)), Some(1.5));
        assert_eq!(add(Some(1.0), None), None);
        assert_eq!(add(None, Some(1.0)), None);
        assert_eq!(sum([Some(0.25), Some(0.5)]), Some(0.75));
        assert_eq!(sum([Some(0.25), None, Some(0.5)]), None);
        assert_eq!(sum(std::iter::empty()), Some(0.0));
    }
}
