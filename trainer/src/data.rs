//! Datasets as libtorch tensors, shuffled and augmented deterministically.

use models::data::{Dataset, Normalization};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A whole split in memory: bytes [N, C, H, W] and labels [N].
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
        (0..self.n)
            .step_by(batch.max(1))
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

    /// The batches of one training epoch: shuffled, and with `augment` randomly cropped
    /// (4-pixel zero padding, as torchvision's RandomCrop(32, padding=4) on the image) and
    /// horizontally flipped. Deterministic in (`seed`, `epoch`), so a resumed run sees the
    /// same batches. Incomplete last batches are kept.
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
        let (h, w) = (size[2], size[3]);
        order
            .chunks(batch.max(1))
            .map(|idx| {
                let idx_t = Tensor::from_slice(idx);
                let mut x = self.images.index_select(0, &idx_t);
                if augment {
                    let padded = x.constant_pad_nd([4, 4, 4, 4]);
                    let crops: Vec<Tensor> = (0..idx.len() as i64)
                        .map(|i| {
                            let dy = rng.gen_range(0..=8i64);
                            let dx = rng.gen_range(0..=8i64);
                            let img = padded.get(i).narrow(1, dy, h).narrow(2, dx, w);
                            if rng.gen_bool(0.5) {
                                img.flip([2])
                            } else {
                                img
                            }
                        })
                        .collect();
                    x = Tensor::stack(&crops, 0);
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
