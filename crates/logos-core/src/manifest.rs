//! Module metadata (`<module dir>/metadata.json`).
//!
//! Owns [`Manifest`], a module's metadata parsed and checked in full: the RFC fields (`name`,
//! `version`, `description`, `author`, `type`, `dependencies`, `capabilities`, `include`) plus
//! ours (`main`, version ranges on dependencies, `restart`, `permissions`). Parsing reports every
//! fault at once, each with the file and the field (a JSON pointer) or the JSON line and column,
//! so one edit fixes them all. The only I/O here is reading `metadata.json` and checking that
//! `main` is a file. Never starts a process, never decides what a module may call (that is
//! `policy.rs`) and never orders modules (that is `resolver.rs`).
//!
//! # Example `metadata.json`
//!
//! ```json
//! {
//!   "name": "greeter",
//!   "version": "1.0.0",
//!   "description": "says hello",
//!   "main": "libgreeter.so",
//!   "dependencies": { "calc": "^1.2" },
//!   "permissions": ["chat"],
//!   "restart": "always"
//! }
//! ```
//!
//! `dependencies` may also be the RFC's plain list, `["calc", "chat"]`, meaning any version.
//! Unknown fields are kept in [`Manifest::raw`] and logged at debug level, because RFC metadata
//! carries fields this runtime does not use. `type` may be left out; if given it must be one of
//! [`MODULE_TYPES`]. `permissions` are checked here for form only: whether each names a module
//! that exists is checked at load (`policy::check_permissions`), when every module is known.
//!
//! # `main`
//!
//! `main` is relative to the module directory and may not be absolute or contain `..`. When it
//! is left out, as in the RFC's example metadata, it is `lib<name>.so` (the platform's library
//! naming) if that file is in the module directory; otherwise the fault names both the missing
//! field and the file looked for. A
//! symlink inside the module directory is followed, so a build tree may link its outputs into a
//! staged module (`cargo xtask stage` and the tests do). Links are trusted because the operator
//! made them: every link on the way to `main` (the entries of the module directory it names and
//! each link those point to in turn) must be owned by the core's user or root, and so must the
//! file at the end; a link or file of another user is refused, naming its owner. Whoever can
//! write the module directory controls `metadata.json` anyway, so following the operator's
//! links grants nothing new.
//!
//! `metadata.json` itself must be a regular file: it is opened non-blocking and checked before
//! it is read, so a FIFO (or a device) of that name cannot stall discovery.

use crate::error::Error;
use crate::name::ModuleName;
use semver::{Version, VersionReq};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// The metadata file inside each module directory.
pub const METADATA_FILE: &str = "metadata.json";

/// Larger metadata files are refused unread.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// Fields this runtime understands; anything else is kept in `raw` and logged at debug.
const KNOWN_FIELDS: [&str; 14] = [
    "name",
    "version",
    "description",
    "author",
    "type",
    "dependencies",
    "capabilities",
    "include",
    "main",
    "restart",
    "permissions",
    "filesystem",
    "network",
    "protected",
];

/// The values of `type` this core accepts: it runs back-end modules only. The reference
/// platform's UI types (`ui`, `ui_qml`: views loaded by a UI shell) are refused with that
/// reason rather than started and failing.
pub const MODULE_TYPES: [&str; 1] = ["core"];

// ---------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------

/// When the supervisor restarts a module that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartPolicy {
    /// After any exit that was not requested, including exit code 0.
    Always,
    /// After a crash: a non-zero exit, a signal or a missed heartbeat. The default.
    #[default]
    OnFailure,
    /// Never; the module stays down until loaded again.
    Never,
}

impl RestartPolicy {
    /// The spelling in `metadata.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a module's `main` is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// A shared library (`*.so`, `*.so.N`), loaded and served by `logos_host`.
    Library,
    /// Any other file, executed directly; it must speak the protocol itself.
    Executable,
}

/// A module's metadata, parsed and checked.
///
/// Built only by [`Manifest::load`] or [`Manifest::from_json`], so every field holds a checked
/// value; fields are public to read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Manifest {
    /// `name`: equals the module directory's name, never a reserved name.
    pub name: ModuleName,
    /// `version`.
    pub version: Version,
    /// `description`.
    pub description: Option<String>,
    /// `author`.
    pub author: Option<String>,
    /// The RFC's `type`: `core` when given, the only type this core runs (see
    /// [`MODULE_TYPES`]).
    pub module_type: Option<String>,
    /// `dependencies`: each module this one needs loaded first, with the accepted versions
    /// (`*` when given as the RFC's plain list).
    pub dependencies: BTreeMap<ModuleName, VersionReq>,
    /// `capabilities`, uninterpreted.
    pub capabilities: Vec<String>,
    /// `include`, uninterpreted.
    pub include: Vec<String>,
    /// `main`, resolved to an absolute path that was a file when parsed; `lib<name>.so` in
    /// the module directory when the metadata leaves `main` out (as the RFC's does).
    pub main: PathBuf,
    /// `restart` (default `on-failure`).
    pub restart: RestartPolicy,
    /// The modules `permissions` names (`"calc"`, `"calc.*"`, `"calc.add"` all name calc):
    /// modules it may call beyond its dependencies (`core` also lets it change what runs).
    /// Each must name a known module or a built-in, checked at load.
    pub permissions: BTreeSet<ModuleName>,
    /// What `permissions` grants of each module it names: every method, or the listed ones.
    /// Method entries for a dependency narrow it to those methods.
    pub access: BTreeMap<ModuleName, Methods>,
    /// `filesystem`: paths beyond its own dirs the module needs (docs/security.md, "Declared
    /// confinement"). Those outside its module and data dirs need an operator grant.
    pub filesystem: FsPaths,
    /// `network`: the module needs IP sockets (default `false`); takes effect only with the
    /// operator's grant.
    pub network: bool,
    /// `protected`: the module holds state others must not change (consensus, a wallet):
    /// only writers the operator lists may call its methods not marked read-only. Needs the
    /// operator's confirmation (default `false`).
    pub protected: bool,
    /// The module directory, absolute.
    pub dir: PathBuf,
    /// The metadata file as it was found, for messages.
    pub path: PathBuf,
    /// The whole metadata document, unknown fields included, for introspection.
    pub raw: Value,
}

