//! The model format: round trips and a clear error for every kind of damage.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;

use models::ModelError;
use models::format::{self, MASKS_FILE, MODEL_FILE, PUBLIC_FILE, WEIGHTS_FILE};
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &serde_json::Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Recomputes every recorded hash after a test edited a file, so that the reader's
/// deeper checks (shapes, names, values) are the ones that fire.
fn rehash(dir: &Path) {
    let mut p = read_json(&dir.join(PUBLIC_FILE));
    p["masks"]["sha256"] = sha(&std::fs::read(dir.join(MASKS_FILE)).unwrap()).into();
    write_json(&dir.join(PUBLIC_FILE), &p);
    let ph = sha(&std::fs::read(dir.join(PUBLIC_FILE)).unwrap());
    let wh = sha(&std::fs::read(dir.join(WEIGHTS_FILE)).unwrap());
    let mut m = read_json(&dir.join(MODEL_FILE));
    m["public"]["sha256"] = ph.clone().into();
    m["weights"]["sha256"] = wh.clone().into();
    m["content_hash"] = format::content_hash(&ph, &wh).into();
    write_json(&dir.join(MODEL_FILE), &m);
}

/// Rewrites a safetensors file with `edit` applied to its (name, dtype, shape, bytes) list.
fn rewrite_tensors(
    path: &Path,
    kind: &str,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut list: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut list);
    let views: Vec<_> = list
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), kind.to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn saved(name: &str, keep: f64) -> (tempfile::TempDir, std::path::PathBuf, models::Model) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let m = common::model(name, keep, 3);
    format::save(&m, &dir, false).unwrap();
    (tmp, dir, m)
}

#[test]
fn round_trip_is_bit_exact() {
    for (arch, keep) in [("lenet5", 0.3), ("resnet20", 0.1)] {
        let (tmp, dir, m) = saved(arch, keep);
        let (back, h) = format::load(&dir).unwrap();
        assert_eq!(back, m, "{arch}");
        for (k, t) in &m.weights {
            let b = &back.weights[k];
            assert!(
                t.data
                    .iter()
                    .zip(&b.data)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
        // Writing again yields identical bytes and hashes.
        let dir2 = tmp.path().join("again");
        let h2 = format::save(&back, &dir2, false).unwrap();
        assert_eq!(h, h2);
        for f in [PUBLIC_FILE, MASKS_FILE, WEIGHTS_FILE, MODEL_FILE] {
            assert_eq!(
                std::fs::read(dir.join(f)).unwrap(),
                std::fs::read(dir2.join(f)).unwrap(),
                "{f}"
            );
        }
    }
}

#[test]
fn public_part_stands_alone() {
    let (tmp, dir, m) = saved("lenet5", 0.5);
    let pub_dir = tmp.path().join("public");
    let h = format::save_public(&m.public, &pub_dir, false).unwrap();
    assert!(!pub_dir.join(WEIGHTS_FILE).exists() && !pub_dir.join(MODEL_FILE).exists());
    let (p, h2) = format::load_public(&pub_dir).unwrap();
    assert_eq!(p, m.public);
    assert_eq!(h, h2);
    // The same public hash as the full model's.
    assert_eq!(format::load(&dir).unwrap().1.public, h);
    let e = format::load(&pub_dir).unwrap_err().to_string();
    assert!(e.contains("only a public part"), "{e}");
}

#[test]
fn truncated_files_are_named() {
    let (_t, dir, _) = saved("lenet5", 1.0);
    let w = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), &w[..w.len() / 2]).unwrap();
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(e, ModelError::HashMismatch { ref path, .. } if path.ends_with(WEIGHTS_FILE)),
        "{e}"
    );
    // With the hash "repaired", the safetensors reader itself reports the truncation.
    rehash(&dir);
    let e = format::load(&dir).unwrap_err();
    assert!(e.to_string().contains("invalid safetensors"), "{e}");
    let p = std::fs::read(dir.join(PUBLIC_FILE)).unwrap();
    std::fs::write(dir.join(PUBLIC_FILE), &p[..p.len() / 3]).unwrap();
    let e = format::load_public(&dir).unwrap_err().to_string();
    assert!(e.contains("not valid JSON (truncated?)"), "{e}");
}

