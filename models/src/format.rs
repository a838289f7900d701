//! The versioned on-disk model format.
//!
//! A model is a directory:
//!
//! | file                  | part    | content |
//! |-----------------------|---------|---------|
//! | `public.json`         | public  | magic `snl-model-public`, format version, writer, architecture label, the full [`Graph`], input normalization, fixed-point parameters, per-site and total ReLU counts, and the name and SHA-256 of the masks file |
//! | `masks.safetensors`   | public  | one `U8` tensor of shape [C, H, W] per ReLU site, named after the site; 1 = ReLU kept, 0 = linearized |
//! | `weights.safetensors` | private | one `F32` tensor per parameter, named hierarchically (`layer2.0.conv1.weight`) |
//! | `model.json`          | private | magic `snl-model`, format version, writer, SHA-256 of `public.json` and of the weights file, the content hash, training provenance |
//!
//! The **public part** (`public.json` + `masks.safetensors`) is everything the client may
//! know; it can be written and read on its own ([`save_public`], [`load_public`]). Its
//! identity is the **public hash**, the SHA-256 of `public.json` (which pins the masks file
//! by its own hash); a client can demand it. The **content hash** covers the whole model:
//! SHA-256 of `"snl-model content v1\0"`, the public hash and the weights' hash.
//!
//! Writes are atomic: a directory is built beside the target and renamed into place, so a
//! failed write never leaves a half-written model and an existing one is replaced only when
//! asked. Reads check magics, versions, hashes, sizes, names, shapes and dtypes and say
//! what was wrong. See `docs/model-format.md`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Normalization;
use crate::error::ModelError;
use crate::graph::{Graph, Shape};
use crate::model::{Mask, Model, PublicModel, Replacement, SiteCount};
use crate::ring::FixedPointParams;
use crate::tensor::Tensor;

/// This crate's version, recorded as the writer of every model file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The format version this build writes. Version 2 added the per-site ReLU windows
/// (`relu_windows` in `public.json`) and `fixed_point.relu_dropped_bits`; version 3 the
/// per-site replacements (`replacements` in `public.json`, with the `<site>.poly`
/// coefficient tensors in the weights) and `fixed_point.square_frac_bits`; version 4 the
/// quadratic sites' affine channels (`affine_channels` in `public.json`).
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format version this build reads (version 1 reads as version 2 without
/// windows and with `relu_dropped_bits = 0`, the exact ReLU circuit it was written for).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Magic of `public.json`.
pub const PUBLIC_MAGIC: &str = "snl-model-public";
/// Magic of `model.json`.
pub const MODEL_MAGIC: &str = "snl-model";
/// File names inside a model directory.
pub const PUBLIC_FILE: &str = "public.json";
/// Masks file name.
pub const MASKS_FILE: &str = "masks.safetensors";
/// Weights file name.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Manifest file name.
pub const MODEL_FILE: &str = "model.json";

/// Largest JSON manifest read.
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest safetensors file read.
pub const MAX_TENSOR_FILE_BYTES: u64 = 8 << 30;

/// A file referenced by name and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// File name inside the model directory.
    pub file: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// ReLU counts recorded in `public.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReluSummary {
    /// Positions over all sites.
    pub total: usize,
    /// Kept ReLUs.
    pub kept: usize,
    /// Per site, in graph order.
    pub sites: Vec<SiteCount>,
}

/// The document stored as `public.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicDoc {
    /// Always [`PUBLIC_MAGIC`].
    pub magic: String,
    /// [`FORMAT_VERSION`] at writing.
    pub format_version: u32,
    /// Writer, e.g. `models 0.1.0`.
    pub writer: String,
    /// Architecture label.
    pub arch: String,
    /// Output classes.
    pub classes: usize,
    /// Input shape (C, H, W).
    pub input: Shape,
    /// Input normalization.
    pub normalization: Normalization,
    /// Fixed-point parameters of the secure arithmetic.
    pub fixed_point: FixedPointParams,
    /// Per-site ReLU windows (bits `m` read per share), by site name (format version 2;
    /// omitted when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relu_windows: BTreeMap<String, u32>,
    /// Per-site replacements of linearized positions, by site name (format version 3;
    /// omitted when empty, i.e. every site linearizes to the identity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replacements: BTreeMap<String, Replacement>,
    /// Channels of quadratic sites that compute `b x + c` without a square, by site name
    /// (format version 4; omitted when empty, i.e. every quadratic site squares every
    /// channel).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub affine_channels: BTreeMap<String, Vec<usize>>,
    /// ReLU counts.
    pub relus: ReluSummary,
    /// The masks file.
    pub masks: FileRef,
    /// The network description.
    pub graph: Graph,
}