impl Manifest {
    /// Reads and checks `<dir>/metadata.json`.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] listing every fault: an unreadable or oversized file, a JSON syntax
    /// error (with line and column), or each invalid field (with its JSON pointer).
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(METADATA_FILE);
        let text = read_limited(&path)
            .map_err(|message| ManifestError::one(path.clone(), Location::File, message))?;
        Self::from_json(dir, &text)
    }

    /// Checks `text` as the metadata of the module in `dir`.
    ///
    /// Reads nothing but the file system entry named by `main`, and the directory itself to
    /// make its path absolute.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] listing every fault, located in `<dir>/metadata.json`.
    pub fn from_json(dir: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let path = dir.join(METADATA_FILE);
        let raw: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = (e.line(), e.column());
                let msg = e.to_string();
                let suffix = format!(" at line {line} column {column}");
                let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                return Err(ManifestError::one(
                    path,
                    Location::Syntax { line, column },
                    format!("invalid JSON: {msg}"),
                ));
            }
        };
        let Some(obj) = raw.as_object() else {
            return Err(ManifestError::one(
                path,
                Location::File,
                format!(
                    "must be a JSON object with at least \"name\" and \"version\", found {}",
                    json_kind(&raw)
                ),
            ));
        };
        for key in obj.keys() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                tracing::debug!(
                    file = %path.display(),
                    field = %key,
                    "unknown metadata field, kept in the raw metadata"
                );
            }
        }

        let mut c = Checker {
            path: &path,
            faults: Vec::new(),
        };
        let abs_dir = absolute_dir(dir);
        let name = c.name(obj.get("name"), dir, &abs_dir);
        let version = c.version(obj.get("version"));
        let description = c.optional_string(obj, "description");
        let author = c.optional_string(obj, "author");
        let module_type = c.module_type(obj);
        let own_name = obj.get("name").and_then(Value::as_str);
        let dependencies = c.dependencies(obj.get("dependencies"), own_name);
        let capabilities = c.string_list(obj, "capabilities");
        let include = c.string_list(obj, "include");
        let main = match obj.get("main") {
            // The RFC's metadata has no `main`: the platform's library name is the default.
            None | Some(Value::Null) => c.default_main(name.as_ref(), &abs_dir),
            given => c.main(given, &abs_dir),
        };
        let restart = c.restart(obj.get("restart"));
        let access = c.permissions(obj.get("permissions"));
        let permissions = access.keys().cloned().collect();
        let filesystem = c.filesystem(obj.get("filesystem"), &abs_dir);
        let network = c.flag(obj.get("network"), "network");
        let protected = c.flag(obj.get("protected"), "protected");

        match (name, version, main) {
            (Some(name), Some(version), Some(main)) if c.faults.is_empty() => Ok(Manifest {
                name,
                version,
                description,
                author,
                module_type,
                dependencies,
                capabilities,
                include,
                main,
                restart,
                permissions,
                access,
                filesystem,
                network,
                protected,
                dir: abs_dir,
                path,
                raw,
            }),
            _ => Err(c.into_error()),
        }
    }

    /// The manifest of a remote module, from what it sent at hello: its `name` (already bound
    /// to its credential), its `version`, and its `metadata.json` document if it sent one
    /// (`description`, `dependencies`, `permissions`, …; `main` and `restart` mean nothing
    /// for a process the core did not start and are ignored). `origin` names the peer in
    /// messages and stands in for the module dir.
    ///
    /// # Errors
    /// A [`ManifestError`] listing every fault of the document, located at the peer.
    pub(crate) fn from_remote(
        name: &ModuleName,
        version: &str,
        metadata: Option<Value>,
        origin: &str,
    ) -> Result<Manifest, ManifestError> {
        let dir = PathBuf::from(format!("remote:{origin}"));
        let path = PathBuf::from(format!("{name}'s metadata (remote module at {origin})"));
        let raw = metadata.unwrap_or_else(|| Value::Object(Map::new()));
        let Some(obj) = raw.as_object() else {
            return Err(ManifestError::one(
                path,
                Location::File,
                format!("must be a JSON object, found {}", json_kind(&raw)),
            ));
        };
        let mut c = Checker {
            path: &path,
            faults: Vec::new(),
        };
        if let Some(n) = obj.get("name").and_then(Value::as_str)
            && n != name.as_str()
        {
            c.fault(
                "/name",
                format!("{n:?} differs from the module's name {name:?}; they must agree"),
            );
        }
        let version = c.version(Some(&Value::String(version.to_owned())));
        if let (Some(v), Some(said)) = (&version, obj.get("version").and_then(Value::as_str))
            && Version::parse(said).ok().as_ref() != Some(v)
        {
            c.fault(
                "/version",
                format!("{said:?} differs from the version the module says it is ({v})"),
            );
        }
        let description = c.optional_string(obj, "description");
        let author = c.optional_string(obj, "author");
        let module_type = c.module_type(obj);
        let dependencies = c.dependencies(obj.get("dependencies"), Some(name.as_str()));
        let capabilities = c.string_list(obj, "capabilities");
        let include = c.string_list(obj, "include");
        let access = c.permissions(obj.get("permissions"));
        let permissions = access.keys().cloned().collect();
        match version {
            Some(version) if c.faults.is_empty() => Ok(Manifest {
                name: name.clone(),
                version,
                description,
                author,
                module_type,
                dependencies,
                capabilities,
                include,
                main: PathBuf::new(),
                restart: RestartPolicy::Never,
                permissions,
                access,
                // Confinement is the remote machine's business: this core starts no process
                // for it, so declared paths, network and protection mean nothing here.
                filesystem: FsPaths::default(),
                network: false,
                protected: false,
                dir,
                path,
                raw,
            }),
            _ => Err(c.into_error()),
        }
    }

    /// Whether `main` is a shared library run through `logos_host` or an executable run as is.
    pub fn kind(&self) -> ModuleKind {
        if is_shared_library(&self.main) {
            ModuleKind::Library
        } else {
            ModuleKind::Executable
        }
    }

    /// Whether `name` is among this module's dependencies.
    pub fn depends_on(&self, name: &str) -> bool {
        self.dependencies.contains_key(name)
    }

    /// A manifest for unit tests: no file is read and `main` is a made-up path.
    ///
    /// # Panics
    ///
    /// On an invalid name, version or range (test input only).
    #[cfg(test)]
    pub(crate) fn for_test(name: &str, version: &str, deps: &[(&str, &str)]) -> Manifest {
        fn ok<T, E: fmt::Display>(r: Result<T, E>, what: &str) -> T {
            match r {
                Ok(v) => v,
                Err(e) => panic!("bad test {what}: {e}"),
            }
        }
        let name = ok(ModuleName::new(name), "name");
        let dir = PathBuf::from("/nonexistent/modules").join(name.as_str());
        Manifest {
            version: ok(Version::parse(version), "version"),
            description: None,
            author: None,
            module_type: None,
            dependencies: deps
                .iter()
                .map(|(n, r)| {
                    (
                        ok(ModuleName::new(n), "dependency"),
                        ok(VersionReq::parse(r), "range"),
                    )
                })
                .collect(),
            capabilities: Vec::new(),
            include: Vec::new(),
            main: dir.join(format!("lib{name}.so")),
            restart: RestartPolicy::OnFailure,
            permissions: BTreeSet::new(),
            access: BTreeMap::new(),
            filesystem: FsPaths::default(),
            network: false,
            protected: false,
            path: dir.join(METADATA_FILE),
            dir,
            raw: Value::Null,
            name,
        }
    }
}

