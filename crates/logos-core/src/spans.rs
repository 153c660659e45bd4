//! Recent spans of calls across modules, and the call trees built from them
//! (docs/tracing.md).
//!
//! Owns the bounded ring of [`Span`]s (the oldest is evicted when it is full), the decoding
//! of a module's `core.$spans` report (the reporter's name comes from its connection, never
//! from the report), the core's own spans (a root span for each call an operator or embedder
//! makes), the task-local trace context of an operator's call, and the assembly of spans into
//! [`Node`] trees: a caller's `client` span and the callee's `server` span of one call become
//! one node with both durations. Never talks to a socket or a collector: `core.getTraces`
//! and `core.getSpans` serve what is here, and the CLI exports.

use logos_session::Fault;
use logos_wire::trace::{new_span_id, new_trace_id};
use logos_wire::{ErrorCode, TraceContext, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spans kept by default (`Builder::spans`, `LOGOS_SPANS`).
pub const DEFAULT_SPANS: usize = 4096;
/// Most spans accepted in one report (the SDK sends at most 1024).
const MAX_REPORT: usize = 4096;
/// Longest name or error text kept from a report.
const MAX_TEXT: usize = 256;

tokio::task_local! {
    static INCOMING: Option<TraceContext>;
}

/// Runs `fut` (an operator's or embedder's call) with the trace context its call carried.
pub(crate) fn scope<F: Future>(
    ctx: Option<TraceContext>,
    fut: F,
) -> impl Future<Output = F::Output> {
    INCOMING.scope(ctx, fut)
}

/// The trace context the running operator call carried, if any.
pub(crate) fn incoming() -> Option<TraceContext> {
    INCOMING.try_with(|c| *c).ok().flatten()
}

/// Which side of a call a span covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The callee's span: from the call's arrival to its answer.
    Server,
    /// The caller's span: from sending the call to receiving the answer.
    Client,
}

impl SpanKind {
    fn as_str(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        }
    }
}

/// One finished span of one call, as a module (or the core) reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its id.
    pub span_id: [u8; 8],
    /// The span it is a child of, if any.
    pub parent: Option<[u8; 8]>,
    /// Who recorded it: the module's name (from its connection) or `core`.
    pub module: Arc<str>,
    /// Caller's or callee's side.
    pub kind: SpanKind,
    /// The called module.
    pub target: Arc<str>,
    /// The called method.
    pub method: Arc<str>,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// How long it took.
    pub duration_ns: u64,
    /// `code: message` when the call failed.
    pub error: Option<String>,
}

/// The ring of recent spans.
///
/// A kept span owns no memory of its own unless it failed: its names are shared, one
/// allocation per distinct name ([`Names`]). With a `String` each, the 4096 spans kept after a
/// busy moment were 12 000 small allocations scattered among the freed reports, and every
/// allocation-heavy path of the core ran slower from then on: a module's start by 0.2 ms,
/// mostly in decoding its `hello` (docs/performance.md, twenty-third step).
pub(crate) struct Store {
    capacity: usize,
    ring: Mutex<VecDeque<Span>>,
    names: Mutex<Names>,
    /// Spans modules could not queue (their queue was full), as they reported.
    dropped: AtomicU64,
    /// Spans pushed out of the ring by newer ones.
    evicted: AtomicU64,
}

