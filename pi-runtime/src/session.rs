//! Sessions: the control protocol of [`crate::wire`] around the [`crate::engine`], for one
//! connection, over any synchronous channel (TCP, TLS or in-memory).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use models::fixed::FixedProgram;
use models::{Model, PublicModel};
use protocols::channel::{Channel, ChannelStats, CountingChannel};
use serde::Serialize;

use crate::engine::{
    ClientEngine, ClientOutput, ClientPrepared, PhaseMetrics, ServerEngine, ServerPrepared,
};
use crate::error::{Result, RuntimeError};
use crate::net::PhaseDeadline;
use crate::preprocess::{Method, Preprocessing};
use crate::wire::{
    ClientHello, KAPPA, MAX_PREPARE, Message, PROTOCOL_VERSION, Reject, STAT_SEC, ServerHello,
    Side, VERSION,
};

/// Memory a session may hold in prepared (offline) material, on either side: the number
/// of inferences prepared at once is capped so that it stays below this.
pub const PREPARED_BYTES_PER_SESSION: u64 = 1 << 30;

/// Default of [`ServerOptions::memory_budget`]: 4 GiB for the prepared material and the
/// offline phases of all sessions together.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// Default of [`ServerOptions::he_key_coefficients`]: `2^32` flooded coefficients per HE
/// key, at most `2^-40` statistical distance at the largest kernel norm the noise
/// analysis admits (about 4,000 ResNet18 inferences; `docs/he.md`).
pub const DEFAULT_HE_KEY_COEFFICIENTS: u64 = 1 << 32;