/// Which methods of one module a permission or a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method (`"calc"`, `"calc.*"`, a grant without `methods`).
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

impl Methods {
    /// Only the given methods.
    pub fn only(methods: impl IntoIterator<Item = String>) -> Methods {
        Methods::Only(methods.into_iter().collect())
    }

    /// Whether `method` is covered.
    pub fn contains(&self, method: &str) -> bool {
        match self {
            Methods::All => true,
            Methods::Only(set) => set.contains(method),
        }
    }

    /// Adds what `other` covers.
    pub fn add(&mut self, other: &Methods) {
        match (&mut *self, other) {
            (Methods::All, _) => {}
            (_, Methods::All) => *self = Methods::All,
            (Methods::Only(a), Methods::Only(b)) => a.extend(b.iter().cloned()),
        }
    }
}

/// Longest method name a permission may name.
pub const MAX_METHOD_NAME: usize = 64;

/// Checks a method name as a permission or grant may name it: 1 to 64 ASCII letters, digits,
/// `_` or `-`. The error says why not.
pub fn check_method_name(m: &str) -> Result<(), String> {
    if m.is_empty() {
        return Err(
            "the method name is empty; write MODULE.METHOD or MODULE.* for every method".into(),
        );
    }
    if m.len() > MAX_METHOD_NAME {
        return Err(format!(
            "the method name is longer than {MAX_METHOD_NAME} bytes"
        ));
    }
    if m.starts_with('$') {
        return Err("methods starting with '$' are reserved for the core and never granted".into());
    }
    if !m
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "{m:?} is not a method name (ASCII letters, digits, '_' and '-' only)"
        ));
    }
    Ok(())
}

/// The `filesystem` field of a manifest: paths a module declares it reads or writes, each
/// absolute (a relative one is taken from the module directory) and free of `..`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsPaths {
    /// `filesystem.read`: read (and execute) beneath each path.
    pub read: Vec<PathBuf>,
    /// `filesystem.write`: read, write, create and remove beneath each path.
    pub write: Vec<PathBuf>,
}

