//! `Debug` of every type that holds secrets prints its type and non-secret sizes only:
//! no `Δ`, label, seed, pad, key or share, in hexadecimal or decimal, may appear (a log
//! line with `{:?}` of a garbler's state would otherwise hand out `Δ` or labels).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::thread;

use protocols::Block;
use protocols::channel::{Channel, MemoryChannel};
use protocols::gc::relu::{ReluOnlineSecrets, ReluParams, garble_relus};
use protocols::gc::{Delta, Evaluator, PlainBackend};
use protocols::he::{HeClient, HeParams};
use protocols::ot::{OtReceiver, OtSender};
use protocols::prg::Prg;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_core::RngCore;

fn hex(b: impl IntoIterator<Item = u8>) -> String {
    b.into_iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts that `dbg` (the `Debug` output of `what`) is short and holds none of
/// `secrets` in any usual rendering: hex of the bytes in either order, the first bytes
/// as a decimal list, and the value as a decimal integer.
fn assert_hides(what: &str, dbg: &str, secrets: &[Vec<u8>]) {
    assert!(
        dbg.len() < 200,
        "{what}: {} characters of Debug output, starting {:?}",
        dbg.len(),
        &dbg[..dbg.len().min(300)]
    );
    let low = dbg.to_lowercase();
    for s in secrets {
        let mut needles = vec![
            hex(s.iter().copied()),
            hex(s.iter().rev().copied()),
            s.iter()
                .take(6)
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ];
        if let Ok(b) = <[u8; 16]>::try_from(s.as_slice()) {
            needles.push(u128::from_le_bytes(b).to_string());
        }
        if let Ok(b) = <[u8; 8]>::try_from(s.as_slice()) {
            needles.push(u64::from_le_bytes(b).to_string());
        }
        for n in needles {
            assert!(!low.contains(&n), "{what} prints a secret ({n}): {dbg}");
        }
    }
}

fn block(b: Block) -> Vec<u8> {
    b.to_bytes().to_vec()
}

#[test]
fn prg_hides_its_seed_and_buffered_output() {
    let seed = Block::from_halves(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
    let mut prg = Prg::from_seed(seed);
    let first = prg.next_u64();
    let mut next = [0u8; 16];
    prg.clone().fill_bytes(&mut next);
    assert_hides(
        "Prg",
        &format!("{prg:?}"),
        &[block(seed), first.to_le_bytes().to_vec(), next.to_vec()],
    );
    let mut src = protocols::prg::RngSource::seeded(seed);
    let _ = src.prg();
    assert_hides("RngSource", &format!("{src:?}"), &[block(seed)]);
}

#[test]
fn ot_sender_and_receiver_hide_delta_seeds_and_pads() {
    let delta = Delta::from_block(Block::from_halves(
        0x1111_2222_3333_4444,
        0x5555_6666_7777_8889,
    ));
    let (mut a, mut b) = MemoryChannel::pair();
    let choices: Vec<bool> = (0..256).map(|i| i % 3 == 0).collect();
    let recv = {
        let choices = choices.clone();
        thread::spawn(move || {
            let mut rng = ChaCha12Rng::seed_from_u64(1);
            let mut r = OtReceiver::setup(&mut b, &mut rng).unwrap();
            let t = r.receive_correlated(&mut b, &choices).unwrap();
            (r, t)
        })
    };
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let mut s = OtSender::setup(&mut a, delta, &mut rng).unwrap();
    let m0 = s.send_correlated(&mut a, choices.len()).unwrap();
    let (r, t) = recv.join().unwrap();
    let mut secrets = vec![block(delta.block())];
    secrets.extend(m0.iter().take(8).map(|&x| block(x)));
    secrets.extend(t.iter().take(8).map(|&x| block(x)));
    assert_hides("OtSender", &format!("{s:?}"), &secrets);
    assert_hides("OtReceiver", &format!("{r:?}"), &secrets);
    // The debug output still says something useful.
    assert!(format!("{s:?}").contains("base_ots: 128"), "{s:?}");
}

#[test]
fn garbler_secrets_and_evaluator_hide_delta_and_labels() {
    let p = ReluParams {
        l: 61,
        f: 14,
        m: 36,
        k: 14,
    };
    let delta = Delta::from_block(Block::from_halves(
        0x0a0b_0c0d_0e0f_1011,
        0x1213_1415_1617_1819,
    ));
    let (garbled, secrets) =
        garble_relus(p, 3, delta, None, 7, ChaCha12Rng::seed_from_u64(3)).unwrap();
    let mut hidden = vec![block(delta.block())];
    let s = &secrets.secrets;
    hidden.extend(s.garbler_zero_labels.iter().take(4).map(|&x| block(x)));
    hidden.extend(s.evaluator_zero_labels.iter().take(4).map(|&x| block(x)));
    assert_hides("GarblerSecrets", &format!("{:?}", secrets.secrets), &hidden);
    assert_hides("ReluGarblerSecrets", &format!("{secrets:?}"), &hidden);
    assert!(!format!("{:?}", secrets.secrets).contains("true"));
    let online = ReluOnlineSecrets::from(secrets.clone());
    assert_hides("ReluOnlineSecrets", &format!("{online:?}"), &hidden);
    // The evaluator's active labels (here: the zero labels) are secret from the garbler.
    let ev = Evaluator::new(
        &garbled.tables,
        &s.garbler_zero_labels,
        &s.evaluator_zero_labels,
    );
    assert_hides("Evaluator", &format!("{ev:?}"), &hidden);
    assert_hides("Delta", &format!("{delta:?}"), &hidden);
}

#[test]
fn plain_backend_and_he_client_hide_their_values_and_keys() {
    let plain = PlainBackend::new(vec![true, false, true], vec![true]);
    let d = format!("{plain:?}");
    assert!(!d.contains("true") && !d.contains("false"), "{d}");
    assert_hides("PlainBackend", &d, &[]);
    let (mut a, _b) = MemoryChannel::pair();
    let he = HeClient::setup(&mut a, HeParams::new(61).unwrap()).unwrap();
    assert_hides("HeClient", &format!("{he:?}"), &[]);
    a.flush().unwrap();
}

#[test]
fn square_secrets_shares_and_answer_hide_their_values() {
    use protocols::square::{
        SquareParams, square_offline_client, square_offline_server, square_online_client,
        square_online_server_finish, square_online_server_request,
    };
    let p = SquareParams::new(61, 14, 20).unwrap();
    let mask = (1u64 << 61) - 1;
    let a: Vec<u64> = vec![0x0123_4567_89ab_cdef & mask, 0x1357_9bdf_0246_8ace & mask];
    let c: Vec<u64> = vec![0x0fed_cba9_8765_4321 & mask, 0x0eca_8642_fdb9_7531 & mask];
    let (mut s_ch, mut c_ch) = MemoryChannel::pair();
    let client = thread::spawn(move || {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let mut trunc = OtSender::setup(&mut c_ch, Delta::random(&mut rng), &mut rng).unwrap();
        let mut ole = OtReceiver::setup(&mut c_ch, &mut rng).unwrap();
        let (shares, sec) =
            square_offline_client(&mut c_ch, &mut trunc, &mut ole, &c, p, &mut rng).unwrap();
        let sec_dbg = format!("{sec:?}");
        let ans = square_online_client(&mut c_ch, sec).unwrap();
        let ans_dbg = format!("{ans:?}");
        ans.send(&mut c_ch).unwrap();
        c_ch.flush().unwrap();
        (shares, sec_dbg, ans_dbg, c)
    });
    let mut rng = ChaCha12Rng::seed_from_u64(12);
    let mut trunc = OtReceiver::setup(&mut s_ch, &mut rng).unwrap();
    let mut ole = OtSender::setup(&mut s_ch, Delta::random(&mut rng), &mut rng).unwrap();
    let sec = square_offline_server(&mut s_ch, &mut trunc, &mut ole, a.len(), p, &mut rng).unwrap();
    let server_sec_dbg = format!("{sec:?}");
    square_online_server_request(&mut s_ch, &sec, &a).unwrap();
    s_ch.flush().unwrap();
    let server = square_online_server_finish(&mut s_ch, sec, &a).unwrap();
    let (shares, client_sec_dbg, ans_dbg, c) = client.join().unwrap();
    let words =
        |v: &[u64]| -> Vec<Vec<u8>> { v.iter().map(|x| x.to_le_bytes().to_vec()).collect() };
    let mut secrets = words(&a);
    secrets.extend(words(&c));
    for sh in [&server.x, &server.x_tilde, &server.square] {
        secrets.extend(words(sh));
    }
    for sh in [&shares.x, &shares.x_tilde, &shares.square] {
        secrets.extend(words(sh));
    }
    assert_hides("SquareServerSecrets", &server_sec_dbg, &secrets);
    assert_hides("SquareClientSecrets", &client_sec_dbg, &secrets);
    assert_hides("SquareAnswer", &ans_dbg, &secrets);
    assert_hides("SquareServerShares", &format!("{server:?}"), &secrets);
    assert_hides("SquareClientShares", &format!("{shares:?}"), &secrets);
    assert!(server_sec_dbg.contains("values: 2"), "{server_sec_dbg}");
}
