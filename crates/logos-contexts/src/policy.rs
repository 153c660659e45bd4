//! Cedar policies: the [`SCHEMA`], the closed set of [`Action`]s, checking a policy text at
//! `setPolicy`, and deciding one request.
//!
//! Entities: principals are `Logos::Peer::"<peer id>"`; resources are a context,
//! `Logos::Context::"<context id>"`, or one of its keys, `Logos::Key::"<context id>/<key>"`
//! (member of its context, attribute `name` = the key). The request context carries the
//! delegation depth, whether the script is inline, its hash, the deputy who forwarded the
//! request (optional) and, per action, the module/method called, the event emitted or the
//! list prefix (optional).
//!
//! Fail-closed rules, each one a test in `tests/attacks.rs`:
//! - A policy is refused at `setPolicy` unless it parses, has no templates, and validates in
//!   Cedar's *strict* mode against the schema: unknown entity types (`Peer::"…"` without the
//!   namespace), unknown actions and reading an optional attribute without `has` are all
//!   refused then.
//! - Every `Peer` and `Context` id written in a policy must be canonical (64 lowercase hex,
//!   a valid key): a `forbid` naming a case, Unicode or whitespace variant of an id would
//!   silently never match, so it is refused instead of trusted.
//! - **Any evaluation error denies**, whatever the other policies say: Cedar itself skips
//!   a policy that errors (so an erroring `forbid` would let a `permit` through).
//! - The owner is allowed everything in their own context by a built-in policy (id
//!   `owner`); their own `forbid`s still apply.
//!
//! Decisions are pure: a request carries everything (no time, no stored entity data), so a
//! compiled policy remembers its last [`VERDICTS`] answers, keyed by the whole question. A
//! policy change compiles a new [`CompiledPolicy`] with an empty memory: an answer never
//! outlives the version that gave it. A question asked again (the same caller running the
//! same script, writing the same keys) costs a hash lookup instead of a Cedar evaluation.
//!
//! Never stores policies and never knows about scripts or envelopes: the worker asks
//! [`CompiledPolicy::decide`] one question at a time.

use crate::error::Error;
use crate::id::{ContextId, PeerId};
use crate::key::StorageKey;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, OnceLock};

/// Answers a compiled policy remembers.
pub const VERDICTS: usize = 1024;

/// Largest policy text accepted, in bytes.
pub const MAX_POLICY: usize = 64 * 1024;

/// The Cedar schema every policy is validated against.
pub const SCHEMA: &str = r#"
namespace Logos {
  entity Peer;
  entity Context;
  entity Key in [Context] { name: String };
  type Request = {
    depth: Long,
    inline: Bool,
    script: String,
    deputy?: Peer,
    module?: String,
    method?: String,
    event?: String,
    prefix?: String,
  };
  action submit appliesTo { principal: [Peer], resource: [Context], context: Request };
  action read, write, delete appliesTo { principal: [Peer], resource: [Key], context: Request };
  action list, call, emit appliesTo { principal: [Peer], resource: [Context], context: Request };
}
"#;

/// What a request asks to do: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Run a script in the context.
    Submit,
    /// Read a key.
    Read,
    /// Write a key.
    Write,
    /// Delete a key.
    Delete,
    /// List keys under a prefix.
    List,
    /// Call a module method.
    Call,
    /// Emit an event.
    Emit,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 7] = [
        Action::Submit,
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::List,
        Action::Call,
        Action::Emit,
    ];

    /// The action's name, as in policies and grants.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Call => "call",
            Action::Emit => "emit",
        }
    }

    /// The action named `text`, exactly.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing the actions.
    pub fn parse(text: &str) -> Result<Action, Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(
                    "action",
                    text,
                    "the actions are submit, read, write, delete, list, call, emit",
                )
            })
    }
}

/// The schema, parsed once.
fn schema() -> &'static Schema {
    static SCHEMA_CELL: OnceLock<Schema> = OnceLock::new();
    SCHEMA_CELL.get_or_init(|| match Schema::from_cedarschema_str(SCHEMA) {
        Ok((s, _warnings)) => s,
        // The schema is a constant checked by this file's tests.
        Err(e) => panic!("the built-in Cedar schema does not parse: {e}"),
    })
}

