//! The validation split, identical to fastai 0.7's `get_cv_idxs`.

use crate::error::{Error, Result};
use rand_mt::Mt;

/// fastai 0.7's `get_cv_idxs(n, cv_idx=0, val_pct=0.2, seed=42)`: the first
/// `int(val_pct * n)` entries of `np.random.seed(seed); np.random.permutation(n)`.
///
/// numpy's legacy generator is reproduced exactly (MT19937 seeded with `init_genrand(seed)`,
/// Fisher-Yates from the end with masked rejection sampling), so the same seed gives the same
/// validation images as the lesson; `tests/golden/` checks it against numpy.
pub fn get_cv_idxs(n: usize, val_pct: f64, seed: u32) -> Result<Vec<usize>> {
    if !(0.0..=1.0).contains(&val_pct) {
        return Err(Error::Invalid(format!("val_pct must be in [0, 1], got {val_pct}")));
    }
    let n_val = (val_pct * n as f64) as usize;
    Ok(numpy_permutation(n, seed)[..n_val].to_vec())
}

/// `np.random.seed(seed); np.random.permutation(n)`.
pub fn numpy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut mt = Mt::new(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = random_interval(&mut mt, i as u64) as usize;
        idx.swap(i, j);
    }
    idx
}

/// numpy `random_interval(max)`: uniform in `[0, max]` by rejection under the smallest mask.
fn random_interval(mt: &mut Mt, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut mask = max;
    for s in [1, 2, 4, 8, 16, 32] {
        mask |= mask >> s;
    }
    loop {
        let v = if max <= 0xffff_ffff { (mt.next_u32() as u64) & mask } else { mt.next_u64() & mask };
        if v <= max {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_and_a_subset() {
        let a = get_cv_idxs(100, 0.2, 42).unwrap();
        assert_eq!(a, get_cv_idxs(100, 0.2, 42).unwrap());
        assert_eq!(a.len(), 20);
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
        assert!(s.iter().all(|&i| i < 100));
        assert_ne!(a, get_cv_idxs(100, 0.2, 43).unwrap());
        assert!(get_cv_idxs(10, 1.5, 42).is_err());
    }
}