impl FsPaths {
    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

/// Most paths one `filesystem` list may hold: each becomes a Landlock rule.
pub const MAX_DECLARED_PATHS: usize = 64;

/// `libx.so` and `libx.so.1.2` are libraries; `x.so.py` is not.
fn is_shared_library(path: &Path) -> bool {
    let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
        return false;
    };
    let parts: Vec<&str> = file.split('.').collect();
    match parts.iter().rposition(|p| *p == "so") {
        Some(i) if i > 0 => parts[i + 1..]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

/// The module directory made absolute, symlinks resolved where possible.
fn absolute_dir(dir: &Path) -> PathBuf {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// Whether a file or link owned by `uid` may be part of a module's `main`: the core's own
/// user's, or root's.
fn trusted_owner(uid: u32) -> bool {
    uid == crate::sys::uid() || uid == 0
}

/// Checks every symlink on the way from `dir` to `dir/rel`: each link among the components
/// of `rel`, and each link those point to, hop by hop, must have a trusted owner. The error
/// is the fault text.
fn trusted_links(dir: &Path, rel: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // Linux follows at most 40 links in one lookup.
    const MAX_HOPS: usize = 40;
    let mut at = dir.to_path_buf();
    for c in rel.components() {
        let Component::Normal(part) = c else {
            continue;
        };
        at.push(part);
        let mut link = at.clone();
        for _ in 0..MAX_HOPS {
            let Ok(meta) = std::fs::symlink_metadata(&link) else {
                // Missing: the existence check after this one names it.
                return Ok(());
            };
            if !meta.file_type().is_symlink() {
                break;
            }
            if !trusted_owner(meta.uid()) {
                return Err(format!(
                    "{} is a symlink owned by uid {}, not by this user (uid {}) or root; replace it with a file or a link of your own",
                    link.display(),
                    meta.uid(),
                    crate::sys::uid()
                ));
            }
            let target = std::fs::read_link(&link)
                .map_err(|e| format!("{} is a symlink that cannot be read: {e}", link.display()))?;
            link = match link.parent() {
                Some(parent) => parent.join(target),
                None => target,
            };
        }
    }
    Ok(())
}

/// Reads a metadata file, refusing oversized and non-UTF-8 ones. The error is the fault text.
///
/// Opened with `O_NONBLOCK` and checked with `fstat` before reading, so a FIFO or device named
/// `metadata.json` is refused at once instead of blocking discovery.
fn read_limited(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?
        .file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "is {what}, not a regular file; metadata.json must be a plain JSON file"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(format!(
            "is larger than {MAX_METADATA_BYTES} bytes; metadata should be a few hundred bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 (invalid byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// A declared path made absolute (relative ones from the module directory). The error is the
/// fault text.
fn declared_path(s: &str, abs_dir: &Path) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err(
            "is empty; give an absolute path, or one relative to the module directory".into(),
        );
    }
    if s.contains('\0') {
        return Err(format!("{s:?} contains a NUL character; paths cannot"));
    }
    let p = Path::new(s);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "{s:?} contains \"..\"; write the path without it, so what is granted is plain to read"
        ));
    }
    let mut full = if p.is_absolute() {
        PathBuf::from("/")
    } else {
        abs_dir.to_path_buf()
    };
    for c in p.components() {
        if let Component::Normal(part) = c {
            full.push(part);
        }
    }
    Ok(full)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Collects faults while checking one document.
struct Checker<'p> {
    path: &'p Path,
    faults: Vec<ManifestFault>,
}

impl Checker<'_> {
    fn fault(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.faults.push(ManifestFault {
            path: self.path.to_path_buf(),
            location: Location::Field(pointer.into()),
            message: message.into(),
        });
    }

    fn into_error(mut self) -> ManifestError {
        if self.faults.is_empty() {
            // Unreachable by construction (a missing required field is a fault), but an
            // error must never be empty.
            self.fault("", "is incomplete");
        }
        ManifestError {
            path: self.path.to_path_buf(),
            faults: self.faults,
        }
    }

