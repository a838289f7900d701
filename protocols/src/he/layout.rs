//! Coefficient-encoding layouts of linear operators (Cheetah-style, no rotations).
//!
//! Every linear operator of the networks is a 2-D convolution [`ConvShape`]: a dense
//! layer on a `C x H x W` value is a convolution with an `H x W` kernel, a per-channel
//! scale is a depthwise 1x1 convolution, an average pool a depthwise `k x k` one.
//!
//! **Input polynomial.** A tile of the zero-padded input, `C'` channels by `Ht` rows by
//! the full padded width `Wp`, is laid out row-major in the coefficients:
//! `T(X) = sum x[c][i][j] X^(c*Ht*Wp + i*Wp + j)`, `B = C'*Ht*Wp` coefficients.
//!
//! **Kernel polynomial.** For output channel `m` (the `m'`-th of `M'` packed in one
//! polynomial) and input channel `c` of the block:
//! `K(X) = sum w[m][c][a][b] X^(m'*B + O - c*Ht*Wp - a*Wp - b)` with
//! `O = (C'-1)*Ht*Wp + (kh-1)*Wp + (kw-1)`.
//!
//! **Product.** Coefficient `m'*B + O + i*Wp + j` of `T*K` is exactly the stride-1
//! convolution output at row `i`, column `j` of the tile for channel `m`, summed over the
//! block's channels (the index equation forces `c = c'`, `row = i + a`, `col = j + b`),
//! and no other packed channel or negacyclic wrap-around reaches those coefficients as
//! long as `M'*B <= N` (derivation in `docs/he.md`). Summing the products over the input
//! channel blocks gives the whole convolution; strided outputs are the stride-1 outputs
//! at multiples of the stride (a 1x1 strided convolution without padding subsamples its
//! input instead). Nothing here is secret: a layout depends on shapes only, and both
//! parties compute the same one.

use crate::error::{ProtocolError, Result};

/// A linear operator on one `C x H x W` value, as a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels (equal to `channels` when `depthwise`).
    pub out_channels: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (both directions).
    pub padding: usize,
    /// One `kh x kw` filter per channel (weights `[C][kh][kw]`) instead of a full
    /// `[M][C][kh][kw]` tensor.
    pub depthwise: bool,
}

impl ConvShape {
    /// A convolution of `channels` square `side x side` inputs to `out_channels` with a
    /// `kernel x kernel` kernel (not depthwise).
    pub fn square(
        channels: usize,
        side: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        ConvShape {
            channels,
            height: side,
            width: side,
            out_channels,
            kh: kernel,
            kw: kernel,
            stride,
            padding,
            depthwise: false,
        }
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.padding - self.kh) / self.stride + 1,
            (self.width + 2 * self.padding - self.kw) / self.stride + 1,
        )
    }

    /// Number of inputs.
    pub fn in_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of outputs.
    pub fn out_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.out_channels * ho * wo
    }

    /// Number of weights.
    pub fn weight_len(&self) -> usize {
        let per = self.kh * self.kw;
        if self.depthwise {
            self.channels * per
        } else {
            self.out_channels * self.channels * per
        }
    }

    /// Checks that the shape describes a convolution.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(ProtocolError::arg(format!("convolution {self:?}: {what}")));
        if self.channels == 0 || self.height == 0 || self.width == 0 || self.out_channels == 0 {
            return bad("empty input or output");
        }
        if self.kh == 0 || self.kw == 0 || self.stride == 0 {
            return bad("zero kernel side or stride");
        }
        if self.kh > self.height + 2 * self.padding || self.kw > self.width + 2 * self.padding {
            return bad("kernel larger than the padded input");
        }
        if self.depthwise && self.out_channels != self.channels {
            return bad("a depthwise convolution keeps the channel count");
        }
        Ok(())
    }

    /// Weight `w[m][c][a][b]` of a weight tensor in this shape's order (0 off the
    /// diagonal of a depthwise one).
    fn weight(&self, w: &[i64], m: usize, c: usize, a: usize, b: usize) -> i64 {
        if self.depthwise {
            if m == c {
                w[(c * self.kh + a) * self.kw + b]
            } else {
                0
            }
        } else {
            w[((m * self.channels + c) * self.kh + a) * self.kw + b]
        }
    }

    /// The operator in the ring `Z_{2^l}` (`lmask = 2^l - 1`), computed directly: the
    /// reference the encrypted evaluation is tested against.
    pub fn apply(&self, w: &[i64], x: &[u64], lmask: u64) -> Vec<u64> {
        let (ho, wo) = self.out_hw();
        let (h, wd, p) = (self.height, self.width, self.padding);
        let mut out = vec![0u64; self.out_len()];
        for m in 0..self.out_channels {
            let cs = if self.depthwise {
                m..m + 1
            } else {
                0..self.channels
            };
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0u64;
                    for c in cs.clone() {
                        for a in 0..self.kh {
                            let Some(y) = (oy * self.stride + a).checked_sub(p).filter(|&y| y < h)
                            else {
                                continue;
                            };
                            for b in 0..self.kw {
                                let Some(xx) =
                                    (ox * self.stride + b).checked_sub(p).filter(|&v| v < wd)
                                else {
                                    continue;
                                };
                                let v = x[(c * h + y) * wd + xx];
                                acc = acc.wrapping_add(
                                    v.wrapping_mul(self.weight(w, m, c, a, b) as u64),
                                );
                            }
                        }
                    }
                    out[(m * ho + oy) * wo + ox] = acc & lmask;
                }
            }
        }
        out
    }
}

