//! The values the unpickler ([`super::pickle`]) produces.

use std::rc::Rc;

/// A malformed or unsupported pickle: what and where.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Byte offset of the opcode (or read) that failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// A `module.name` reference (`GLOBAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Module, e.g. `torch._utils`.
    pub module: String,
    /// Name, e.g. `_rebuild_tensor_v2`.
    pub name: String,
}

/// A torch storage named by a persistent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// Storage class name, e.g. `FloatStorage`.
    pub class: String,
    /// Record name under `data/` in the archive.
    pub key: String,
    /// Device location, e.g. `cpu` or `cuda:0`.
    pub location: String,
    /// Declared number of elements.
    pub numel: u64,
}

/// A tensor view onto a storage (`_rebuild_tensor_v2` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage.
    pub storage: Rc<StorageRef>,
    /// Offset in elements.
    pub offset: u64,
    /// Sizes.
    pub size: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
    /// The dtype given to `_rebuild_tensor_v3` (overrides the storage class), e.g. `uint16`.
    pub dtype: Option<String>,
}

/// A pickled value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A longer integer (value not kept).
    BigInt,
    /// A float.
    Float(f64),
    /// A text string.
    Str(Rc<str>),
    /// A byte string.
    Bytes(Rc<[u8]>),
    /// A tuple.
    Tuple(Rc<[Value]>),
    /// A list (or set) in the heap.
    List(usize),
    /// A dict (or OrderedDict) in the heap.
    Dict(usize),
    /// Any other constructed object, in the heap.
    Object(usize),
    /// A class or function reference.
    Global(Rc<Global>),
    /// A torch storage.
    Storage(Rc<StorageRef>),
    /// A torch tensor.
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// A short description of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Object(_) => "object",
            Value::Global(_) => "class",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// A heap cell: the mutable containers.
#[derive(Debug, Clone)]
pub enum HeapObj {
    /// List items.
    List(Vec<Value>),
    /// Dict items in insertion order.
    Dict(Vec<(Value, Value)>),
    /// An object of a class the importer does not model.
    Object {
        /// What was called.
        callable: Value,
        /// Its arguments.
        args: Value,
        /// `BUILD` state, if any.
        state: Option<Value>,
        /// Items added by `SETITEMS` / `APPENDS` (e.g. a `defaultdict`).
        items: Vec<(Value, Value)>,
    },
}

/// The result of unpickling: the top value and the heap it refers into.
#[derive(Debug, Clone)]
pub struct Unpickled {
    /// The unpickled object.
    pub root: Value,
    /// Lists, dicts and objects.
    pub heap: Vec<HeapObj>,
}

impl Unpickled {
    /// The items of `v` if it is a dict.
    pub fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match v {
            Value::Dict(i) => match self.heap.get(*i) {
                Some(HeapObj::Dict(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// The class of `v` if it is an opaque object constructed from a global.
    pub fn object_class(&self, v: &Value) -> Option<String> {
        match v {
            Value::Object(i) => match self.heap.get(*i) {
                Some(HeapObj::Object {
                    callable: Value::Global(g),
                    ..
                }) => Some(format!("{}.{}", g.module, g.name)),
                _ => None,
            },
            _ => None,
        }
    }
}