/// A server-wide budget of memory for prepared inferences and running offline phases,
/// shared by all sessions: a session reserves what a `Prepare` will hold before running
/// it, and the reservation is released (by [`Reservation`]'s `Drop`) when the inference
/// is consumed, the offline phase ends, or the session ends in any way.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    reserved: AtomicU64,
    peak: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, nothing reserved.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            reserved: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// The most bytes ever reserved at once (the high-water mark, for tests and reports).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Acquire)
    }

    /// Reserves `bytes` if they fit under the limit.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut cur = self.reserved.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(bytes).filter(|&n| n <= self.limit)?;
            match self.reserved.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::AcqRel);
                    return Some(Reservation {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// Bytes reserved in a [`MemoryBudget`]; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    /// Splits off `bytes` (at most what it holds) into a reservation of its own.
    pub fn split(&mut self, bytes: u64) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Reservation {
            budget: self.budget.clone(),
            bytes,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What a session of `model` with preprocessing `method` reserves on the server: per
/// prepared inference, and in addition while an offline phase runs (its transient peak).
pub fn server_memory_per_inference(model: &ServedModel, method: Method) -> Result<(u64, u64)> {
    let plan = crate::engine::Plan::new(&model.prog)?;
    let pre = method.instance(&model.prog)?;
    Ok((
        plan.server_prepared_bytes(),
        offline_peak(&plan, pre.as_ref()),
    ))
}

/// What a server session holds while an offline phase runs, beyond its prepared
/// inferences: the phase's largest layer, the preprocessing's peak and what its channel's
/// writer may hold that the client has not yet taken.
fn offline_peak(plan: &crate::engine::Plan, pre: &(dyn Preprocessing + Send)) -> u64 {
    plan.server_offline_peak_bytes()
        + pre.server_peak_bytes(plan)
        + crate::net::SERVER_WRITE_QUEUE_BYTES as u64
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
}

/// `prog` if the protocol can evaluate it (its plan is valid, e.g. every ReLU window
/// readable at its layer's scale), so that a server refuses such a model when it loads
/// it, with the reason, rather than failing every session.
fn planned(prog: FixedProgram, what: &str) -> Result<FixedProgram> {
    crate::plan::Plan::new(&prog)
        .map_err(|e| RuntimeError::config(format!("{what} cannot be served: {e}")))?;
    Ok(prog)
}

/// A model ready to serve: its lowering and its public part's encoded files.
pub struct ServedModel {
    /// The lowered network (weights included).
    pub prog: FixedProgram,
    /// The public part.
    pub public: PublicModel,
    /// `public.json` bytes sent to clients.
    pub public_json: Vec<u8>,
    /// `masks.safetensors` bytes sent to clients.
    pub masks: Vec<u8>,
    /// SHA-256 of `public.json` (what `pi-client --expect-model` pins).
    pub public_hash: String,
}

impl ServedModel {
    /// Loads and lowers a model directory (every hash verified). The public part is served
    /// as stored, so its hash is the one `snl-model inspect` prints and clients pin, whatever
    /// format version wrote it.
    pub fn load(dir: &Path) -> Result<Self> {
        let (model, _) = models::format::load(dir)?;
        Self::from_stored(dir, &model)
    }

    /// Serves `model`, already loaded from directory `dir`, with its public part's stored
    /// bytes (see [`ServedModel::load`]); errors if they do not describe `model`'s public
    /// part.
    pub fn from_stored(dir: &Path, model: &Model) -> Result<Self> {
        let (public_json, masks, public_hash) = models::format::read_public_bytes(dir)?;
        let (public, _) =
            models::format::decode_public(&dir.display().to_string(), &public_json, &masks)?;
        if public != model.public {
            return Err(RuntimeError::config(format!(
                "{}: the public part changed while the model was being read",
                dir.display()
            )));
        }
        Ok(ServedModel {
            prog: planned(FixedProgram::lower(model)?, &dir.display().to_string())?,
            public: model.public.clone(),
            public_json,
            masks,
            public_hash,
        })
    }

    /// Lowers an in-memory model.
    pub fn from_model(model: &Model) -> Result<Self> {
        let prog = planned(FixedProgram::lower(model)?, &model.public.arch)?;
        let (public_json, masks) = models::format::encode_public(&model.public)?;
        let public_hash = models::format::public_hash(&model.public)?;
        Ok(ServedModel {
            prog,
            public: model.public.clone(),
            public_json,
            masks,
            public_hash,
        })
    }
}

/// How the server runs sessions.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Accept sessions with the insecure dealer (the only preprocessing implemented).
    pub allow_insecure_dealer: bool,
    /// Most inferences a session may hold prepared at once (prepared and not yet
    /// consumed by `Infer`); also capped so that they stay below
    /// [`PREPARED_BYTES_PER_SESSION`].
    pub max_prepare: u32,
    /// Longest one phase may take: the base OTs, one offline phase, one online phase.
    pub phase_timeout: Duration,
    /// Memory for prepared inferences and running offline phases of all sessions that
    /// share these options (clones share the budget). A `Prepare` that does not fit is
    /// refused as busy.
    pub memory_budget: Arc<MemoryBudget>,
    /// Flooded HE coefficients a client may receive under one key: the server tells the
    /// client after how many inferences (this divided by what one inference releases, at
    /// least 1) it must send a fresh key, and expects it then.
    pub he_key_coefficients: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            allow_insecure_dealer: false,
            max_prepare: 16,
            phase_timeout: Duration::from_secs(600),
            memory_budget: MemoryBudget::new(DEFAULT_MEMORY_BUDGET),
            he_key_coefficients: DEFAULT_HE_KEY_COEFFICIENTS,
        }
    }
}

/// Runs `f` with the channel's phase deadline set to `timeout` from now; a timeout inside
/// is reported as the phase's.
fn phase<C: Channel + PhaseDeadline, T>(
    ch: &mut CountingChannel<C>,
    timeout: Duration,
    what: &str,
    f: impl FnOnce(&mut CountingChannel<C>) -> Result<T>,
) -> Result<T> {
    ch.inner_mut()
        .set_phase_deadline(Some(Instant::now() + timeout));
    let r = f(ch);
    ch.inner_mut().set_phase_deadline(None);
    r.map_err(|e| match e {
        RuntimeError::Timeout(m) => RuntimeError::Timeout(format!(
            "{what} (phase limit {} s or idle limit): {m}",
            timeout.as_secs_f64()
        )),
        RuntimeError::Protocol(protocols::ProtocolError::Channel(
            protocols::ChannelError::Timeout,
        )) => RuntimeError::Timeout(format!(
            "{what}: no data from the client within the phase limit ({} s) or the idle limit",
            timeout.as_secs_f64()
        )),
        other => other,
    })
}

