//! `torch.save` archives (the zip format PyTorch writes since 1.6).
//!
//! The archive holds one top-level folder (`<name>/`) with `data.pkl` (the pickled object,
//! in which every tensor is `_rebuild_tensor_v2(storage, offset, size, stride, ...)` and
//! every storage a persistent id), one record `data/<key>` of raw bytes per storage, and
//! `byteorder` (`little` or `big`; absent means little). Storages are read only for the
//! tensors asked for, and every view is checked to lie inside its storage and every storage
//! inside its record before a byte is read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::result::ZipError;

use super::dtype::DType;
use super::error::ImportError;
use super::pickle::{TensorRef, Unpickled, unpickle};

/// Largest `data.pkl` read.
pub const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Largest storage record read.
pub const MAX_STORAGE_BYTES: u64 = 8 << 30;

/// An open `torch.save` archive.
pub struct TorchArchive {
    path: PathBuf,
    zip: ZipArchive<File>,
    /// The top-level folder, with its trailing `/`.
    pub prefix: String,
    /// Whether the archive records big-endian storages.
    pub big_endian: bool,
    file_len: u64,
}

impl std::fmt::Debug for TorchArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchArchive")
            .field("path", &self.path)
            .field("prefix", &self.prefix)
            .field("big_endian", &self.big_endian)
            .finish()
    }
}

fn zip_err(path: &Path, e: ZipError) -> ImportError {
    ImportError::Zip {
        path: path.into(),
        reason: match e {
            ZipError::InvalidArchive(m) => format!("{m} (truncated or damaged?)"),
            other => other.to_string(),
        },
    }
}