    /// A required string field; `None` after recording a fault.
    fn required_str<'v>(
        &mut self,
        v: Option<&'v Value>,
        field: &str,
        hint: &str,
    ) -> Option<&'v str> {
        match v {
            None | Some(Value::Null) => {
                self.fault(format!("/{field}"), format!("is missing; {hint}"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.fault(
                    format!("/{field}"),
                    format!("must be a string, found {}; {hint}", json_kind(other)),
                );
                None
            }
        }
    }

    fn name(&mut self, v: Option<&Value>, dir: &Path, abs_dir: &Path) -> Option<ModuleName> {
        let s = self.required_str(v, "name", "add the module's name, e.g. \"name\": \"calc\"")?;
        let name = match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => {
                self.fault(
                    "/name",
                    format!("{s:?} is not a valid module name: {}", reason_of(&e)),
                );
                return None;
            }
        };
        if name.is_reserved() {
            self.fault(
                "/name",
                format!("{s:?} is reserved for a built-in module of the core; choose another name"),
            );
            return None;
        }
        let dir_name = dir
            .file_name()
            .or_else(|| abs_dir.file_name())
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir_name != s {
            self.fault(
                "/name",
                format!(
                    "{s:?} differs from the module's directory name {dir_name:?}; rename the directory or change \"name\" so they are equal"
                ),
            );
            return None;
        }
        Some(name)
    }

    fn version(&mut self, v: Option<&Value>) -> Option<Version> {
        let s = self.required_str(
            v,
            "version",
            "add a semver version, e.g. \"version\": \"1.2.0\"",
        )?;
        match Version::parse(s) {
            Ok(v) => Some(v),
            Err(_) => {
                self.fault(
                    "/version",
                    format!("{s:?} is not a semver version (expected e.g. \"1.2.0\")"),
                );
                None
            }
        }
    }

    fn optional_string(&mut self, obj: &Map<String, Value>, field: &str) -> Option<String> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.fault(
                    format!("/{field}"),
                    format!("must be a string, found {}", json_kind(other)),
                );
                None
            }
        }
    }

    /// `type`: one of [`MODULE_TYPES`], or absent.
    fn module_type(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let t = self.optional_string(obj, "type")?;
        if MODULE_TYPES.contains(&t.as_str()) {
            return Some(t);
        }
        let accepted = "accepted: \"core\", also the default when \"type\" is left out";
        let message = match t.as_str() {
            "ui" | "ui_qml" => format!(
                "{t:?} is a UI module type: such modules are views loaded by a UI shell, and this core runs back-end modules only ({accepted})"
            ),
            _ => format!("{t:?} is not a module type ({accepted})"),
        };
        self.fault("/type", message);
        None
    }

    /// `main` left out: `lib<name>.so` in the module directory if it is there (checked like a
    /// given `main`), else a fault naming both the missing field and the file looked for.
    fn default_main(&mut self, name: Option<&ModuleName>, abs_dir: &Path) -> Option<PathBuf> {
        let Some(name) = name else {
            // The name is at fault already; without it there is no default to look for.
            return self.main(None, abs_dir);
        };
        let file = format!("lib{name}.so");
        if std::fs::symlink_metadata(abs_dir.join(&file)).is_ok() {
            return self.main(Some(&Value::String(file)), abs_dir);
        }
        self.fault(
            "/main",
            format!(
                "is missing, and the default {file:?} is not in {}; build the module's library there, or set \"main\" to its library or executable relative to the module directory",
                abs_dir.display()
            ),
        );
        None
    }

    fn string_list(&mut self, obj: &Map<String, Value>, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.fault(
                            format!("/{field}/{i}"),
                            format!("must be a string, found {}", json_kind(other)),
                        ),
                    }
                }
            }
            Some(other) => self.fault(
                format!("/{field}"),
                format!("must be a list of strings, found {}", json_kind(other)),
            ),
        }
        out
    }

    /// A module name inside a list or map; `None` after recording a fault.
    fn listed_name(&mut self, pointer: &str, s: &str) -> Option<ModuleName> {
        match ModuleName::new(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.fault(
                    pointer,
                    format!("{s:?} is not a valid module name: {}", reason_of(&e)),
                );
                None
            }
        }
    }

    fn dependencies(
        &mut self,
        v: Option<&Value>,
        own_name: Option<&str>,
    ) -> BTreeMap<ModuleName, VersionReq> {
        let mut deps = BTreeMap::new();
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let pointer = format!("/dependencies/{i}");
                    let Value::String(s) = item else {
                        self.fault(
                            pointer,
                            format!("must be a module name, found {}", json_kind(item)),
                        );
                        continue;
                    };
                    let Some(name) = self.listed_name(&pointer, s) else {
                        continue;
                    };
                    if Some(s.as_str()) == own_name {
                        self.fault(pointer, "a module cannot depend on itself; remove it");
                    } else if deps.contains_key(s.as_str()) {
                        self.fault(pointer, format!("{s:?} is listed twice; remove one"));
                    } else {
                        deps.insert(name, VersionReq::STAR);
                    }
                }
            }
            Some(Value::Object(map)) => {
                for (key, range) in map {
                    let pointer = format!("/dependencies/{}", pointer_key(key));
                    let name = self.listed_name(&pointer, key);
                    let req = match range {
                        Value::String(r) => match VersionReq::parse(r) {
                            Ok(req) => Some(req),
                            Err(_) => {
                                self.fault(
                                    pointer.as_str(),
                                    format!(
                                        "{r:?} is not a semver range (expected e.g. \"^1.2\", \"~1.4.0\", \">=1.0, <2.0\" or \"*\")"
                                    ),
                                );
                                None
                            }
                        },
                        other => {
                            self.fault(
                                pointer.as_str(),
                                format!(
                                    "must be a version range like \"^1.2\" (or \"*\" for any), found {}",
                                    json_kind(other)
                                ),
                            );
                            None
                        }
                    };
                    if Some(key.as_str()) == own_name {
                        self.fault(pointer, "a module cannot depend on itself; remove it");
                        continue;
                    }
                    if let (Some(name), Some(req)) = (name, req) {
                        deps.insert(name, req);
                    }
                }
            }
            Some(other) => self.fault(
                "/dependencies",
                format!(
                    "must be a list of module names like [\"calc\"] or a map of names to version ranges like {{\"calc\": \"^1.2\"}}, found {}",
                    json_kind(other)
                ),
            ),
        }
        deps
    }

    /// `permissions`: entries `"calc"` or `"calc.*"` (every method of calc) and `"calc.add"`
    /// (that method). Returns what each named module grants.
    fn permissions(&mut self, v: Option<&Value>) -> BTreeMap<ModuleName, Methods> {
        let mut out: BTreeMap<ModuleName, Methods> = BTreeMap::new();
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let pointer = format!("/permissions/{i}");
                    let Value::String(s) = item else {
                        self.fault(
                            pointer,
                            format!(
                                "must be a module name or MODULE.METHOD, found {}",
                                json_kind(item)
                            ),
                        );
                        continue;
                    };
                    let (module, method) = match s.split_once('.') {
                        Some((m, method)) => (m, Some(method)),
                        None => (s.as_str(), None),
                    };
                    let Some(n) = self.listed_name(&pointer, module) else {
                        continue;
                    };
                    let methods = match method {
                        None | Some("*") => Methods::All,
                        Some(m) => match check_method_name(m) {
                            Ok(()) => Methods::only([m.to_owned()]),
                            Err(why) => {
                                self.fault(pointer, format!("{s:?}: {why}"));
                                continue;
                            }
                        },
                    };
                    out.entry(n)
                        .and_modify(|e| e.add(&methods))
                        .or_insert(methods);
                }
            }
            Some(other) => self.fault(
                "/permissions",
                format!(
                    "must be a list of what this module may call, modules or MODULE.METHOD, like [\"chat\", \"calc.add\"], found {}",
                    json_kind(other)
                ),
            ),
        }
        out
    }

    /// An optional boolean field, `false` when absent.
    fn flag(&mut self, v: Option<&Value>, field: &str) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.fault(
                    format!("/{field}"),
                    format!("must be true or false, found {}", json_kind(other)),
                );
                false
            }
        }
    }

    /// `filesystem`: `{"read": [path…], "write": [path…]}`, both optional.
    fn filesystem(&mut self, v: Option<&Value>, abs_dir: &Path) -> FsPaths {
        let mut out = FsPaths::default();
        let map = match v {
            None | Some(Value::Null) => return out,
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.fault(
                    "/filesystem",
                    format!(
                        "must be an object like {{\"read\": [\"/usr/share/foo\"], \"write\": [\"/var/cache/foo\"]}}, found {}",
                        json_kind(other)
                    ),
                );
                return out;
            }
        };
        for (key, value) in map {
            let list = match key.as_str() {
                "read" => &mut out.read,
                "write" => &mut out.write,
                _ => {
                    self.fault(
                        format!("/filesystem/{}", pointer_key(key)),
                        format!("{key:?} is not a kind of access (expected \"read\" or \"write\")"),
                    );
                    continue;
                }
            };
            let Value::Array(items) = value else {
                self.fault(
                    format!("/filesystem/{key}"),
                    format!("must be a list of paths, found {}", json_kind(value)),
                );
                continue;
            };
            if items.len() > MAX_DECLARED_PATHS {
                self.fault(
                    format!("/filesystem/{key}"),
                    format!(
                        "lists {} paths, more than {MAX_DECLARED_PATHS}; declare the directories that hold them instead",
                        items.len()
                    ),
                );
                continue;
            }
            let mut paths = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let pointer = format!("/filesystem/{key}/{i}");
                let Value::String(s) = item else {
                    self.fault(
                        pointer,
                        format!("must be a path, found {}", json_kind(item)),
                    );
                    continue;
                };
                match declared_path(s, abs_dir) {
                    Ok(p) => paths.push(p),
                    Err(problem) => self.fault(pointer, problem),
                }
            }
            *list = paths;
        }
        out
    }

    fn restart(&mut self, v: Option<&Value>) -> RestartPolicy {
        const EXPECTED: &str = "expected \"always\", \"on-failure\" or \"never\"";
        match v {
            None | Some(Value::Null) => RestartPolicy::default(),
            Some(Value::String(s)) => RestartPolicy::parse(s).unwrap_or_else(|| {
                self.fault(
                    "/restart",
                    format!("{s:?} is not a restart policy ({EXPECTED})"),
                );
                RestartPolicy::default()
            }),
            Some(other) => {
                self.fault(
                    "/restart",
                    format!("must be a string, found {} ({EXPECTED})", json_kind(other)),
                );
                RestartPolicy::default()
            }
        }
    }

    fn main(&mut self, v: Option<&Value>, abs_dir: &Path) -> Option<PathBuf> {
        let s = self.required_str(
            v,
            "main",
            "add the module's library or executable, relative to its directory, e.g. \"main\": \"libcalc.so\"",
        )?;
        if s.is_empty() {
            self.fault(
                "/main",
                "is empty; name the module's library or executable, e.g. \"libcalc.so\"",
            );
            return None;
        }
        let rel = Path::new(s);
        if rel.has_root() || rel.is_absolute() {
            self.fault(
                "/main",
                format!("{s:?} is an absolute path; give it relative to the module directory"),
            );
            return None;
        }
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            self.fault(
                "/main",
                format!("{s:?} leaves the module directory (\"..\"); put the file inside the module directory"),
            );
            return None;
        }
        let mut full = abs_dir.to_path_buf();
        for c in rel.components() {
            if let Component::Normal(part) = c {
                full.push(part);
            }
        }
        use std::os::unix::fs::MetadataExt as _;
        if let Err(problem) = trusted_links(abs_dir, rel) {
            self.fault("/main", problem);
            return None;
        }
        match std::fs::metadata(&full) {
            Ok(m) if m.is_file() && !trusted_owner(m.uid()) => {
                self.fault(
                    "/main",
                    format!(
                        "{} is owned by uid {}, not by this user (uid {}) or root; modules run only code the operator owns",
                        full.display(),
                        m.uid(),
                        crate::sys::uid()
                    ),
                );
                None
            }
            Ok(m) if m.is_file() => Some(full),
            Ok(_) => {
                self.fault("/main", format!("{} is not a file", full.display()));
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.fault(
                    "/main",
                    format!(
                        "{s:?} does not exist in {}; build the module or fix \"main\"",
                        abs_dir.display()
                    ),
                );
                None
            }
            Err(e) => {
                self.fault(
                    "/main",
                    format!("{} cannot be checked: {e}", full.display()),
                );
                None
            }
        }
    }
}

