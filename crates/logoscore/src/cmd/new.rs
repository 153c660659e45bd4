//! `logoscore new NAME [--lang rust|python] [--dir D]`: writes a module project from the
//! templates in `crates/logoscore/templates/` (embedded at build time): a Rust crate with a
//! `#[module]` hello (one method, one event, a test on the SDK's standalone context), or a
//! Python module on the Python SDK (`sdk/python`, of which the project gets a copy, since a
//! confined module imports only from its own dir).
//!
//! The name is checked with the metadata rules (`logos_core::ModuleName`, reserved names
//! refused); a Rust project also needs a name cargo accepts. The Rust project depends on
//! `logos-sdk` by path when a logos-core checkout is found above the target dir or above this
//! executable (and pins the checkout's `Cargo.lock`), else by version. Writes only inside the
//! new project dir, which must not exist or be empty; never builds or runs anything.

use crate::error::Error;
use crate::output;
use logos_core::ModuleName;
use std::path::{Path, PathBuf};

/// The project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// A Rust crate built as a library for `logos_host`.
    Rust,
    /// A Python script on the Python SDK.
    Python,
}

/// What `new` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The module's name (the metadata's rules: letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// The project dir to create. [default: ./NAME]
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
}

/// One file of a template: its path in the project and its text with `{{…}}` placeholders.
type Template = (&'static str, &'static str);

const RUST: [Template; 6] = [
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml.in"),
    ),
    (
        "metadata.json",
        include_str!("../../templates/rust/metadata.json"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    ("README.md", include_str!("../../templates/rust/README.md")),
    (".gitignore", include_str!("../../templates/rust/gitignore")),
    (
        ".cargo/config.toml",
        include_str!("../../templates/rust/cargo-config.toml"),
    ),
];

const PYTHON: [Template; 5] = [
    (
        "metadata.json",
        include_str!("../../templates/python/metadata.json"),
    ),
    (
        "module.py",
        include_str!("../../templates/python/module.py"),
    ),
    (
        "test_module.py",
        include_str!("../../templates/python/test_module.py"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/gitignore"),
    ),
];

/// The Python SDK's package, copied verbatim into a Python project.
const PYTHON_SDK: [Template; 10] = [
    (
        "__init__.py",
        include_str!("../../../../sdk/python/logos_module/__init__.py"),
    ),
    (
        "codec.py",
        include_str!("../../../../sdk/python/logos_module/codec.py"),
    ),
    (
        "connection.py",
        include_str!("../../../../sdk/python/logos_module/connection.py"),
    ),
    (
        "context.py",
        include_str!("../../../../sdk/python/logos_module/context.py"),
    ),
    (
        "fault.py",
        include_str!("../../../../sdk/python/logos_module/fault.py"),
    ),
    (
        "module.py",
        include_str!("../../../../sdk/python/logos_module/module.py"),
    ),
    (
        "runtime.py",
        include_str!("../../../../sdk/python/logos_module/runtime.py"),
    ),
    (
        "stream.py",
        include_str!("../../../../sdk/python/logos_module/stream.py"),
    ),
    (
        "trace.py",
        include_str!("../../../../sdk/python/logos_module/trace.py"),
    ),
    (
        "types.py",
        include_str!("../../../../sdk/python/logos_module/types.py"),
    ),
];

pub(crate) fn run(ctx: &crate::Ctx, args: NewArgs) -> Result<(), Error> {
    let name = check_name(&args.name, args.lang)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    let dir = absolute(&dir)?;
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Usage(format!(
            "{} already exists and is not empty; choose another --dir",
            dir.display()
        )));
    }
    let vars = Vars::new(&name);
    let mut written = Vec::new();
    match args.lang {
        Lang::Rust => {
            let sdk = find_sdk(&dir);
            let dep = match &sdk {
                Some(repo) => format!(
                    "logos-sdk = {{ path = {:?} }}",
                    repo.join("crates/logos-sdk").display().to_string()
                ),
                None => format!("logos-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
            };
            for (path, text) in RUST {
                written.push(write(&dir, path, &vars.fill(text, &dep), false)?);
            }
            if let Some(lock) = sdk.map(|repo| repo.join("Cargo.lock")) {
                // The versions the SDK is built and tested with in that checkout.
                if let Ok(text) = std::fs::read_to_string(&lock) {
                    written.push(write(&dir, "Cargo.lock", &text, false)?);
                }
            }
        }
        Lang::Python => {
            for (path, text) in PYTHON {
                written.push(write(
                    &dir,
                    path,
                    &vars.fill(text, ""),
                    path == "module.py",
                )?);
            }
            for (path, text) in PYTHON_SDK {
                written.push(write(&dir, &format!("logos_module/{path}"), text, false)?);
            }
        }
    }
    if ctx.json {
        output::json(
            &serde_json::json!({
                "status": "ok",
                "name": name,
                "lang": match args.lang { Lang::Rust => "rust", Lang::Python => "python" },
                "dir": dir.display().to_string(),
                "files": written,
            }),
            false,
        )?;
    } else {
        output::line(&format!(
            "created {} module \"{name}\" in {}",
            match args.lang {
                Lang::Rust => "Rust",
                Lang::Python => "Python",
            },
            dir.display()
        ))?;
    }
    Ok(())
}

/// The metadata rules, and for Rust what cargo accepts as a package name.
fn check_name(name: &str, lang: Lang) -> Result<String, Error> {
    let checked = ModuleName::new(name).map_err(|e| Error::Usage(format!("{e}")))?;
    if checked.is_reserved() {
        return Err(Error::Usage(format!(
            "\"{name}\" is reserved for a built-in module; choose another name"
        )));
    }
    if lang == Lang::Rust {
        if name.contains('.') {
            return Err(Error::Usage(format!(
                "\"{name}\": a Rust module's name is its crate's, and cargo refuses \".\"; use \"-\" or \"_\""
            )));
        }
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::Usage(format!(
                "\"{name}\": cargo refuses a crate name that starts with a digit"
            )));
        }
    }
    Ok(name.to_owned())
}