/// What one session did, from the server's side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerSessionReport {
    /// Preprocessing used.
    pub preprocessing: Option<Method>,
    /// Client software version.
    pub client_software: String,
    /// Offline phases run.
    pub offline: Vec<PhaseMetrics>,
    /// Online phases run.
    pub online: Vec<PhaseMetrics>,
}

/// Rejects with a reason (best effort: the peer may be gone) and returns `err`.
fn reject<C: Channel>(ch: &mut C, code: u16, err: RuntimeError) -> RuntimeError {
    let _ = Message::Reject(Reject::new(code, err.to_string())).send(ch);
    err
}

/// Receives the next control message; a frame that does not decode is answered with a
/// reject naming the problem before the error is returned.
fn recv_control<C: Channel>(ch: &mut C, from: Side, what: &str) -> Result<Message> {
    Message::recv(ch, from).map_err(|e| control_error(ch, e, what))
}

/// A control frame's receive error, answered with a reject where the peer is at fault.
fn control_error<C: Channel>(ch: &mut C, e: RuntimeError, what: &str) -> RuntimeError {
    match e {
        e @ (RuntimeError::Peer(_) | RuntimeError::Incompatible(_)) => {
            reject(ch, Reject::PROTOCOL, e.context(what))
        }
        e => e.context(what),
    }
}

/// Serves one session on `ch` until the client says bye or something fails. The report
/// is filled as the session goes, so a caller sees what was done before an error.
pub fn serve_session<C: Channel + PhaseDeadline>(
    ch: &mut CountingChannel<C>,
    model: &ServedModel,
    opts: &ServerOptions,
    report: &mut ServerSessionReport,
) -> Result<()> {
    let first = Message::recv(ch, Side::Client);
    serve_session_from(ch, first, model, opts, report)
}

