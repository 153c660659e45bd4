//! `{{name}}`: a logos module. Its `#[module]` impl block's public methods are its interface
//! (`greet`), `{{Type}}Event` its events (`greeted`); docs/module-authoring.md shows the rest.

use logos_sdk::{Context, Events, module};

/// The events of `{{name}}`.
#[derive(Debug, Events)]
pub enum {{Type}}Event {
    /// Someone was greeted: data `[name]`.
    Greeted { name: String },
}

/// The module: no state yet.
#[derive(Debug, Default)]
pub struct {{Type}};

#[module(events = {{Type}}Event)]
impl {{Type}} {
    /// Greets `name` and tells the subscribers of `greeted`.
    pub fn greet(&self, ctx: &Context, name: &str) -> Result<String, String> {
        if name.is_empty() {
            return Err("name must not be empty".to_owned());
        }
        ctx.emit({{Type}}Event::Greeted {
            name: name.to_owned(),
        })
        .map_err(|e| e.to_string())?;
        Ok(format!("hello, {name}"))
    }
}

logos_sdk::export_module!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name_and_refuses_no_name() {
        // A context with no core behind it: emitting reaches nobody, calls fail fast.
        let ctx = Context::standalone("{{name}}", std::env::temp_dir());
        assert_eq!({{Type}}.greet(&ctx, "ada"), Ok("hello, ada".to_owned()));
        assert!({{Type}}.greet(&ctx, "").is_err());
    }

    #[test]
    fn greeted_carries_the_name() {
        let e = {{Type}}Event::Greeted { name: "ada".into() };
        assert_eq!(e.name(), "greeted");
        assert_eq!(e.into_data().expect("encodable"), vec!["ada".into()]);
    }
}