impl Store {
    pub(crate) fn new(capacity: usize) -> Store {
        Store {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(DEFAULT_SPANS))),
            names: Mutex::new(Names::default()),
            dropped: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// `false` when spans are off (capacity 0): modules are told not to report.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn push_all(&self, spans: impl IntoIterator<Item = Span>) {
        if !self.enabled() {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        for span in spans {
            if ring.len() >= self.capacity {
                ring.pop_front();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            ring.push_back(span);
        }
    }

    /// Every span in the ring, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<Span> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }

    /// Takes `core.$spans(spans, dropped)` from module `me`.
    ///
    /// # Errors
    /// `invalid_args` naming the first bad span and field; nothing of a bad report is kept.
    pub(crate) fn report(&self, me: &str, args: Vec<Value>) -> Result<Value, Fault> {
        let bad = |why: String| Fault::new(ErrorCode::InvalidArgs, format!("$spans: {why}"));
        let mut args = args.into_iter();
        let (Some(Value::List(list)), dropped, None) = (args.next(), args.next(), args.next())
        else {
            return Err(bad("takes (spans: list, dropped: uint)".into()));
        };
        let dropped = match dropped {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("dropped must be a uint, found {v}")))?,
        };
        if list.len() > MAX_REPORT {
            return Err(bad(format!(
                "{} spans in one report; at most {MAX_REPORT}",
                list.len()
            )));
        }
        let spans = {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let me = names.get(me);
            list.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    decode(&me, &mut names, v).map_err(|e| bad(format!("spans[{i}].{e}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(
                module = me,
                dropped,
                "module dropped spans (its queue was full)"
            );
        }
        self.push_all(spans);
        Ok(Value::Null)
    }

    /// Records the core's own span of a call it made for an operator or embedder.
    pub(crate) fn record_core(&self, open: &CoreSpan, result: Result<(), &Fault>) {
        if !self.enabled() {
            return;
        }
        let duration = open.started.elapsed();
        let (module, target, method) = {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            (
                names.get(crate::name::CORE_MODULE),
                names.get(&open.target),
                names.get(&open.method),
            )
        };
        self.push_all([Span {
            trace_id: open.ctx.trace_id,
            span_id: open.ctx.span_id,
            parent: open.parent,
            module,
            kind: SpanKind::Client,
            target,
            method,
            start_ns: unix_ns(open.start),
            duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            error: result
                .err()
                .map(|f| format!("{}: {}", f.code.as_str(), cut(&f.message))),
        }]);
    }

    /// `{spans, capacity, dropped, evicted}` figures for `core.getTraces`.
    fn figures(&self, kept: usize) -> Vec<(&'static str, Value)> {
        vec![
            ("spans", Value::UInt(kept as u64)),
            ("capacity", Value::UInt(self.capacity as u64)),
            ("dropped", Value::UInt(self.dropped.load(Ordering::Relaxed))),
            ("evicted", Value::UInt(self.evicted.load(Ordering::Relaxed))),
        ]
    }
}

/// The core's span of one call it makes, being timed.
pub(crate) struct CoreSpan {
    /// The context sent with the call (its `span_id` is this span).
    pub ctx: TraceContext,
    parent: Option<[u8; 8]>,
    target: String,
    method: String,
    start: SystemTime,
    started: std::time::Instant,
}

impl CoreSpan {
    /// Opens the core's span of `target.method`: a child of the operator's context, or a root.
    pub(crate) fn open(target: &str, method: &str) -> CoreSpan {
        let parent = incoming();
        let ctx = TraceContext {
            trace_id: parent.map_or_else(new_trace_id, |p| p.trace_id),
            span_id: new_span_id(),
            flags: parent.map_or(logos_wire::trace::FLAG_SAMPLED, |p| p.flags),
        };
        CoreSpan {
            ctx,
            parent: parent.map(|p| p.span_id),
            target: target.to_owned(),
            method: method.to_owned(),
            start: SystemTime::now(),
            started: std::time::Instant::now(),
        }
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `s` up to its first [`MAX_TEXT`] characters.
fn cut_to(s: &str) -> &str {
    s.char_indices()
        .nth(MAX_TEXT)
        .map_or(s, |(end, _)| &s[..end])
}

fn cut(s: &str) -> String {
    cut_to(s).to_owned()
}

/// The names kept spans share: each distinct module or method name is allocated once.
///
/// Bounded: names come from modules' reports, so a module could send new ones forever. Past
/// [`MAX_NAMES`] the set starts again empty; spans that hold a forgotten name keep it alive.
#[derive(Default)]
struct Names(HashSet<Arc<str>>);

/// Most names [`Names`] remembers.
const MAX_NAMES: usize = 4096;

impl Names {
    /// The shared copy of `name` (cut to [`MAX_TEXT`] characters).
    fn get(&mut self, name: &str) -> Arc<str> {
        let name = cut_to(name);
        if let Some(known) = self.0.get(name) {
            return Arc::clone(known);
        }
        if self.0.len() >= MAX_NAMES {
            self.0.clear();
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// The fields of a reported span, in the order a row holds them (docs/tracing.md, "The
/// report format").
const FIELDS: [&str; 9] = [
    "trace",
    "span",
    "parent",
    "kind",
    "target",
    "method",
    "start_ns",
    "duration_ns",
    "error",
];

/// One span of a report, a row or a map; the error names the field.
///
/// Rows are what the SDK sends to a core that announces `"span_rows"` (this one): the same
/// values as a map's, without the nine keys that each span's map carries and that cost more
/// than its values to decode. Maps are what older modules send.
fn decode(me: &Arc<str>, names: &mut Names, v: Value) -> Result<Span, String> {
    let fields: [Value; 9] = match v {
        Value::List(row) => {
            let found = row.len();
            row.try_into().map_err(|_| {
                format!(
                    "(the span): expected a row of {} values, found {found}",
                    FIELDS.len()
                )
            })?
        }
        Value::Map(mut m) => FIELDS.map(|k| m.remove(k).unwrap_or(Value::Null)),
        v => {
            return Err(format!(
                "(the span): expected a row (list) or a map, found {}",
                v.type_name()
            ));
        }
    };
    let [
        trace,
        span,
        parent,
        kind,
        target,
        method,
        start_ns,
        duration_ns,
        error,
    ] = fields;
    fn id<const N: usize>(field: &str, v: Value) -> Result<[u8; N], String> {
        match v {
            Value::Bytes(b) if b.len() == N && b.iter().any(|&x| x != 0) => {
                let mut out = [0u8; N];
                out.copy_from_slice(&b);
                Ok(out)
            }
            other => Err(format!(
                "{field}: expected {N} bytes, not all zero, found {}",
                other.type_name()
            )),
        }
    }
    fn text(field: &str, names: &mut Names, v: Value) -> Result<Arc<str>, String> {
        match v {
            Value::Text(t) if !t.is_empty() => Ok(names.get(&t)),
            other => Err(format!(
                "{field}: expected non-empty text, found {}",
                other.type_name()
            )),
        }
    }
    fn uint(field: &str, v: Value) -> Result<u64, String> {
        v.as_u64()
            .ok_or_else(|| format!("{field}: expected uint, found {}", v.type_name()))
    }
    let trace_id = id::<16>("trace", trace)?;
    let span_id = id::<8>("span", span)?;
    let parent = match parent {
        Value::Null => None,
        v => Some(id::<8>("parent", v)?),
    };
    let kind = match kind {
        Value::Text(t) if t == "server" => SpanKind::Server,
        Value::Text(t) if t == "client" => SpanKind::Client,
        other => {
            return Err(format!(
                "kind: expected \"server\" or \"client\", found {other}"
            ));
        }
    };
    let target = text("target", names, target)?;
    let method = text("method", names, method)?;
    let start_ns = uint("start_ns", start_ns)?;
    let duration_ns = uint("duration_ns", duration_ns)?;
    let error = match error {
        Value::Null => None,
        Value::Text(t) => Some(cut(&t)),
        other => {
            return Err(format!(
                "error: expected null or text, found {}",
                other.type_name()
            ));
        }
    };
    Ok(Span {
        trace_id,
        span_id,
        parent,
        module: Arc::clone(me),
        kind,
        target,
        method,
        start_ns,
        duration_ns,
        error,
    })
}

fn hex(b: &[u8]) -> String {
    logos_wire::trace::to_hex(b)
}

/// One span as `core.getSpans` serves it (ids in hex).
pub fn span_value(s: &Span) -> Value {
    let mut m = BTreeMap::new();
    m.insert("trace".into(), Value::from(hex(&s.trace_id)));
    m.insert("span".into(), Value::from(hex(&s.span_id)));
    m.insert(
        "parent".into(),
        s.parent.map_or(Value::Null, |p| Value::from(hex(&p))),
    );
    m.insert("module".into(), Value::from(&*s.module));
    m.insert("kind".into(), Value::from(s.kind.as_str()));
    m.insert("target".into(), Value::from(&*s.target));
    m.insert("method".into(), Value::from(&*s.method));
    m.insert("start_ns".into(), Value::UInt(s.start_ns));
    m.insert("duration_ns".into(), Value::UInt(s.duration_ns));
    m.insert(
        "error".into(),
        s.error.as_deref().map_or(Value::Null, Value::from),
    );
    Value::Map(m)
}

/// One call in a call tree: the caller's and the callee's view of it merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// `target.method`.
    pub call: String,
    /// Who made the call (`core` for operators), when the caller reported it.
    pub caller: Option<String>,
    /// The module that served it, when it reported it.
    pub served_by: Option<String>,
    /// Duration as the caller saw it (else as the callee did).
    pub duration_ns: u64,
    /// Time the callee spent, when it reported it.
    pub served_ns: Option<u64>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// The failure, from the callee's span, else the caller's.
    pub error: Option<String>,
    /// The span id the node is known by (the caller's span when there is one).
    pub span: [u8; 8],
    /// Calls made while serving this one, in start order.
    pub children: Vec<Node>,
}

/// What `core.getTraces` filters on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only trees in which this module made, or served, a call.
    pub module: Option<String>,
    /// Only trees whose root took at least this long.
    pub slow: Option<Duration>,
    /// At most this many trees, most recent first.
    pub limit: Option<usize>,
}

/// Assembles `spans` into call trees, most recent root first, filtered.
pub fn trees(spans: &[Span], filter: &Filter) -> Vec<(String, Node)> {
    let mut by_trace: HashMap<[u8; 16], Vec<&Span>> = HashMap::new();
    for s in spans {
        by_trace.entry(s.trace_id).or_default().push(s);
    }
    let mut out: Vec<(String, Node)> = Vec::new();
    for (trace, spans) in by_trace {
        if let Some(m) = &filter.module
            && !spans.iter().any(|s| *s.module == **m || *s.target == **m)
        {
            continue;
        }
        for root in assemble(&spans) {
            if filter
                .slow
                .is_some_and(|t| u128::from(root.duration_ns) < t.as_nanos())
            {
                continue;
            }
            out.push((hex(&trace), root));
        }
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.1.start_ns));
    if let Some(n) = filter.limit {
        out.truncate(n);
    }
    out
}

/// The trees of one trace.
fn assemble(spans: &[&Span]) -> Vec<Node> {
    let ids: HashMap<[u8; 8], &Span> = spans.iter().map(|s| (s.span_id, *s)).collect();
    let mut children: HashMap<[u8; 8], Vec<&Span>> = HashMap::new();
    let mut roots = Vec::new();
    for s in spans {
        match s.parent.filter(|p| ids.contains_key(p) && *p != s.span_id) {
            Some(p) => children.entry(p).or_default().push(*s),
            None => roots.push(*s),
        }
    }
    let mut nodes: Vec<Node> = roots.into_iter().map(|r| node(r, &children, 0)).collect();
    nodes.sort_by_key(|n| n.start_ns);
    nodes
}

/// Deepest tree built; a report making a longer parent chain is cut there.
const MAX_TREE_DEPTH: usize = 64;

fn node(s: &Span, children: &HashMap<[u8; 8], Vec<&Span>>, depth: usize) -> Node {
    let kids = children.get(&s.span_id).map(Vec::as_slice).unwrap_or(&[]);
    // A client span whose callee reported too: one node, the callee's children below it.
    let server = (s.kind == SpanKind::Client)
        .then(|| {
            kids.iter().find(|k| {
                k.kind == SpanKind::Server && k.target == s.target && k.method == s.method
            })
        })
        .flatten();
    let mut below: Vec<&Span> = kids
        .iter()
        .filter(|k| Some(**k) != server.copied())
        .copied()
        .collect();
    if let Some(srv) = server {
        below.extend(children.get(&srv.span_id).map(Vec::as_slice).unwrap_or(&[]));
    }
    let mut child_nodes = if depth < MAX_TREE_DEPTH {
        below
            .into_iter()
            .map(|k| node(k, children, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    child_nodes.sort_by_key(|n: &Node| n.start_ns);
    let (caller, served_by, served_ns) = match (s.kind, server) {
        (SpanKind::Client, Some(srv)) => (
            Some(s.module.to_string()),
            Some(srv.module.to_string()),
            Some(srv.duration_ns),
        ),
        (SpanKind::Client, None) => (Some(s.module.to_string()), None, None),
        (SpanKind::Server, _) => (None, Some(s.module.to_string()), Some(s.duration_ns)),
    };
    Node {
        call: format!("{}.{}", s.target, s.method),
        caller,
        served_by,
        duration_ns: s.duration_ns,
        served_ns,
        start_ns: s.start_ns,
        error: server
            .and_then(|x| x.error.clone())
            .or_else(|| s.error.clone()),
        span: s.span_id,
        children: child_nodes,
    }
}

/// A tree as `core.getTraces` serves it.
pub fn node_value(n: &Node) -> Value {
    let mut m = BTreeMap::new();
    m.insert("call".into(), Value::from(n.call.as_str()));
    m.insert(
        "caller".into(),
        n.caller.as_deref().map_or(Value::Null, Value::from),
    );
    m.insert(
        "served_by".into(),
        n.served_by.as_deref().map_or(Value::Null, Value::from),
    );
    m.insert("duration_ns".into(), Value::UInt(n.duration_ns));
    m.insert(
        "served_ns".into(),
        n.served_ns.map_or(Value::Null, Value::UInt),
    );
    m.insert("start_ns".into(), Value::UInt(n.start_ns));
    m.insert(
        "error".into(),
        n.error.as_deref().map_or(Value::Null, Value::from),
    );
    m.insert("span".into(), Value::from(hex(&n.span)));
    m.insert(
        "children".into(),
        Value::List(n.children.iter().map(node_value).collect()),
    );
    Value::Map(m)
}

/// Reads the options map of `core.getTraces` / `core.getSpans`.
fn filter_of(args: &[Value], method: &str) -> Result<Filter, Fault> {
    let bad = |why: String| Fault::new(ErrorCode::InvalidArgs, format!("core.{method}: {why}"));
    let opts = match args {
        [] => return Ok(Filter::default()),
        [Value::Map(m)] => m,
        [Value::Null] => return Ok(Filter::default()),
        _ => return Err(bad("takes one options map {module, slow_ms, limit}".into())),
    };
    let mut f = Filter::default();
    for (k, v) in opts {
        match (k.as_str(), v, v.as_u64()) {
            ("module", Value::Text(t), _) => f.module = Some(t.clone()),
            ("slow_ms", _, Some(n)) => f.slow = Some(Duration::from_millis(n)),
            ("slow_us", _, Some(n)) => f.slow = Some(Duration::from_micros(n)),
            ("limit", _, Some(n)) => f.limit = Some(usize::try_from(n).unwrap_or(usize::MAX)),
            (k, v, _) => {
                return Err(bad(format!(
                    "option {k:?} = {v} is not one of module (text), slow_ms, slow_us, limit (uint)"
                )));
            }
        }
    }
    Ok(f)
}

/// `core.getTraces(options)`: `{traces: [{trace, root}], spans, capacity, dropped, evicted}`.
pub(crate) fn get_traces(store: &Store, args: &[Value]) -> Result<Value, Fault> {
    let filter = filter_of(args, "getTraces")?;
    let spans = store.snapshot();
    let traces = trees(&spans, &filter)
        .iter()
        .map(|(trace, root)| {
            Value::Map(BTreeMap::from([
                ("trace".to_owned(), Value::from(trace.as_str())),
                ("root".to_owned(), node_value(root)),
            ]))
        })
        .collect();
    let mut m: BTreeMap<String, Value> = store
        .figures(spans.len())
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    m.insert("traces".into(), Value::List(traces));
    Ok(Value::Map(m))
}

/// `core.getSpans(options)`: the raw spans (of the traces the filter keeps), oldest first.
pub(crate) fn get_spans(store: &Store, args: &[Value]) -> Result<Value, Fault> {
    let filter = filter_of(args, "getSpans")?;
    let spans = store.snapshot();
    let keep: std::collections::HashSet<String> =
        trees(&spans, &filter).into_iter().map(|(t, _)| t).collect();
    Ok(Value::List(
        spans
            .iter()
            .filter(|s| keep.contains(&hex(&s.trace_id)))
            .map(span_value)
            .collect(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn span(
        id: u8,
        parent: Option<u8>,
        module: &str,
        kind: SpanKind,
        call: &str,
        dur: u64,
    ) -> Span {
        let (target, method) = call.split_once('.').unwrap();
        Span {
            trace_id: [1; 16],
            span_id: [id; 8],
            parent: parent.map(|p| [p; 8]),
            module: module.into(),
            kind,
            target: target.into(),
            method: method.into(),
            start_ns: u64::from(id),
            duration_ns: dur,
            error: None,
        }
    }

    #[test]
    fn client_and_server_spans_merge_into_one_node() {
        use SpanKind::*;
        let spans = vec![
            span(1, None, "core", Client, "greeter.sum", 900),
            span(2, Some(1), "greeter", Server, "greeter.sum", 800),
            span(3, Some(2), "greeter", Client, "calc.add", 300),
            span(4, Some(3), "calc", Server, "calc.add", 100),
        ];
        let t = trees(&spans, &Filter::default());
        assert_eq!(t.len(), 1);
        let root = &t[0].1;
        assert_eq!(root.call, "greeter.sum");
        assert_eq!(root.caller.as_deref(), Some("core"));
        assert_eq!(root.served_by.as_deref(), Some("greeter"));
        assert_eq!((root.duration_ns, root.served_ns), (900, Some(800)));
        assert_eq!(root.children.len(), 1);
        let add = &root.children[0];
        assert_eq!(add.call, "calc.add");
        assert_eq!((add.duration_ns, add.served_ns), (300, Some(100)));
    }

    #[test]
    fn filters_and_ring_bound() {
        use SpanKind::*;
        let store = Store::new(3);
        store.push_all((1..=5).map(|i| span(i, None, "a", Server, "a.m", 10)));
        assert_eq!(store.snapshot().len(), 3);
        assert_eq!(store.evicted.load(Ordering::Relaxed), 2);
        let spans = vec![span(1, None, "a", Server, "a.m", 5_000_000)];
        let slow = Filter {
            slow: Some(Duration::from_millis(10)),
            ..Filter::default()
        };
        assert!(trees(&spans, &slow).is_empty());
        let other = Filter {
            module: Some("b".into()),
            ..Filter::default()
        };
        assert!(trees(&spans, &other).is_empty());
    }

    /// A report's span as the SDK encodes it, with `id` in its ids.
    fn reported(id: u8, target: &str, method: &str) -> Value {
        let mut m = BTreeMap::new();
        m.insert("trace".into(), Value::Bytes(vec![id; 16].into()));
        m.insert("span".into(), Value::Bytes(vec![id; 8].into()));
        m.insert("parent".into(), Value::Null);
        m.insert("kind".into(), Value::from("client"));
        m.insert("target".into(), Value::from(target));
        m.insert("method".into(), Value::from(method));
        m.insert("start_ns".into(), Value::UInt(1));
        m.insert("duration_ns".into(), Value::UInt(2));
        m.insert("error".into(), Value::Null);
        Value::Map(m)
    }

    #[test]
    fn kept_spans_share_their_names() {
        let store = Store::new(10);
        let report =
            |spans: Vec<Value>| store.report("a", vec![Value::List(spans), Value::UInt(0)]);
        report(vec![reported(1, "calc", "add"), reported(2, "calc", "add")]).unwrap();
        report(vec![reported(3, "calc", "sub")]).unwrap();
        let kept = store.snapshot();
        assert_eq!(kept.len(), 3);
        // One allocation per distinct name, across reports.
        assert!(Arc::ptr_eq(&kept[0].target, &kept[1].target));
        assert!(Arc::ptr_eq(&kept[0].target, &kept[2].target));
        assert!(Arc::ptr_eq(&kept[0].method, &kept[1].method));
        assert!(!Arc::ptr_eq(&kept[0].method, &kept[2].method));
        assert!(Arc::ptr_eq(&kept[0].module, &kept[2].module));
        assert_eq!(
            (&*kept[2].module, &*kept[2].target, &*kept[2].method),
            ("a", "calc", "sub")
        );
    }

    #[test]
    fn names_are_cut_and_bounded() {
        let mut names = Names::default();
        let long = "é".repeat(MAX_TEXT + 10);
        assert_eq!(names.get(&long).chars().count(), MAX_TEXT);
        // The cut name is the one kept: asking again gives the same allocation.
        assert!(Arc::ptr_eq(&names.get(&long), &names.get(&long)));
        let first = names.get("m0");
        for i in 1..MAX_NAMES {
            names.get(&format!("m{i}"));
        }
        assert!(names.0.len() <= MAX_NAMES);
        // Past the bound the set starts again; a name held by a span stays valid.
        let again = names.get("m0");
        assert_eq!(*again, *first);
        assert!(names.0.len() <= MAX_NAMES);
    }

    /// [`reported`] as a row: its values in [`FIELDS`] order.
    fn reported_row(id: u8, target: &str, method: &str) -> Value {
        let Value::Map(mut m) = reported(id, target, method) else {
            unreachable!("reported is a map")
        };
        Value::List(
            FIELDS
                .iter()
                .map(|k| m.remove(*k).unwrap_or(Value::Null))
                .collect(),
        )
    }

    #[test]
    fn a_row_is_the_same_span_as_its_map_and_both_may_share_a_report() {
        let store = Store::new(10);
        store
            .report(
                "a",
                vec![
                    Value::List(vec![
                        reported(1, "calc", "add"),
                        reported_row(2, "calc", "add"),
                    ]),
                    Value::UInt(0),
                ],
            )
            .unwrap();
        let kept = store.snapshot();
        assert_eq!(kept.len(), 2);
        let key = |s: &Span| {
            (
                s.parent,
                s.kind,
                s.target.to_string(),
                s.method.to_string(),
                s.start_ns,
                s.duration_ns,
                s.error.clone(),
            )
        };
        assert_eq!(key(&kept[0]), key(&kept[1]));
        assert_eq!(kept[1].trace_id, [2; 16]);
        assert_eq!(kept[1].span_id, [2; 8]);
    }

    #[test]
    fn a_bad_row_names_the_span_and_field() {
        let bad = |row: Value| {
            let store = Store::new(10);
            let e = store
                .report(
                    "calc",
                    vec![
                        Value::List(vec![reported_row(1, "calc", "add"), row]),
                        Value::UInt(0),
                    ],
                )
                .unwrap_err();
            assert_eq!(store.snapshot().len(), 0, "nothing of a bad report is kept");
            e.message
        };
        let Value::List(good) = reported_row(2, "calc", "add") else {
            unreachable!()
        };
        let short = bad(Value::List(good[..8].to_vec()));
        assert!(
            short.contains("spans[1]") && short.contains("row of 9 values, found 8"),
            "{short}"
        );
        let mut wrong = good.clone();
        wrong[6] = Value::from("soon");
        let m = bad(Value::List(wrong));
        assert!(m.contains("spans[1].start_ns: expected uint"), "{m}");
        let mut wrong = good;
        wrong[3] = Value::from("both");
        let m = bad(Value::List(wrong));
        assert!(m.contains("spans[1].kind"), "{m}");
        let m = bad(Value::UInt(3));
        assert!(m.contains("expected a row (list) or a map"), "{m}");
    }

    #[test]
    fn a_bad_report_names_the_span_and_field() {
        let store = Store::new(10);
        let mut m = BTreeMap::new();
        m.insert("trace".to_owned(), Value::Bytes(vec![1u8; 15].into()));
        let e = store
            .report(
                "calc",
                vec![Value::List(vec![Value::Map(m)]), Value::UInt(0)],
            )
            .unwrap_err();
        assert!(e.message.contains("spans[0].trace"), "{}", e.message);
        assert_eq!(store.snapshot().len(), 0);
    }
}