/// [`serve_session`] after the client's first frame was received (or failed to) by the
/// caller: the server reads the hello asynchronously, under one deadline with the TLS
/// handshake, and gives the connection a session slot only for a valid hello.
pub fn serve_session_from<C: Channel + PhaseDeadline>(
    ch: &mut CountingChannel<C>,
    first: Result<Message>,
    model: &ServedModel,
    opts: &ServerOptions,
    report: &mut ServerSessionReport,
) -> Result<()> {
    let first = first.map_err(|e| control_error(ch, e, "client hello"))?;
    let hello = match first {
        Message::ClientHello(h) => h,
        other => {
            let e = RuntimeError::peer(format!("expected a client hello, got {}", other.name()));
            return Err(reject(ch, Reject::PROTOCOL, e));
        }
    };
    report.client_software = hello.software.clone();
    if hello.version != PROTOCOL_VERSION {
        let e = RuntimeError::Incompatible(format!(
            "client speaks session protocol version {}, this server {PROTOCOL_VERSION}",
            hello.version
        ));
        return Err(reject(ch, Reject::VERSION, e));
    }
    if hello.kappa != KAPPA || hello.stat_sec != STAT_SEC {
        let e = RuntimeError::Incompatible(format!(
            "client asks for {}-bit computational / {}-bit statistical security; this server \
             provides {KAPPA} / {STAT_SEC}",
            hello.kappa, hello.stat_sec
        ));
        return Err(reject(ch, Reject::PARAMETERS, e));
    }
    let method = match Method::from_code(hello.preprocessing) {
        Some(Method::HeBfv) => Method::HeBfv,
        Some(Method::InsecureDealer) if opts.allow_insecure_dealer => Method::InsecureDealer,
        Some(Method::InsecureDealer) => {
            let e = RuntimeError::Incompatible(
                "client asks for the insecure dealer, which this server does not allow \
                 (start pi-server with --insecure-dealer to allow it)"
                    .into(),
            );
            return Err(reject(ch, Reject::PARAMETERS, e));
        }
        None => {
            let e = RuntimeError::Incompatible(format!(
                "client asks for preprocessing method {}, which this server does not implement",
                hello.preprocessing
            ));
            return Err(reject(ch, Reject::PARAMETERS, e));
        }
    };
    report.preprocessing = Some(method);
    // What the server keeps per prepared inference (s_i of every output position, the
    // online part of every kept ReLU's garbling) and what an offline phase holds while
    // it runs; the number prepared at once is bounded per session and by the budget.
    let mut engine = ServerEngine::new(&model.prog)?;
    let mut pre = method.instance(&model.prog)?;
    // How long one HE key lives: the flooding budget per key over what one inference
    // releases.
    let key_inferences = match pre.flooded_per_inference() {
        0 => u32::MAX,
        n => u32::try_from(opts.he_key_coefficients / n)
            .unwrap_or(u32::MAX)
            .max(1),
    };
    pre.set_key_inferences(key_inferences);
    let per_inference = engine.plan().server_prepared_bytes().max(1);
    let peak = offline_peak(engine.plan(), pre.as_ref());
    let budget = &opts.memory_budget;
    let Some(room) = budget.limit().checked_sub(peak).map(|r| r / per_inference) else {
        let e = RuntimeError::config(format!(
            "the server's memory budget ({}) is below what one offline phase of this model \
             needs ({})",
            mib(budget.limit()),
            mib(per_inference + peak)
        ));
        return Err(reject(ch, Reject::INTERNAL, e));
    };
    if room == 0 {
        let e = RuntimeError::config(format!(
            "the server's memory budget ({}) is below what one prepared inference of this \
             model needs ({})",
            mib(budget.limit()),
            mib(per_inference + peak)
        ));
        return Err(reject(ch, Reject::INTERNAL, e));
    }
    let max_prepare = opts
        .max_prepare
        .min(MAX_PREPARE)
        .min(u32::try_from(PREPARED_BYTES_PER_SESSION / per_inference).unwrap_or(u32::MAX))
        .min(u32::try_from(room).unwrap_or(u32::MAX))
        .max(1);
    let hello = Message::ServerHello(ServerHello {
        version: PROTOCOL_VERSION,
        software: VERSION.into(),
        preprocessing: method.code(),
        max_prepare,
        key_inferences,
        public_json: model.public_json.clone(),
        masks: model.masks.clone(),
    });
    // A client that does not read its hello (up to 80 MiB) holds its slot no longer than
    // a phase.
    phase(ch, opts.phase_timeout, "server hello", |ch| hello.send(ch))?;

    let mut ot_ready = false;
    let mut prepared: VecDeque<(ServerPrepared, Reservation)> = VecDeque::new();
    let mut next_index = 0u32;
    loop {
        match recv_control(ch, Side::Client, "waiting for the client")? {
            Message::Prepare { count } => {
                let held = prepared.len() as u64;
                if count == 0 || held + u64::from(count) > u64::from(max_prepare) {
                    let e = RuntimeError::peer(format!(
                        "client asks to prepare {count} inferences with {held} prepared; this \
                         server holds at most {max_prepare} prepared inferences per session"
                    ));
                    return Err(reject(ch, Reject::PROTOCOL, e));
                }
                let want = u64::from(count) * per_inference + peak;
                let Some(mut reserved) = budget.try_reserve(want) else {
                    let e = RuntimeError::Busy(format!(
                        "the server's memory for prepared inferences is in use ({} of \
                         {} reserved; {count} inferences need {}); try again later or \
                         prepare fewer",
                        mib(budget.reserved()),
                        mib(budget.limit()),
                        mib(want)
                    ));
                    return Err(reject(ch, Reject::BUSY, e));
                };
                Message::Ready { count }.send(ch)?;
                let limit = opts.phase_timeout;
                if !ot_ready {
                    phase(ch, limit, "base OT", |ch| engine.setup_ot(ch))?;
                    ot_ready = true;
                }
                for _ in 0..count {
                    let (prep, m) = phase(ch, limit, "offline phase", |ch| {
                        engine.offline(ch, pre.as_mut())
                    })?;
                    report.offline.push(m);
                    let mine = reserved.split(per_inference);
                    prepared.push_back((prep, mine));
                }
                // `reserved` (the offline phases' transient peak) is released here.
            }
            Message::Infer { index } => {
                if index != next_index {
                    let e = RuntimeError::peer(format!(
                        "client asks for inference {index}, the next one is {next_index}"
                    ));
                    return Err(reject(ch, Reject::PROTOCOL, e));
                }
                let Some((prep, reservation)) = prepared.pop_front() else {
                    let e = RuntimeError::peer(format!(
                        "client asks for inference {index} before preparing it"
                    ));
                    return Err(reject(ch, Reject::PROTOCOL, e));
                };
                let m = phase(ch, opts.phase_timeout, "online phase", |ch| {
                    engine.online(ch, prep)
                })?;
                drop(reservation);
                report.online.push(m);
                next_index += 1;
            }
            Message::Bye => return Ok(()),
            Message::Reject(r) => return Err(RuntimeError::Refused(r.reason)),
            other => {
                let e = RuntimeError::peer(format!("unexpected {} in a session", other.name()));
                return Err(reject(ch, Reject::PROTOCOL, e));
            }
        }
    }
}