/// The rule an invalid name breaks, for embedding in a field fault.
fn reason_of(e: &Error) -> String {
    match e {
        Error::InvalidName { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// Where in a metadata file a fault is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// The file as a whole (unreadable, not an object, a duplicate module…).
    File,
    /// A field, as a JSON pointer (RFC 6901), e.g. `/dependencies/calc`.
    Field(String),
    /// A JSON syntax error, 1-based.
    Syntax {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
}

/// One problem with one module's metadata (or with a modules dir, during discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFault {
    path: PathBuf,
    location: Location,
    message: String,
}

impl ManifestFault {
    /// A fault about a whole file or directory.
    pub fn new(path: impl Into<PathBuf>, location: Location, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            location,
            message: message.into(),
        }
    }

    /// The metadata file (or modules dir) the fault is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where in the file.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The JSON pointer of the field, if the fault is about one.
    pub fn pointer(&self) -> Option<&str> {
        match &self.location {
            Location::Field(p) => Some(p),
            _ => None,
        }
    }

    /// What is wrong and how to fix it, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The fault without the file path: `field "version": …`.
    fn describe(&self, f: &mut fmt::Formatter<'_>, with_path: bool) -> fmt::Result {
        match &self.location {
            Location::File if with_path => write!(f, "{}: {}", self.path.display(), self.message),
            Location::File => f.write_str(&self.message),
            Location::Field(p) => {
                let field = p.strip_prefix('/').unwrap_or(p);
                if with_path {
                    write!(f, "{}: ", self.path.display())?;
                }
                write!(f, "field {field:?}: {}", self.message)
            }
            Location::Syntax { line, column } => {
                if with_path {
                    write!(f, "{}:", self.path.display())?;
                } else {
                    f.write_str("line ")?;
                }
                write!(f, "{line}:{column}: {}", self.message)
            }
        }
    }
}

impl fmt::Display for ManifestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, true)
    }
}

/// Every fault found in one module's metadata. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    path: PathBuf,
    faults: Vec<ManifestFault>,
}

impl ManifestError {
    fn one(path: PathBuf, location: Location, message: String) -> Self {
        Self {
            faults: vec![ManifestFault {
                path: path.clone(),
                location,
                message,
            }],
            path,
        }
    }

