//! The ring GEMM: `out += w * col` in wrapping 64-bit arithmetic, the product behind every
//! convolution and dense term of the fixed-point executor (and of the runtime's linear
//! layers through [`FixedProgram::apply_linear`](super::FixedProgram::apply_linear)). Rows
//! run in parallel on large products; each row's kernel is compiled twice, once with
//! AVX-512, and the build the CPU supports is chosen at run time.
//!
//! No branch depends on a weight or an activation: a zero weight costs what any other
//! costs, so the online linear layers' running time (which the client observes) says
//! nothing about the weights' sparsity (issue 13, item 6).

/// `out[o x p] += w[o x k] * col[k x p]` in wrapping 64-bit arithmetic (= the ring's).
///
/// Output rows are computed in parallel (rayon) when the product is large; each row runs
/// the [`gemm_row`] kernel, compiled a second time with AVX-512 (64-bit vector multiply)
/// and chosen at run time where the CPU has it.
pub(super) fn gemm_i64(w: &[i64], col: &[i64], out: &mut [i64], o: usize, k: usize, p: usize) {
    use rayon::prelude::*;
    let row =
        |(oi, orow): (usize, &mut [i64])| gemm_row_dispatch(&w[oi * k..(oi + 1) * k], col, orow, p);
    if o * k * p >= 1 << 20 && o > 1 {
        out.par_chunks_mut(p).enumerate().for_each(row);
    } else {
        out.chunks_mut(p).enumerate().for_each(row);
    }
}

/// One output row: `orow[0..p] += sum_k w[k] * col[k][0..p]`, in blocks of `p` that stay
/// in L1.
#[inline(always)]
fn gemm_row(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    const BLOCK: usize = 512;
    for p0 in (0..p).step_by(BLOCK) {
        let p1 = (p0 + BLOCK).min(p);
        let acc = &mut orow[p0..p1];
        for (ki, &wv) in w.iter().enumerate() {
            let crow = &col[ki * p + p0..ki * p + p1];
            #[cfg(test)]
            tests::ROW_PASSES.with(|n| n.set(n.get() + 1));
            for (a, &c) in acc.iter_mut().zip(crow) {
                *a = a.wrapping_add(wv.wrapping_mul(c));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn gemm_row_avx512(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    gemm_row(w, col, orow, p);
}

/// [`gemm_row`], with the AVX-512 build where the CPU supports it.
// The only unsafe code of the crate: calling a function compiled for CPU features that
// were checked at run time just before.
#[allow(unsafe_code)]
fn gemm_row_dispatch(w: &[i64], col: &[i64], orow: &mut [i64], p: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
    {
        // SAFETY: the CPU supports AVX-512F and AVX-512DQ (detected above), the only
        // requirement of `gemm_row_avx512`.
        unsafe { gemm_row_avx512(w, col, orow, p) };
        return;
    }
    gemm_row(w, col, orow, p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Weight passes over a block of `col` rows made by this thread's GEMM calls.
        pub(super) static ROW_PASSES: Cell<usize> = const { Cell::new(0) };
    }

    /// Regression test for the timing leak of issue 13 (item 6): the kernel used to skip
    /// zero weights, so a sparse layer ran measurably faster. The work done must not
    /// depend on the weights' values: count the passes instead of timing them.
    #[test]
    fn work_is_independent_of_weight_values() {
        let (o, k, p) = (4, 9, 700); // serial (below the parallel threshold), two blocks
        let col: Vec<i64> = (0..(k * p) as i64).collect();
        let passes = |w: &[i64]| {
            ROW_PASSES.with(|n| n.set(0));
            let mut out = vec![0i64; o * p];
            gemm_i64(w, &col, &mut out, o, k, p);
            ROW_PASSES.with(|n| n.get())
        };
        let dense: Vec<i64> = (1..=(o * k) as i64).collect();
        let sparse: Vec<i64> = (0..o * k).map(|i| i64::from(i % 5 == 0)).collect();
        let zero = vec![0i64; o * k];
        let want = o * k * p.div_ceil(512);
        assert_eq!(passes(&dense), want);
        assert_eq!(passes(&sparse), want);
        assert_eq!(passes(&zero), want);
    }

    #[test]
    fn gemm_kernels_equal_the_naive_product() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        // Small (serial) and large (parallel, several L1 blocks) shapes; full-width ring
        // values and weights of both signs, zeros included.
        for (o, k, p) in [(3, 5, 7), (16, 72, 1100), (8, 150, 1000)] {
            let w: Vec<i64> = (0..o * k)
                .map(|i| {
                    if i % 7 == 0 {
                        0
                    } else {
                        rng.gen_range(-(1 << 20)..1 << 20)
                    }
                })
                .collect();
            let col: Vec<i64> = (0..k * p).map(|_| rng.r#gen::<i64>() >> 3).collect();
            let mut out = vec![5i64; o * p];
            gemm_i64(&w, &col, &mut out, o, k, p);
            for oi in 0..o {
                for pi in 0..p {
                    let mut want = 5i64;
                    for ki in 0..k {
                        want = want.wrapping_add(w[oi * k + ki].wrapping_mul(col[ki * p + pi]));
                    }
                    assert_eq!(out[oi * p + pi], want, "({o},{k},{p}) at ({oi},{pi})");
                }
            }
        }
    }

    #[test]
    fn gemm_wraps_like_the_ring() {
        let w = [i64::MAX, 2];
        let col = [2, 3];
        let mut out = [0i64];
        gemm_i64(&w, &col, &mut out, 1, 2, 1);
        assert_eq!(out[0], i64::MAX.wrapping_mul(2).wrapping_add(6));
    }
}
