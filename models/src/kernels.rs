//! The plain kernels both executors share: convolution patches (`im2col`), output sizes,
//! the f32 matrix product and convolution, and average pooling over a generic element.
//!
//! This module is the ground floor of the executors: it depends on nothing but
//! [`Shape`], so the f32 executor ([`crate::exec`]) and the fixed-point one
//! ([`crate::fixed`]) can both build on it without depending on each other.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::graph::Shape;

/// Unfolds a C x H x W image into the [C*k*k, Ho*Wo] matrix of convolution patches
/// (zero padding), so a convolution becomes one matrix product.
pub(crate) fn im2col<T: Copy + Default>(
    x: &[T],
    [c, h, w]: Shape,
    k: usize,
    stride: usize,
    pad: usize,
    [ho, wo]: [usize; 2],
) -> Vec<T> {
    let mut col = vec![T::default(); c * k * k * ho * wo];
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let dst = &mut col[row * ho * wo..(row + 1) * ho * wo];
                for oy in 0..ho {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let src = &x[ci * h * w + iy as usize * w..];
                    for ox in 0..wo {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        if ix >= 0 && ix < w as isize {
                            dst[oy * wo + ox] = src[ix as usize];
                        }
                    }
                }
            }
        }
    }
    col
}

/// Output side of a convolution or pooling window.
pub(crate) fn out_hw([_, h, w]: Shape, k: usize, s: usize, p: usize) -> [usize; 2] {
    [(h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1]
}

/// `c[m x n] = a[m x k] * b[k x n]` in f32.
pub(crate) fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    let (Ok(a), Ok(b), Ok(mut cv)) = (
        ArrayView2::from_shape((m, k), a),
        ArrayView2::from_shape((k, n), b),
        ArrayViewMut2::from_shape((m, n), &mut c),
    ) else {
        unreachable!("shapes are validated by Graph::shapes")
    };
    ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut cv);
    c
}

/// f32 convolution of one image; `weight` is [O, C, k, k].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    shape: Shape,
    weight: &[f32],
    bias: Option<&[f32]>,
    out_channels: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let hw = out_hw(shape, k, stride, pad);
    let col = if k == 1 && stride == 1 && pad == 0 {
        x.to_vec()
    } else {
        im2col(x, shape, k, stride, pad, hw)
    };
    let n = hw[0] * hw[1];
    let mut y = matmul(weight, &col, out_channels, shape[0] * k * k, n);
    if let Some(b) = bias {
        for (o, row) in y.chunks_exact_mut(n).enumerate() {
            row.iter_mut().for_each(|v| *v += b[o]);
        }
    }
    y
}

/// Average pooling of one image (no padding).
pub(crate) fn avg_pool<T>(
    x: &[T],
    [c, h, w]: Shape,
    k: usize,
    s: usize,
    mut f: impl FnMut(usize, &mut dyn Iterator<Item = T>) -> T,
) -> Vec<T>
where
    T: Copy,
{
    let [ho, wo] = out_hw([c, h, w], k, s, 0);
    let mut out = Vec::with_capacity(c * ho * wo);
    for ci in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut it = (0..k).flat_map(|ky| {
                    let base = ci * h * w + (oy * s + ky) * w + ox * s;
                    x[base..base + k].iter().copied()
                });
                out.push(f(ci, &mut it));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_matches_direct_sum() {
        // 2 input channels, 3x3 image, 3x3 kernel, stride 2, pad 1.
        let x: Vec<f32> = (0..18).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w: Vec<f32> = (0..2 * 2 * 9).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let b = [0.25f32, -1.0];
        let y = conv2d(&x, [2, 3, 3], &w, Some(&b), 2, 3, 2, 1);
        assert_eq!(y.len(), 2 * 2 * 2);
        for o in 0..2 {
            for oy in 0..2 {
                for ox in 0..2 {
                    let mut s = b[o];
                    for c in 0..2 {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * 2 + ky) as isize - 1;
                                let ix = (ox * 2 + kx) as isize - 1;
                                if (0..3).contains(&iy) && (0..3).contains(&ix) {
                                    s += w[((o * 2 + c) * 3 + ky) * 3 + kx]
                                        * x[c * 9 + iy as usize * 3 + ix as usize];
                                }
                            }
                        }
                    }
                    assert!((y[(o * 2 + oy) * 2 + ox] - s).abs() < 1e-5);
                }
            }
        }
    }
}
