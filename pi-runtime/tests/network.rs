//! The server and client over real loopback TCP and TLS: results, concurrency, and bad
//! input of every kind (each gives a clear error on the side that detected it, and the
//! server keeps serving other clients).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use models::fixed::FixedProgram;
use models::tensor::argmax;
use pi_runtime::engine::ClientEngine;
use pi_runtime::net::{BlockingChannel, ClientTls, cert_pin};
use pi_runtime::preprocess::Method;
use pi_runtime::server::{self, ServerConfig};
use pi_runtime::session::{
    ClientOptions, ClientSession, MemoryBudget, ServedModel, server_memory_per_inference,
};
use pi_runtime::wire::{ClientHello, Message, PROTOCOL_VERSION, Reject, ServerHello, Side};
use pi_runtime::{RuntimeError, client};
use protocols::ChannelError;
use protocols::channel::Channel;

struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    model: models::Model,
    prog: FixedProgram,
    dir: PathBuf,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pi-runtime-test-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts a server on 127.0.0.1:0 for a random LeNet-5 with 20% of its ReLUs kept.
fn start(tls: bool, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let model = common::model("lenet5", 0.2, 7);
    let prog = FixedProgram::lower(&model).unwrap();
    let dir = temp_dir("srv");
    let tls_cfg = tls.then(|| {
        let g = pi_runtime::net::generate_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), &g.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &g.key_pem).unwrap();
        pi_runtime::net::server_tls(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap()
    });
    let mut cfg = ServerConfig::new(Arc::new(ServedModel::from_model(&model).unwrap()), tls_cfg);
    cfg.options.allow_insecure_dealer = true;
    cfg.idle_timeout = Duration::from_secs(5);
    cfg.metrics_json = Some(dir.join("metrics.jsonl"));
    tweak(&mut cfg);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            server::run(l, cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    TestServer {
        addr: addr_rx.recv().unwrap(),
        stop: Some(stop),
        thread: Some(thread),
        model,
        prog,
        dir,
    }
}

/// A runtime for client connections (kept alive while its channels are used).
fn rt() -> tokio::runtime::Runtime {
    client::runtime(Some(1)).unwrap()
}

fn connect(
    rt: &tokio::runtime::Runtime,
    s: &TestServer,
    tls: Option<&ClientTls>,
) -> BlockingChannel {
    let addr = if tls.is_some() {
        format!("localhost:{}", s.addr.port())
    } else {
        s.addr.to_string()
    };
    client::connect_blocking(rt, &addr, tls, Duration::from_secs(10)).unwrap()
}

fn dealer() -> ClientOptions {
    ClientOptions {
        expect_model: None,
        insecure_dealer: true,
    }
}

/// Secure logits over the network against the fixed-point executor: the class must agree
/// and every logit lie within the +1-ulp truncation differences (measured about 1e-4 for
/// this network; a broken transport or mask gives errors of order 1 or 2^33).
fn check_against_fixed(s: &TestServer, session: &mut ClientSession<BlockingChannel>, n: usize) {
    for x in common::inputs(&s.model, n, 5) {
        let got = session.infer(&x).unwrap();
        assert_near_fixed(s, &x, &got.output.logits);
        assert!(got.online.seconds > 0.0 && got.online.bytes_sent > 0);
    }
}

/// Secure `logits` of input `x` against the fixed-point executor, as in
/// [`check_against_fixed`].
fn assert_near_fixed(s: &TestServer, x: &[f32], logits: &[f64]) {
    let want = s.prog.forward(x, false).unwrap();
    for (a, b) in logits.iter().zip(&want.logits) {
        assert!((a - b).abs() < 2e-3, "secure logit {a} vs fixed {b}");
    }
    assert_eq!(argmax(logits), argmax(&want.logits));
}