/// The document stored as `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDoc {
    /// Always [`MODEL_MAGIC`].
    pub magic: String,
    /// [`FORMAT_VERSION`] at writing.
    pub format_version: u32,
    /// Writer, e.g. `models 0.1.0`.
    pub writer: String,
    /// `public.json` and its hash (the public hash).
    pub public: FileRef,
    /// The weights file.
    pub weights: FileRef,
    /// SHA-256 over the public hash and the weights' hash.
    pub content_hash: String,
    /// Training provenance (JSON object).
    pub provenance: serde_json::Value,
}

/// Hashes identifying a stored model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hashes {
    /// SHA-256 of `public.json`: what a client pins.
    pub public: String,
    /// SHA-256 of the weights file (absent for a public-only directory).
    pub weights: Option<String>,
    /// The content hash (absent for a public-only directory).
    pub content: Option<String>,
}

fn writer() -> String {
    format!("models {VERSION}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The content hash of a model from its public and weights hashes.
pub fn content_hash(public_sha256: &str, weights_sha256: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"snl-model content v1\0");
    h.update(public_sha256.as_bytes());
    h.update(weights_sha256.as_bytes());
    hex::encode(h.finalize())
}

// ---------------------------------------------------------------- encoding

fn masks_bytes(public: &PublicModel) -> Result<Vec<u8>, ModelError> {
    let views = public
        .masks
        .iter()
        .map(|(name, m)| {
            TensorView::new(Dtype::U8, m.shape.to_vec(), &m.kept)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::InvalidArgument(format!("mask {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One metadata entry only: safetensors writes a HashMap, whose order is not stable.
    let meta = HashMap::from([("format".to_string(), "snl-model masks".to_string())]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::InvalidArgument(format!("cannot serialize masks: {e}")))
}

fn weights_bytes(weights: &BTreeMap<String, Tensor>) -> Result<Vec<u8>, ModelError> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = raw
        .iter()
        .map(|(k, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| ModelError::InvalidArgument(format!("weight {k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One metadata entry only: safetensors writes a HashMap, whose order is not stable.
    let meta = HashMap::from([("format".to_string(), "snl-model weights".to_string())]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::InvalidArgument(format!("cannot serialize weights: {e}")))
}

/// The encoded public part: `public.json` bytes and `masks.safetensors` bytes.
pub fn encode_public(public: &PublicModel) -> Result<(Vec<u8>, Vec<u8>), ModelError> {
    public.validate()?;
    let masks = masks_bytes(public)?;
    let sites = public.site_counts()?;
    let doc = PublicDoc {
        magic: PUBLIC_MAGIC.into(),
        format_version: FORMAT_VERSION,
        writer: writer(),
        arch: public.arch.clone(),
        classes: public.classes()?,
        input: public.graph.input,
        normalization: public.normalization.clone(),
        fixed_point: public.fixed_point,
        relu_windows: public.relu_windows.clone(),
        replacements: public.replacements.clone(),
        affine_channels: public.affine_channels.clone(),
        relus: ReluSummary {
            total: sites.iter().map(|s| s.total).sum(),
            kept: sites.iter().map(|s| s.kept).sum(),
            sites,
        },
        masks: FileRef {
            file: MASKS_FILE.into(),
            sha256: sha256_hex(&masks),
        },
        graph: public.graph.clone(),
    };
    let mut json = serde_json::to_vec_pretty(&doc)
        .map_err(|e| ModelError::InvalidArgument(format!("cannot encode public.json: {e}")))?;
    json.push(b'\n');
    Ok((json, masks))
}

/// The public hash of a public part (SHA-256 of its `public.json`).
pub fn public_hash(public: &PublicModel) -> Result<String, ModelError> {
    Ok(sha256_hex(&encode_public(public)?.0))
}

// ---------------------------------------------------------------- writing

/// Writes `files` into directory `dir` atomically (build beside it, then rename).
fn write_dir_atomic(
    dir: &Path,
    files: &[(&str, &[u8])],
    overwrite: bool,
) -> Result<(), ModelError> {
    if dir.exists() && !overwrite {
        return Err(ModelError::AlreadyExists { path: dir.into() });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            ModelError::InvalidArgument(format!("{} has no directory name", dir.display()))
        })?;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let tmp = parent.join(format!(".{base}.tmp-{stamp}"));
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        for (name, bytes) in files {
            let p = tmp.join(name);
            let mut f = std::fs::File::create(&p).map_err(|e| ModelError::io(&p, e))?;
            std::io::Write::write_all(&mut f, bytes).map_err(|e| ModelError::io(&p, e))?;
            f.sync_all().map_err(|e| ModelError::io(&p, e))?;
        }
        if dir.exists() {
            let old = parent.join(format!(".{base}.old-{stamp}"));
            std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
            if let Err(e) = std::fs::rename(&tmp, dir) {
                // Put the previous model back: nothing already stored is lost.
                let _ = std::fs::rename(&old, dir);
                return Err(ModelError::io(dir, e));
            }
            std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Writes a complete model directory; returns its hashes.
pub fn save(model: &Model, dir: &Path, overwrite: bool) -> Result<Hashes, ModelError> {
    model.validate()?;
    let (public_json, masks) = encode_public(&model.public)?;
    let weights = weights_bytes(&model.weights)?;
    let public = sha256_hex(&public_json);
    let wh = sha256_hex(&weights);
    let content = content_hash(&public, &wh);
    let doc = ModelDoc {
        magic: MODEL_MAGIC.into(),
        format_version: FORMAT_VERSION,
        writer: writer(),
        public: FileRef {
            file: PUBLIC_FILE.into(),
            sha256: public.clone(),
        },
        weights: FileRef {
            file: WEIGHTS_FILE.into(),
            sha256: wh.clone(),
        },
        content_hash: content.clone(),
        provenance: model.provenance.clone(),
    };
    let mut model_json = serde_json::to_vec_pretty(&doc)
        .map_err(|e| ModelError::InvalidArgument(format!("cannot encode model.json: {e}")))?;
    model_json.push(b'\n');
    write_dir_atomic(
        dir,
        &[
            (PUBLIC_FILE, &public_json),
            (MASKS_FILE, &masks),
            (WEIGHTS_FILE, &weights),
            (MODEL_FILE, &model_json),
        ],
        overwrite,
    )?;
    Ok(Hashes {
        public,
        weights: Some(wh),
        content: Some(content),
    })
}

/// Writes only the public part (what a client may hold); returns the public hash.
pub fn save_public(
    public: &PublicModel,
    dir: &Path,
    overwrite: bool,
) -> Result<String, ModelError> {
    let (public_json, masks) = encode_public(public)?;
    write_dir_atomic(
        dir,
        &[(PUBLIC_FILE, &public_json), (MASKS_FILE, &masks)],
        overwrite,
    )?;
    Ok(sha256_hex(&public_json))
}

/// Copies the public part of the full model directory `from` to `dir` as stored (the
/// bytes [`read_public_bytes`] checks), so its public hash stays the one the model's
/// server announces whatever format version wrote it; returns that hash.
pub fn copy_public(from: &Path, dir: &Path, overwrite: bool) -> Result<String, ModelError> {
    let (public_json, masks, hash) = read_public_bytes(from)?;
    decode_public(&from.display().to_string(), &public_json, &masks)?;
    write_dir_atomic(
        dir,
        &[(PUBLIC_FILE, &public_json), (MASKS_FILE, &masks)],
        overwrite,
    )?;
    Ok(hash)
}

// ---------------------------------------------------------------- reading

/// At most `max + 1` bytes of the file at `path`: the caller refuses more than `max`
/// without the rest being read (a huge file or a device such as `/dev/zero` costs at most
/// `max + 1` bytes of memory). Every bounded file read of the workspace goes through here.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ModelError> {
    let buf = read_capped(path, max).map_err(|e| ModelError::io(path, e))?;
    if buf.len() as u64 > max {
        return Err(ModelError::malformed(
            path,
            format!("larger than the {max}-byte limit"),
        ));
    }
    Ok(buf)
}

/// Parses a JSON manifest, checking magic and version before the strict schema so that a
/// wrong file or a future version gets the precise error.
fn parse_manifest<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    magic: &'static str,
) -> Result<T, ModelError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ModelError::malformed(path, format!("not valid JSON (truncated?): {e}")))?;
    let found = value
        .get("magic")
        .and_then(|m| m.as_str())
        .unwrap_or("<none>");
    if found != magic {
        return Err(ModelError::BadMagic {
            path: path.into(),
            found: found.chars().take(64).collect(),
            expected: magic,
        });
    }
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| ModelError::malformed(path, "missing or non-integer format_version"))?;
    if !(u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION)).contains(&version) {
        return Err(ModelError::UnsupportedVersion {
            path: path.into(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| ModelError::malformed(path, e.to_string()))
}

fn check_file_name(path: &Path, name: &str, expected: &str) -> Result<(), ModelError> {
    if name != expected {
        return Err(ModelError::malformed(
            path,
            format!("refers to file {name:?}; this format version stores it as {expected:?}"),
        ));
    }
    Ok(())
}

fn read_hashed(dir: &Path, r: &FileRef, max: u64) -> Result<Vec<u8>, ModelError> {
    let path = dir.join(&r.file);
    let bytes = read_bounded(&path, max)?;
    let found = sha256_hex(&bytes);
    if found != r.sha256.to_ascii_lowercase() {
        return Err(ModelError::HashMismatch {
            path,
            expected: r.sha256.clone(),
            found,
        });
    }
    Ok(bytes)
}

fn open_safetensors<'a>(
    path: &Path,
    bytes: &'a [u8],
    kind: &str,
) -> Result<SafeTensors<'a>, ModelError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::malformed(path, format!("invalid safetensors: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::malformed(path, format!("invalid safetensors header: {e}")))?;
    let format = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    if format.as_deref() != Some(kind) {
        return Err(ModelError::BadMagic {
            path: path.into(),
            found: format.unwrap_or_else(|| "<none>".into()),
            expected: if kind.ends_with("masks") {
                "snl-model masks"
            } else {
                "snl-model weights"
            },
        });
    }
    Ok(st)
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

/// Reads and checks the manifests of a model directory without loading tensors:
/// `public.json` always, `model.json` when the directory holds the private part.
pub fn read_manifests(dir: &Path) -> Result<(PublicDoc, Option<ModelDoc>), ModelError> {
    let path = dir.join(PUBLIC_FILE);
    let json = read_bounded(&path, MAX_JSON_BYTES)?;
    let public = parse_manifest(&path, &json, PUBLIC_MAGIC)?;
    let mpath = dir.join(MODEL_FILE);
    let model = if mpath.exists() {
        let json = read_bounded(&mpath, MAX_JSON_BYTES)?;
        Some(parse_manifest(&mpath, &json, MODEL_MAGIC)?)
    } else {
        None
    };
    Ok((public, model))
}

/// Reads the public part from a model directory (full or public-only); returns it with
/// its public hash.
pub fn load_public(dir: &Path) -> Result<(PublicModel, String), ModelError> {
    let path = dir.join(PUBLIC_FILE);
    let json = read_bounded(&path, MAX_JSON_BYTES)?;
    let doc: PublicDoc = parse_manifest(&path, &json, PUBLIC_MAGIC)?;
    check_file_name(&path, &doc.masks.file, MASKS_FILE)?;
    let mbytes = read_hashed(dir, &doc.masks, MAX_TENSOR_FILE_BYTES)?;
    let public = public_from_doc(&path, &dir.join(MASKS_FILE), &doc, &mbytes)?;
    Ok((public, sha256_hex(&json)))
}

/// The stored bytes of a model directory's public part (`public.json` and the masks file,
/// the masks checked against the hash `public.json` records) and its public hash (the
/// SHA-256 of those `public.json` bytes, as [`load_public`] returns it). What a server
/// sends: re-encoding a model read from an older format version would give other bytes,
/// and so another hash than the one its users pin.
pub fn read_public_bytes(dir: &Path) -> Result<(Vec<u8>, Vec<u8>, String), ModelError> {
    let path = dir.join(PUBLIC_FILE);
    let json = read_bounded(&path, MAX_JSON_BYTES)?;
    let doc: PublicDoc = parse_manifest(&path, &json, PUBLIC_MAGIC)?;
    check_file_name(&path, &doc.masks.file, MASKS_FILE)?;
    let masks = read_hashed(dir, &doc.masks, MAX_TENSOR_FILE_BYTES)?;
    let hash = sha256_hex(&json);
    Ok((json, masks, hash))
}

/// Decodes a public part from the bytes of its two files (`public.json`, as written by
/// [`encode_public`], and `masks.safetensors`), e.g. as received from a server, with every
/// check of [`load_public`] (magic, versions, the masks' hash, shapes, counts). `origin`
/// names where the bytes came from in error messages. Returns the public part and its
/// public hash.
pub fn decode_public(
    origin: &str,
    json: &[u8],
    masks: &[u8],
) -> Result<(PublicModel, String), ModelError> {
    let path = Path::new(origin).join(PUBLIC_FILE);
    let mpath = Path::new(origin).join(MASKS_FILE);
    if json.len() as u64 > MAX_JSON_BYTES {
        return Err(ModelError::malformed(
            &path,
            "larger than the format allows",
        ));
    }
    let doc: PublicDoc = parse_manifest(&path, json, PUBLIC_MAGIC)?;
    check_file_name(&path, &doc.masks.file, MASKS_FILE)?;
    let found = sha256_hex(masks);
    if found != doc.masks.sha256.to_ascii_lowercase() {
        return Err(ModelError::HashMismatch {
            path: mpath,
            expected: doc.masks.sha256.clone(),
            found,
        });
    }
    let public = public_from_doc(&path, &mpath, &doc, masks)?;
    Ok((public, sha256_hex(json)))
}

/// Builds and checks the public part described by `doc` with the mask bytes `mbytes`.
fn public_from_doc(
    path: &Path,
    mpath: &Path,
    doc: &PublicDoc,
    mbytes: &[u8],
) -> Result<PublicModel, ModelError> {
    let st = open_safetensors(mpath, mbytes, "snl-model masks")?;
    let sites = doc.graph.sites()?;
    let mut masks = BTreeMap::new();
    for s in &sites {
        let view = st.tensor(&s.name).map_err(|_| ModelError::MissingTensor {
            name: s.name.clone(),
            expected: s.shape.to_vec(),
        })?;
        if view.dtype() != Dtype::U8 {
            return Err(ModelError::DtypeMismatch {
                name: s.name.clone(),
                found: dtype_name(view.dtype()),
                expected: "U8",
            });
        }
        if view.shape() != s.shape {
            return Err(ModelError::ShapeMismatch {
                name: s.name.clone(),
                found: view.shape().to_vec(),
                expected: s.shape.to_vec(),
            });
        }
        masks.insert(
            s.name.clone(),
            Mask {
                shape: s.shape,
                kept: view.data().to_vec(),
            },
        );
    }
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| !sites.iter().any(|s| s.name == *n))
    {
        return Err(ModelError::UnexpectedTensor { name: extra.into() });
    }
    if doc.format_version < 2
        && (!doc.relu_windows.is_empty() || doc.fixed_point.relu_dropped_bits != 0)
    {
        return Err(ModelError::malformed(
            path,
            "relu_windows and fixed_point.relu_dropped_bits need format version 2",
        ));
    }
    if doc.format_version < 3 && !doc.replacements.is_empty() {
        return Err(ModelError::malformed(
            path,
            "replacements need format version 3",
        ));
    }
    if doc.format_version < 4 && !doc.affine_channels.is_empty() {
        return Err(ModelError::malformed(
            path,
            "affine_channels need format version 4",
        ));
    }
    let public = PublicModel {
        arch: doc.arch.clone(),
        graph: doc.graph.clone(),
        normalization: doc.normalization.clone(),
        fixed_point: doc.fixed_point,
        masks,
        relu_windows: doc.relu_windows.clone(),
        replacements: doc.replacements.clone(),
        affine_channels: doc.affine_channels.clone(),
    };
    public.validate()?;
    let counts = public.site_counts()?;
    let kept: usize = counts.iter().map(|s| s.kept).sum();
    if doc.relus.sites != counts || doc.relus.kept != kept || doc.relus.total != public.relu_total()
    {
        return Err(ModelError::malformed(
            path,
            format!(
                "recorded ReLU counts (kept {} of {}) disagree with the masks (kept {kept} of {})",
                doc.relus.kept,
                doc.relus.total,
                public.relu_total()
            ),
        ));
    }
    if doc.input != public.graph.input || doc.classes != public.classes()? {
        return Err(ModelError::malformed(
            path,
            "input or classes disagree with the graph",
        ));
    }
    Ok(public)
}

/// Reads a complete model directory and verifies every hash; returns it with its hashes.
pub fn load(dir: &Path) -> Result<(Model, Hashes), ModelError> {
    let path = dir.join(MODEL_FILE);
    if !path.exists() && dir.join(PUBLIC_FILE).exists() {
        return Err(ModelError::InvalidArgument(format!(
            "{} holds only a public part (no {MODEL_FILE}, no weights); use the full model directory",
            dir.display()
        )));
    }
    let json = read_bounded(&path, MAX_JSON_BYTES)?;
    let doc: ModelDoc = parse_manifest(&path, &json, MODEL_MAGIC)?;
    check_file_name(&path, &doc.public.file, PUBLIC_FILE)?;
    check_file_name(&path, &doc.weights.file, WEIGHTS_FILE)?;
    let (public, public_sha) = load_public(dir)?;
    if public_sha != doc.public.sha256.to_ascii_lowercase() {
        return Err(ModelError::HashMismatch {
            path: dir.join(PUBLIC_FILE),
            expected: doc.public.sha256.clone(),
            found: public_sha,
        });
    }
    let wpath = dir.join(WEIGHTS_FILE);
    let wbytes = read_hashed(dir, &doc.weights, MAX_TENSOR_FILE_BYTES)?;
    let content = content_hash(&public_sha, &doc.weights.sha256.to_ascii_lowercase());
    if content != doc.content_hash.to_ascii_lowercase() {
        return Err(ModelError::HashMismatch {
            path,
            expected: doc.content_hash.clone(),
            found: content,
        });
    }
    let st = open_safetensors(&wpath, &wbytes, "snl-model weights")?;
    let params = public.params();
    let mut weights = BTreeMap::new();
    for p in &params {
        let view = st.tensor(&p.name).map_err(|_| ModelError::MissingTensor {
            name: p.name.clone(),
            expected: p.shape.clone(),
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::DtypeMismatch {
                name: p.name.clone(),
                found: dtype_name(view.dtype()),
                expected: "F32",
            });
        }
        if view.shape() != p.shape.as_slice() {
            return Err(ModelError::ShapeMismatch {
                name: p.name.clone(),
                found: view.shape().to_vec(),
                expected: p.shape.clone(),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        weights.insert(
            p.name.clone(),
            Tensor {
                shape: p.shape.clone(),
                data,
            },
        );
    }
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| !params.iter().any(|p| p.name == *n))
    {
        return Err(ModelError::UnexpectedTensor { name: extra.into() });
    }
    let model = Model {
        public,
        weights,
        provenance: doc.provenance,
    };
    model.validate()?;
    Ok((
        model,
        Hashes {
            public: public_sha,
            weights: Some(doc.weights.sha256.to_ascii_lowercase()),
            content: Some(content),
        },
    ))
}