/// How one operator is cut into polynomials of degree `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvLayout {
    /// The operator.
    pub shape: ConvShape,
    /// Polynomial degree.
    pub n: usize,
    /// Input subsampling (a 1x1 convolution with stride `s` and no padding reads every
    /// `s`-th row and column; it then runs with stride 1).
    sub: usize,
    /// Stride applied to the stride-1 outputs.
    stride: usize,
    /// Effective (subsampled) input height and width.
    he: usize,
    we: usize,
    /// Padded effective height and width.
    hp: usize,
    wp: usize,
    /// Input rows per tile (with the `kh - 1` halo rows).
    pub tile_rows: usize,
    /// Stride-1 output rows per tile.
    step: usize,
    /// Tiles along the height.
    pub tiles: usize,
    /// Input channels per block (`C'`).
    pub channels_per_block: usize,
    /// Output channels per kernel polynomial (`M'`).
    pub outputs_per_poly: usize,
    /// Input channel blocks.
    pub channel_blocks: usize,
    /// Output channel groups.
    pub groups: usize,
    /// Coefficients per packed channel block (`B`).
    block: usize,
    /// Offset of the first complete sum (`O`).
    offset: usize,
}

/// Rough costs on one core in nanoseconds (kernel NTT, product, client encryption,
/// re-randomization plus switch plus decryption of one result), measured with N = 8192
/// and three 62-bit moduli, plus the bytes each ciphertext puts on the wire at
/// `COST_BYTE_NS` per byte; used only to choose among layouts. At 32 ns a byte ResNet18
/// moves 187.5 MB (227.2 MB at 16 ns) and measured less CPU too: the compute constants
/// overrate kernel NTTs, so this weight is set by measurement (`docs/he.md`).
const COST_KERNEL_NS: u64 = 330_000;
const COST_PRODUCT_NS: u64 = 62_000;
const COST_INPUT_NS: u64 = 1_500_000;
const COST_OUTPUT_NS: u64 = 1_200_000;
const COST_BYTE_NS: u64 = 32;
/// A seeded input ciphertext (three 62-bit residues per coefficient).
const INPUT_BYTES: u64 = 190_500;
/// A switched result's `c1` (`switch.rs`).
const OUTPUT_BYTES: u64 = 81_920;

