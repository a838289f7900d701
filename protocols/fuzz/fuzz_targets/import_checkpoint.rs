#![no_main]
//! The PyTorch checkpoint import (`models::import`): the unpickler, `torch.save` zip
//! archives and safetensors files, as opened by `Checkpoint::open` (from a file: that is
//! its only entry) and read tensor by tensor with `read_f32`. Must never panic, and a
//! tensor read must have as many values as its shape says.
//!
//! First byte, bits 0-1: 0: the rest is a pickle for `pickle::unpickle`; 1: the rest is
//! the file; 2: the rest is the `data.pkl` of an otherwise valid archive (storages `0` to
//! `3`); 3: a valid archive (second byte even) or safetensors file (odd) with the bytes
//! after it applied as `replay::patch` edits. Bit 2: open with the key `state_dict`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use models::import::Checkpoint;
use models::import::pickle::unpickle;

mod replay;

/// A protocol-2 pickle, opcode by opcode.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b"X")
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    fn int(&mut self, v: u32) -> &mut Self {
        self.op(b"J").op(&v.to_le_bytes())
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn tuple(&mut self, v: &[u32]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.int(x);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, class: &str, key: &str, numel: u32, t: (u32, &[u32], &[u32])) {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.str("storage")
            .global("torch", class)
            .str(key)
            .str("cpu");
        self.int(numel).op(b"tQ").int(t.0).tuple(t.1).tuple(t.2);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")RtR");
    }
}

fn storages() -> Vec<(&'static str, Vec<u8>)> {
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = (0..3)
        .flat_map(|i| (i as f64 - 1.0).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0x7bff]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    vec![
        ("0", f32s),
        ("1", f64s),
        ("2", f16s),
        ("3", 5i64.to_le_bytes().to_vec()),
    ]
}

/// `{"epoch": 3, "state_dict": OrderedDict(module.* tensors)}`: a transposed f32 view, an
/// f64 vector, an f16 view at an offset, an i64 scalar.
fn valid_pickle() -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(b"\x80\x02}q\x00(")
        .str("epoch")
        .int(3)
        .str("state_dict");
    p.global("collections", "OrderedDict").op(b")R(");
    p.str("module.conv.weight");
    p.tensor("FloatStorage", "0", 6, (0, &[2, 3], &[1, 2]));
    p.str("module.fc.bias");
    p.tensor("DoubleStorage", "1", 3, (0, &[3], &[1]));
    p.str("module.bn.running_mean");
    p.tensor("HalfStorage", "2", 3, (1, &[2], &[1]));
    p.str("module.bn.num_batches_tracked");
    p.tensor("LongStorage", "3", 1, (0, &[], &[]));
    p.op(b"uu.");
    p.0
}

fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut records = vec![("data.pkl".to_string(), pickle.to_vec())];
    records.push(("byteorder".into(), b"little".to_vec()));
    for (k, v) in storages() {
        records.push((format!("data/{k}"), v));
    }
    for (name, data) in records {
        z.start_file(format!("archive/{name}"), opt).expect("zip");
        z.write_all(&data).expect("zip");
    }
    z.finish().expect("zip").into_inner()
}

fn safetensors_file() -> Vec<u8> {
    let header = br#"{"conv.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"fc.bias":{"dtype":"F64","shape":[3],"data_offsets":[24,48]},"bn.running_var":{"dtype":"BF16","shape":[2],"data_offsets":[48,52]},"__metadata__":{"format":"pt"}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    for (_, v) in storages().into_iter().take(2) {
        out.extend_from_slice(&v);
    }
    out.extend_from_slice(&[0x80, 0x3f, 0x00, 0xc0]);
    out
}

struct Valid {
    pickle: Vec<u8>,
    zip: Vec<u8>,
    safetensors: Vec<u8>,
    path: PathBuf,
}

fn valid() -> &'static Valid {
    static V: OnceLock<Valid> = OnceLock::new();
    V.get_or_init(|| {
        let pickle = valid_pickle();
        let v = Valid {
            zip: torch_zip(&pickle),
            pickle,
            safetensors: safetensors_file(),
            path: std::env::temp_dir().join(format!("import-fuzz-{}.bin", std::process::id())),
        };
        assert!(unpickle(&v.pickle).is_ok());
        for file in [&v.zip, &v.safetensors] {
            assert_eq!(
                check(&v.path, file, None),
                Some(3),
                "a valid template fails"
            );
        }
        v
    })
}

/// Opens `file` as a checkpoint and reads every tensor; returns how many were read.
fn check(path: &PathBuf, file: &[u8], key: Option<&str>) -> Option<usize> {
    std::fs::write(path, file).expect("temporary file");
    let mut ck = Checkpoint::open(path, key).ok()?;
    let tensors: Vec<(String, Vec<usize>)> = ck
        .tensors
        .iter()
        .map(|(k, e)| (k.clone(), e.shape.clone()))
        .collect();
    let mut read = 0;
    for (name, shape) in tensors {
        if let Ok(v) = ck.read_f32(&name) {
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(Some(v.len()), numel, "{name}: {shape:?}");
            read += 1;
        }
    }
    Some(read)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let v = valid();
    let key = (mode & 4 != 0).then_some("state_dict");
    match mode & 3 {
        0 => {
            let _ = unpickle(rest);
        }
        1 => {
            let _ = check(&v.path, rest, key);
        }
        2 => {
            let _ = check(&v.path, &torch_zip(rest), key);
        }
        _ => {
            let Some((&which, edits)) = rest.split_first() else {
                return;
            };
            let template = if which & 1 == 0 {
                &v.zip
            } else {
                &v.safetensors
            };
            let _ = check(&v.path, &replay::patch(template, edits), key);
        }
    }
});