/// How the client runs a session.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Required SHA-256 (hex) of the model's `public.json`.
    pub expect_model: Option<String>,
    /// Use the insecure dealer instead of HE preprocessing (reveals the input to the
    /// server; for tests and comparisons).
    pub insecure_dealer: bool,
}

/// One private inference, as the client saw it.
#[derive(Clone, Debug)]
pub struct Inference {
    /// The logits.
    pub output: ClientOutput,
    /// The offline phase that prepared it.
    pub offline: PhaseMetrics,
    /// The online phase (its `seconds`: from sending the masked input to holding the
    /// logits).
    pub online: PhaseMetrics,
}

/// A client session: connected, hello exchanged, model public part checked.
pub struct ClientSession<C: Channel> {
    ch: CountingChannel<C>,
    engine: ClientEngine,
    structure: FixedProgram,
    public: PublicModel,
    public_hash: String,
    method: Method,
    pre: Box<dyn Preprocessing + Send>,
    server_software: String,
    max_prepare: u32,
    ot_ready: bool,
    prepared: VecDeque<(ClientPrepared, PhaseMetrics)>,
    next_index: u32,
}

impl<C: Channel> ClientSession<C> {
    /// Says hello, receives and checks the model's public part.
    pub fn start(ch: C, opts: &ClientOptions) -> Result<Self> {
        let method = if opts.insecure_dealer {
            Method::InsecureDealer
        } else {
            Method::HeBfv
        };
        let mut ch = CountingChannel::new(ch);
        Message::ClientHello(ClientHello {
            version: PROTOCOL_VERSION,
            software: VERSION.into(),
            kappa: KAPPA,
            stat_sec: STAT_SEC,
            preprocessing: method.code(),
        })
        .send(&mut ch)?;
        let hello = match recv_control(&mut ch, Side::Server, "server hello")? {
            Message::ServerHello(h) => h,
            Message::Reject(r) => return Err(RuntimeError::Refused(r.reason)),
            other => {
                let e =
                    RuntimeError::peer(format!("expected a server hello, got {}", other.name()));
                return Err(reject(&mut ch, Reject::PROTOCOL, e));
            }
        };
        if hello.version != PROTOCOL_VERSION {
            let e = RuntimeError::Incompatible(format!(
                "server speaks session protocol version {}, this client {PROTOCOL_VERSION}",
                hello.version
            ));
            return Err(reject(&mut ch, Reject::VERSION, e));
        }
        if hello.preprocessing != method.code() {
            let e = RuntimeError::peer(format!(
                "server chose preprocessing {}, the client asked for {}",
                hello.preprocessing,
                method.code()
            ));
            return Err(reject(&mut ch, Reject::PROTOCOL, e));
        }
        if hello.key_inferences == 0 {
            let e = RuntimeError::peer("the server's hello says an HE key serves 0 inferences");
            return Err(reject(&mut ch, Reject::PROTOCOL, e));
        }
        let (public, public_hash) =
            match models::format::decode_public("<server>", &hello.public_json, &hello.masks) {
                Ok(x) => x,
                Err(e) => {
                    let e = RuntimeError::peer(format!("the served model is invalid: {e}"));
                    return Err(reject(&mut ch, Reject::MODEL, e));
                }
            };
        if let Some(want) = &opts.expect_model
            && !want.eq_ignore_ascii_case(&public_hash)
        {
            let e = RuntimeError::Incompatible(format!(
                "the server serves model {public_hash}, expected {want}"
            ));
            return Err(reject(&mut ch, Reject::MODEL, e));
        }
        let structure = FixedProgram::structure(&public)?;
        let engine = ClientEngine::new(&structure)?;
        let mut pre = method.instance(&structure)?;
        pre.set_key_inferences(hello.key_inferences);
        let per_inference = engine.plan().client_prepared_bytes().max(1);
        let client_cap = u32::try_from(PREPARED_BYTES_PER_SESSION / per_inference)
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(ClientSession {
            ch,
            engine,
            structure,
            public,
            public_hash,
            method,
            pre,
            server_software: hello.software,
            max_prepare: hello.max_prepare.clamp(1, MAX_PREPARE).min(client_cap),
            ot_ready: false,
            prepared: VecDeque::new(),
            next_index: 0,
        })
    }