#[test]
fn wrong_magic_and_future_version_are_named() {
    let (_t, dir, _) = saved("lenet5", 1.0);
    let mut p = read_json(&dir.join(PUBLIC_FILE));
    p["magic"] = "onnx".into();
    write_json(&dir.join(PUBLIC_FILE), &p);
    let e = format::load_public(&dir).unwrap_err();
    assert!(
        matches!(e, ModelError::BadMagic { ref found, .. } if found == "onnx"),
        "{e}"
    );
    p["magic"] = "snl-model-public".into();
    p["format_version"] = 5.into();
    write_json(&dir.join(PUBLIC_FILE), &p);
    let e = format::load_public(&dir).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::UnsupportedVersion {
                found: 5,
                supported: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade"));
    let mut m = read_json(&dir.join(MODEL_FILE));
    m["format_version"] = 7.into();
    write_json(&dir.join(MODEL_FILE), &m);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(e, ModelError::UnsupportedVersion { found: 7, .. }),
        "{e}"
    );
}

#[test]
fn wrong_shape_missing_and_extra_tensors_are_named() {
    let (_t, dir, _) = saved("lenet5", 1.0);
    let w = dir.join(WEIGHTS_FILE);
    let orig = std::fs::read(&w).unwrap();
    rewrite_tensors(&w, "snl-model weights", |l| {
        let t = l.iter_mut().find(|t| t.0 == "fc2.weight").unwrap();
        t.2 = vec![120, 84];
    });
    rehash(&dir);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::ShapeMismatch { name, found, expected } if name == "fc2.weight" && found == &[120, 84] && expected == &[84, 120]),
        "{e}"
    );
    std::fs::write(&w, &orig).unwrap();
    rewrite_tensors(&w, "snl-model weights", |l| {
        l.retain(|t| t.0 != "conv2.bias")
    });
    rehash(&dir);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "conv2.bias"),
        "{e}"
    );
    std::fs::write(&w, &orig).unwrap();
    rewrite_tensors(&w, "snl-model weights", |l| {
        l.push(("conv3.weight".into(), Dtype::F32, vec![1], vec![0; 4]))
    });
    rehash(&dir);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { name } if name == "conv3.weight"),
        "{e}"
    );
    std::fs::write(&w, &orig).unwrap();
    rewrite_tensors(&w, "snl-model weights", |l| {
        let t = l.iter_mut().find(|t| t.0 == "fc3.bias").unwrap();
        t.1 = Dtype::I32;
    });
    rehash(&dir);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::DtypeMismatch { name, .. } if name == "fc3.bias"),
        "{e}"
    );
}

#[test]
fn masks_of_the_wrong_size_or_value_are_named() {
    let (_t, dir, _) = saved("lenet5", 1.0);
    let mpath = dir.join(MASKS_FILE);
    let orig = std::fs::read(&mpath).unwrap();
    rewrite_tensors(&mpath, "snl-model masks", |l| {
        let t = l.iter_mut().find(|t| t.0 == "alpha2").unwrap();
        t.2 = vec![16, 10, 9];
        t.3.truncate(1440);
    });
    rehash(&dir);
    let e = format::load_public(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::ShapeMismatch { name, expected, .. } if name == "alpha2" && expected == &[16, 10, 10]),
        "{e}"
    );
    std::fs::write(&mpath, &orig).unwrap();
    rewrite_tensors(&mpath, "snl-model masks", |l| {
        l.iter_mut().find(|t| t.0 == "alpha3").unwrap().3[5] = 7;
    });
    rehash(&dir);
    let e = format::load_public(&dir).unwrap_err().to_string();
    assert!(e.contains("alpha3") && e.contains("mask value 7"), "{e}");
    // Recorded counts that disagree with the masks.
    std::fs::write(&mpath, &orig).unwrap();
    rehash(&dir);
    let mut p = read_json(&dir.join(PUBLIC_FILE));
    p["relus"]["kept"] = 5.into();
    write_json(&dir.join(PUBLIC_FILE), &p);
    rehash(&dir);
    let e = format::load_public(&dir).unwrap_err().to_string();
    assert!(e.contains("disagree with the masks"), "{e}");
}

