//! A minimal dense f32 tensor: a shape and row-major data.

use serde::{Deserialize, Serialize};

/// A dense, row-major f32 tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major elements; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product()],
        }
    }

    /// Wraps existing data; `None` if the length does not match the shape.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then(|| Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Index of the largest element (first one on ties); `None` if empty or all NaN.
    pub fn argmax(&self) -> Option<usize> {
        argmax(&self.data)
    }
}

/// Index of the largest finite-comparable element of `xs` (first on ties).
pub fn argmax<T: PartialOrd + Copy>(xs: &[T]) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, &x) in xs.iter().enumerate() {
        let better = match best {
            // NaN compares as nothing: never better, never replaced by.
            _ if x.partial_cmp(&x).is_none() => false,
            Some((_, b)) => x.partial_cmp(&b) == Some(std::cmp::Ordering::Greater),
            None => true,
        };
        if better {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, -1.0]), Some(1));
        assert_eq!(argmax::<f32>(&[]), None);
        assert_eq!(Tensor::from_vec(&[2, 2], vec![0.0; 3]), None);
    }
}