impl ConvLayout {
    /// The cheapest layout of `shape` in polynomials of degree `n` (by the cost model
    /// above); an error if not even one padded input row and one kernel fit.
    pub fn new(shape: ConvShape, n: usize) -> Result<Self> {
        shape.validate()?;
        let sub = if shape.kh == 1 && shape.kw == 1 && shape.padding == 0 {
            shape.stride
        } else {
            1
        };
        let stride = if sub > 1 { 1 } else { shape.stride };
        let he = (shape.height - 1) / sub + 1;
        let we = (shape.width - 1) / sub + 1;
        let (hp, wp) = (he + 2 * shape.padding, we + 2 * shape.padding);
        let mut best: Option<(u64, ConvLayout)> = None;
        for ht in shape.kh..=hp {
            if ht * wp > n {
                break;
            }
            let step = ht - shape.kh + 1;
            let tiles = (hp - shape.kh + 1).div_ceil(step);
            for cb in 1..=shape.channels {
                let blk = cb * ht * wp;
                let mb = if shape.depthwise {
                    cb
                } else {
                    (n / blk).min(shape.out_channels)
                };
                if mb == 0 || mb * blk > n {
                    break;
                }
                let channel_blocks = shape.channels.div_ceil(cb);
                let groups = shape.out_channels.div_ceil(mb);
                let kernels = if shape.depthwise {
                    groups
                } else {
                    groups * channel_blocks
                } as u64;
                let t = tiles as u64;
                let cost = COST_KERNEL_NS * kernels
                    + COST_PRODUCT_NS * kernels * t
                    + (COST_INPUT_NS + COST_BYTE_NS * INPUT_BYTES) * channel_blocks as u64 * t
                    + (COST_OUTPUT_NS + COST_BYTE_NS * OUTPUT_BYTES) * groups as u64 * t;
                if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                    let layout = ConvLayout {
                        shape,
                        n,
                        sub,
                        stride,
                        he,
                        we,
                        hp,
                        wp,
                        tile_rows: ht,
                        step,
                        tiles,
                        channels_per_block: cb,
                        outputs_per_poly: mb,
                        channel_blocks,
                        groups,
                        block: blk,
                        offset: (cb - 1) * ht * wp + (shape.kh - 1) * wp + (shape.kw - 1),
                    };
                    best = Some((cost, layout));
                }
            }
        }
        best.map(|(_, l)| l).ok_or_else(|| {
            ProtocolError::arg(format!(
                "convolution {shape:?}: one padded row band of {} x {wp} does not fit in {n} \
                 coefficients (row tiling of wider inputs is not implemented)",
                shape.kh
            ))
        })
    }

    /// Number of input ciphertexts (index `tile * channel_blocks + block`).
    pub fn input_cts(&self) -> usize {
        self.tiles * self.channel_blocks
    }

    /// Number of output ciphertexts (index `tile * groups + group`).
    pub fn output_cts(&self) -> usize {
        self.tiles * self.groups
    }

    /// Input channel blocks that contribute to output group `g`.
    pub fn blocks_of_group(&self, g: usize) -> std::ops::Range<usize> {
        if self.shape.depthwise {
            g..g + 1
        } else {
            0..self.channel_blocks
        }
    }

    /// The input polynomials' coefficients (`input_cts()` of them, each `n` long) for
    /// the value `x` (`C x H x W`, row-major).
    pub fn encode_input(&self, x: &[u64]) -> Result<Vec<Vec<u64>>> {
        let s = &self.shape;
        if x.len() != s.in_len() {
            return Err(ProtocolError::arg(format!(
                "input of {} values for a {}x{}x{} operator",
                x.len(),
                s.channels,
                s.height,
                s.width
            )));
        }
        let (cb, ht, wp, p) = (self.channels_per_block, self.tile_rows, self.wp, s.padding);
        let mut out = Vec::with_capacity(self.input_cts());
        for t in 0..self.tiles {
            for blk in 0..self.channel_blocks {
                let mut poly = vec![0u64; self.n];
                for cl in 0..cb {
                    let c = blk * cb + cl;
                    if c >= s.channels {
                        break;
                    }
                    for i in 0..ht {
                        let Some(y) = (t * self.step + i).checked_sub(p).filter(|&y| y < self.he)
                        else {
                            continue;
                        };
                        for xx in 0..self.we {
                            let v = x[(c * s.height + y * self.sub) * s.width + xx * self.sub];
                            poly[(cl * ht + i) * wp + xx + p] = v;
                        }
                    }
                }
                out.push(poly);
            }
        }
        Ok(out)
    }

    /// The kernel polynomial's coefficients for output group `g` and input block `blk`
    /// (signed, small) and its 1-norm.
    pub fn kernel(&self, w: &[i64], g: usize, blk: usize) -> (Vec<i64>, u128) {
        let s = &self.shape;
        let (cb, ht, wp) = (self.channels_per_block, self.tile_rows, self.wp);
        let mut poly = vec![0i64; self.n];
        let mut norm = 0u128;
        for ml in 0..self.outputs_per_poly {
            let m = g * self.outputs_per_poly + ml;
            if m >= s.out_channels {
                break;
            }
            for cl in 0..cb {
                let c = blk * cb + cl;
                if c >= s.channels || (s.depthwise && c != m) {
                    continue;
                }
                for a in 0..s.kh {
                    for b in 0..s.kw {
                        let v = s.weight(w, m, c, a, b);
                        let idx = ml * self.block + self.offset - (cl * ht + a) * wp - b;
                        poly[idx] = v;
                        norm += u128::from(v.unsigned_abs());
                    }
                }
            }
        }
        (poly, norm)
    }

    /// The coefficients of output ciphertext (`tile`, `g`) that hold outputs, with the
    /// output index each one holds (ascending coefficient order).
    pub fn output_positions(&self, tile: usize, g: usize) -> Vec<(usize, usize)> {
        let s = &self.shape;
        let (ho, wo) = s.out_hw();
        let st = self.stride;
        let last_row = self.hp - s.kh;
        let last_col = self.wp - s.kw;
        let mut out = Vec::new();
        for ml in 0..self.outputs_per_poly {
            let m = g * self.outputs_per_poly + ml;
            if m >= s.out_channels {
                break;
            }
            for i in 0..self.step {
                let r = tile * self.step + i;
                if r > last_row || !r.is_multiple_of(st) || r / st >= ho {
                    continue;
                }
                for j in (0..=last_col).step_by(st) {
                    if j / st >= wo {
                        break;
                    }
                    let coeff = ml * self.block + self.offset + i * self.wp + j;
                    out.push((coeff, (m * ho + r / st) * wo + j / st));
                }
            }
        }
        out
    }

    /// Ciphertext-plaintext products the server computes.
    pub fn products(&self) -> usize {
        (0..self.groups)
            .map(|g| self.blocks_of_group(g).len())
            .sum::<usize>()
            * self.tiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Negacyclic product in `Z_{2^64}`, the plaintext model of the encrypted one.
    fn negacyclic(a: &[u64], k: &[i64]) -> Vec<u64> {
        let n = a.len();
        let mut out = vec![0u64; n];
        for (j, &kj) in k.iter().enumerate() {
            if kj == 0 {
                continue;
            }
            for (i, &ai) in a.iter().enumerate() {
                let p = ai.wrapping_mul(kj as u64);
                let d = i + j;
                if d < n {
                    out[d] = out[d].wrapping_add(p);
                } else {
                    out[d - n] = out[d - n].wrapping_sub(p);
                }
            }
        }
        out
    }

    /// Evaluates an operator through its layout with plaintext polynomial products and
    /// checks it against the direct computation.
    fn check(shape: ConvShape, n: usize, seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let lmask = (1u64 << 61) - 1;
        let x: Vec<u64> = (0..shape.in_len())
            .map(|_| rng.r#gen::<u64>() & lmask)
            .collect();
        let w: Vec<i64> = (0..shape.weight_len())
            .map(|_| rng.gen_range(-40_000i64..40_000))
            .collect();
        let layout = ConvLayout::new(shape, n).expect("layout");
        let inputs = layout.encode_input(&x).expect("encode");
        assert_eq!(inputs.len(), layout.input_cts());
        let mut got = vec![None; shape.out_len()];
        for t in 0..layout.tiles {
            for g in 0..layout.groups {
                let mut acc = vec![0u64; n];
                for blk in layout.blocks_of_group(g) {
                    let (k, _) = layout.kernel(&w, g, blk);
                    let p = negacyclic(&inputs[t * layout.channel_blocks + blk], &k);
                    acc.iter_mut()
                        .zip(p)
                        .for_each(|(a, v)| *a = a.wrapping_add(v));
                }
                for (coeff, idx) in layout.output_positions(t, g) {
                    assert!(got[idx].is_none(), "output {idx} produced twice");
                    got[idx] = Some(acc[coeff] & lmask);
                }
            }
        }
        let want = shape.apply(&w, &x, lmask);
        let got: Vec<u64> = got
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.unwrap_or_else(|| panic!("output {i} missing ({layout:?})")))
            .collect();
        assert_eq!(got, want, "{layout:?}");
    }

    fn conv(c: usize, hw: usize, m: usize, k: usize, s: usize, p: usize) -> ConvShape {
        ConvShape::square(c, hw, m, k, s, p)
    }

    #[test]
    fn layouts_compute_the_operator() {
        // Small degree so that blocks, groups and tiles all have more than one member.
        let n = 256;
        check(conv(3, 8, 5, 3, 1, 1), n, 1);
        check(conv(4, 9, 3, 3, 2, 1), n, 2);
        check(conv(6, 8, 7, 1, 2, 0), n, 3);
        check(conv(5, 6, 4, 1, 1, 0), n, 4);
        check(conv(2, 12, 3, 3, 1, 1), n, 5); // 14 x 14 padded: tiles
        check(conv(2, 7, 2, 5, 1, 2), n, 6);
        // Dense layer as an H x W kernel.
        let mut dense = conv(4, 3, 6, 3, 1, 0);
        dense.width = 3;
        check(dense, n, 7);
        // Non-square dense input.
        let dense2 = ConvShape {
            height: 2,
            width: 5,
            kh: 2,
            kw: 5,
            ..conv(3, 1, 4, 1, 1, 0)
        };
        check(dense2, n, 8);
        // Depthwise: channel scale and average pooling.
        let scale = ConvShape {
            depthwise: true,
            ..conv(6, 5, 6, 1, 1, 0)
        };
        check(scale, n, 9);
        let pool = ConvShape {
            depthwise: true,
            ..conv(5, 8, 5, 2, 2, 0)
        };
        check(pool, n, 10);
        let global = ConvShape {
            depthwise: true,
            ..conv(7, 4, 7, 4, 4, 0)
        };
        check(global, n, 11);
    }

    #[test]
    fn real_shapes_at_full_degree() {
        // Shapes of the networks (ResNet stem, strided block, shortcut, head) at N = 8192.
        let n = 8192;
        check(conv(3, 32, 16, 3, 1, 1), n, 20);
        check(conv(16, 32, 32, 3, 2, 1), n, 21);
        check(conv(16, 32, 32, 1, 2, 0), n, 22);
        check(conv(64, 4, 10, 4, 1, 0), n, 23);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random operators (kernel, stride, padding, depthwise or not, non-square) at a
        /// small degree, where blocks, groups and tiles are many.
        #[test]
        fn random_operators_compute_exactly(
            c in 1usize..6, m in 1usize..6, h in 1usize..10, w in 1usize..10,
            kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, padding in 0usize..2,
            depthwise: bool, seed: u64,
        ) {
            let shape = ConvShape {
                channels: c,
                height: h,
                width: w,
                out_channels: if depthwise { c } else { m },
                kh,
                kw,
                stride,
                padding,
                depthwise,
            };
            proptest::prop_assume!(shape.validate().is_ok());
            check(shape, 128, seed);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = ConvLayout::new(conv(1, 200, 1, 3, 1, 1), 256).expect_err("too wide");
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = ConvLayout::new(conv(0, 4, 1, 3, 1, 1), 256).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        let l = ConvLayout::new(conv(2, 4, 1, 3, 1, 1), 256).expect("layout");
        assert!(l.encode_input(&[0; 3]).is_err());
    }
}
