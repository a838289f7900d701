//! A small, bounded unpickler for what `torch.save` writes (pickle protocol 2; the protocol
//! 3-4 opcodes are read too).
//!
//! Nothing is executed. `GLOBAL` yields a name; calling it (`REDUCE`, `NEWOBJ`) builds a
//! dict for `collections.OrderedDict`, a [`TensorRef`] for `torch._utils._rebuild_tensor_v2`
//! (and v3), passes `_rebuild_parameter`'s tensor through, and records any other call as an
//! opaque [`HeapObj::Object`]. `BINPERSID` turns torch's storage ids
//! `('storage', torch.FloatStorage, key, location, numel)` into a [`StorageRef`]. Lists,
//! dicts and objects live in a heap and are referenced by index, so the memo shares them as
//! pickle does (a dict filled after it was memoized is seen filled through every reference).
//!
//! Bounds: the stack, the memo and the heap are capped, integers are at most 64 bits, and
//! every read is checked against the end of the input; the machine has no recursion.

use std::collections::HashMap;
use std::rc::Rc;

pub use super::value::{Global, HeapObj, PickleError, StorageRef, TensorRef, Unpickled, Value};

/// Most values on the stack at once.
const MAX_STACK: usize = 1 << 20;
/// Most memo entries.
const MAX_MEMO: usize = 1 << 20;
/// Most lists, dicts and objects.
const MAX_HEAP: usize = 1 << 22;
/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 16;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    heap: Vec<HeapObj>,
}

type R<T> = Result<T, PickleError>;

