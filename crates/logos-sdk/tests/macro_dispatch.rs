//! `#[module]` and `#[derive(Events)]` as module authors use them: dispatch, argument
//! decoding, error mapping and the generated interface, without any process or socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_sdk::{
    ByteBuf, Context, ErrorCode, Events, Fault, Module, Value, interface_value, module,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Events)]
enum ToyEvent {
    ChatMessage {
        timestamp: i64,
        nick: String,
        message: String,
    },
    Tick(u64),
    #[logos(name = "reset")]
    Cleared,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    key: String,
    value: Value,
}

struct Toy {
    log: Mutex<Vec<String>>,
    started_as: String,
}

#[module(name = "toy", version = "2.1.0", events = ToyEvent)]
impl Toy {
    #[init]
    fn new(ctx: &Context) -> Result<Self, String> {
        if ctx.name() != "toy" {
            return Err(format!("unexpected name {}", ctx.name()));
        }
        Ok(Toy {
            log: Mutex::new(Vec::new()),
            started_as: ctx.name().to_owned(),
        })
    }

    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    pub fn div(&self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_div(b)
            .ok_or_else(|| "division by zero".to_owned())
    }

    pub fn fail_with_code(&self) -> Result<(), Fault> {
        Err(Fault::new(
            ErrorCode::Unavailable,
            "pretend the target is down",
        ))
    }

    pub async fn slow_echo(&self, v: Value) -> Value {
        tokio::task::yield_now().await;
        v
    }

    pub fn history(&self, limit: Option<u64>) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let n = limit.map_or(log.len(), |l| (l as usize).min(log.len()));
        log[log.len() - n..].to_vec()
    }

    pub fn record(&self, ctx: &Context, line: String) {
        assert_eq!(ctx.name(), "toy");
        self.log.lock().unwrap().push(line);
    }

    pub fn entries(&self, entries: Vec<Entry>) -> BTreeMap<String, Value> {
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    pub fn blob(&self, n: u8) -> ByteBuf {
        ByteBuf::from(vec![n; 3])
    }

    #[logos(name = "whoAmI")]
    pub fn who(&self) -> String {
        self.started_as.clone()
    }

    #[logos(skip)]
    #[allow(dead_code)]
    pub fn not_exported(&self) {}

    #[allow(dead_code)]
    fn private_helper(&self) {}

    pub fn associated_without_self() -> u8 {
        7
    }

    pub fn panics(&self, msg: String) {
        panic!("{msg}")
    }
}

