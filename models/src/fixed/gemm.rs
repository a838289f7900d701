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
/// Register-tiled: `col` is first packed into tiles of [`TC`] columns (`k x TC` each,
/// zero-padded), then every block of [`TR`] output rows accumulates a `TR x TC` tile in
/// registers over the whole `k` before adding it to `out` once. Blocks of rows run in
/// parallel (rayon) when the product is large; the kernel is compiled a second time with
/// AVX-512 (64-bit vector multiply) and chosen at run time where the CPU has it. The last
/// block of rows is padded with zero weights, so every block does the same work whatever
/// the weights.
pub(super) fn gemm_i64(w: &[i64], col: &[i64], out: &mut [i64], o: usize, k: usize, p: usize) {
    gemm_i64_with(gemm_kernel(), w, col, out, o, k, p);
}

/// [`gemm_i64`] with a given kernel build (which the CPU must support; others fall back
/// to the portable build).
fn gemm_i64_with(
    kernel: GemmKernel,
    w: &[i64],
    col: &[i64],
    out: &mut [i64],
    o: usize,
    k: usize,
    p: usize,
) {
    use rayon::prelude::*;
    if o == 0 || p == 0 {
        return;
    }
    let tiles = p.div_ceil(TC);
    // Tile-major copy of col: tile t holds columns t*TC .. t*TC+TC of every row of col.
    let mut packed = vec![0i64; tiles * k * TC];
    for (ki, crow) in col.chunks_exact(p).take(k).enumerate() {
        for (t, chunk) in crow.chunks(TC).enumerate() {
            let at = (t * k + ki) * TC;
            packed[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }
    let block = |(bi, oblock): (usize, &mut [i64])| {
        let rows = oblock.len() / p;
        let r0 = bi * TR;
        let mut wb = Vec::new();
        let wrows: &[i64] = if rows == TR {
            &w[r0 * k..(r0 + TR) * k]
        } else {
            // The last, partial block: zero weights for the missing rows.
            wb.resize(TR * k, 0);
            wb[..rows * k].copy_from_slice(&w[r0 * k..(r0 + rows) * k]);
            &wb
        };
        gemm_block_dispatch(kernel, wrows, &packed, oblock, rows, k, p);
    };
    if o * k * p >= 1 << 20 && o > TR {
        out.par_chunks_mut(TR * p).enumerate().for_each(block);
    } else {
        out.chunks_mut(TR * p).enumerate().for_each(block);
    }
}

/// Output rows per register tile.
const TR: usize = 8;
/// Output columns per register tile (two 512-bit vectors of i64).
const TC: usize = 16;

/// One block of [`TR`] output rows (`wrows`: `TR x k`, zero rows beyond `rows`) against
/// every packed column tile; adds the first `rows` rows into `oblock` (`rows x p`).
#[inline(always)]
fn gemm_block(wrows: &[i64], packed: &[i64], oblock: &mut [i64], rows: usize, k: usize, p: usize) {
    for (t, tile) in packed.chunks_exact(k * TC).enumerate() {
        #[cfg(test)]
        tests::TILE_PASSES.with(|n| n.set(n.get() + 1));
        let mut acc = [[0i64; TC]; TR];
        for (ki, c) in tile.chunks_exact(TC).enumerate() {
            let c: &[i64; TC] = c.try_into().unwrap_or(&[0; TC]);
            for (r, accr) in acc.iter_mut().enumerate() {
                let wv = wrows[r * k + ki];
                for (a, &cv) in accr.iter_mut().zip(c) {
                    *a = a.wrapping_add(wv.wrapping_mul(cv));
                }
            }
        }
        let c0 = t * TC;
        let width = TC.min(p - c0);
        for (r, accr) in acc.iter().enumerate().take(rows) {
            let orow = &mut oblock[r * p + c0..r * p + c0 + width];
            for (o, &a) in orow.iter_mut().zip(accr) {
                *o = o.wrapping_add(a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn gemm_block_avx512(
    wrows: &[i64],
    packed: &[i64],
    oblock: &mut [i64],
    rows: usize,
    k: usize,
    p: usize,
) {
    gemm_block(wrows, packed, oblock, rows, k, p);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemm_block_avx2(
    wrows: &[i64],
    packed: &[i64],
    oblock: &mut [i64],
    rows: usize,
    k: usize,
    p: usize,
) {
    gemm_block(wrows, packed, oblock, rows, k, p);
}

/// The GEMM kernel builds, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// AVX-512F + AVX-512DQ (64-bit vector multiply).
    Avx512,
    /// AVX2 (the 64-bit multiply from 32-bit halves).
    Avx2,
    /// Whatever the compiler's baseline target gives.
    Portable,
}

/// The kernel the ring GEMM uses on this CPU: the best the CPU supports, or a lesser one
/// named by the environment variable `SNL_GEMM_KERNEL` (`avx2` or `portable`; for
/// measuring what a CPU without AVX-512 would get). Read once.
pub fn gemm_kernel() -> GemmKernel {
    static KERNEL: std::sync::OnceLock<GemmKernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let best = {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    GemmKernel::Avx512
                } else if std::arch::is_x86_feature_detected!("avx2") {
                    GemmKernel::Avx2
                } else {
                    GemmKernel::Portable
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                GemmKernel::Portable
            }
        };
        match std::env::var("SNL_GEMM_KERNEL").as_deref() {
            Ok("avx2") if best != GemmKernel::Portable => GemmKernel::Avx2,
            Ok("portable") => GemmKernel::Portable,
            _ => best,
        }
    })
}

/// [`gemm_block`] in the build `kernel`, if the CPU supports it (else portable).
// The only unsafe code of the crate: calling a function compiled for CPU features that
// were checked at run time just before.
#[allow(unsafe_code)]
fn gemm_block_dispatch(
    kernel: GemmKernel,
    wrows: &[i64],
    packed: &[i64],
    oblock: &mut [i64],
    rows: usize,
    k: usize,
    p: usize,
) {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        GemmKernel::Avx512
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq") =>
        {
            // SAFETY: the CPU has AVX-512F and AVX-512DQ (checked just above), the only
            // requirement of `gemm_block_avx512`.
            unsafe { gemm_block_avx512(wrows, packed, oblock, rows, k, p) };
            return;
        }
        GemmKernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { gemm_block_avx2(wrows, packed, oblock, rows, k, p) };
            return;
        }
        _ => {}
    }
    let _ = kernel;
    gemm_block(wrows, packed, oblock, rows, k, p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Register tiles (a block of rows against one column tile, over all of `k`)
        /// computed by this thread's GEMM calls.
        pub(super) static TILE_PASSES: Cell<usize> = const { Cell::new(0) };
    }

    /// Regression test for the timing leak of issue 13 (item 6): the kernel used to skip
    /// zero weights, so a sparse layer ran measurably faster. The work done must not
    /// depend on the weights' values: count the passes instead of timing them. (Every
    /// tile pass runs the same loop over all of `k` for a full block of rows.)
    #[test]
    fn work_is_independent_of_weight_values() {
        let (o, k, p) = (12, 9, 700); // serial (below the parallel threshold), 2 row blocks
        let col: Vec<i64> = (0..(k * p) as i64).collect();
        let passes = |w: &[i64]| {
            TILE_PASSES.with(|n| n.set(0));
            let mut out = vec![0i64; o * p];
            gemm_i64(w, &col, &mut out, o, k, p);
            TILE_PASSES.with(|n| n.get())
        };
        let dense: Vec<i64> = (1..=(o * k) as i64).collect();
        let sparse: Vec<i64> = (0..o * k).map(|i| i64::from(i % 5 == 0)).collect();
        let zero = vec![0i64; o * k];
        let want = o.div_ceil(TR) * p.div_ceil(TC);
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
        for (o, k, p) in [
            (3, 5, 7),
            (16, 72, 1100),
            (8, 150, 1000),
            (13, 31, 17),
            (1, 1, 1),
            (64, 576, 256),
        ] {
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
            // Every build gives the same bits (those the CPU lacks fall back).
            for kernel in [GemmKernel::Avx512, GemmKernel::Avx2, GemmKernel::Portable] {
                let mut other = vec![5i64; o * p];
                gemm_i64_with(kernel, &w, &col, &mut other, o, k, p);
                assert_eq!(other, out, "{kernel:?}");
            }
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