#[test]
fn existing_models_are_not_overwritten_unless_asked() {
    let (_t, dir, m) = saved("lenet5", 1.0);
    let before = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let other = common::model("lenet5", 0.5, 9);
    let e = format::save(&other, &dir, false).unwrap_err();
    assert!(matches!(e, ModelError::AlreadyExists { .. }), "{e}");
    assert_eq!(std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(), before);
    format::save(&other, &dir, true).unwrap();
    assert_eq!(format::load(&dir).unwrap().0, other);
    assert_ne!(other, m);
    // No temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn hash_mismatch_on_edited_public_part() {
    let (_t, dir, _) = saved("lenet5", 1.0);
    let mut p = read_json(&dir.join(PUBLIC_FILE));
    p["normalization"]["mean"][0] = 0.5.into();
    write_json(&dir.join(PUBLIC_FILE), &p);
    let e = format::load(&dir).unwrap_err();
    assert!(
        matches!(&e, ModelError::HashMismatch { path, .. } if path.ends_with(PUBLIC_FILE)),
        "{e}"
    );
}

/// A format-1 model's public part is copied as stored (`snl-model public`): the copy keeps
/// format 1 and the stored hash, the one a server of the model announces, instead of
/// re-encoding it as format 2 under another hash.
#[test]
fn a_format_1_public_part_is_copied_as_stored() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pi-runtime/tests/fixtures/resnet20-cifar10-snl");
    let (public, stored) = format::load_public(&fixture).unwrap();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("public");
    assert_eq!(format::copy_public(&fixture, &out, false).unwrap(), stored);
    let (copied, hash) = format::load_public(&out).unwrap();
    assert_eq!((copied, hash), (public.clone(), stored.clone()));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(PUBLIC_FILE)).unwrap()).unwrap();
    assert_eq!(doc["format_version"], 1);
    // Re-encoding writes format 2: other bytes, another hash.
    assert_ne!(format::public_hash(&public).unwrap(), stored);
}

/// Writes `public` into `dir` as format `version` (hashes updated) and checks that loading
/// it fails with `want`.
fn refused_as_version(dir: &Path, public: &serde_json::Value, version: u32, want: &str) {
    let mut old = public.clone();
    old["format_version"] = version.into();
    write_json(&dir.join(PUBLIC_FILE), &old);
    rehash(dir);
    let e = format::load(dir).unwrap_err().to_string();
    assert!(e.contains(want), "{e}");
}

/// A model with quadratic sites keeps its replacements and coefficients through a save;
/// a file that claims an older format cannot carry replacements, and a quadratic site
/// without its coefficients is named.
#[test]
fn quadratic_sites_round_trip_and_need_their_coefficients() {
    use models::model::{Replacement, poly_param};
    let mut m = common::model("lenet5", 0.3, 5);
    let sites: Vec<String> = m.public.masks.keys().cloned().collect();
    m.public
        .set_replacement(&sites[0], Replacement::Quadratic)
        .unwrap();
    let poly = models::tensor::Tensor {
        shape: vec![3, m.public.masks[&sites[0]].shape[0]],
        data: (0..3 * m.public.masks[&sites[0]].shape[0])
            .map(|i| 0.1 * i as f32 - 0.3)
            .collect(),
    };
    // Missing coefficients are named.
    let e = m.validate().unwrap_err().to_string();
    assert!(e.contains(&poly_param(&sites[0])), "{e}");
    m.weights.insert(poly_param(&sites[0]), poly);
    m.validate().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    format::save(&m, &dir, false).unwrap();
    let (back, _) = format::load(&dir).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.public.replacement(&sites[0]), Replacement::Quadratic);
    assert_eq!(back.public.replacement(&sites[1]), Replacement::Identity);
    let p = read_json(&dir.join(PUBLIC_FILE));
    assert_eq!(p["replacements"][&sites[0]], "quadratic");
    // An identity entry and an unknown site are rejected.
    let mut bad = m.public.clone();
    bad.replacements
        .insert(sites[1].clone(), Replacement::Identity);
    assert!(bad.validate().is_err());
    assert!(
        m.public
            .clone()
            .set_replacement("no.such.site", Replacement::Quadratic)
            .is_err()
    );
    // Format 2 cannot carry replacements.
    refused_as_version(&dir, &p, 2, "replacements need format version 3");
    // Without the coefficient tensor the weights file is incomplete.
    write_json(&dir.join(PUBLIC_FILE), &p);
    rewrite_tensors(&dir.join(WEIGHTS_FILE), "snl-model weights", |list| {
        list.retain(|(n, ..)| !n.ends_with(".poly"))
    });
    rehash(&dir);
    let e = format::load(&dir).unwrap_err().to_string();
    assert!(e.contains(".poly"), "{e}");
}