async fn call(
    toy: &Arc<Toy>,
    ctx: &Context,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, Fault> {
    toy.call(ctx, method, args).await
}

fn setup() -> (Arc<Toy>, Context) {
    let ctx = Context::standalone("toy", std::env::temp_dir());
    let toy = Arc::new(Toy::init(&ctx).unwrap());
    (toy, ctx)
}

#[tokio::test]
async fn methods_dispatch_by_wire_name() {
    let (toy, ctx) = setup();
    assert_eq!(
        call(&toy, &ctx, "add", vec![2.into(), 3.into()]).await,
        Ok(Value::Int(5))
    );
    assert_eq!(
        call(&toy, &ctx, "slowEcho", vec!["hi".into()]).await,
        Ok(Value::from("hi"))
    );
    assert_eq!(
        call(&toy, &ctx, "whoAmI", vec![]).await,
        Ok(Value::from("toy"))
    );
    assert_eq!(
        call(&toy, &ctx, "blob", vec![9.into()]).await,
        Ok(Value::Bytes(vec![9, 9, 9].into()))
    );
    assert_eq!(
        call(&toy, &ctx, "record", vec!["one".into()]).await,
        Ok(Value::Null)
    );
    call(&toy, &ctx, "record", vec!["two".into()])
        .await
        .unwrap();
    assert_eq!(
        call(&toy, &ctx, "history", vec![1.into()]).await,
        Ok(Value::List(vec!["two".into()]))
    );
    // A missing trailing Option argument is None.
    assert_eq!(
        call(&toy, &ctx, "history", vec![]).await,
        Ok(Value::List(vec!["one".into(), "two".into()]))
    );
    let entries = Value::List(vec![Value::Map(BTreeMap::from([
        ("key".to_owned(), Value::from("k")),
        ("value".to_owned(), Value::from(true)),
    ]))]);
    assert_eq!(
        call(&toy, &ctx, "entries", vec![entries]).await,
        Ok(Value::Map(BTreeMap::from([(
            "k".to_owned(),
            Value::Bool(true)
        )])))
    );
}

#[tokio::test]
async fn unknown_and_hidden_methods_are_unknown() {
    let (toy, ctx) = setup();
    for name in [
        "nope",
        "notExported",
        "not_exported",
        "privateHelper",
        "associatedWithoutSelf",
        "who",
        "slow_echo",
    ] {
        let f = call(&toy, &ctx, name, vec![]).await.unwrap_err();
        assert_eq!(f.code, ErrorCode::UnknownMethod, "{name}");
        assert!(f.message.contains(name), "{}", f.message);
    }
    assert_eq!(Toy::associated_without_self(), 7);
}

#[tokio::test]
async fn bad_arguments_are_invalid_args_naming_method_and_parameter() {
    let (toy, ctx) = setup();
    let f = call(&toy, &ctx, "add", vec![1.into()]).await.unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert!(f.message.contains("toy.add"), "{}", f.message);
    assert!(f.message.contains("`b`"), "{}", f.message);

    let f = call(&toy, &ctx, "add", vec![1.into(), 2.into(), 3.into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert_eq!(f.message, "toy.add takes 2 arguments (a, b), got 3");

    let f = call(&toy, &ctx, "add", vec![1.into(), "x".into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert!(
        f.message.starts_with("toy.add: argument 2 `b` (int)"),
        "{}",
        f.message
    );

    // Never a silent default: null is not an int.
    let f = call(&toy, &ctx, "add", vec![1.into(), Value::Null])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
}

#[tokio::test]
async fn errors_map_to_method_failed_or_pass_through() {
    let (toy, ctx) = setup();
    let f = call(&toy, &ctx, "div", vec![1.into(), 0.into()])
        .await
        .unwrap_err();
    assert_eq!(f, Fault::new(ErrorCode::MethodFailed, "division by zero"));
    let f = call(&toy, &ctx, "failWithCode", vec![]).await.unwrap_err();
    assert_eq!(
        f,
        Fault::new(ErrorCode::Unavailable, "pretend the target is down")
    );
}

#[test]
fn interface_lists_methods_and_events() {
    assert_eq!(Toy::NAME, "toy");
    assert_eq!(Toy::VERSION, "2.1.0");
    let iface = Toy::interface();
    assert_eq!(
        iface,
        interface_value("toy", "2.1.0", Toy::methods(), Toy::events())
    );
    let methods: Vec<&str> = Toy::methods().iter().map(|m| m.name).collect();
    assert_eq!(
        methods,
        [
            "add",
            "div",
            "failWithCode",
            "slowEcho",
            "history",
            "record",
            "entries",
            "blob",
            "whoAmI",
            "panics"
        ]
    );
    let add = &Toy::methods()[0];
    assert_eq!(add.returns, "int");
    assert_eq!(
        add.params
            .iter()
            .map(|p| (p.name, p.ty))
            .collect::<Vec<_>>(),
        [("a", "int"), ("b", "int")]
    );
    let history = Toy::methods().iter().find(|m| m.name == "history").unwrap();
    assert_eq!(history.params[0].ty, "optional<int>");
    assert_eq!(history.returns, "list<text>");
    let record = Toy::methods().iter().find(|m| m.name == "record").unwrap();
    assert_eq!(record.params.len(), 1, "ctx is not a wire parameter");
    assert_eq!(record.returns, "null");
    let entries = Toy::methods().iter().find(|m| m.name == "entries").unwrap();
    assert_eq!(entries.params[0].ty, "list<Entry>");
    assert_eq!(entries.returns, "map<any>");
    let blob = Toy::methods().iter().find(|m| m.name == "blob").unwrap();
    assert_eq!(blob.returns, "bytes");

    // The wire shape of docs/architecture.md §5.
    let first = &iface.get("methods").unwrap().as_list().unwrap()[0];
    assert_eq!(first.get("name"), Some(&Value::from("add")));
    assert_eq!(first.get("returns"), Some(&Value::from("int")));
    let p0 = &first.get("params").unwrap().as_list().unwrap()[0];
    assert_eq!(p0.get("type"), Some(&Value::from("int")));

    let events: Vec<(&str, Vec<(&str, &str)>)> = Toy::events()
        .iter()
        .map(|e| (e.name, e.params.iter().map(|p| (p.name, p.ty)).collect()))
        .collect();
    assert_eq!(
        events,
        [
            (
                "chatMessage",
                vec![("timestamp", "int"), ("nick", "text"), ("message", "text")]
            ),
            ("tick", vec![("0", "int")]),
            ("reset", vec![]),
        ]
    );
}

#[test]
fn events_carry_fields_in_order() {
    let e = ToyEvent::ChatMessage {
        timestamp: 5,
        nick: "ada".into(),
        message: "hi".into(),
    };
    assert_eq!(e.name(), "chatMessage");
    assert_eq!(
        e.into_data().unwrap(),
        vec![Value::Int(5), Value::from("ada"), Value::from("hi")]
    );
    assert_eq!(ToyEvent::Tick(3).name(), "tick");
    assert_eq!(ToyEvent::Tick(3).into_data().unwrap(), vec![Value::Int(3)]);
    assert_eq!(ToyEvent::Cleared.name(), "reset");
    assert!(ToyEvent::Cleared.into_data().unwrap().is_empty());
}

#[test]
fn init_errors_name_the_module() {
    let ctx = Context::standalone("other", std::env::temp_dir());
    let e = Toy::init(&ctx).err().unwrap();
    assert_eq!(
        e.to_string(),
        "module \"toy\" failed to initialise: unexpected name other"
    );
}

#[derive(Default)]
struct Defaulted;

#[module(name = "defaulted")]
impl Defaulted {
    pub async fn ping(&self, ctx: &Context) -> String {
        ctx.name().to_owned()
    }
}

#[tokio::test]
async fn default_constructor_and_default_version() {
    let ctx = Context::standalone("defaulted", std::env::temp_dir());
    let m = Arc::new(Defaulted::init(&ctx).unwrap());
    assert_eq!(Defaulted::VERSION, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        m.call(&ctx, "ping", vec![]).await,
        Ok(Value::from("defaulted"))
    );
    assert!(Defaulted::events().is_empty());
}

/// A synchronous `&self` method is also served at once (`Module::call_sync`, which the
/// runtime uses to answer without a future) with exactly what `call` answers, failures
/// included; an `async` method is not, and neither is a name the module does not export.
#[tokio::test]
async fn synchronous_methods_run_at_once_with_calls_answers() {
    let (toy, ctx) = setup();
    assert!(Toy::methods().iter().any(|m| m.name == "slowEcho"));
    assert!(
        !Toy::sync_method("slowEcho"),
        "an async method needs its future"
    );
    assert!(!Toy::sync_method("nope"));
    assert!(!Toy::sync_method("not_exported"));
    let cases: Vec<(&str, Vec<Value>)> = vec![
        ("add", vec![2.into(), 3.into()]),
        ("add", vec!["x".into(), 3.into()]),
        ("add", vec![1.into(), 2.into(), 3.into()]),
        ("div", vec![1.into(), 0.into()]),
        ("failWithCode", vec![]),
        ("whoAmI", vec![]),
        ("blob", vec![2.into()]),
        ("history", vec![]),
    ];
    for (method, args) in cases {
        assert!(Toy::sync_method(method), "{method} is synchronous");
        let now = toy.call_sync(&ctx, method, args.clone());
        assert_eq!(now, call(&toy, &ctx, method, args).await, "{method}");
    }
    assert_eq!(
        toy.call_sync(&ctx, "slowEcho", vec!["hi".into()])
            .map_err(|f| f.code),
        Err(ErrorCode::UnknownMethod),
        "call_sync runs only what sync_method names"
    );
}
