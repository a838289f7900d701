//! `snl-model import` against checkpoints written by real PyTorch: the Python script
//! `tests/data/write_torch_checkpoints.py` builds ResNet-20 and LeNet-5 with SNL-style alphas,
//! saves them in the ways PyTorch users do and records eval-mode logits, which the imported
//! models must reproduce in our f32 executor. Skipped with a message when no Python can
//! `import torch` (see `models::testing::torch_python`); required under SNL_REQUIRE_DATA=1.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use models::exec::F32Executor;
use models::format;
use models::import::{ImportError, ImportOptions, import};
use models::testing::torch_python;

struct Written {
    dir: PathBuf,
    meta: serde_json::Value,
}

impl Written {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs the Python script once per test process, into cargo's temporary directory for
/// integration tests (replaced on every run).
fn written() -> Option<&'static Written> {
    static ONCE: OnceLock<Option<Written>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let py = torch_python(&crate_dir.join(".."))?;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import_torch");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(&py)
            .arg(crate_dir.join("tests/data/write_torch_checkpoints.py"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            py.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        Some(Written { dir, meta })
    })
    .as_ref()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Our logits for every image in `meta[net].x` match PyTorch's within 1e-4, relative to the
/// largest logit of the image.
fn logits_match(model: &models::Model, meta: &serde_json::Value) {
    let x = floats(&meta["x"]);
    let want = floats(&meta["logits"]);
    let per: usize = model.public.graph.input.iter().product();
    let classes = model.public.classes().unwrap();
    assert_eq!(x.len() / per, want.len() / classes);
    let exec = F32Executor::new(model).unwrap();
    let mut worst = 0f32;
    for (img, want) in x.chunks(per).zip(want.chunks(classes)) {
        let got = exec.forward(img).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let err = got
            .iter()
            .zip(want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale,
            "logits differ by {err} (scale {scale}): {got:?} vs {want:?}"
        );
        worst = worst.max(err / scale);
    }
    eprintln!(
        "{}: largest relative logit difference {worst:.1e}",
        model.public.arch
    );
}

#[test]
fn checkpoints_written_by_pytorch_import_exactly() {
    let Some(w) = written() else { return };
    eprintln!(
        "PyTorch {} (safetensors: {})",
        w.meta["torch"], w.meta["safetensors_writer"]
    );

    // ResNet-20, SNL-style checkpoint dict with optimizer state.
    let r20 = import(
        &w.path("resnet20.pth.tar"),
        &ImportOptions::new("resnet20", 10),
    )
    .unwrap();
    assert_eq!(r20.key.as_deref(), Some("state_dict"));
    assert!(r20.alphas);
    assert_eq!(
        r20.ignored.len(),
        21,
        "one num_batches_tracked per batch norm"
    );
    let m = &r20.model;
    assert_eq!(m.public.relu_total(), 188_416);
    assert_eq!(
        m.public.relu_kept() as u64,
        w.meta["resnet20"]["kept"].as_u64().unwrap()
    );
    assert!(m.public.relu_kept() < m.public.relu_total());
    logits_match(m, &w.meta["resnet20"]);
    let prov = &m.provenance["import"];
    assert_eq!(prov["checkpoint_fields"]["arch"], "resnet20");
    assert_eq!(prov["format"], "torch.save zip");
    assert_eq!(prov["names"]["tensors"], m.public.graph.params().len() + 19);

    // The same state dict as safetensors: identical weights and masks.
    let st = import(
        &w.path("resnet20.safetensors"),
        &ImportOptions::new("resnet20", 10),
    )
    .unwrap();
    assert_eq!(st.model.weights, m.weights);
    assert_eq!(st.model.public.masks, m.public.masks);

    // --threshold
    let mut o = ImportOptions::new("resnet20", 10);
    o.threshold = 0.5;
    let half = import(&w.path("resnet20.pth.tar"), &o).unwrap();
    assert_eq!(
        half.model.public.relu_kept() as u64,
        w.meta["resnet20"]["kept_05"].as_u64().unwrap()
    );

    // LeNet-5 through DataParallel, under "net", with a strided view and an offset view.
    let le = import(&w.path("lenet5-dp.pt"), &ImportOptions::new("lenet5", 10)).unwrap();
    assert_eq!(
        (le.key.as_deref(), le.stripped_prefix.as_deref()),
        (Some("net"), Some("module."))
    );
    assert_eq!(
        le.model.public.relu_kept() as u64,
        w.meta["lenet5"]["kept"].as_u64().unwrap()
    );
    logits_match(&le.model, &w.meta["lenet5"]);

    // float16 / bfloat16 / float64 storages read as PyTorch's own .float() reads them.
    let mixed = import(
        &w.path("lenet5-mixed.pt"),
        &ImportOptions::new("lenet5", 10),
    )
    .unwrap();
    let f32s = import(
        &w.path("lenet5-mixed-f32.safetensors"),
        &ImportOptions::new("lenet5", 10),
    )
    .unwrap();
    assert_eq!(mixed.model.weights, f32s.model.weights);
    assert_eq!(mixed.model.public.masks, f32s.model.public.masks);
    let dtypes = &mixed.model.provenance["import"]["dtypes"];
    for d in ["float16", "bfloat16", "float64", "float32"] {
        assert!(dtypes[d].as_u64().unwrap() > 0, "{d}: {dtypes}");
    }
}

#[test]
fn snl_reference_resnet18_and_wrn22_8_import() {
    let Some(w) = written() else { return };
    for arch in ["resnet18", "wrn22_8"] {
        let path = w.path(&format!("snl-{arch}.pth.tar"));
        let imp = import(&path, &ImportOptions::new(arch, 10)).unwrap();
        std::fs::remove_file(&path).unwrap(); // 47 and 74 MB, read by this test only
        let m = &imp.model;
        let meta = &w.meta[arch];
        assert_eq!(m.public.relu_kept() as u64, meta["kept"].as_u64().unwrap());
        let read = m.provenance["import"]["names"]["tensors"].as_u64().unwrap();
        let ignored = imp.ignored.len() as u64;
        assert_eq!(
            read + ignored,
            meta["keys"].as_u64().unwrap(),
            "{arch}: every key used"
        );
        assert!(
            m.provenance["import"]["names"]["renamed"]
                .as_object()
                .unwrap()
                .is_empty()
        );
        logits_match(m, meta);
    }
}

#[test]
fn bad_pytorch_checkpoints_give_named_errors() {
    let Some(w) = written() else { return };
    let lenet = |name: &str| import(&w.path(name), &ImportOptions::new("lenet5", 10)).unwrap_err();
    let e = lenet("lenet5-wrong-shape.pt");
    assert!(
        matches!(&e, ImportError::ShapeMismatch { key, found, expected, .. }
            if key == "fc2.weight" && found == &[84, 100] && expected == &[84, 120]),
        "{e}"
    );
    let e = lenet("lenet5-missing.pt");
    assert!(
        matches!(&e, ImportError::MissingKey { key, .. } if key == "conv2.bias"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("missing key \"conv2.bias\""),
        "{e}"
    );
    let e = lenet("lenet5-unexpected.pt");
    assert!(
        matches!(&e, ImportError::UnexpectedKey { key, .. } if key == "fc4.weight"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("unexpected key \"fc4.weight\""),
        "{e}"
    );
    let e = lenet("int.pt");
    assert!(
        matches!(&e, ImportError::UnsupportedDtype { dtype, .. } if dtype == "int32"),
        "{e}"
    );
    // Truncated: a quarter, half, and all but the end of central directory.
    let bytes = std::fs::read(w.path("lenet5-dp.pt")).unwrap();
    for cut in [bytes.len() / 4, bytes.len() / 2, bytes.len() - 20] {
        std::fs::write(w.path("cut.pt"), &bytes[..cut]).unwrap();
        let e = lenet("cut.pt");
        assert!(matches!(e, ImportError::Zip { .. }), "cut at {cut}: {e}");
    }
    // A byte of the largest storage damaged in place: the record's CRC-32 catches it.
    let mut damaged = bytes.clone();
    let at = {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let largest = (0..z.len())
            .max_by_key(|&i| z.by_index(i).unwrap().size())
            .unwrap();
        let f = z.by_index(largest).unwrap();
        assert!(f.name().contains("/data/"), "{}", f.name());
        (f.data_start() + f.size() / 2) as usize
    };
    damaged[at] ^= 0x55;
    std::fs::write(w.path("damaged.pt"), &damaged).unwrap();
    let e = lenet("damaged.pt");
    assert!(
        matches!(e, ImportError::Storage { .. }) && e.to_string().contains("checksum"),
        "{e}"
    );
    let e = import(
        &w.path("resnet20.pth.tar"),
        &ImportOptions::new("resnet20", 100),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("expected [100, 64]; check --classes"),
        "{e}"
    );
}

#[test]
fn the_cli_writes_the_imported_model() {
    let Some(w) = written() else { return };
    let out = w.path("r20-model");
    let run = Command::new(env!("CARGO_BIN_EXE_snl-model"))
        .args([
            "import",
            "--arch",
            "resnet20",
            "--classes",
            "10",
            "--dataset",
            "cifar10",
            "--from",
        ])
        .arg(w.path("resnet20.pth.tar"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("state dict under \"state_dict\""),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("neither 0 nor 1"));
    let (m, _) = format::load(&out).unwrap();
    let lib = import(
        &w.path("resnet20.pth.tar"),
        &ImportOptions::new("resnet20", 10),
    )
    .unwrap();
    assert_eq!(m.weights, lib.model.weights);
    assert_eq!(m.public.masks, lib.model.public.masks);
    assert_eq!(m.provenance["import"]["dataset"], "cifar10");
    assert_eq!(
        m.provenance["import"]["sha256"],
        lib.model.provenance["import"]["sha256"]
    );
    // A wrong --classes names the tensor and writes nothing.
    let again = Command::new(env!("CARGO_BIN_EXE_snl-model"))
        .args(["import", "--arch", "resnet20", "--classes", "100", "--from"])
        .arg(w.path("resnet20.pth.tar"))
        .arg("--out")
        .arg(w.path("other"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("shape of \"linear.weight\" is [10, 64]")
    );
    assert!(!w.path("other").exists());
}