/// The entity types of the schema, parsed once.
struct Types {
    peer: EntityTypeName,
    context: EntityTypeName,
    key: EntityTypeName,
    actions: [EntityUid; Action::ALL.len()],
}

fn types() -> &'static Types {
    static TYPES: OnceLock<Types> = OnceLock::new();
    TYPES.get_or_init(|| {
        // The names are the constants of SCHEMA, checked by this file's tests.
        let name =
            |n: &str| EntityTypeName::from_str(n).unwrap_or_else(|e| panic!("type name {n}: {e}"));
        let action = name("Logos::Action");
        Types {
            peer: name("Logos::Peer"),
            context: name("Logos::Context"),
            key: name("Logos::Key"),
            actions: Action::ALL.map(|a| {
                EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str()))
            }),
        }
    })
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// What the script or envelope wants to do to which resource.
#[derive(Debug, Clone)]
pub enum Resource<'a> {
    /// The context itself.
    Context,
    /// One key of it.
    Key(&'a StorageKey),
}

/// The request context of one question.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// Delegation depth: 0 when the caller asks directly.
    pub depth: u64,
    /// Whether the script came inline.
    pub inline: bool,
    /// The script's hash (hex).
    pub script: &'a str,
    /// Who forwarded the request, in nested delegation.
    pub deputy: Option<PeerId>,
    /// `call`: the module.
    pub module: Option<&'a str>,
    /// `call`: the method.
    pub method: Option<&'a str>,
    /// `emit`: the event.
    pub event: Option<&'a str>,
    /// `list`: the prefix.
    pub prefix: Option<&'a str>,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed?
    pub allowed: bool,
    /// The policies that decided, or the errors that denied.
    pub reason: String,
    /// The policy version that decided.
    pub version: u64,
}

/// A validated policy set, ready to decide.
#[derive(Debug)]
pub struct CompiledPolicy {
    context: ContextId,
    /// `Logos::Context::"<context>"`, the resource of context-wide actions.
    context_uid: EntityUid,
    version: u64,
    text: Arc<str>,
    set: PolicySet,
    authorizer: Authorizer,
    verdicts: Mutex<lru::LruCache<Question, Verdict>>,
}

/// A whole question, as the key of a remembered answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Question {
    principal: PeerId,
    action: Action,
    key: Option<String>,
    depth: u64,
    inline: bool,
    script: String,
    deputy: Option<PeerId>,
    details: [Option<String>; 4],
}

impl Question {
    fn new(principal: PeerId, action: Action, resource: &Resource<'_>, f: &Facts<'_>) -> Self {
        let own = |v: Option<&str>| v.map(str::to_owned);
        Question {
            principal,
            action,
            key: match resource {
                Resource::Context => None,
                Resource::Key(k) => Some(k.as_str().to_owned()),
            },
            depth: f.depth,
            inline: f.inline,
            script: f.script.to_owned(),
            deputy: f.deputy,
            details: [own(f.module), own(f.method), own(f.event), own(f.prefix)],
        }
    }
}

