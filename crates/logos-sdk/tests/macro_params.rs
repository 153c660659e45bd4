//! Parameters of `#[module]` methods as module authors write them: borrowed arguments
//! (`&str`, `&[u8]`, borrowing structs), the context recognised by its type (an alias of the
//! SDK's `Context` is the context; a user's own type named `Context` is an argument), and
//! `ctx.emit(..)?` in a method returning `Result<_, String>`. No process or socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_sdk::{Context as Sdk, ErrorCode, Events, Fault, Module, Value, module};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The author's own domain types, one of them named `Context`.
mod domain {
    /// A conversation context: a wire argument like any other.
    #[derive(Debug, serde::Deserialize)]
    pub struct Context {
        pub room: String,
        pub depth: u32,
    }
}

/// Another user type named `Context`, an alias of `str`: `&text::Context` is a borrowed text
/// argument, though it is spelled like the SDK's context.
mod text {
    pub type Context = str;
}

use domain::Context;

#[derive(Debug, Deserialize)]
struct Greeting<'a> {
    #[serde(borrow)]
    to: &'a str,
    times: u8,
}

#[derive(Events)]
enum NoteEvent {
    Noted { text: String },
}

#[derive(Default)]
struct Notes;

#[module(name = "notes", version = "1.0.0", events = NoteEvent)]
impl Notes {
    pub fn greet(&self, name: &str) -> String {
        format!("Hello, {name}!")
    }

    pub fn size(&self, data: &[u8], label: Option<&str>) -> String {
        format!("{}: {}", label.unwrap_or("data"), data.len())
    }

    pub async fn shout(&self, greeting: Greeting<'_>) -> String {
        tokio::task::yield_now().await;
        greeting
            .to
            .to_uppercase()
            .repeat(usize::from(greeting.times))
    }

    /// A user type named `Context`, by value, first: an argument, not the SDK's context.
    pub fn room(&self, context: Context) -> String {
        format!("{}@{}", context.room, context.depth)
    }

    /// The SDK's context under another name, then a user type named `Context`.
    pub fn both(&self, sdk: &Sdk, context: Context) -> String {
        format!("{} in {}", sdk.name(), context.room)
    }

    /// `&text::Context` (`&str`) first: a borrowed argument, whatever its spelling.
    pub fn label(&self, label: &text::Context) -> usize {
        label.len()
    }

    /// `ctx.emit(..)?` in a method whose error type is `String`.
    pub fn note(&self, ctx: &Sdk, text: &str) -> Result<usize, String> {
        let reached = ctx.emit(NoteEvent::Noted {
            text: text.to_owned(),
        })?;
        Ok(reached)
    }
}

fn ctx() -> Sdk {
    Sdk::standalone("notes", std::env::temp_dir())
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    )
}

async fn call(method: &str, args: Vec<Value>) -> Result<Value, Fault> {
    Notes.call(&ctx(), method, args).await
}

#[tokio::test]
async fn borrowed_parameters_borrow_the_call_arguments() {
    assert_eq!(
        call("greet", vec!["Ada".into()]).await,
        Ok(Value::from("Hello, Ada!"))
    );
    assert_eq!(
        call(
            "size",
            vec![Value::Bytes(vec![1, 2, 3].into()), "blob".into()]
        )
        .await,
        Ok(Value::from("blob: 3"))
    );
    assert_eq!(
        call("size", vec![Value::Bytes(vec![].into())]).await,
        Ok(Value::from("data: 0"))
    );
    let greeting = map(&[("to", "bob".into()), ("times", 2.into())]);
    assert_eq!(
        call("shout", vec![greeting]).await,
        Ok(Value::from("BOBBOB"))
    );
}

#[tokio::test]
async fn borrowed_parameters_refuse_the_wrong_type_by_name() {
    let f = call("greet", vec![7.into()]).await.unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert_eq!(
        f.message,
        "notes.greet: argument 1 `name` (text): expected text, found int"
    );
    // A list is not bytes: `&[u8]` borrows bytes only.
    let f = call("size", vec![Value::List(vec![1.into()])])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
    assert!(f.message.contains("`data` (bytes)"), "{}", f.message);
    let f = call("greet", vec![]).await.unwrap_err();
    assert!(
        f.message
            .starts_with("notes.greet: missing argument 1 `name` (text)"),
        "{}",
        f.message
    );
}

#[tokio::test]
async fn a_user_type_named_context_is_an_argument() {
    let room = map(&[("room", "lobby".into()), ("depth", 2.into())]);
    assert_eq!(
        call("room", vec![room.clone()]).await,
        Ok(Value::from("lobby@2"))
    );
    assert_eq!(
        call("both", vec![room]).await,
        Ok(Value::from("notes in lobby"))
    );
    assert_eq!(call("label", vec!["four".into()]).await, Ok(Value::Int(4)));
    // `both` takes one wire argument: the SDK context under the alias `Sdk` is not one.
    let f = call("both", vec![]).await.unwrap_err();
    assert!(
        f.message
            .starts_with("notes.both: missing argument 1 `context` (Context)"),
        "{}",
        f.message
    );
}

#[test]
fn the_interface_lists_wire_arguments_only() {
    let params = |method: &str| -> Vec<(&str, &str)> {
        Notes::methods()
            .iter()
            .find(|m| m.name == method)
            .map(|m| m.params.iter().map(|p| (p.name, p.ty)).collect())
            .unwrap_or_default()
    };
    assert_eq!(params("greet"), [("name", "text")]);
    assert_eq!(
        params("size"),
        [("data", "bytes"), ("label", "optional<text>")]
    );
    assert_eq!(params("room"), [("context", "Context")]);
    assert_eq!(params("both"), [("context", "Context")]);
    assert_eq!(params("label"), [("label", "Context")]);
    assert_eq!(params("note"), [("text", "text")]);
}

#[tokio::test]
async fn emit_works_with_question_mark_in_string_error_methods() {
    // A standalone context reaches no subscriber: the event goes nowhere, and `?` compiled.
    assert_eq!(call("note", vec!["hi".into()]).await, Ok(Value::Int(0)));
}