    /// The served model's public part.
    pub fn public(&self) -> &PublicModel {
        &self.public
    }

    /// SHA-256 of the served model's `public.json`.
    pub fn public_hash(&self) -> &str {
        &self.public_hash
    }

    /// The preprocessing in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The server's software version.
    pub fn server_software(&self) -> &str {
        &self.server_software
    }

    /// The engine's plan (layers, kept ReLUs, online byte formula).
    pub fn plan(&self) -> &crate::engine::Plan {
        self.engine.plan()
    }

    /// Most inferences prepared at once: the server's limit, and no more than keeps the
    /// client's prepared material below [`PREPARED_BYTES_PER_SESSION`].
    pub fn max_prepare(&self) -> u32 {
        self.max_prepare
    }

    /// Runs the offline phase for `count` more inferences (at most [`Self::max_prepare`]
    /// prepared at once). A server short of memory refuses with a "busy" reason.
    pub fn prepare(&mut self, count: u32) -> Result<()> {
        let held = self.prepared.len() as u64;
        if count == 0 || held + u64::from(count) > u64::from(self.max_prepare) {
            return Err(RuntimeError::config(format!(
                "can hold 1 to {} prepared inferences at once; {held} are prepared, {count} \
                 more asked",
                self.max_prepare
            )));
        }
        Message::Prepare { count }.send(&mut self.ch)?;
        match recv_control(&mut self.ch, Side::Server, "prepare")? {
            Message::Ready { count: c } if c == count => {}
            Message::Reject(r) => return Err(RuntimeError::Refused(r.reason)),
            other => {
                let e = RuntimeError::peer(format!(
                    "expected ready for {count} inferences, got {}",
                    match other {
                        Message::Ready { count } => format!("ready for {count}"),
                        m => m.name().to_string(),
                    }
                ));
                return Err(reject(&mut self.ch, Reject::PROTOCOL, e));
            }
        }
        if !self.ot_ready {
            self.engine.setup_ot(&mut self.ch)?;
            self.ot_ready = true;
        }
        for _ in 0..count {
            let got = self.engine.offline(&mut self.ch, self.pre.as_mut())?;
            self.prepared.push_back(got);
        }
        Ok(())
    }

    /// Runs one private inference on a normalized input (preparing it first if nothing
    /// is prepared).
    pub fn infer(&mut self, input: &[f32]) -> Result<Inference> {
        let encoded = self.structure.encode_input(input)?;
        if self.prepared.is_empty() {
            self.prepare(1)?;
        }
        let (prep, offline) = self
            .prepared
            .pop_front()
            .ok_or_else(|| RuntimeError::config("nothing prepared"))?;
        Message::Infer {
            index: self.next_index,
        }
        .send(&mut self.ch)?;
        self.next_index += 1;
        let (output, online) = self.engine.online(&mut self.ch, prep, &encoded)?;
        Ok(Inference {
            output,
            offline,
            online,
        })
    }

    /// Says bye; returns the session's traffic.
    pub fn close(mut self) -> Result<ChannelStats> {
        Message::Bye.send(&mut self.ch)?;
        Ok(self.ch.stats())
    }

    /// Traffic so far.
    pub fn stats(&self) -> ChannelStats {
        self.ch.stats()
    }
}

#[cfg(test)]
mod tests;