impl TorchArchive {
    /// Opens the archive, reads and unpickles `data.pkl`.
    pub fn open(path: &Path) -> Result<(Self, Unpickled), ImportError> {
        let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| ImportError::io(path, e))?.len();
        let mut zip = ZipArchive::new(file).map_err(|e| zip_err(path, e))?;
        let pkl: Vec<String> = zip
            .file_names()
            .filter(|n| {
                (n.ends_with("/data.pkl") && n.matches('/').count() == 1) || *n == "data.pkl"
            })
            .map(String::from)
            .collect();
        let pkl_name = match pkl.as_slice() {
            [one] => one.clone(),
            [] => {
                let mut names: Vec<&str> = zip.file_names().take(8).collect();
                names.sort_unstable();
                let hint = if zip.file_names().any(|n| n.ends_with("constants.pkl")) {
                    " (a TorchScript archive from torch.jit.save? save model.state_dict() with torch.save instead)"
                } else {
                    ""
                };
                return Err(ImportError::Zip {
                    path: path.into(),
                    reason: format!("no <name>/data.pkl record; records include {names:?}{hint}"),
                });
            }
            more => {
                return Err(ImportError::Zip {
                    path: path.into(),
                    reason: format!("several data.pkl records: {more:?}"),
                });
            }
        };
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        let big_endian = match zip.by_name(&format!("{prefix}byteorder")) {
            Ok(mut f) => {
                let mut s = String::new();
                f.by_ref()
                    .take(16)
                    .read_to_string(&mut s)
                    .map_err(|e| ImportError::Zip {
                        path: path.into(),
                        reason: format!("cannot read {prefix}byteorder: {e}"),
                    })?;
                match s.trim() {
                    "little" => false,
                    "big" => true,
                    other => {
                        return Err(ImportError::Zip {
                            path: path.into(),
                            reason: format!("{prefix}byteorder says {other:?}, not little or big"),
                        });
                    }
                }
            }
            Err(ZipError::FileNotFound) => false,
            Err(e) => return Err(zip_err(path, e)),
        };
        let bytes = {
            let mut f = zip.by_name(&pkl_name).map_err(|e| zip_err(path, e))?;
            if f.size() > MAX_PICKLE_BYTES {
                return Err(ImportError::TooLarge {
                    path: path.into(),
                    what: pkl_name.clone(),
                    size: f.size(),
                    limit: MAX_PICKLE_BYTES,
                });
            }
            let mut b = Vec::with_capacity(f.size() as usize);
            f.by_ref()
                .take(MAX_PICKLE_BYTES)
                .read_to_end(&mut b)
                .map_err(|e| ImportError::Zip {
                    path: path.into(),
                    reason: format!("cannot read {pkl_name}: {e}"),
                })?;
            b
        };
        let pickled = unpickle(&bytes).map_err(|e| ImportError::Pickle {
            path: path.join(&pkl_name),
            offset: e.offset,
            reason: e.reason,
        })?;
        Ok((
            TorchArchive {
                path: path.into(),
                zip,
                prefix,
                big_endian,
                file_len,
            },
            pickled,
        ))
    }

    /// The element type of a tensor.
    pub fn dtype(t: &TensorRef) -> DType {
        match &t.dtype {
            Some(d) => DType::from_torch(d),
            None => DType::from_torch(&t.storage.class),
        }
    }

    fn storage_err(&self, name: &str, reason: String) -> ImportError {
        ImportError::Storage {
            path: self.path.clone(),
            name: name.into(),
            reason,
        }
    }

    /// Reads tensor `name` (a float type) as row-major f32.
    pub fn read_f32(&mut self, name: &str, t: &TensorRef) -> Result<Vec<f32>, ImportError> {
        let dtype = Self::dtype(t);
        if !dtype.is_float() {
            return Err(ImportError::UnsupportedDtype {
                key: name.into(),
                dtype: dtype.name(),
            });
        }
        let es = dtype.size().unwrap_or(4) as u64;
        let st = &t.storage;
        let declared = st.numel.checked_mul(es).filter(|&b| b <= MAX_STORAGE_BYTES);
        let Some(declared) = declared else {
            return Err(self.storage_err(
                name,
                format!(
                    "storage {} declares {} elements, too many",
                    st.key, st.numel
                ),
            ));
        };
        if declared > self.file_len {
            return Err(self.storage_err(
                name,
                format!(
                    "storage {} declares {declared} bytes, more than the whole file ({} bytes)",
                    st.key, self.file_len
                ),
            ));
        }
        // Elements of the view and the last storage element it touches.
        let mut elements: u64 = 1;
        let mut last = t.offset;
        for (&s, &d) in t.size.iter().zip(&t.stride) {
            elements = elements.saturating_mul(s);
            if s > 0 {
                last = (s - 1)
                    .checked_mul(d)
                    .and_then(|x| x.checked_add(last))
                    .unwrap_or(u64::MAX);
            }
        }
        if elements == 0 {
            return Ok(Vec::new());
        }
        if elements > crate::graph::limits::MAX_PARAM as u64 {
            return Err(self.storage_err(
                name,
                format!("{elements} elements, more than any parameter may have"),
            ));
        }
        if last >= st.numel {
            return Err(self.storage_err(
                name,
                format!(
                    "view (offset {}, size {:?}, stride {:?}) reaches element {last}, but storage {} has {} elements",
                    t.offset, t.size, t.stride, st.key, st.numel
                ),
            ));
        }
        let record = format!("{}data/{}", self.prefix, st.key);
        let path = self.path.clone();
        let mut f = self.zip.by_name(&record).map_err(|e| match e {
            ZipError::FileNotFound => ImportError::Storage {
                path: path.clone(),
                name: name.into(),
                reason: format!("the archive has no record {record} for its storage"),
            },
            e => zip_err(&path, e),
        })?;
        // torch.save writes exactly numel * element size bytes per storage; the check also
        // bounds what is read below by the file's size.
        if f.size() != declared {
            return Err(ImportError::Storage {
                path,
                name: name.into(),
                reason: format!(
                    "storage {} declares {} elements ({declared} bytes) but record {record} holds {} bytes",
                    st.key,
                    st.numel,
                    f.size()
                ),
            });
        }
        let need = (last + 1) * es;
        // The whole record, and one read past its end, so that the archive's CRC-32 of the
        // record is checked.
        let size = f.size();
        let mut buf = Vec::with_capacity(size as usize);
        f.by_ref()
            .take(size.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| ImportError::Storage {
                path: path.clone(),
                name: name.into(),
                reason: format!("cannot read record {record}: {e} (damaged archive?)"),
            })?;
        if (buf.len() as u64) < need {
            return Err(ImportError::Storage {
                path,
                name: name.into(),
                reason: format!("record {record} ends after {} of {need} bytes", buf.len()),
            });
        }
        let es = es as usize;
        let be = self.big_endian;
        let at = |i: u64| {
            let i = i as usize * es;
            dtype.to_f32(&buf[i..i + es], be)
        };
        let mut out = Vec::with_capacity(elements as usize);
        let nd = t.size.len();
        let mut idx = vec![0u64; nd];
        let mut lin = t.offset;
        for _ in 0..elements {
            out.push(at(lin));
            for d in (0..nd).rev() {
                idx[d] += 1;
                lin += t.stride[d];
                if idx[d] < t.size[d] {
                    break;
                }
                lin -= t.stride[d] * t.size[d];
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}