    /// Faults found outside this file's parsing (e.g. at load, a permission naming no known
    /// module), as one error; `None` when there are none.
    pub(crate) fn from_faults(path: PathBuf, faults: Vec<ManifestFault>) -> Option<Self> {
        (!faults.is_empty()).then_some(Self { path, faults })
    }

    /// The metadata file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The faults, in field order.
    pub fn faults(&self) -> &[ManifestFault] {
        &self.faults
    }

    /// The faults, owned.
    pub fn into_faults(self) -> Vec<ManifestFault> {
        self.faults
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.faults.as_slice() {
            [one] => one.describe(f, true),
            many => {
                write!(f, "{}: {} problems", self.path.display(), many.len())?;
                for fault in many {
                    f.write_str("\n  - ")?;
                    fault.describe(f, false)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ManifestError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// `<tmp>/<name>/` with an empty `libname.so`.
    fn module_dir(tmp: &Path, name: &str) -> std::io::Result<PathBuf> {
        let dir = tmp.join(name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("lib{name}.so")), b"")?;
        Ok(dir)
    }

    fn parse(dir: &Path, json: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json(dir, json)
    }

    fn faults_of(r: Result<Manifest, ManifestError>) -> Vec<ManifestFault> {
        match r {
            Ok(m) => panic!("expected faults, parsed {m:?}"),
            Err(e) => e.into_faults(),
        }
    }

    fn pointers(faults: &[ManifestFault]) -> Vec<&str> {
        faults.iter().filter_map(ManifestFault::pointer).collect()
    }

    #[test]
    fn parses_a_full_manifest() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let m = parse(
            &dir,
            r#"{
                "name": "greeter", "version": "1.2.3", "description": "hi", "author": "me",
                "type": "core", "dependencies": {"calc": "^1.2", "chat": "*"},
                "capabilities": ["x"], "include": ["a.txt"], "main": "./libgreeter.so",
                "restart": "always", "permissions": ["kv"], "extra": {"kept": true}
            }"#,
        )?;
        assert_eq!(m.name, "greeter");
        assert_eq!(m.version, Version::new(1, 2, 3));
        assert_eq!(m.description.as_deref(), Some("hi"));
        assert_eq!(m.module_type.as_deref(), Some("core"));
        assert_eq!(m.dependencies.len(), 2);
        assert_eq!(
            m.dependencies.get("calc"),
            Some(&VersionReq::parse("^1.2")?)
        );
        assert_eq!(m.restart, RestartPolicy::Always);
        assert!(m.permissions.contains("kv"));
        assert!(m.main.is_absolute());
        assert!(m.main.ends_with("greeter/libgreeter.so"));
        assert_eq!(m.kind(), ModuleKind::Library);
        assert_eq!(m.raw["extra"]["kept"], Value::Bool(true));
        Ok(())
    }

    #[test]
    fn dependencies_as_rfc_list_mean_any_version() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let m = parse(
            &dir,
            r#"{"name":"greeter","version":"1.0.0","main":"libgreeter.so","dependencies":["calc","chat"]}"#,
        )?;
        assert_eq!(m.dependencies.get("calc"), Some(&VersionReq::STAR));
        assert!(m.depends_on("chat"));
        assert_eq!(m.restart, RestartPolicy::OnFailure);
        Ok(())
    }