impl<'a> Machine<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> R<T> {
        Err(PickleError {
            offset: self.op_at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(PickleError {
                offset: self.op_at,
                reason: format!(
                    "truncated: needs {n} more bytes at byte {}, the pickle has {}",
                    self.pos,
                    self.data.len()
                ),
            }),
        }
    }

    fn uint(&mut self, n: usize) -> R<u64> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn len(&mut self, n: usize) -> R<usize> {
        let v = self.uint(n)?;
        let left = (self.data.len() - self.pos) as u64;
        if v > left {
            return self.err(format!("truncated: length {v} runs past the end"));
        }
        Ok(v as usize)
    }

    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(512).position(|&b| b == b'\n') else {
            return self.err("truncated or unterminated GLOBAL name (no newline within 512 bytes)");
        };
        let s =
            std::str::from_utf8(&rest[..n]).or_else(|_| self.err("GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> R<Value> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() >= MAX_STACK {
            return self.err(format!("stack exceeds {MAX_STACK} values"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> R<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("stack underflow");
        }
        self.stack
            .pop()
            .map_or_else(|| self.err("stack underflow"), Ok)
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let Some(m) = self.marks.pop() else {
            return self.err("no MARK on the stack");
        };
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, obj: HeapObj) -> R<usize> {
        if self.heap.len() >= MAX_HEAP {
            return self.err(format!("more than {MAX_HEAP} containers"));
        }
        self.heap.push(obj);
        Ok(self.heap.len() - 1)
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let Some(top) = self.stack.last().cloned() else {
            return self.err("memo store from an empty stack");
        };
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return self.err(format!("memo exceeds {MAX_MEMO} entries"));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> R<()> {
        match self.memo.get(&key).cloned() {
            Some(v) => self.push(v),
            None => self.err(format!("memo key {key} was never stored")),
        }
    }

    /// Appends `values` to the list (or object) at the top of the stack.
    fn extend_top(&mut self, values: Vec<Value>) -> R<()> {
        let idx = match self.stack.last() {
            Some(Value::List(i) | Value::Object(i)) => *i,
            Some(v) => return self.err(format!("APPEND to a {}", v.kind())),
            None => return self.err("APPEND to an empty stack"),
        };
        match &mut self.heap[idx] {
            HeapObj::List(items) => items.extend(values),
            HeapObj::Object { items, .. } => {
                items.extend(values.into_iter().map(|v| (Value::None, v)))
            }
            HeapObj::Dict(_) => return self.err("APPEND to a dict"),
        }
        Ok(())
    }

    /// Adds key/value pairs to the dict (or object) at the top of the stack.
    fn set_items(&mut self, flat: Vec<Value>) -> R<()> {
        if !flat.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of values");
        }
        let idx = match self.stack.last() {
            Some(Value::Dict(i) | Value::Object(i)) => *i,
            Some(v) => return self.err(format!("SETITEMS on a {}", v.kind())),
            None => return self.err("SETITEMS on an empty stack"),
        };
        let mut it = flat.into_iter();
        let pairs: Vec<(Value, Value)> =
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect();
        match &mut self.heap[idx] {
            HeapObj::Dict(items) | HeapObj::Object { items, .. } => items.extend(pairs),
            HeapObj::List(_) => return self.err("SETITEMS on a list"),
        }
        Ok(())
    }

    fn int_arg(&self, args: &[Value], i: usize, what: &str) -> R<u64> {
        match args.get(i) {
            Some(Value::Int(v)) if *v >= 0 => Ok(*v as u64),
            Some(v) => self.err(format!("{what}: expected a non-negative int, found {v:?}")),
            None => self.err(format!("{what}: missing argument {i}")),
        }
    }

    fn dims(&self, args: &[Value], i: usize, what: &str) -> R<Vec<u64>> {
        let Some(Value::Tuple(t)) = args.get(i) else {
            return self.err(format!("{what}: argument {i} is not a tuple"));
        };
        if t.len() > MAX_DIMS {
            return self.err(format!(
                "{what}: {} dimensions (at most {MAX_DIMS})",
                t.len()
            ));
        }
        (0..t.len()).map(|j| self.int_arg(t, j, what)).collect()
    }

    fn rebuild_tensor(&self, args: &[Value], v3: bool) -> R<Value> {
        let what = if v3 {
            "_rebuild_tensor_v3"
        } else {
            "_rebuild_tensor_v2"
        };
        let Some(Value::Storage(storage)) = args.first() else {
            return self.err(format!("{what}: first argument is not a storage"));
        };
        let offset = self.int_arg(args, 1, what)?;
        let size = self.dims(args, 2, what)?;
        let stride = self.dims(args, 3, what)?;
        if size.len() != stride.len() {
            return self.err(format!(
                "{what}: {} sizes but {} strides",
                size.len(),
                stride.len()
            ));
        }
        let dtype = if v3 {
            match args.get(6) {
                Some(Value::Global(g)) => Some(g.name.clone()),
                _ => return self.err(format!("{what}: argument 6 is not a dtype")),
            }
        } else {
            None
        };
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset,
            size,
            stride,
            dtype,
        })))
    }

    /// `REDUCE` / `NEWOBJ`: builds what the importer understands, records the rest.
    fn call(&mut self, callable: Value, args: Value) -> R<Value> {
        let argv: Rc<[Value]> = match &args {
            Value::Tuple(t) => t.clone(),
            v => return self.err(format!("call arguments are a {}, not a tuple", v.kind())),
        };
        if let Value::Global(g) = &callable {
            match (g.module.as_str(), g.name.as_str()) {
                ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                    let mut items = Vec::new();
                    if let Some(Value::List(i)) = argv.first()
                        && let Some(HeapObj::List(pairs)) = self.heap.get(*i)
                    {
                        for p in pairs {
                            if let Value::Tuple(kv) = p
                                && kv.len() == 2
                            {
                                items.push((kv[0].clone(), kv[1].clone()));
                            }
                        }
                    }
                    return Ok(Value::Dict(self.alloc(HeapObj::Dict(items))?));
                }
                ("torch._utils", "_rebuild_tensor_v2") => return self.rebuild_tensor(&argv, false),
                ("torch._utils", "_rebuild_tensor_v3") => return self.rebuild_tensor(&argv, true),
                ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                    return match argv.first() {
                        Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                        _ => self.err(format!("{}: first argument is not a tensor", g.name)),
                    };
                }
                ("_codecs", "encode") => {
                    if let Some(Value::Str(s)) = argv.first() {
                        // Protocol 2 writes bytes as encode(str, 'latin1').
                        let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
                        return Ok(Value::Bytes(bytes.into()));
                    }
                }
                _ => {}
            }
        }
        let id = self.alloc(HeapObj::Object {
            callable,
            args,
            state: None,
            items: Vec::new(),
        })?;
        Ok(Value::Object(id))
    }

    fn persistent_load(&self, pid: Value) -> R<Value> {
        let Value::Tuple(t) = &pid else {
            return self.err(format!("persistent id is a {}, not a tuple", pid.kind()));
        };
        match &t[..] {
            [Value::Str(tag), Value::Global(class), Value::Str(key), Value::Str(location), Value::Int(numel)]
                if &**tag == "storage" && *numel >= 0 =>
            {
                Ok(Value::Storage(Rc::new(StorageRef {
                    class: class.name.clone(),
                    key: key.to_string(),
                    location: location.to_string(),
                    numel: *numel as u64,
                })))
            }
            _ => self.err(format!(
                "persistent id {t:?} is not a torch storage ('storage', class, key, location, numel)"
            )),
        }
    }

    fn run(mut self) -> R<Unpickled> {
        loop {
            self.op_at = self.pos;
            let op = self.take(1).map_err(|_| PickleError {
                offset: self.pos,
                reason: "truncated: ends before STOP".into(),
            })?[0];
            match op {
                0x80 => {
                    let p = self.uint(1)?;
                    if p > 5 {
                        return self.err(format!("pickle protocol {p} is not supported"));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(Unpickled {
                        root,
                        heap: self.heap,
                    });
                }
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return self.err("too many MARKs");
                    }
                    self.marks.push(self.stack.len());
                }
                b'}' => {
                    let id = self.alloc(HeapObj::Dict(Vec::new()))?;
                    self.push(Value::Dict(id))?;
                }
                b']' | 0x8f => {
                    let id = self.alloc(HeapObj::List(Vec::new()))?;
                    self.push(Value::List(id))?;
                }
                b')' => self.push(Value::Tuple(Rc::from(Vec::new())))?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Value::Int(v as i64))?;
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.len(1)?
                    } else {
                        self.len(4)?
                    };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let mut buf = [if b[n - 1] & 0x80 != 0 { 0xff } else { 0 }; 8];
                        buf[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(buf))
                    } else {
                        Value::BigInt
                    };
                    self.push(v)?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?;
                }
                b'X' => {
                    let n = self.len(4)?;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.len(1)?;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = self.len(8)?;
                    let v = self.text(n)?;
                    self.push(v)?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'U' | b'C' => self.len(1)?,
                        0x8e => self.len(8)?,
                        _ => self.len(4)?,
                    };
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.into()))?;
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Value::Global(Rc::new(Global { module, name })))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(Rc::new(Global {
                                module: m.to_string(),
                                name: n.to_string(),
                            })))?
                        }
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items.into()))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items.into()))?;
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    let id = self.alloc(HeapObj::List(items))?;
                    self.push(Value::List(id))?;
                }
                b'd' => {
                    let flat = self.pop_mark()?;
                    let id = self.alloc(HeapObj::Dict(Vec::new()))?;
                    self.push(Value::Dict(id))?;
                    self.set_items(flat)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let flat = self.pop_mark()?;
                    self.set_items(flat)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.stack.last() {
                        Some(Value::Object(i)) => {
                            let i = *i;
                            if let HeapObj::Object { state: s, .. } = &mut self.heap[i] {
                                *s = Some(state);
                            }
                        }
                        // Dict state (an OrderedDict's `_metadata`) and tensor state are
                        // not needed.
                        Some(_) => {}
                        None => return self.err("BUILD on an empty stack"),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let Some(top) = self.stack.last().cloned() else {
                        return self.err("DUP on an empty stack");
                    };
                    self.push(top)?;
                }
                other => {
                    return self.err(format!(
                        "unsupported pickle opcode 0x{other:02x} ({:?})",
                        char::from(other)
                    ));
                }
            }
        }
    }
}

/// Unpickles `data` without executing anything (see the module documentation).
pub fn unpickle(data: &[u8]) -> Result<Unpickled, PickleError> {
    Machine {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        heap: Vec::new(),
    }
    .run()
}
