//! `pi-server` and `pi-client` as two hosts: two network namespaces joined by a veth
//! pair (198.18.0.1 and 198.18.0.2, a benchmarking range that routes nowhere), so the
//! traffic really crosses an interface. Needs root and iproute2; skipped with a message
//! otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use models::fixed::FixedProgram;
use models::tensor::argmax;

/// Namespaces and the server process, removed on drop (also when the test fails).
struct Hosts {
    server_ns: String,
    client_ns: String,
    server: Option<Child>,
    dir: PathBuf,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "command failed: {}", args.join(" "));
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && ip) {
        eprintln!(
            "skipping the two-host test: it needs root and iproute2 (ip netns); root = {root}, ip = {ip}"
        );
    }
    root && ip
}

fn setup(dir: PathBuf) -> Hosts {
    let id = std::process::id() % 100_000;
    let h = Hosts {
        server_ns: format!("pis{id}"),
        client_ns: format!("pic{id}"),
        server: None,
        dir,
    };
    let (vs, vc) = (format!("vs{id}"), format!("vc{id}"));
    // Leftovers of a killed earlier run with the same id.
    for ns in [&h.server_ns, &h.client_ns] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    sh(&["ip", "netns", "add", &h.server_ns]);
    sh(&["ip", "netns", "add", &h.client_ns]);
    sh(&[
        "ip", "link", "add", &vs, "type", "veth", "peer", "name", &vc,
    ]);
    sh(&["ip", "link", "set", &vs, "netns", &h.server_ns]);
    sh(&["ip", "link", "set", &vc, "netns", &h.client_ns]);
    for (ns, dev, addr) in [
        (&h.server_ns, &vs, "198.18.0.1/30"),
        (&h.client_ns, &vc, "198.18.0.2/30"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    h
}

fn rx_bytes(ns: &str, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .arg(format!("/sys/class/net/{dev}/statistics/rx_bytes"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn server_and_client_in_two_network_namespaces() {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pi-two-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut hosts = setup(dir.clone());
    let model = common::model("lenet5", 0.1, 3);
    let mdir = dir.join("model");
    models::format::save(&model, &mdir, false).unwrap();
    let server_bin = env!("CARGO_BIN_EXE_pi-server");
    let client_bin = env!("CARGO_BIN_EXE_pi-client");
    let certs = dir.join("certs");
    sh(&[
        server_bin,
        "gen-cert",
        "--out",
        certs.to_str().unwrap(),
        "--san",
        "198.18.0.1",
    ]);
    let mut server = Command::new("ip")
        .args(["netns", "exec", &hosts.server_ns, server_bin, "--model"])
        .arg(&mdir)
        .args(["--listen", "198.18.0.1:7070", "--tls-cert"])
        .arg(certs.join("cert.pem"))
        .arg("--tls-key")
        .arg(certs.join("key.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it listens.
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on 198.18.0.1:7070"), "{line}");
    hosts.server = Some(server);

    // One raw image: channel-major bytes of the model's input shape.
    let pixels: Vec<u8> = (0..784u32).map(|i| ((i * 37) % 251) as u8).collect();
    let img = dir.join("image.bin");
    std::fs::write(&img, &pixels).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts.client_ns,
            client_bin,
            "--connect",
            "198.18.0.1:7070",
        ])
        .arg("--tls-ca")
        .arg(certs.join("cert.pem"))
        .args(["--json", "--image"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pi-client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let x = model.public.normalization.apply(&pixels);
    let want = FixedProgram::lower(&model)
        .unwrap()
        .forward(&x, false)
        .unwrap();
    assert_eq!(
        report["inferences"][0]["predicted"].as_u64().unwrap() as usize,
        argmax(&want.logits).unwrap()
    );
    assert_eq!(report["tls"], true);
    // HE preprocessing, the binaries' default.
    assert_eq!(report["insecure"], false);
    assert_eq!(report["preprocessing"], "he-bfv");
    // The session's bytes crossed the veth pair.
    let sent = report["session_bytes"][0].as_u64().unwrap();
    let id = std::process::id() % 100_000;
    let rx = rx_bytes(&hosts.server_ns, &format!("vs{id}"));
    assert!(
        rx >= sent,
        "server interface received {rx} bytes, client sent {sent}"
    );
}
