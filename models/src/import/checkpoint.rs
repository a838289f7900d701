//! Reading a checkpoint file into a flat list of named tensors: a safetensors file, or a
//! `torch.save` zip archive holding a state dict (bare, or inside a checkpoint dict under
//! `state_dict`, `model_state_dict`, `model`, `net`, `network`, or a key given by the
//! caller), with DataParallel's `module.` (and `torch.compile`'s `_orig_mod.`) prefix
//! stripped when every name carries it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::dtype::DType;
use super::error::ImportError;
use super::pickle::{TensorRef, Unpickled, Value};
use super::torchzip::TorchArchive;

/// Largest checkpoint file read.
pub const MAX_CHECKPOINT_BYTES: u64 = 8 << 30;

/// Keys of a checkpoint dict tried, in order, when no key is given.
pub const STATE_DICT_KEYS: &[&str] = &["state_dict", "model_state_dict", "model", "net", "network"];

/// Name prefixes stripped when every tensor name carries them.
pub const STRIPPED_PREFIXES: &[&str] = &["module.", "_orig_mod."];

/// The file's container format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// A `torch.save` zip archive.
    TorchZip,
}

impl Format {
    /// Name recorded in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::TorchZip => "torch.save zip",
        }
    }
}

#[derive(Debug)]
enum Loc {
    Bytes(usize, usize),
    Torch(Rc<TensorRef>),
}

/// One named tensor of the checkpoint (not yet read).
#[derive(Debug)]
pub struct Entry {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    loc: Loc,
}

#[derive(Debug)]
enum Inner {
    Bytes(Vec<u8>),
    Torch(Box<TorchArchive>),
}

/// An opened checkpoint: its tensors by (stripped) name, and where they came from.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The `torch.save` archive's folder name.
    pub archive: Option<String>,
    /// The checkpoint-dict key the state dict was under.
    pub key: Option<String>,
    /// The prefix stripped from every name.
    pub stripped_prefix: Option<String>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, Entry>,
    /// State-dict entries that are not tensors: name and kind.
    pub others: BTreeMap<String, &'static str>,
    /// Scalar entries beside the state dict (`arch`, `epoch`, ...), for provenance.
    pub fields: serde_json::Map<String, serde_json::Value>,
    inner: Inner,
}

fn not_ckpt(path: &Path, reason: impl Into<String>) -> ImportError {
    ImportError::NotACheckpoint {
        path: path.into(),
        reason: reason.into(),
    }
}

fn sha256_file(path: &Path) -> Result<String, ImportError> {
    let mut f = File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ImportError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The entries of `v` if it looks like a state dict: string keys, and mostly tensors.
fn as_state_dict(u: &Unpickled, v: &Value) -> Option<Vec<(String, Value)>> {
    let items = u.dict(v)?;
    let mut out = Vec::with_capacity(items.len());
    let mut tensors = 0;
    for (k, v) in items {
        let Value::Str(k) = k else { return None };
        tensors += usize::from(matches!(v, Value::Tensor(_)));
        out.push((k.to_string(), v.clone()));
    }
    (tensors > 0 && 2 * tensors >= out.len()).then_some(out)
}

fn describe_keys(u: &Unpickled, v: &Value) -> String {
    let Some(items) = u.dict(v) else {
        return String::new();
    };
    let shown: Vec<String> = items
        .iter()
        .take(12)
        .map(|(k, v)| match k {
            Value::Str(s) => format!("{s:?} ({})", v.kind()),
            other => format!("<{}>", other.kind()),
        })
        .collect();
    let more = items.len().saturating_sub(12);
    format!(
        "[{}{}]",
        shown.join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        }
    )
}

/// A state dict's entries and the checkpoint-dict key it was found under.
type Found = (Vec<(String, Value)>, Option<String>);