#[test]
fn tls_with_ca_file_and_with_pin() {
    let s = start(true, |_| {});
    let rt = rt();
    let ca = ClientTls::Ca(s.dir.join("cert.pem"));
    // HE preprocessing (the default) over TLS.
    let mut sess =
        ClientSession::start(connect(&rt, &s, Some(&ca)), &ClientOptions::default()).unwrap();
    assert_eq!(sess.method(), Method::HeBfv);
    assert_eq!(
        sess.public_hash(),
        models::format::public_hash(&s.model.public).unwrap()
    );
    sess.prepare(2).unwrap();
    check_against_fixed(&s, &mut sess, 3);
    sess.close().unwrap();

    let pem = std::fs::read(s.dir.join("cert.pem")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    let pin = pi_runtime::net::parse_pin(&cert_pin(&der)).unwrap();
    let opts = ClientOptions {
        expect_model: Some(models::format::public_hash(&s.model.public).unwrap()),
        insecure_dealer: true,
    };
    let mut sess =
        ClientSession::start(connect(&rt, &s, Some(&ClientTls::Pin(pin))), &opts).unwrap();
    check_against_fixed(&s, &mut sess, 1);
    sess.close().unwrap();

    // A wrong pin fails the handshake with a message that names both hashes.
    let r = client::connect_blocking(
        &rt,
        &format!("localhost:{}", s.addr.port()),
        Some(&ClientTls::Pin([7; 32])),
        Duration::from_secs(5),
    );
    let e = r.err().unwrap().to_string();
    assert!(e.contains("does not match the pinned"), "{e}");
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(s.dir.join("metrics.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "one record per session");
    for r in &recs {
        assert_eq!(r["tls"], true);
        assert_eq!(r["ok"], true);
    }
    // The HE session is secure; the dealer marks its record insecure.
    assert_eq!(recs[0]["insecure"], false, "{}", recs[0]);
    assert_eq!(recs[0]["preprocessing"], "he-bfv", "{}", recs[0]);
    assert_eq!(recs[1]["insecure"], true, "{}", recs[1]);
    assert_eq!(recs[1]["preprocessing"], "insecure-dealer", "{}", recs[1]);
}

use rustls::pki_types::pem::PemObject;

#[test]
fn concurrent_clients_are_isolated_and_a_silent_one_stalls_nobody() {
    let s = start(false, |c| c.idle_timeout = Duration::from_secs(30));
    // A client that connects and says nothing holds only its own session.
    let _silent = std::net::TcpStream::connect(s.addr).unwrap();
    let addr = s.addr;
    let (prog, model) = (s.prog.clone(), s.model.clone());
    let workers: Vec<_> = (0..3)
        .map(|k| {
            let (prog, model) = (prog.clone(), model.clone());
            std::thread::spawn(move || {
                let rt = rt();
                let ch =
                    client::connect_blocking(&rt, &addr.to_string(), None, Duration::from_secs(10))
                        .unwrap();
                let mut sess = ClientSession::start(ch, &dealer()).unwrap();
                for x in common::inputs(&model, 2, 100 + k) {
                    let got = sess.infer(&x).unwrap();
                    let want = prog.forward(&x, false).unwrap();
                    assert_eq!(argmax(&got.output.logits), argmax(&want.logits));
                }
                sess.close().unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// Sends raw bytes on a plain connection and returns what the server answered (until it
/// closed or 3 s passed).
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    t.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    out
}

fn decode_reject(bytes: &[u8]) -> Reject {
    assert!(bytes.len() >= 5, "no answer from the server: {bytes:?}");
    match Message::decode(bytes[0], &bytes[5..]).unwrap() {
        Message::Reject(r) => r,
        m => panic!("expected a reject, got {}", m.name()),
    }
}

fn good_client_works(s: &TestServer) {
    let rt = rt();
    let mut sess = ClientSession::start(connect(&rt, s, None), &dealer()).unwrap();
    check_against_fixed(s, &mut sess, 1);
    sess.close().unwrap();
}

#[test]
fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let s = start(false, |c| c.idle_timeout = Duration::from_secs(2));
    let hello = |version: u16, kappa: u16| {
        Message::ClientHello(ClientHello {
            version,
            software: "test".into(),
            kappa,
            stat_sec: 40,
            preprocessing: 1,
        })
        .encode()
    };
    // Wrong protocol version.
    let r = decode_reject(&raw_exchange(s.addr, &hello(99, 128)));
    assert_eq!(r.code, Reject::VERSION);
    assert!(r.reason.contains("version 99"), "{}", r.reason);
    // Wrong security parameters.
    let r = decode_reject(&raw_exchange(s.addr, &hello(PROTOCOL_VERSION, 80)));
    assert_eq!(r.code, Reject::PARAMETERS);
    // Oversized length field: refused before allocating.
    let mut big = vec![1u8];
    big.extend_from_slice(&u32::MAX.to_le_bytes());
    let r = decode_reject(&raw_exchange(s.addr, &big));
    assert!(r.reason.contains("exceeds the limit"), "{}", r.reason);
    // A server-only message from a client is refused from its header alone, even at a
    // length within the server hello's own limit (50 MiB would have been allocated).
    let mut server_hello = vec![2u8];
    server_hello.extend_from_slice(&(50u32 << 20).to_le_bytes());
    let r = decode_reject(&raw_exchange(s.addr, &server_hello));
    assert_eq!(r.code, Reject::PROTOCOL);
    assert!(
        r.reason.contains("a client never sends a server hello"),
        "{}",
        r.reason
    );
    // Garbage.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = decode_reject(&raw_exchange(s.addr, &garbage));
    assert_eq!(r.code, Reject::PROTOCOL);
    // Truncated hello, then the client goes away: the server gives up on its own.
    let h = hello(PROTOCOL_VERSION, 128);
    let _ = raw_exchange(s.addr, &h[..h.len() - 3]);
    // A second hello where a prepare belongs.
    let mut two = hello(PROTOCOL_VERSION, 128);
    two.extend_from_slice(&hello(PROTOCOL_VERSION, 128));
    let ans = raw_exchange(s.addr, &two);
    let n = 5 + u32::from_le_bytes([ans[1], ans[2], ans[3], ans[4]]) as usize;
    assert!(matches!(
        Message::decode(ans[0], &ans[5..n]).unwrap(),
        Message::ServerHello(_)
    ));
    let r = decode_reject(&ans[n..]);
    assert!(r.reason.contains("unexpected client hello"), "{}", r.reason);
    // Infer before prepare.
    let mut early = hello(PROTOCOL_VERSION, 128);
    early.extend_from_slice(&Message::Infer { index: 0 }.encode());
    let ans = raw_exchange(s.addr, &early);
    let r = decode_reject(&ans[n..]);
    assert!(r.reason.contains("before preparing"), "{}", r.reason);
    // Too many inferences at once.
    let mut many = hello(PROTOCOL_VERSION, 128);
    many.extend_from_slice(&Message::Prepare { count: 100_000 }.encode());
    let r = decode_reject(&raw_exchange(s.addr, &many)[n..]);
    assert!(r.reason.contains("prepare 100000"), "{}", r.reason);
    good_client_works(&s);

    // The client side: a model other than the one required.
    let rt = rt();
    let opts = ClientOptions {
        expect_model: Some("00".repeat(32)),
        insecure_dealer: true,
    };
    let e = ClientSession::start(connect(&rt, &s, None), &opts)
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::Incompatible(_)), "{e}");
    assert!(e.to_string().contains("expected 0000"), "{e}");
    // A plaintext client at a TLS server, and the reverse, are named as such.
    let t = start(true, |_| {});
    let e = ClientSession::start(connect(&rt, &t, None), &dealer())
        .err()
        .unwrap();
    assert!(e.to_string().contains("speaks TLS"), "{e}");
    good_client_works(&s);
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(s.dir.join("metrics.jsonl")).unwrap();
    let failed = log.lines().filter(|l| l.contains("\"ok\":false")).count();
    assert!(
        failed >= 8,
        "every bad session is recorded with its error:\n{log}"
    );
}

/// A channel that drops the connection once `budget` bytes have been sent (the budget
/// left can be changed through [`Cut::left`] while a session owns the channel).
struct Cut {
    inner: BlockingChannel,
    budget: Arc<AtomicUsize>,
}

impl Cut {
    fn new(inner: BlockingChannel, budget: usize) -> Self {
        Cut {
            inner,
            budget: Arc::new(AtomicUsize::new(budget)),
        }
    }

    /// The bytes it may still send.
    fn left(&self) -> Arc<AtomicUsize> {
        self.budget.clone()
    }
}

impl Channel for Cut {
    fn send(&mut self, b: &[u8]) -> Result<(), ChannelError> {
        let left = self.budget.load(Ordering::Acquire);
        if b.len() > left {
            let _ = self.inner.send(&b[..left]);
            let _ = self.inner.flush();
            self.inner.shutdown();
            self.budget.store(0, Ordering::Release);
            return Err(ChannelError::Io(std::io::Error::other("cut by the test")));
        }
        self.budget.store(left - b.len(), Ordering::Release);
        self.inner.send(b)
    }
    fn recv(&mut self, b: &mut [u8]) -> Result<(), ChannelError> {
        self.inner.recv(b)
    }
    fn flush(&mut self) -> Result<(), ChannelError> {
        self.inner.flush()
    }
}

#[test]
fn a_client_that_disconnects_at_any_step_harms_no_one() {
    let s = start(true, |_| {});
    let rt = rt();
    let ca = ClientTls::Ca(s.dir.join("cert.pem"));
    // A full session first, to know how many bytes the client sends in all.
    let run = |ch: &mut dyn FnMut() -> Cut| {
        ClientSession::start(ch(), &dealer()).and_then(|mut sess| {
            for x in common::inputs(&s.model, 2, 9) {
                sess.infer(&x)?;
            }
            let sent = sess.stats().bytes_sent;
            sess.close().map(|_| sent)
        })
    };
    let total = run(&mut || Cut::new(connect(&rt, &s, Some(&ca)), usize::MAX)).unwrap() as usize;
    // Budgets that end the client inside the hello, the prepare, the base OTs, the
    // dealer, the OT extension and the online phases.
    let mut budgets = vec![3, 40, 60, 200, 5_000];
    budgets.extend([0.2, 0.45, 0.7, 0.95].map(|f| (total as f64 * f) as usize));
    budgets.extend([total - 5_000, total - 10]);
    for budget in budgets {
        let r = run(&mut || Cut::new(connect(&rt, &s, Some(&ca)), budget));
        assert!(
            r.is_err(),
            "budget {budget} of {total}: the cut client finished"
        );
        good_client_works_tls(&s, &rt, &ca);
    }
}

fn good_client_works_tls(s: &TestServer, rt: &tokio::runtime::Runtime, ca: &ClientTls) {
    let mut sess = ClientSession::start(connect(rt, s, Some(ca)), &dealer()).unwrap();
    check_against_fixed(s, &mut sess, 1);
    sess.close().unwrap();
}

#[test]
fn busy_server_and_disallowed_dealer_are_refused_with_reasons() {
    let s = start(false, |c| {
        c.max_sessions = 1;
        c.idle_timeout = Duration::from_secs(3);
    });
    // A silent connection does not hold the only slot (it has said no hello) ...
    let silent = std::net::TcpStream::connect(s.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let rt = rt();
    let a = ClientSession::start(connect(&rt, &s, None), &dealer()).unwrap();
    // ... a session does.
    let e = ClientSession::start(connect(&rt, &s, None), &dealer())
        .err()
        .unwrap();
    assert!(matches!(e, RuntimeError::Refused(_)), "{e}");
    assert!(e.to_string().contains("busy"), "{e}");
    drop(silent);
    a.close().unwrap();
    // Once the session is over, its slot is free again.
    let mut sess = eventually(|| ClientSession::start(connect(&rt, &s, None), &dealer()));
    check_against_fixed(&s, &mut sess, 1);
    sess.close().unwrap();

    let t = start(false, |c| c.options.allow_insecure_dealer = false);
    let e = ClientSession::start(connect(&rt, &t, None), &dealer())
        .err()
        .unwrap();
    assert!(e.to_string().contains("--insecure-dealer"), "{e}");
    // A client with default options gets HE preprocessing from the same server.
    let mut sess = ClientSession::start(connect(&rt, &t, None), &ClientOptions::default()).unwrap();
    assert_eq!(sess.method(), Method::HeBfv);
    check_against_fixed(&t, &mut sess, 1);
    sess.close().unwrap();
}

/// A client that pauses before every message it sends.
struct Slow {
    inner: BlockingChannel,
    pause: Duration,
}

impl Channel for Slow {
    fn send(&mut self, b: &[u8]) -> Result<(), ChannelError> {
        self.inner.send(b)
    }
    fn recv(&mut self, b: &mut [u8]) -> Result<(), ChannelError> {
        self.inner.recv(b)
    }
    fn flush(&mut self) -> Result<(), ChannelError> {
        std::thread::sleep(self.pause);
        self.inner.flush()
    }
}

#[test]
fn a_phase_that_takes_too_long_is_ended_by_the_server() {
    // Each pause is below the idle limit, the offline phase as a whole is not.
    let s = start(false, |c| {
        c.idle_timeout = Duration::from_secs(5);
        c.options.phase_timeout = Duration::from_secs(1);
    });
    let rt = rt();
    let ch = Slow {
        inner: connect(&rt, &s, None),
        pause: Duration::from_millis(300),
    };
    let mut sess = ClientSession::start(ch, &dealer()).unwrap();
    let e = sess.prepare(1).err().unwrap();
    assert!(e.to_string().contains("closed"), "client side: {e}");
    good_client_works(&s);
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(s.dir.join("metrics.jsonl")).unwrap();
    assert!(log.contains("phase limit"), "{log}");
}

/// Says hello as a dealer client on a raw channel and returns the server's hello.
fn raw_session(
    rt: &tokio::runtime::Runtime,
    s: &TestServer,
) -> (protocols::CountingChannel<BlockingChannel>, ServerHello) {
    let mut ch = protocols::CountingChannel::new(connect(rt, s, None));
    client_hello(Method::InsecureDealer).send(&mut ch).unwrap();
    match Message::recv(&mut ch, Side::Server).unwrap() {
        Message::ServerHello(h) => (ch, h),
        m => panic!("expected a server hello, got {}", m.name()),
    }
}

/// On a raw dealer session, sends `Prepare` frames of one inference each (running each
/// offline phase) until the session's bound is reached, then `burst` more at once, with
/// no `Infer` in between: returns how many the server answered `Ready` and its `Reject`
/// (of the first frame beyond the bound, or earlier of one it refused as busy).
fn prepare_flood(rt: &tokio::runtime::Runtime, s: &TestServer, burst: usize) -> (u32, Reject) {
    let (mut ch, hello) = raw_session(rt, s);
    let (public, _) =
        models::format::decode_public("<server>", &hello.public_json, &hello.masks).unwrap();
    let structure = FixedProgram::structure(&public).unwrap();
    let mut engine = ClientEngine::new(&structure).unwrap();
    let mut pre = Method::InsecureDealer.instance(&structure).unwrap();
    let mut ready = 0;
    let answer = loop {
        if ready == hello.max_prepare {
            // Each frame alone is within the per-frame limit.
            let frames = Message::Prepare { count: 1 }.encode().repeat(burst);
            let _ = ch.send(&frames).and_then(|()| ch.flush());
        } else {
            Message::Prepare { count: 1 }.send(&mut ch).unwrap();
        }
        match Message::recv(&mut ch, Side::Server).unwrap() {
            Message::Ready { count: 1 } if ready < hello.max_prepare => {}
            m => break m,
        }
        if ready == 0 {
            engine.setup_ot(&mut ch).unwrap();
        }
        engine.offline(&mut ch, pre.as_mut()).unwrap();
        ready += 1;
    };
    match answer {
        Message::Reject(r) => (ready, r),
        m => panic!("expected a reject, got {m:?}"),
    }
}

/// A reject at the session's bound of 2 prepared inferences.
fn assert_bound_reject(r: &Reject) {
    assert_eq!(r.code, Reject::PROTOCOL, "{}", r.reason);
    assert!(r.reason.contains("at most 2 prepared"), "{}", r.reason);
}

#[test]
fn a_flood_of_prepare_frames_is_refused_at_the_session_bound() {
    let s = start(false, |c| c.options.max_prepare = 2);
    let rt = rt();
    // Two Prepare frames of one inference each fill the session's bound, and a third,
    // with no inference consumed in between, is refused.
    let (ready, r) = prepare_flood(&rt, &s, 1);
    assert_eq!(ready, 2);
    assert_bound_reject(&r);
    good_client_works(&s);
}

/// Retries `f` for up to 3 s (the server releases a session's resources on its own
/// thread once the session ends, and a connection's once it has closed it).
fn eventually<T>(mut f: impl FnMut() -> Result<T, RuntimeError>) -> T {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(_) if start.elapsed() < Duration::from_secs(3) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("still refused after 3 s: {e}"),
        }
    }
}

#[test]
fn a_server_wide_memory_budget_refuses_as_busy_and_frees_what_sessions_release() {
    // Room for the offline phase and one and a half prepared inferences, all sessions
    // together.
    let s = start(false, |c| {
        let (per, peak) = server_memory_per_inference(&c.model, Method::InsecureDealer).unwrap();
        c.options.memory_budget = MemoryBudget::new(peak + per + per / 2);
    });
    let rt = rt();
    let x = common::inputs(&s.model, 1, 3).remove(0);
    let mut a = ClientSession::start(connect(&rt, &s, None), &dealer()).unwrap();
    assert_eq!(a.max_prepare(), 1);
    a.prepare(1).unwrap();
    // The second session cannot prepare while the first holds its inference.
    let mut b = ClientSession::start(connect(&rt, &s, None), &dealer()).unwrap();
    let e = b.prepare(1).unwrap_err();
    assert!(matches!(e, RuntimeError::Refused(_)), "{e}");
    assert!(e.to_string().contains("busy"), "{e}");
    // Consuming the inference releases its reservation.
    a.infer(&x).unwrap();
    let mut c = eventually(|| {
        let mut c = ClientSession::start(connect(&rt, &s, None), &dealer())?;
        c.prepare(1).map(|()| c)
    });
    // Now the first session is the one refused, until the third one ends.
    let e = a.prepare(1).unwrap_err();
    assert!(e.to_string().contains("busy"), "{e}");
    c.infer(&x).unwrap();
    c.prepare(1).unwrap();
    c.close().unwrap();
    let mut d = eventually(|| {
        let mut d = ClientSession::start(connect(&rt, &s, None), &dealer())?;
        d.prepare(1).map(|()| d)
    });
    check_against_fixed(&s, &mut d, 1);
    d.close().unwrap();
}

/// A valid client hello asking for `method`.
fn client_hello(method: Method) -> Message {
    Message::ClientHello(ClientHello {
        version: PROTOCOL_VERSION,
        software: "test".into(),
        kappa: 128,
        stat_sec: 40,
        preprocessing: method.code(),
    })
}

/// The bytes of a valid dealer client hello.
fn hello_bytes() -> Vec<u8> {
    client_hello(Method::InsecureDealer).encode()
}

/// `stream` is closed by the server with nothing sent, no later than `limit` after `t0`.
fn assert_closed_unanswered(
    mut stream: &std::net::TcpStream,
    t0: std::time::Instant,
    limit: Duration,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let r = stream.read(&mut buf);
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    assert!(t0.elapsed() < limit, "closed after {:?}", t0.elapsed());
}

#[test]
fn idle_and_dribbling_connections_hold_no_session_slot() {
    let s = start(false, |c| {
        c.max_sessions = 16;
        c.max_connections = 64;
        c.max_connections_per_ip = 64;
        c.handshake_timeout = Duration::from_secs(2);
    });
    // Twice as many idle connections as session slots ...
    let idle: Vec<_> = (0..32)
        .map(|_| std::net::TcpStream::connect(s.addr).unwrap())
        .collect();
    // ... and one that sends its hello a byte every 300 ms (9 s for the whole hello).
    let addr = s.addr;
    let dribbler = std::thread::spawn(move || {
        let mut t = std::net::TcpStream::connect(addr).unwrap();
        for b in hello_bytes() {
            if t.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        got
    });
    std::thread::sleep(Duration::from_millis(300));
    // A real client is served at once.
    let t0 = std::time::Instant::now();
    good_client_works(&s);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "served after {:?}",
        t0.elapsed()
    );
    // The idle connections are closed at the hello deadline, with nothing sent.
    assert_closed_unanswered(&idle[0], t0, Duration::from_secs(5));
    // The dribbler never got a server hello.
    let got = dribbler.join().unwrap();
    assert!(
        got.is_empty(),
        "the dribbling client got {} bytes",
        got.len()
    );
    good_client_works(&s);
}

#[test]
fn connections_beyond_the_per_address_cap_are_closed_at_once() {
    let s = start(false, |c| {
        c.max_connections_per_ip = 4;
        c.handshake_timeout = Duration::from_secs(30);
    });
    let held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The fifth connection from this address is closed without waiting for its hello.
    let mut extra = std::net::TcpStream::connect(s.addr).unwrap();
    let t0 = std::time::Instant::now();
    let _ = extra.write_all(&hello_bytes());
    assert_closed_unanswered(&extra, t0, Duration::from_secs(3));
    // So is a real client from the same address, until the others go.
    let rt = rt();
    assert!(ClientSession::start(connect(&rt, &s, None), &dealer()).is_err());
    drop(held);
    let mut sess = eventually(|| ClientSession::start(connect(&rt, &s, None), &dealer()));
    check_against_fixed(&s, &mut sess, 1);
    sess.close().unwrap();
}

/// Offline bytes the client sent for each of three HE inferences of one session (the
/// logits are checked too).
fn he_offline_bytes(s: &TestServer) -> Vec<u64> {
    let rt = rt();
    let mut sess = ClientSession::start(connect(&rt, s, None), &ClientOptions::default()).unwrap();
    assert_eq!(sess.method(), Method::HeBfv);
    sess.prepare(3).unwrap();
    let mut sent = Vec::new();
    for x in common::inputs(&s.model, 3, 11) {
        let got = sess.infer(&x).unwrap();
        let want = s.prog.forward(&x, false).unwrap();
        for (a, b) in got.output.logits.iter().zip(&want.logits) {
            assert!((a - b).abs() < 2e-3, "secure logit {a} vs fixed {b}");
        }
        sent.push(got.offline.bytes_sent);
    }
    sess.close().unwrap();
    sent
}

#[test]
fn the_client_sends_a_fresh_he_key_when_one_has_served_its_inferences() {
    // A public key is one seeded ciphertext: about 190 KB the client uploads.
    const KEY: u64 = 150_000;
    // The default budget (2^32 coefficients) covers the session with one key.
    let s = start(false, |_| {});
    let once = he_offline_bytes(&s);
    assert!(
        once[1] + KEY < once[0] && once[2] + KEY < once[0],
        "{once:?}"
    );
    // A budget of two inferences' coefficients per key: the third inference uploads a
    // fresh key first, and its results are still right.
    let s = start(false, |c| {
        let pre = Method::HeBfv.instance(&c.model.prog).unwrap();
        c.options.he_key_coefficients = 2 * pre.flooded_per_inference();
    });
    let rekeyed = he_offline_bytes(&s);
    assert!(rekeyed[1] + KEY < rekeyed[0], "{rekeyed:?}");
    assert!(rekeyed[1] + KEY < rekeyed[2], "no fresh key: {rekeyed:?}");
}

/// Runs `f` (one session, from connecting to its end) again, from a fresh connection,
/// for as long as the server refuses it as busy (its memory budget or session limit), as
/// a client is told to ("try again later"); counts the refusals in `busy`.
fn until_not_busy<T>(
    busy: &AtomicUsize,
    mut f: impl FnMut() -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    let t0 = Instant::now();
    loop {
        match f() {
            Err(RuntimeError::Refused(r)) if r.starts_with("busy") => {
                busy.fetch_add(1, Ordering::Relaxed);
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "busy for 2 min: {r}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// The logits of `inputs` by HE, preparing as many at once as the server allows; a
/// session refused as busy is followed by a fresh one for the inputs not yet done.
fn he_logits(s: &TestServer, inputs: &[Vec<f32>], busy: &AtomicUsize) -> Vec<Vec<f64>> {
    let rt = rt();
    let mut out = Vec::new();
    until_not_busy(busy, || {
        let mut sess = ClientSession::start(connect(&rt, s, None), &ClientOptions::default())?;
        while out.len() < inputs.len() {
            let done = out.len();
            let n = (inputs.len() - done).min(sess.max_prepare() as usize);
            sess.prepare(n as u32)?;
            for x in &inputs[done..done + n] {
                out.push(sess.infer(x)?.output.logits);
            }
        }
        sess.close().map(|_| ())
    })
    .unwrap();
    out
}

/// Where to cut an HE client: the bytes it sends from its hello to half-way through its
/// first offline phase, and those from its first `Infer` frame to the last byte but one
/// of that online phase (its masked input sent, its result not read).
fn he_cut_points(s: &TestServer) -> (usize, usize) {
    let rt = rt();
    let mut sess = ClientSession::start(connect(&rt, s, None), &ClientOptions::default()).unwrap();
    sess.prepare(1).unwrap();
    let through_offline = sess.stats().bytes_sent as usize;
    let x = common::inputs(&s.model, 1, 1).remove(0);
    let got = sess.infer(&x).unwrap();
    assert_near_fixed(s, &x, &got.output.logits);
    sess.close().unwrap();
    let infer_frame = Message::Infer { index: 0 }.encode().len();
    (
        through_offline - got.offline.bytes_sent as usize / 2,
        infer_frame + got.online.bytes_sent as usize - 1,
    )
}

#[test]
fn under_load_and_kills_every_honest_client_gets_a_lone_runs_result_within_the_budget() {
    // Room for two HE offline phases and 8 prepared inferences, all sessions together
    // (about 25 MB): 8 clients preparing 2 at once do not fit, and wait their turn.
    let mut budget = None;
    let s = start(false, |c| {
        let (per, peak) = server_memory_per_inference(&c.model, Method::HeBfv).unwrap();
        let b = MemoryBudget::new(2 * peak + 8 * per);
        budget = Some(b.clone());
        c.options.memory_budget = b;
        c.options.max_prepare = 2;
        c.max_sessions = 16;
        c.max_connections = 64;
        c.max_connections_per_ip = 64;
        // The idle connections stay open for the whole test; a busy client waits long.
        c.handshake_timeout = Duration::from_secs(300);
        c.idle_timeout = Duration::from_secs(60);
    });
    let budget = budget.unwrap();
    let busy = AtomicUsize::new(0);
    let inputs: Vec<Vec<Vec<f32>>> = (0..8)
        .map(|k| common::inputs(&s.model, 2, 200 + k))
        .collect();
    let (offline_cut, online_cut) = he_cut_points(&s);
    let lone = he_logits(&s, &inputs.concat(), &busy);
    assert_eq!(
        busy.load(Ordering::Relaxed),
        0,
        "a lone client is never busy"
    );

    let t0 = Instant::now();
    let idle: Vec<_> = (0..32)
        .map(|_| std::net::TcpStream::connect(s.addr).unwrap())
        .collect();
    let (honest, flood) = std::thread::scope(|sc| {
        let (s, busy, inputs) = (&s, &busy, &inputs);
        let honest: Vec<_> = inputs
            .iter()
            .map(|xs| sc.spawn(move || he_logits(s, xs, busy)))
            .collect();
        // Killed right after its hello.
        sc.spawn(move || {
            let mut t = std::net::TcpStream::connect(s.addr).unwrap();
            t.write_all(&client_hello(Method::HeBfv).encode()).unwrap();
        });
        // Killed half-way through its first offline phase.
        sc.spawn(move || {
            let rt = rt();
            let r = until_not_busy(busy, || {
                let ch = Cut::new(connect(&rt, s, None), offline_cut);
                ClientSession::start(ch, &ClientOptions::default())?.prepare(1)
            });
            assert!(
                r.is_err(),
                "the client cut in its offline phase finished it"
            );
        });
        // Killed in its online phase: masked input sent, result not read.
        sc.spawn(move || {
            let rt = rt();
            let r = until_not_busy(busy, || {
                let ch = Cut::new(connect(&rt, s, None), usize::MAX);
                let left = ch.left();
                let mut sess = ClientSession::start(ch, &ClientOptions::default())?;
                sess.prepare(1)?;
                left.store(online_cut, Ordering::Release);
                sess.infer(&inputs[0][0])
            });
            assert!(
                r.is_err(),
                "the client cut in its online phase got its result"
            );
        });
        let flood = sc.spawn(move || {
            let rt = rt();
            until_not_busy(busy, || match prepare_flood(&rt, s, 1000) {
                (_, r) if r.code == Reject::BUSY => Err(RuntimeError::Refused(r.reason)),
                x => Ok(x),
            })
            .unwrap()
        });
        let honest: Vec<_> = honest.into_iter().map(|h| h.join().unwrap()).collect();
        (honest, flood.join().unwrap())
    });
    eprintln!(
        "under load: {:?}, {} busy refusals, peak {} of {}",
        t0.elapsed(),
        busy.load(Ordering::Relaxed),
        budget.peak(),
        budget.limit()
    );

    // Every honest client's logits are the fixed-point ones and a lone run's classes.
    for ((xs, got), want) in inputs.concat().iter().zip(honest.concat()).zip(&lone) {
        assert_near_fixed(&s, xs, want);
        assert_near_fixed(&s, xs, &got);
        assert_eq!(argmax(&got), argmax(want));
    }
    // The flood ended at the session's bound, not past it.
    assert_eq!(flood.0, 2);
    assert_bound_reject(&flood.1);
    // The budget was contended (clients were refused as busy and retried) and never
    // exceeded; every killed session released what it held.
    assert!(busy.load(Ordering::Relaxed) > 0, "the budget never bound");
    assert!(budget.peak() > 0 && budget.peak() <= budget.limit());
    // A client afterwards is served, with the 32 idle connections still open ...
    let rt = rt();
    let mut sess = ClientSession::start(connect(&rt, &s, None), &ClientOptions::default()).unwrap();
    check_against_fixed(&s, &mut sess, 1);
    sess.close().unwrap();
    // ... which the server never answered.
    for t in &idle {
        t.set_nonblocking(true).unwrap();
        let r = (&*t).read(&mut [0u8; 16]);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
    }
    eventually(|| match budget.reserved() {
        0 => Ok(()),
        n => Err(RuntimeError::Busy(format!("{n} bytes still reserved"))),
    });
    // The server's records: each killed client and the flood ended a session of its own
    // where it was cut; every other failure is a busy refusal of the memory budget.
    let log = std::fs::read_to_string(s.dir.join("metrics.jsonl")).unwrap();
    let failed: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["ok"] == false)
        .map(|r| {
            format!(
                "{} {}: {}",
                r["preprocessing"], r["client_software"], r["error"]
            )
        })
        .filter(|e| !e.contains("busy: the server's memory for prepared inferences is in use"))
        .collect();
    assert_eq!(failed.len(), 4, "{failed:#?}");
    for [a, b] in [
        ["\"insecure-dealer\" \"test\"", "at most 2 prepared"],
        ["\"he-bfv\" \"test\"", ""],
        ["\"he-bfv\"", "offline layer"],
        ["\"he-bfv\"", "online layer"],
    ] {
        let n = failed
            .iter()
            .filter(|e| e.contains(a) && e.contains(b))
            .count();
        assert_eq!(n, 1, "{a} {b}: {failed:#?}");
    }
}
