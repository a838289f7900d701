#![no_main]
//! `models::format::decode_public`: the model's public part as a client receives it from a
//! server (`public.json` and `masks.safetensors`). Must never panic.
//!
//! First byte even: the rest is `json length (u16 LE) ‖ json ‖ masks`. Odd: a valid pair
//! (LeNet-5's, 50 % of ReLUs kept, quadratic sites with affine channels) with the bytes after it applied as `replay::patch`
//! edits, to `json` (second bit clear) or to the masks (set); the manifest's masks hash is
//! then set to the changed masks' hash, so that the checks behind it are reached.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use models::format::{decode_public, encode_public};
use sha2::{Digest, Sha256};

mod replay;

struct Valid {
    json: Vec<u8>,
    masks: Vec<u8>,
    sha: String,
}

fn valid() -> &'static Valid {
    static V: OnceLock<Valid> = OnceLock::new();
    V.get_or_init(|| {
        // Quadratic sites with affine channels: the edits reach their checks too.
        let mut model = models::testing::random_model("lenet5", 0.5, 1).expect("model");
        models::testing::make_quadratic(&mut model, 1).expect("quadratic");
        models::testing::make_affine_channels(&mut model, 0).expect("affine channels");
        let (json, masks) = encode_public(&model.public).expect("encode");
        let sha = hex::encode(Sha256::digest(&masks));
        assert!(decode_public("valid", &json, &masks).is_ok());
        Valid { json, masks, sha }
    })
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match hay.windows(from.len()).position(|w| w == from) {
        Some(i) => [&hay[..i], to, &hay[i + from.len()..]].concat(),
        None => hay.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Some((n, rest)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let n = usize::from(u16::from_le_bytes(*n)).min(rest.len());
        let (json, masks) = rest.split_at(n);
        let _ = decode_public("fuzz", json, masks);
        return;
    }
    let v = valid();
    let (json, masks) = if mode & 2 == 0 {
        (replay::patch(&v.json, rest), v.masks.clone())
    } else {
        (v.json.clone(), replay::patch(&v.masks, rest))
    };
    let sha = hex::encode(Sha256::digest(&masks));
    let json = replace(&json, v.sha.as_bytes(), sha.as_bytes());
    let _ = decode_public("fuzz", &json, &masks);
});
