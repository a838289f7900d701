//! Element types of checkpoint tensors and their conversion to f32.

/// A tensor element type as a checkpoint declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DType {
    /// float32.
    F32,
    /// float64.
    F64,
    /// float16 (IEEE half).
    F16,
    /// bfloat16.
    BF16,
    /// int64 (e.g. `num_batches_tracked`).
    I64,
    /// int32.
    I32,
    /// int16.
    I16,
    /// int8.
    I8,
    /// uint8.
    U8,
    /// bool.
    Bool,
    /// Anything else, by name.
    Other(String),
}

impl DType {
    /// From a torch storage class name (`FloatStorage`) or dtype name (`float32`).
    pub fn from_torch(name: &str) -> DType {
        match name {
            "FloatStorage" | "float32" | "float" => DType::F32,
            "DoubleStorage" | "float64" | "double" => DType::F64,
            "HalfStorage" | "float16" | "half" => DType::F16,
            "BFloat16Storage" | "bfloat16" => DType::BF16,
            "LongStorage" | "int64" | "long" => DType::I64,
            "IntStorage" | "int32" | "int" => DType::I32,
            "ShortStorage" | "int16" | "short" => DType::I16,
            "CharStorage" | "int8" => DType::I8,
            "ByteStorage" | "uint8" => DType::U8,
            "BoolStorage" | "bool" => DType::Bool,
            other => DType::Other(other.to_string()),
        }
    }

    /// From a safetensors dtype.
    pub fn from_safetensors(d: safetensors::Dtype) -> DType {
        use safetensors::Dtype as S;
        match d {
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::BOOL => DType::Bool,
            other => DType::Other(format!("{other:?}")),
        }
    }

    /// Bytes per element (`None` for an unknown type).
    pub fn size(&self) -> Option<usize> {
        Some(match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::Other(_) => return None,
        })
    }

    /// True for the floating-point types the importer reads.
    pub fn is_float(&self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// PyTorch's name of the type.
    pub fn name(&self) -> String {
        match self {
            DType::F32 => "float32".into(),
            DType::F64 => "float64".into(),
            DType::F16 => "float16".into(),
            DType::BF16 => "bfloat16".into(),
            DType::I64 => "int64".into(),
            DType::I32 => "int32".into(),
            DType::I16 => "int16".into(),
            DType::I8 => "int8".into(),
            DType::U8 => "uint8".into(),
            DType::Bool => "bool".into(),
            DType::Other(s) => s.clone(),
        }
    }

    /// Converts one element (`bytes.len() == self.size()`) of a float type to f32.
    /// `big_endian` reads it in big-endian byte order.
    pub fn to_f32(&self, bytes: &[u8], big_endian: bool) -> f32 {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        if big_endian {
            b[..n].reverse();
        }
        match self {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F64 => f64::from_le_bytes(b) as f32,
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
            _ => f32::NAN,
        }
    }
}

/// IEEE 754 half precision to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value m * 2^-24; normalize.
            let shift = m.leading_zeros() - 21; // bring the top bit to position 10
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13) | 0x0040_0000,
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(DType::BF16.to_f32(&[0x80, 0x3f], false), 1.0);
        assert_eq!(DType::F64.to_f32(&0.5f64.to_le_bytes(), false), 0.5);
        assert_eq!(DType::F32.to_f32(&1.5f32.to_be_bytes(), true), 1.5);
    }
}