/// Finds the state dict in an unpickled `torch.save` object.
fn find_state_dict(path: &Path, u: &Unpickled, key: Option<&str>) -> Result<Found, ImportError> {
    let root = &u.root;
    let lookup = |k: &str| {
        u.dict(root)?.iter().find_map(|(kk, v)| match kk {
            Value::Str(s) if &**s == k => Some(v),
            _ => None,
        })
    };
    let nsd = |reason: String| ImportError::NoStateDict {
        path: path.into(),
        reason,
    };
    if let Some(k) = key {
        let Some(v) = lookup(k) else {
            return Err(nsd(match u.dict(root) {
                Some(_) => format!(
                    "the checkpoint has no key {k:?}; its keys are {}",
                    describe_keys(u, root)
                ),
                None => format!(
                    "the checkpoint is a {}, not a dict with key {k:?}",
                    root.kind()
                ),
            }));
        };
        return match as_state_dict(u, v) {
            Some(sd) => Ok((sd, Some(k.to_string()))),
            None => Err(nsd(format!(
                "the value under {k:?} is a {} that does not hold tensors {}",
                v.kind(),
                describe_keys(u, v)
            ))),
        };
    }
    if let Some(sd) = as_state_dict(u, root) {
        return Ok((sd, None));
    }
    for k in STATE_DICT_KEYS {
        if let Some(sd) = lookup(k).and_then(|v| as_state_dict(u, v)) {
            return Ok((sd, Some((*k).to_string())));
        }
    }
    Err(nsd(match (u.dict(root), u.object_class(root)) {
        (Some(_), _) => format!(
            "the checkpoint is a dict with keys {} and none of {STATE_DICT_KEYS:?} holds tensors; name the key with --key",
            describe_keys(u, root)
        ),
        (None, Some(class)) => format!(
            "the file holds a pickled {class} object (torch.save(model)?); save model.state_dict() instead"
        ),
        (None, None) => format!("the file holds a {}, not a dict of tensors", root.kind()),
    }))
}

fn scalar_fields(u: &Unpickled, root: &Value) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in u.dict(root).unwrap_or(&[]) {
        let Value::Str(k) = k else { continue };
        let j = match v {
            Value::Str(s) if s.len() <= 200 => serde_json::json!(&**s),
            Value::Int(i) => serde_json::json!(i),
            Value::Float(f) if f.is_finite() => serde_json::json!(f),
            Value::Bool(b) => serde_json::json!(b),
            _ => continue,
        };
        if m.len() < 32 && k.len() <= 64 {
            m.insert(k.to_string(), j);
        }
    }
    m
}

fn to_usize(dims: &[u64]) -> Vec<usize> {
    dims.iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect()
}

impl Checkpoint {
    /// Opens `path` (safetensors or `torch.save` zip), finds the state dict and lists its
    /// tensors without reading them. `key` names the checkpoint-dict entry holding the
    /// state dict (torch.save files only).
    pub fn open(path: &Path, key: Option<&str>) -> Result<Self, ImportError> {
        let meta = std::fs::metadata(path).map_err(|e| ImportError::io(path, e))?;
        if !meta.is_file() {
            return Err(not_ckpt(path, "not a regular file"));
        }
        let bytes = meta.len();
        if bytes > MAX_CHECKPOINT_BYTES {
            return Err(ImportError::TooLarge {
                path: path.into(),
                what: "the file".into(),
                size: bytes,
                limit: MAX_CHECKPOINT_BYTES,
            });
        }
        let mut head = Vec::with_capacity(16);
        File::open(path)
            .and_then(|f| f.take(16).read_to_end(&mut head))
            .map_err(|e| ImportError::io(path, e))?;
        if head.is_empty() {
            return Err(not_ckpt(path, "the file is empty"));
        }
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            return Self::open_torch(path, key, bytes);
        }
        if head[0] == 0x80 {
            return Err(not_ckpt(
                path,
                "a bare pickle: the legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False); load it in PyTorch and save it again with torch.save, or export it with safetensors",
            ));
        }
        let st_len = head
            .get(..8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
        if head.get(8) == Some(&b'{') && st_len.is_some_and(|n| n + 8 <= bytes) {
            if key.is_some() {
                return Err(ImportError::InvalidArgument(
                    "--key names an entry of a torch.save checkpoint dict; a safetensors file is a flat state dict".into(),
                ));
            }
            return Self::open_safetensors(path, bytes);
        }
        let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(not_ckpt(
            path,
            format!(
                "starts with bytes {}, neither a zip archive (torch.save) nor a safetensors header",
                shown.join(" ")
            ),
        ))
    }

