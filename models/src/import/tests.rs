//! Pure-Rust tests of the importer: hand-made pickles, `torch.save`-shaped zip archives and
//! safetensors files written here (the tests with real PyTorch are in
//! `models/tests/import_torch.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pickle::{Value, unpickle};
use super::*;
use crate::exec::F32Executor;
use crate::testing::random_model;

/// Writes protocol-2 pickles opcode by opcode.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }
    fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.op(format!("c{m}\n{n}\n").as_bytes())
    }
    fn int(&mut self, v: u32) -> &mut Self {
        self.0.push(b'J');
        self.op(&v.to_le_bytes())
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x as u32);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    fn tensor(
        &mut self,
        class: &str,
        key: &str,
        numel: usize,
        off: usize,
        size: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"(");
        self.op(b"(")
            .s("storage")
            .global("torch", class)
            .s(key)
            .s("cpu")
            .int(numel as u32);
        self.op(b"tQ")
            .int(off as u32)
            .ints(size)
            .ints(stride)
            .op(b"\x89");
        self.global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR")
    }
}

fn contiguous(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// A `torch.save`-shaped archive: `records` under `archive/`.
fn write_zip(path: &Path, records: &[(String, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opt = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        z.start_file(format!("archive/{name}"), opt).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

/// The state dict of `model` (plus `num_batches_tracked` and SNL alphas from its masks) as
/// a `torch.save` archive: bare or under `state_dict` with an `epoch` and an optimizer-like
/// entry, names under `prefix`.
fn save_torch(model: &Model, path: &Path, wrapped: bool, prefix: &str) {
    let mut p = P::default();
    p.op(b"\x80\x02");
    if wrapped {
        p.op(b"}q\x00(")
            .s("epoch")
            .int(7)
            .s("arch")
            .s("lenet5")
            .s("optimizer")
            .op(b"}(")
            .s("lr");
        p.op(b"G")
            .op(&0.1f64.to_be_bytes())
            .s("nesterov")
            .op(b"\x88")
            .s("params")
            .op(b"](K\x00K\x01eu");
        p.s("state_dict");
    }
    p.global("collections", "OrderedDict").op(b"q\x01)Rq\x02(");
    let mut records = vec![("byteorder".to_string(), b"little".to_vec())];
    let mut add =
        |p: &mut P, name: String, class: &str, shape: &[usize], bytes: Vec<u8>, numel: usize| {
            let key = records.len().to_string();
            p.s(&name)
                .tensor(class, &key, numel, 0, shape, &contiguous(shape));
            records.push((format!("data/{key}"), bytes));
        };
    for (name, t) in &model.weights {
        let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        add(
            &mut p,
            format!("{prefix}{name}"),
            "FloatStorage",
            &t.shape,
            bytes,
            t.len(),
        );
        if let Some(bn) = name.strip_suffix(".running_var") {
            add(
                &mut p,
                format!("{prefix}{bn}.num_batches_tracked"),
                "LongStorage",
                &[],
                5i64.to_le_bytes().to_vec(),
                1,
            );
        }
    }
    for (site, m) in &model.public.masks {
        let [c, h, w] = m.shape;
        let bytes = m
            .kept
            .iter()
            .flat_map(|&k| if k == 1 { 0.9f32 } else { 0.001 }.to_le_bytes())
            .collect();
        add(
            &mut p,
            format!("{prefix}{site}.alphas"),
            "FloatStorage",
            &[1, c, h, w],
            bytes,
            m.len(),
        );
    }
    p.op(b"u");
    if wrapped {
        p.op(b"u");
    }
    p.op(b".");
    records.push(("data.pkl".into(), p.0));
    write_zip(path, &records);
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn unpickles_a_hand_made_state_dict() {
    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("collections", "OrderedDict")
        .op(b"q\x00)Rq\x01(");
    p.s("w").tensor("FloatStorage", "0", 6, 1, &[2, 2], &[1, 2]);
    p.s("n")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(h\x02"); // memo miss below
    let bad = p.0.clone();
    let e = unpickle(&bad).unwrap_err();
    assert!(e.reason.contains("never stored"), "{e:?}");

    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("collections", "OrderedDict")
        .op(b"q\x00)Rq\x01(");
    p.s("w").tensor("FloatStorage", "0", 6, 1, &[2, 2], &[1, 2]);
    p.s("x").op(b"G").op(&2.5f64.to_be_bytes());
    p.s("big").op(b"\x8a\x02\x00\xff"); // LONG1 -256
    p.op(b"uh\x00."); // SETITEMS, then BINGET the OrderedDict class: STOP returns it
    let u = unpickle(&p.0).unwrap();
    assert!(matches!(&u.root, Value::Global(g) if g.name == "OrderedDict"));

    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("collections", "OrderedDict")
        .op(b"q\x00)Rq\x01(");
    p.s("w").tensor("FloatStorage", "0", 6, 1, &[2, 2], &[1, 2]);
    p.s("big").op(b"\x8a\x02\x00\xff");
    p.op(b"u0h\x01.");
    let u = unpickle(&p.0).unwrap();
    let items = u.dict(&u.root).unwrap();
    assert_eq!(items.len(), 2);
    let Value::Tensor(t) = &items[0].1 else {
        panic!("not a tensor")
    };
    assert_eq!(
        (t.offset, t.size.clone(), t.stride.clone()),
        (1, vec![2, 2], vec![1, 2])
    );
    assert_eq!(
        (
            t.storage.class.as_str(),
            t.storage.key.as_str(),
            t.storage.numel
        ),
        ("FloatStorage", "0", 6)
    );
    assert!(matches!(items[1].1, Value::Int(-256)));
}

#[test]
fn malformed_pickles_are_errors_never_panics() {
    let mut p = P::default();
    p.op(b"\x80\x02")
        .global("collections", "OrderedDict")
        .op(b"q\x00)Rq\x01(");
    p.s("w")
        .tensor("FloatStorage", "0", 6, 1, &[2, 2], &[1, 2])
        .op(b"u.");
    let good = p.0;
    assert!(unpickle(&good).is_ok());
    for n in 0..good.len() {
        let e = unpickle(&good[..n]).unwrap_err();
        assert!(
            e.reason.contains("truncated") || e.reason.contains("underflow"),
            "{n}: {e:?}"
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..b.len());
            b[i] = rng.r#gen();
        }
        let _ = unpickle(&b); // must return, not panic
    }
    assert!(
        unpickle(b"\x80\x02\xff")
            .unwrap_err()
            .reason
            .contains("unsupported pickle opcode 0xff")
    );
    assert!(
        unpickle(b"\x80\x020.")
            .unwrap_err()
            .reason
            .contains("underflow")
    );
    assert!(
        unpickle(b"\x80\x02X\xff\xff\xff\x7f")
            .unwrap_err()
            .reason
            .contains("truncated")
    );
}

#[test]
fn torch_archive_views_and_dtypes() {
    let d = tmp();
    let mut p = P::default();
    p.op(b"\x80\x02}(");
    p.s("t").tensor("FloatStorage", "0", 6, 1, &[2, 2], &[1, 2]);
    p.s("h").tensor("HalfStorage", "1", 2, 0, &[2], &[1]);
    p.s("b").tensor("BFloat16Storage", "2", 2, 1, &[1], &[1]);
    p.s("d").tensor("DoubleStorage", "3", 1, 0, &[], &[]);
    p.s("oob")
        .tensor("FloatStorage", "0", 6, 3, &[2, 2], &[1, 2]);
    p.s("short").tensor("FloatStorage", "4", 9, 0, &[9], &[1]);
    p.s("i").tensor("LongStorage", "5", 1, 0, &[], &[]);
    p.s("gone").tensor("FloatStorage", "9", 1, 0, &[1], &[1]);
    p.op(b"u.");
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let path = d.path().join("ck.pt");
    write_zip(
        &path,
        &[
            ("data.pkl".into(), p.0),
            ("data/0".into(), f32s(&[0., 1., 2., 3., 4., 5.])),
            (
                "data/1".into(),
                [0x3c00u16, 0xc000]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            (
                "data/2".into(),
                [0u16, 0x3f80]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            ("data/3".into(), 0.25f64.to_le_bytes().to_vec()),
            ("data/4".into(), f32s(&[1.0; 3])),
            ("data/5".into(), 3i64.to_le_bytes().to_vec()),
        ],
    );
    let mut ck = Checkpoint::open(&path, None).unwrap();
    assert_eq!(ck.format, Format::TorchZip);
    assert_eq!(ck.archive.as_deref(), Some("archive"));
    assert_eq!(ck.read_f32("t").unwrap(), [1., 3., 2., 4.]);
    assert_eq!(ck.read_f32("h").unwrap(), [1., -2.]);
    assert_eq!(ck.read_f32("b").unwrap(), [1.]);
    assert_eq!(ck.read_f32("d").unwrap(), [0.25]);
    assert_eq!(ck.tensors["d"].shape, Vec::<usize>::new());
    let e = ck.read_f32("oob").unwrap_err().to_string();
    assert!(
        e.contains("reaches element 6") && e.contains("has 6 elements"),
        "{e}"
    );
    let e = ck.read_f32("short").unwrap_err().to_string();
    assert!(
        e.contains("declares 9 elements (36 bytes)") && e.contains("holds 12 bytes"),
        "{e}"
    );
    assert!(matches!(
        ck.read_f32("i"),
        Err(ImportError::UnsupportedDtype { .. })
    ));
    let e = ck.read_f32("gone").unwrap_err().to_string();
    assert!(e.contains("no record archive/data/9"), "{e}");
}

fn check_same(a: &Model, b: &Model) {
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.public.masks, b.public.masks);
    let x: Vec<f32> = (0..a.public.graph.input.iter().product::<usize>())
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let la = F32Executor::new(a).unwrap().forward(&x).unwrap();
    let lb = F32Executor::new(b).unwrap().forward(&x).unwrap();
    assert_eq!(la, lb);
}

fn import_at(path: &Path, arch: &str) -> Result<Imported, ImportError> {
    import(path, &ImportOptions::new(arch, 10))
}

#[test]
fn a_model_written_as_a_torch_checkpoint_imports_identically() {
    let d = tmp();
    for arch in ["lenet5", "resnet20"] {
        let m = random_model(arch, 0.3, 11).unwrap();
        let bare = d.path().join(format!("{arch}.pt"));
        save_torch(&m, &bare, false, "");
        let imp = import_at(&bare, arch).unwrap();
        assert!(imp.alphas && imp.key.is_none() && imp.stripped_prefix.is_none());
        assert_eq!(imp.alphas_not_binary, m.public.relu_total());
        assert_eq!(
            imp.ignored.len(),
            m.weights
                .keys()
                .filter(|k| k.ends_with("running_var"))
                .count()
        );
        check_same(&m, &imp.model);
        let p = &imp.model.provenance["import"];
        assert_eq!(p["format"], "torch.save zip");
        assert_eq!(p["masks"]["threshold"], 0.01);
        assert_eq!(p["sha256"].as_str().unwrap().len(), 64);

        let wrapped = d.path().join(format!("{arch}-dp.pt"));
        save_torch(&m, &wrapped, true, "module.");
        let imp = import_at(&wrapped, arch).unwrap();
        assert_eq!(imp.key.as_deref(), Some("state_dict"));
        assert_eq!(imp.stripped_prefix.as_deref(), Some("module."));
        assert_eq!(
            imp.model.provenance["import"]["checkpoint_fields"]["epoch"],
            7
        );
        check_same(&m, &imp.model);
        // A threshold above every alpha linearizes everything.
        let mut o = ImportOptions::new(arch, 10);
        o.threshold = 0.95;
        assert_eq!(import(&wrapped, &o).unwrap().model.public.relu_kept(), 0);
    }
}

#[test]
fn safetensors_checkpoints_import_with_conversions() {
    use safetensors::tensor::{Dtype, TensorView};
    let d = tmp();
    let m = random_model("lenet5", 1.0, 5).unwrap();
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &m.weights {
        if name == "fc3.bias" {
            // bfloat16 of values exactly representable in it.
            let bits: Vec<u8> = t
                .data
                .iter()
                .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
                .collect();
            raw.push((name.clone(), Dtype::BF16, t.shape.clone(), bits));
        } else {
            raw.push((
                name.clone(),
                Dtype::F64,
                t.shape.clone(),
                t.data
                    .iter()
                    .flat_map(|&x| f64::from(x).to_le_bytes())
                    .collect(),
            ));
        }
    }
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(n, dt, s, b)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let path = d.path().join("m.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let imp = import_at(&path, "lenet5").unwrap();
    assert!(!imp.alphas);
    assert_eq!(imp.model.public.relu_kept(), imp.model.public.relu_total());
    for (name, t) in &m.weights {
        let got = &imp.model.weights[name].data;
        if name == "fc3.bias" {
            let want: Vec<f32> = t
                .data
                .iter()
                .map(|x| f32::from_bits(x.to_bits() & 0xffff_0000))
                .collect();
            assert_eq!(got, &want);
        } else {
            assert_eq!(got, &t.data, "{name}");
        }
    }
    // Truncated.
    let cut = d.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(
        import_at(&cut, "lenet5"),
        Err(ImportError::Safetensors { .. })
    ));
    assert!(matches!(
        import(
            &path,
            &ImportOptions {
                key: Some("state_dict".into()),
                ..ImportOptions::new("lenet5", 10)
            }
        ),
        Err(ImportError::InvalidArgument(_))
    ));
}

#[test]
fn bad_checkpoints_name_the_problem() {
    let d = tmp();
    let m = random_model("lenet5", 0.5, 2).unwrap();
    let good = d.path().join("good.pt");
    save_torch(&m, &good, true, "");
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, b: &[u8]| -> PathBuf {
        let p = d.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    for cut in [bytes.len() / 2, bytes.len() - 30, 100] {
        let e = import_at(&write("cut.pt", &bytes[..cut]), "lenet5").unwrap_err();
        assert!(matches!(e, ImportError::Zip { .. }), "{cut}: {e}");
    }
    let e = import_at(&write("empty.pt", b""), "lenet5").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = import_at(
        &write("text.pt", b"hello world, not a checkpoint"),
        "lenet5",
    )
    .unwrap_err();
    assert!(
        matches!(e, ImportError::NotACheckpoint { .. }) && e.to_string().contains("68 65 6c"),
        "{e}"
    );
    let e = import_at(
        &write("legacy.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
        "lenet5",
    )
    .unwrap_err();
    assert!(e.to_string().contains("legacy torch.save format"), "{e}");
    // Another architecture: the first shape that differs is named.
    let e = import_at(&good, "resnet20").unwrap_err();
    assert!(
        matches!(&e, ImportError::ShapeMismatch { key, .. } if key == "conv1.weight"),
        "{e}"
    );
    // Wrong class count.
    let e = import(&good, &ImportOptions::new("lenet5", 100))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "shape of \"fc3.weight\" is [10, 84], expected [100, 84]; check --classes"
    );
    // Missing key / unexpected key / bad --key.
    let mut fewer = m.clone();
    fewer.weights.remove("fc2.bias");
    let p = d.path().join("fewer.pt");
    save_torch(&fewer, &p, false, "");
    let e = import_at(&p, "lenet5").unwrap_err();
    assert!(
        matches!(&e, ImportError::MissingKey { key, expected, .. } if key == "fc2.bias" && expected == &[84]),
        "{e}"
    );
    let mut more = m.clone();
    more.weights
        .insert("fc4.weight".into(), Tensor::zeros(&[2, 2]));
    let p = d.path().join("more.pt");
    save_torch(&more, &p, false, "");
    let e = import_at(&p, "lenet5").unwrap_err();
    assert!(
        matches!(&e, ImportError::UnexpectedKey { key, .. } if key == "fc4.weight"),
        "{e}"
    );
    let e = import(
        &good,
        &ImportOptions {
            key: Some("weights".into()),
            ..ImportOptions::new("lenet5", 10)
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("no key \"weights\"")
            && e.to_string().contains("\"state_dict\" (dict)"),
        "{e}"
    );
    // Non-finite weight.
    let mut nan = m.clone();
    nan.weights.get_mut("conv2.weight").unwrap().data[4] = f32::INFINITY;
    let p = d.path().join("nan.pt");
    save_torch(&nan, &p, false, "");
    let e = import_at(&p, "lenet5").unwrap_err().to_string();
    assert!(
        e.contains("conv2.weight") && e.contains("element 4 is not finite"),
        "{e}"
    );
}