/// The placeholders: `{{name}}`, `{{crate}}` (the library's name: `-` → `_`), `{{Type}}` (the
/// Rust or Python type: `my-mod` → `MyMod`), `{{logos_sdk}}` (the dependency line).
struct Vars {
    name: String,
    krate: String,
    ty: String,
}

impl Vars {
    fn new(name: &str) -> Vars {
        let mut ty: String = name
            .split(['-', '_', '.'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if !ty.starts_with(|c: char| c.is_ascii_alphabetic()) {
            ty.insert(0, 'M');
        }
        Vars {
            name: name.to_owned(),
            krate: name.replace(['-', '.'], "_"),
            ty,
        }
    }

    fn fill(&self, text: &str, sdk: &str) -> String {
        text.replace("{{name}}", &self.name)
            .replace("{{crate}}", &self.krate)
            .replace("{{Type}}", &self.ty)
            .replace("{{logos_sdk}}", sdk)
    }
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::io(format!("cannot resolve {}", p.display()), e))
}

/// A logos-core checkout above `dir` or above this executable (`target/debug/logoscore`).
fn find_sdk(dir: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let starts = [Some(dir.to_path_buf()), exe];
    starts.into_iter().flatten().find_map(|start| {
        start
            .ancestors()
            .find(|a| {
                a.join("crates/logos-sdk/Cargo.toml").is_file() && a.join("Cargo.lock").is_file()
            })
            .map(Path::to_path_buf)
    })
}

fn write(dir: &Path, rel: &str, text: &str, executable: bool) -> Result<String, Error> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::write(&path, text)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    if executable {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("cannot make {} executable", path.display()), e))?;
    }
    Ok(rel.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_metadata_rules() {
        assert!(check_name("hello", Lang::Rust).is_ok());
        assert!(check_name("my-mod", Lang::Rust).is_ok());
        assert!(check_name("my.mod", Lang::Python).is_ok());
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "core",
            "capability_module",
        ] {
            assert!(check_name(bad, Lang::Python).is_err(), "{bad:?}");
        }
        assert!(check_name("my.mod", Lang::Rust).is_err());
        assert!(check_name("9lives", Lang::Rust).is_err());
    }

    #[test]
    fn placeholders() {
        let v = Vars::new("my-mod");
        assert_eq!(
            v.fill("{{name}} {{crate}} {{Type}} {{logos_sdk}}", "dep"),
            "my-mod my_mod MyMod dep"
        );
        assert_eq!(Vars::new("9.x").ty, "M9X");
    }

    #[test]
    fn every_sdk_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/logos_module");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("sdk dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = PYTHON_SDK.iter().map(|(p, _)| *p).collect();
        assert_eq!(on_disk, embedded);
    }
}