    fn open_safetensors(path: &Path, bytes: u64) -> Result<Self, ImportError> {
        let data = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
        let sha256 = hex::encode(Sha256::digest(&data));
        let (n, meta) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| {
            ImportError::Safetensors {
                path: path.into(),
                reason: format!("{e} (truncated?)"),
            }
        })?;
        let base = 8 + n;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let (a, b) = info.data_offsets;
            tensors.insert(
                name,
                Entry {
                    dtype: DType::from_safetensors(info.dtype),
                    shape: info.shape.clone(),
                    loc: Loc::Bytes(base + a, base + b),
                },
            );
        }
        let mut ck = Checkpoint {
            path: path.into(),
            format: Format::Safetensors,
            sha256,
            bytes,
            archive: None,
            key: None,
            stripped_prefix: None,
            tensors,
            others: BTreeMap::new(),
            fields: serde_json::Map::new(),
            inner: Inner::Bytes(data),
        };
        ck.strip_prefixes();
        Ok(ck)
    }

    fn open_torch(path: &Path, key: Option<&str>, bytes: u64) -> Result<Self, ImportError> {
        let (archive, u) = TorchArchive::open(path)?;
        let (entries, key_used) = find_state_dict(path, &u, key)?;
        let fields = if key_used.is_some() {
            scalar_fields(&u, &u.root)
        } else {
            serde_json::Map::new()
        };
        let mut tensors = BTreeMap::new();
        let mut others = BTreeMap::new();
        for (name, v) in entries {
            match v {
                Value::Tensor(t) => {
                    tensors.insert(
                        name,
                        Entry {
                            dtype: TorchArchive::dtype(&t),
                            shape: to_usize(&t.size),
                            loc: Loc::Torch(t),
                        },
                    );
                }
                other => {
                    others.insert(name, other.kind());
                }
            }
        }
        let mut ck = Checkpoint {
            path: path.into(),
            format: Format::TorchZip,
            sha256: sha256_file(path)?,
            bytes,
            archive: Some(archive.prefix.trim_end_matches('/').to_string()),
            key: key_used,
            stripped_prefix: None,
            tensors,
            others,
            fields,
            inner: Inner::Torch(Box::new(archive)),
        };
        ck.strip_prefixes();
        Ok(ck)
    }

    fn strip_prefixes(&mut self) {
        let mut stripped = String::new();
        while let Some(p) = STRIPPED_PREFIXES.iter().find(|p| {
            !self.tensors.is_empty()
                && self
                    .tensors
                    .keys()
                    .chain(self.others.keys())
                    .all(|k| k.starts_with(*p))
        }) {
            self.tensors = std::mem::take(&mut self.tensors)
                .into_iter()
                .map(|(k, v)| (k[p.len()..].to_string(), v))
                .collect();
            self.others = std::mem::take(&mut self.others)
                .into_iter()
                .map(|(k, v)| (k[p.len()..].to_string(), v))
                .collect();
            stripped.push_str(p);
        }
        if !stripped.is_empty() {
            self.stripped_prefix = Some(stripped);
        }
    }

    /// Reads tensor `name` as row-major f32 (float types only).
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ImportError> {
        let Some(e) = self.tensors.get(name) else {
            return Err(ImportError::InvalidArgument(format!("no tensor {name:?}")));
        };
        match (&e.loc, &mut self.inner) {
            (Loc::Bytes(a, b), Inner::Bytes(data)) => {
                if !e.dtype.is_float() {
                    return Err(ImportError::UnsupportedDtype {
                        key: name.into(),
                        dtype: e.dtype.name(),
                    });
                }
                let es = e.dtype.size().unwrap_or(4);
                Ok(data[*a..*b]
                    .chunks_exact(es)
                    .map(|c| e.dtype.to_f32(c, false))
                    .collect())
            }
            (Loc::Torch(t), Inner::Torch(archive)) => {
                let original = format!("{}{name}", self.stripped_prefix.as_deref().unwrap_or(""));
                let t = t.clone();
                archive.read_f32(&original, &t)
            }
            _ => Err(ImportError::InvalidArgument(format!(
                "tensor {name:?} does not belong to this file"
            ))),
        }
    }
}