/// Affine channels of a quadratic site survive a save and are public; a reader rejects
/// them in an older format, at a site that is not quadratic, out of range, unordered,
/// empty, and where the weights' `a` of such a channel is not 0.
#[test]
fn affine_channels_round_trip_and_are_checked() {
    use models::model::{Replacement, poly_param};
    let mut m = common::model("lenet5", 0.3, 6);
    models::testing::make_quadratic(&mut m, 1).unwrap();
    models::testing::make_affine_channels(&mut m, 0).unwrap();
    let sites: Vec<String> = m.public.masks.keys().cloned().collect();
    let chans = m.public.affine_channels[&sites[0]].clone();
    assert_eq!(chans[0], 0);
    // Channel 0 is affine: no squared position in it, every other linearized one is.
    let mask = &m.public.masks[&sites[0]];
    let plane = mask.kept.len() / mask.shape[0];
    let squared_expected = (0..mask.shape[0])
        .filter(|c| chans.binary_search(c).is_err())
        .map(|c| {
            mask.kept[c * plane..(c + 1) * plane]
                .iter()
                .filter(|&&k| k == 0)
                .count()
        })
        .sum::<usize>();
    assert_eq!(m.public.squared_positions(&sites[0]), squared_expected);
    assert!(m.public.squared_positions(&sites[0]) < mask.len() - mask.kept_count());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    format::save(&m, &dir, false).unwrap();
    let (back, _) = format::load(&dir).unwrap();
    assert_eq!(back, m);
    let p = read_json(&dir.join(PUBLIC_FILE));
    assert_eq!(p["format_version"], 4);
    assert_eq!(p["affine_channels"][&sites[0]][0], 0);
    // The public part alone carries them.
    let (public, _) = format::load_public(&dir).unwrap();
    assert_eq!(public.affine_channels, m.public.affine_channels);
    // Format 3 cannot carry them.
    refused_as_version(&dir, &p, 3, "affine_channels need format version 4");
    // Bad lists.
    let c = mask.shape[0];
    for (list, want) in [
        (vec![c], "affine channel"),
        (vec![2, 1], "ascending"),
        (vec![1, 1], "ascending"),
        (vec![], "empty list"),
    ] {
        let mut bad = m.public.clone();
        bad.affine_channels.insert(sites[0].clone(), list);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    let mut bad = m.public.clone();
    bad.set_replacement(&sites[0], Replacement::Identity)
        .unwrap();
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("not quadratic"), "{e}");
    let mut bad = m.public.clone();
    bad.affine_channels.insert("no.such.site".into(), vec![0]);
    assert!(bad.validate().is_err());
    // An affine channel's a must be 0 in the weights.
    let mut bad = m.clone();
    bad.weights.get_mut(&poly_param(&sites[0])).unwrap().data[chans[0]] = 0.25;
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("affine") && e.contains("0.25"), "{e}");
}

/// The workspace's bounded file reader stops one byte past its limit, so an endless file
/// is refused by its caller without being read to the end.
#[test]
fn read_capped_stops_one_byte_past_the_limit() {
    let zero = std::path::Path::new("/dev/zero");
    assert_eq!(models::format::read_capped(zero, 1000).unwrap().len(), 1001);
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, b"abc").unwrap();
    assert_eq!(models::format::read_capped(&small, 1000).unwrap(), b"abc");
    assert!(models::format::read_capped(&dir.path().join("absent"), 10).is_err());
}