impl CompiledPolicy {
    /// Checks and compiles `text` as version `version` of `context`'s policy. The empty text
    /// is the empty policy (only the owner is allowed anything).
    ///
    /// # Errors
    /// [`Error::Policy`] with every parse or validation error, or the non-canonical id.
    pub fn compile(context: ContextId, version: u64, text: &str) -> Result<CompiledPolicy, Error> {
        if text.len() > MAX_POLICY {
            return Err(Error::Policy {
                why: format!(
                    "the text is {} bytes, more than the {MAX_POLICY} accepted",
                    text.len()
                ),
            });
        }
        let user = PolicySet::from_str(text).map_err(|e| Error::Policy {
            why: format!("{:?}", miette_free(&e.to_string(), &format!("{e:?}"))),
        })?;
        if user.templates().next().is_some() {
            return Err(Error::Policy {
                why: "templates (?principal, ?resource) are not accepted; write the ids".into(),
            });
        }
        let result = Validator::new(schema().clone()).validate(&user, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(Error::Policy {
                why: format!(
                    "does not validate against the schema: {}",
                    errors.join("; ")
                ),
            });
        }
        for p in user.policies() {
            let json = p.to_json().map_err(|e| Error::Policy {
                why: format!("policy {}: {e}", p.id()),
            })?;
            check_literals(&json, p.id())?;
        }
        let mut set = user;
        let owner = Policy::parse(
            Some(PolicyId::new("owner")),
            format!(
                r#"permit(principal == Logos::Peer::"{}", action, resource);"#,
                context.owner()
            ),
        )
        .map_err(|e| Error::Policy {
            why: format!("built-in owner policy: {e}"),
        })?;
        set.add(owner).map_err(|e| Error::Policy {
            why: format!("a policy may not use the id \"owner\": {e}"),
        })?;
        Ok(CompiledPolicy {
            context,
            context_uid: uid(&types().context, &context.to_string()),
            version,
            text: text.into(),
            set,
            authorizer: Authorizer::new(),
            verdicts: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(VERDICTS).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The text as set.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Decides whether `principal` may do `action` on `resource` of this context. Any error
    /// (building the request, or in any policy) denies.
    pub fn decide(
        &self,
        principal: PeerId,
        action: Action,
        resource: &Resource<'_>,
        facts: &Facts<'_>,
    ) -> Verdict {
        self.decide_with(principal, action, resource, facts, || {
            request_context(facts)
        })
    }

    /// [`CompiledPolicy::decide`], with `context` giving the Cedar request context of
    /// `facts` when Cedar must be asked (an evaluation asks many questions with the same
    /// facts and builds it once).
    pub fn decide_with(
        &self,
        principal: PeerId,
        action: Action,
        resource: &Resource<'_>,
        facts: &Facts<'_>,
        context: impl FnOnce() -> Result<Context, String>,
    ) -> Verdict {
        let question = Question::new(principal, action, resource, facts);
        let lock = || self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = lock().get(&question) {
            return v.clone();
        }
        let verdict = match context().and_then(|c| self.try_decide(principal, action, resource, c))
        {
            Ok(v) => v,
            Err(reason) => self.deny(reason),
        };
        lock().put(question, verdict.clone());
        verdict
    }

    fn deny(&self, reason: String) -> Verdict {
        Verdict {
            allowed: false,
            reason,
            version: self.version,
        }
    }

    /// One Cedar request. Built without the schema: every part is made here from typed
    /// values, in the shapes of [`SCHEMA`] (the unit tests check that strictly validated
    /// policies see them so), and validating each request against the schema cost more than
    /// the decision. Only entities with attributes or parents are in the entity store (the
    /// key); peers and contexts have neither, and Cedar compares them by id.
    fn try_decide(
        &self,
        principal: PeerId,
        action: Action,
        resource: &Resource<'_>,
        context: Context,
    ) -> Result<Verdict, String> {
        let t = types();
        let p = uid(&t.peer, &principal.to_string());
        let (r, entities) = match resource {
            Resource::Context => (self.context_uid.clone(), Entities::empty()),
            Resource::Key(k) => {
                let r = uid(&t.key, &format!("{}/{}", self.context, k));
                let attrs = HashMap::from([(
                    "name".to_owned(),
                    RestrictedExpression::new_string(k.as_str().to_owned()),
                )]);
                let key = Entity::new(r.clone(), attrs, HashSet::from([self.context_uid.clone()]))
                    .map_err(|e| format!("building the key entity: {e}"))?;
                let entities = Entities::from_entities([key], None)
                    .map_err(|e| format!("building the entities: {e}"))?;
                (r, entities)
            }
        };
        let a = t.actions[action as usize].clone();
        let request = Request::new(p, a, r, context, None)
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            return Ok(Verdict {
                allowed: false,
                reason: format!(
                    "a policy failed to evaluate, which denies: {}",
                    errors.join("; ")
                ),
                version: self.version,
            });
        }
        let allowed = response.decision() == Decision::Allow;
        let ids = || {
            response
                .diagnostics()
                .reason()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = if allowed {
            format!("permitted by {}", ids())
        } else if response.diagnostics().reason().next().is_none() {
            "no policy permits it".to_owned()
        } else {
            format!("forbidden by {}", ids())
        };
        Ok(Verdict {
            allowed,
            reason,
            version: self.version,
        })
    }
}

/// The request context of `facts`, in the schema's `Request` shape.
///
/// # Errors
/// Cedar's reason, as text (which denies).
pub fn request_context(facts: &Facts<'_>) -> Result<Context, String> {
    let mut pairs = Vec::with_capacity(8);
    pairs.push((
        "depth".to_owned(),
        RestrictedExpression::new_long(i64::try_from(facts.depth).unwrap_or(i64::MAX)),
    ));
    pairs.push((
        "inline".to_owned(),
        RestrictedExpression::new_bool(facts.inline),
    ));
    pairs.push((
        "script".to_owned(),
        RestrictedExpression::new_string(facts.script.to_owned()),
    ));
    if let Some(d) = facts.deputy {
        pairs.push((
            "deputy".to_owned(),
            RestrictedExpression::new_entity_uid(uid(&types().peer, &d.to_string())),
        ));
    }
    for (name, v) in [
        ("module", facts.module),
        ("method", facts.method),
        ("event", facts.event),
        ("prefix", facts.prefix),
    ] {
        if let Some(v) = v {
            pairs.push((
                name.to_owned(),
                RestrictedExpression::new_string(v.to_owned()),
            ));
        }
    }
    Context::from_pairs(pairs).map_err(|e| format!("building the request context: {e}"))
}

/// Cedar's error `Display` is one line; its `Debug` has the source snippet. Keep one line.
fn miette_free(display: &str, _debug: &str) -> String {
    display.to_owned()
}

/// Refuses non-canonical entity ids anywhere in a policy's JSON form.
fn check_literals(json: &serde_json::Value, policy: &PolicyId) -> Result<(), Error> {
    match json {
        serde_json::Value::Object(map) => {
            if let (Some(serde_json::Value::String(ty)), Some(serde_json::Value::String(id))) =
                (map.get("type"), map.get("id"))
            {
                check_entity(ty, id, policy)?;
            }
            map.values().try_for_each(|v| check_literals(v, policy))
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| check_literals(v, policy)),
        _ => Ok(()),
    }
}

fn check_entity(ty: &str, id: &str, policy: &PolicyId) -> Result<(), Error> {
    let refuse = |why: String| Error::Policy {
        why: format!("policy {policy}: entity {ty}::{id:?}: {why}"),
    };
    match ty {
        "Logos::Peer" => PeerId::parse(id)
            .map(|_| ())
            .map_err(|e| refuse(e.to_string())),
        "Logos::Context" => ContextId::parse(id)
            .map(|_| ())
            .map_err(|e| refuse(e.to_string())),
        "Logos::Key" => {
            let (ctx, key) = id
                .split_once('/')
                .ok_or_else(|| refuse("a key id is \"<context id>/<key>\"".into()))?;
            ContextId::parse(ctx).map_err(|e| refuse(e.to_string()))?;
            StorageKey::parse(key)
                .map(|_| ())
                .map_err(|e| refuse(e.to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::signing::Keypair;

    fn ids() -> (ContextId, PeerId, PeerId) {
        let alice = Keypair::from_seed(&[1; 32]).peer();
        let bob = Keypair::from_seed(&[2; 32]).peer();
        (ContextId::of(alice), alice, bob)
    }

    #[test]
    fn schema_parses_and_empty_policy_allows_only_the_owner() {
        let (ctx, alice, bob) = ids();
        let p = CompiledPolicy::compile(ctx, 1, "").unwrap();
        let f = Facts::default();
        assert!(
            p.decide(alice, Action::Submit, &Resource::Context, &f)
                .allowed
        );
        let v = p.decide(bob, Action::Submit, &Resource::Context, &f);
        assert!(!v.allowed);
        assert_eq!(v.reason, "no policy permits it");
    }

    /// Requests are built without the schema (for speed): prove they fit it, for every
    /// action and every optional fact.
    #[test]
    fn requests_fit_the_schema() {
        let (ctx, alice, bob) = ids();
        let p = CompiledPolicy::compile(ctx, 1, "").unwrap();
        let t = types();
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a as usize, i, "Action::ALL is in declaration order");
            assert_eq!(Action::parse(a.as_str()).unwrap(), a);
        }
        let facts = Facts {
            depth: 1,
            inline: true,
            script: "00",
            deputy: Some(bob),
            module: Some("m"),
            method: Some("f"),
            event: Some("e"),
            prefix: Some("p/"),
        };
        let key = StorageKey::parse("guestbook/1").unwrap();
        for a in Action::ALL {
            let on_key = matches!(a, Action::Read | Action::Write | Action::Delete);
            let r = if on_key {
                uid(&t.key, &format!("{ctx}/{key}"))
            } else {
                p.context_uid.clone()
            };
            for f in [Facts::default(), facts.clone()] {
                let c = request_context(&f).unwrap();
                Request::new(
                    uid(&t.peer, &alice.to_string()),
                    t.actions[a as usize].clone(),
                    r.clone(),
                    c,
                    Some(schema()),
                )
                .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            }
        }
        let attrs = HashMap::from([(
            "name".to_owned(),
            RestrictedExpression::new_string(key.as_str().to_owned()),
        )]);
        let e = Entity::new(
            uid(&t.key, &format!("{ctx}/{key}")),
            attrs,
            HashSet::from([p.context_uid.clone()]),
        )
        .unwrap();
        Entities::from_entities([e], Some(schema())).unwrap();
    }

    /// The entity store holds only the key: membership in the context and the deputy still
    /// decide as they would with every entity present.
    #[test]
    fn membership_and_deputy_decide() {
        let (ctx, _, bob) = ids();
        let carol = Keypair::from_seed(&[3; 32]).peer();
        let text = format!(
            r#"permit(principal == Logos::Peer::"{bob}", action == Logos::Action::"read", resource in Logos::Context::"{ctx}");
               forbid(principal, action, resource) when {{ context has deputy && context.deputy == Logos::Peer::"{carol}" }};"#
        );
        let p = CompiledPolicy::compile(ctx, 2, &text).unwrap();
        let k = StorageKey::parse("a").unwrap();
        let direct = Facts::default();
        assert!(
            p.decide(bob, Action::Read, &Resource::Key(&k), &direct)
                .allowed
        );
        let via_carol = Facts {
            depth: 1,
            deputy: Some(carol),
            ..Facts::default()
        };
        let v = p.decide(bob, Action::Read, &Resource::Key(&k), &via_carol);
        assert!(!v.allowed);
        assert!(v.reason.starts_with("forbidden by"), "{}", v.reason);
    }

    #[test]
    fn key_prefix_rule() {
        let (ctx, _, bob) = ids();
        let text = format!(
            r#"permit(principal == Logos::Peer::"{bob}", action == Logos::Action::"write", resource)
               when {{ resource.name like "guestbook/*" }};"#
        );
        let p = CompiledPolicy::compile(ctx, 2, &text).unwrap();
        let f = Facts::default();
        let ok = StorageKey::parse("guestbook/1").unwrap();
        let no = StorageKey::parse("secret").unwrap();
        assert!(
            p.decide(bob, Action::Write, &Resource::Key(&ok), &f)
                .allowed
        );
        assert!(
            !p.decide(bob, Action::Write, &Resource::Key(&no), &f)
                .allowed
        );
        assert!(
            !p.decide(bob, Action::Delete, &Resource::Key(&ok), &f)
                .allowed
        );
    }
}
