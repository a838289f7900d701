//! Datasets as libtorch tensors, shuffled and augmented deterministically.

use models::data::{Dataset, Normalization};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A whole split in memory: bytes `[N, C, H, W]` and labels `[N]`.
#[derive(Debug)]
pub struct TensorSet {
    images: Tensor,
    labels: Tensor,
    mean: Tensor,
    std: Tensor,
    n: usize,
}

impl TensorSet {
    /// Copies a dataset into tensors; `norm` is applied per batch.
    pub fn new(ds: &Dataset, norm: &Normalization) -> Self {
        let [c, h, w] = ds.shape;
        let n = ds.len();
        let mut bytes = Vec::with_capacity(n * c * h * w);
        for i in 0..n {
            bytes.extend_from_slice(ds.image(i));
        }
        let labels: Vec<i64> = ds.labels().map(|l| l as i64).collect();
        TensorSet {
            images: Tensor::from_slice(&bytes).reshape([n as i64, c as i64, h as i64, w as i64]),
            labels: Tensor::from_slice(&labels),
            mean: Tensor::from_slice(&norm.mean).reshape([1, -1, 1, 1]),
            std: Tensor::from_slice(&norm.std).reshape([1, -1, 1, 1]),
            n,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn normalize(&self, bytes: &Tensor) -> Tensor {
        (bytes.to_kind(Kind::Float) / 255.0 - &self.mean) / &self.std
    }

    /// Batches in order, without augmentation (evaluation).
    pub fn ordered(&self, batch: usize, device: Device) -> Vec<(Tensor, Tensor)> {
        self.first_batches(batch, usize::MAX, device)
    }

    /// The first `count` batches of [`TensorSet::ordered`], without materializing the
    /// others.
    pub fn first_batches(
        &self,
        batch: usize,
        count: usize,
        device: Device,
    ) -> Vec<(Tensor, Tensor)> {
        (0..self.n)
            .step_by(batch.max(1))
            .take(count)
            .map(|s| {
                let len = batch.min(self.n - s) as i64;
                let x = self.normalize(&self.images.narrow(0, s as i64, len));
                (
                    x.to_device(device),
                    self.labels.narrow(0, s as i64, len).to_device(device),
                )
            })
            .collect()
    }

    /// Moves the images and labels to `device` (as bytes: a CIFAR-10 training split is
    /// 150 MB), so that batching, augmentation and normalization run there.
    pub fn to_device(self, device: Device) -> Self {
        TensorSet {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            mean: self.mean.to_device(device),
            std: self.std.to_device(device),
            n: self.n,
        }
    }

    /// The batches of one training epoch: shuffled, and with `augment` randomly cropped
    /// (4-pixel zero padding, as torchvision's RandomCrop(32, padding=4) on the image) and
    /// horizontally flipped. Deterministic in (`seed`, `epoch`), so a resumed run sees the
    /// same batches. Incomplete last batches are kept. The random choices are drawn on the
    /// CPU; the crops and flips are batched tensor operations (two gathers and a select)
    /// on the device that holds the images, so a GPU run does not wait for the CPU.
    pub fn epoch(
        &self,
        batch: usize,
        seed: u64,
        epoch: usize,
        augment: bool,
        device: Device,
    ) -> Vec<(Tensor, Tensor)> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<i64> = (0..self.n as i64).collect();
        order.shuffle(&mut rng);
        let size = self.images.size();
        let (c, h, w) = (size[1], size[2], size[3]);
        let here = self.images.device();
        order
            .chunks(batch.max(1))
            .map(|idx| {
                let idx_t = Tensor::from_slice(idx).to_device(here);
                let mut x = self.images.index_select(0, &idx_t);
                if augment {
                    let b = idx.len();
                    let (mut dy, mut dx, mut flip) = (
                        Vec::with_capacity(b),
                        Vec::with_capacity(b),
                        Vec::with_capacity(b),
                    );
                    for _ in 0..b {
                        dy.push(rng.gen_range(0..=8i64));
                        dx.push(rng.gen_range(0..=8i64));
                        flip.push(rng.gen_bool(0.5));
                    }
                    x = crop_flip(&x, &dy, &dx, &flip, [c, h, w]);
                }
                let x = self.normalize(&x);
                (
                    x.to_device(device),
                    self.labels.index_select(0, &idx_t).to_device(device),
                )
            })
            .collect()
    }
}

/// Crops each image of `x` [B, C, H, W] at offset (`dy[i]`, `dx[i]`) of its 4-pixel
/// zero-padded version and mirrors it left-right where `flip[i]`.
fn crop_flip(x: &Tensor, dy: &[i64], dx: &[i64], flip: &[bool], [c, h, w]: [i64; 3]) -> Tensor {
    let dev = x.device();
    let b = dy.len() as i64;
    let padded = x.constant_pad_nd([4, 4, 4, 4]);
    let ar = |n: i64| Tensor::arange(n, (Kind::Int64, dev));
    let rows = (Tensor::from_slice(dy).to_device(dev).view([b, 1, 1, 1])
        + ar(h).view([1, 1, h, 1]))
    .expand([b, c, h, w + 8], false);
    let x = padded.gather(2, &rows, false);
    // A flipped image reads its columns right to left: column j comes from w - 1 - j.
    let flip_t = Tensor::from_slice(flip).to_device(dev).view([b, 1, 1, 1]);
    let j = ar(w).view([1, 1, 1, w]);
    let j = j.where_self(&flip_t.logical_not(), &(ar(w).flip([0]).view([1, 1, 1, w])));
    let cols =
        (Tensor::from_slice(dx).to_device(dev).view([b, 1, 1, 1]) + j).expand([b, c, h, w], false);
    x.gather(3, &cols, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched crop and flip equal cropping and flipping each image on its own.
    #[test]
    fn batched_crop_flip_matches_per_image() {
        let x = Tensor::arange(2 * 3 * 5 * 6, (Kind::Int64, Device::Cpu))
            .to_kind(Kind::Uint8)
            .reshape([2, 3, 5, 6]);
        let (dy, dx, flip) = ([0i64, 8], [3i64, 8], [true, false]);
        let got = crop_flip(&x, &dy, &dx, &flip, [3, 5, 6]);
        let padded = x.constant_pad_nd([4, 4, 4, 4]);
        for i in 0..2 {
            let mut want = padded
                .get(i)
                .narrow(1, dy[i as usize], 5)
                .narrow(2, dx[i as usize], 6);
            if flip[i as usize] {
                want = want.flip([2]);
            }
            assert!(got.get(i).equal(&want), "image {i}");
        }
    }
}