    /// The RFC's own example metadata.json, verbatim: no `main`, dependencies as a list, an
    /// `include` list. `main` defaults to `lib<name>.so`.
    #[test]
    fn rfc_verbatim_metadata_defaults_main_to_the_library_name() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "module_name")?;
        let rfc = r#"{
  "name": "module_name",
  "version": "1.0.0",
  "description": "Module description",
  "author": "Author name",
  "type": "core",
  "dependencies": ["required_module_name"],
  "capabilities": ["capability_provided"],
  "include": ["external_lib.so", "resources/"]
}"#;
        let m = parse(&dir, rfc)?;
        assert!(m.main.ends_with("module_name/libmodule_name.so"), "{m:?}");
        assert_eq!(m.kind(), ModuleKind::Library);
        assert!(m.depends_on("required_module_name"));
        assert_eq!(m.include, ["external_lib.so", "resources/"]);
        assert_eq!(m.capabilities, ["capability_provided"]);

        // Without the library, both the missing field and the file looked for are named.
        fs::remove_file(dir.join("libmodule_name.so"))?;
        let faults = faults_of(parse(&dir, rfc));
        assert_eq!(pointers(&faults), vec!["/main"]);
        let msg = faults[0].to_string();
        assert!(msg.contains("field \"main\": is missing"), "{msg}");
        assert!(msg.contains("\"libmodule_name.so\" is not in"), "{msg}");
        Ok(())
    }

    #[test]
    fn type_must_be_one_this_core_runs() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "m")?;
        let with_type =
            |t: &str| format!(r#"{{"name":"m","version":"1.0.0","main":"libm.so","type":{t:?}}}"#);
        assert_eq!(
            parse(&dir, &with_type("core"))?.module_type.as_deref(),
            Some("core")
        );
        for (t, want) in [
            ("croe", "\"croe\" is not a module type (accepted: \"core\""),
            ("ui_qml", "\"ui_qml\" is a UI module type"),
            ("ui", "accepted: \"core\""),
            ("", "is not a module type"),
        ] {
            let faults = faults_of(parse(&dir, &with_type(t)));
            assert_eq!(pointers(&faults), vec!["/type"], "{t}");
            assert!(faults[0].message().contains(want), "{t}: {}", faults[0]);
        }
        Ok(())
    }

    #[test]
    fn reports_every_fault_at_once() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let faults = faults_of(parse(
            &dir,
            r#"{"name":"greeter","version":"1.x","main":"/bin/sh",
                "dependencies":{"calc":"^^1","../x":"1"},"restart":"sometimes",
                "permissions":["ok", 3],"capabilities":"no"}"#,
        ));
        let ptrs = pointers(&faults);
        for want in [
            "/version",
            "/main",
            "/dependencies/calc",
            "/dependencies/..~1x",
            "/restart",
            "/permissions/1",
            "/capabilities",
        ] {
            assert!(ptrs.contains(&want), "missing {want} in {ptrs:?}");
        }
        let version = faults
            .iter()
            .find(|f| f.pointer() == Some("/version"))
            .map(ToString::to_string)
            .unwrap_or_default();
        assert_eq!(
            version,
            format!(
                "{}: field \"version\": \"1.x\" is not a semver version (expected e.g. \"1.2.0\")",
                dir.join(METADATA_FILE).display()
            )
        );
        Ok(())
    }

    #[test]
    fn missing_required_fields() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let faults = faults_of(parse(&dir, "{}"));
        assert_eq!(pointers(&faults), vec!["/name", "/version", "/main"]);
        assert!(faults.iter().all(|f| f.message().starts_with("is missing")));
        Ok(())
    }

    #[test]
    fn syntax_errors_have_line_and_column() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let err = match parse(
            &dir,
            "{\n  \"name\": \"greeter\",\n  \"version\" \"1.0.0\"\n}",
        ) {
            Ok(_) => panic!("parsed bad json"),
            Err(e) => e,
        };
        assert_eq!(
            err.faults()[0].location(),
            &Location::Syntax {
                line: 3,
                column: 13
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("metadata.json:3:13: invalid JSON: expected `:`"),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn root_must_be_an_object() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let faults = faults_of(parse(&dir, "[1]"));
        assert_eq!(faults[0].location(), &Location::File);
        assert!(faults[0].message().contains("found a list"));
        Ok(())
    }

    #[test]
    fn name_must_match_directory_and_not_be_reserved() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "greeter")?;
        let faults = faults_of(parse(
            &dir,
            r#"{"name":"calc","version":"1.0.0","main":"libgreeter.so"}"#,
        ));
        assert!(
            faults[0]
                .message()
                .contains("differs from the module's directory name \"greeter\"")
        );

        let core = module_dir(tmp.path(), "core")?;
        let faults = faults_of(parse(
            &core,
            r#"{"name":"core","version":"1.0.0","main":"libcore.so"}"#,
        ));
        assert!(faults[0].message().contains("reserved"));
        Ok(())
    }

    #[test]
    fn main_must_stay_inside_and_exist() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "m")?;
        fs::create_dir(dir.join("sub"))?;
        fs::write(tmp.path().join("outside.so"), b"")?;
        for (main, want) in [
            ("../outside.so", "leaves the module directory"),
            ("sub/../../outside.so", "leaves the module directory"),
            ("/etc/passwd", "absolute path"),
            ("", "is empty"),
            ("nope.so", "does not exist"),
            ("sub", "is not a file"),
        ] {
            let json = format!(r#"{{"name":"m","version":"1.0.0","main":{main:?}}}"#);
            let faults = faults_of(parse(&dir, &json));
            assert_eq!(faults.len(), 1, "{main}: {faults:?}");
            assert!(faults[0].message().contains(want), "{main}: {}", faults[0]);
        }
        Ok(())
    }

    #[test]
    fn dependency_faults() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "m")?;
        let faults = faults_of(parse(
            &dir,
            r#"{"name":"m","version":"1.0.0","main":"libm.so","dependencies":["a","a","m",7]}"#,
        ));
        assert_eq!(
            pointers(&faults),
            vec!["/dependencies/1", "/dependencies/2", "/dependencies/3"]
        );
        let faults = faults_of(parse(
            &dir,
            r#"{"name":"m","version":"1.0.0","main":"libm.so","dependencies":{"a":1}}"#,
        ));
        assert!(faults[0].message().contains("found a number"));
        let faults = faults_of(parse(
            &dir,
            r#"{"name":"m","version":"1.0.0","main":"libm.so","dependencies":"a"}"#,
        ));
        assert_eq!(pointers(&faults), vec!["/dependencies"]);
        Ok(())
    }

    #[test]
    fn load_reads_the_file_and_reports_missing_one() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "calc")?;
        let err = match Manifest::load(&dir) {
            Ok(_) => panic!("loaded without metadata"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("cannot be read"), "{err}");
        fs::write(
            dir.join(METADATA_FILE),
            r#"{"name":"calc","version":"0.1.0","main":"libcalc.so"}"#,
        )?;
        let m = Manifest::load(&dir)?;
        assert_eq!(m.name, "calc");
        Ok(())
    }

    #[test]
    fn oversized_and_non_utf8_files_are_refused() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "calc")?;
        fs::write(dir.join(METADATA_FILE), vec![b' '; 2 * 1024 * 1024])?;
        let msg = Manifest::load(&dir)
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("larger than")));
        fs::write(dir.join(METADATA_FILE), b"{\"name\": \"\xff\"}")?;
        let msg = Manifest::load(&dir)
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("not UTF-8")));
        Ok(())
    }

    #[test]
    fn multi_fault_display_lists_each() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let dir = module_dir(tmp.path(), "calc")?;
        // Without the default library, a left-out `main` is a fault too.
        fs::remove_file(dir.join("libcalc.so"))?;
        let err = match parse(&dir, r#"{"name":"calc"}"#) {
            Ok(_) => panic!("parsed"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains(": 2 problems\n  - field \"version\": is missing"),
            "{msg}"
        );
        assert!(msg.contains("\n  - field \"main\": is missing"), "{msg}");
        Ok(())
    }

    #[test]
    fn kind_detects_shared_libraries() {
        for (file, lib) in [
            ("libx.so", true),
            ("libx.so.1", true),
            ("libx.so.1.2", true),
            ("x.so.py", false),
            ("x", false),
            ("so", false),
            ("x.sox", false),
        ] {
            assert_eq!(is_shared_library(Path::new(file)), lib, "{file}");
        }
    }
}
