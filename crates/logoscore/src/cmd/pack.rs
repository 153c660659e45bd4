//! `logoscore pack DIR`: builds a signed `.lgx` from a module dir (its `metadata.json`
//! beside its files). Deterministic: the same dir and key give the same bytes. Never installs
//! or publishes.

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::{Ctx, output};
use logos_pkg::archive;
use logos_pkg::manifest::Signer;
use logos_pkg::quality::Report;
use logos_pkg::sign::MANIFEST_DOMAIN;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What `pack` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct PackArgs {
    /// The module dir.
    pub dir: PathBuf,
    /// Output file. [default: <name>-<version>.lgx in the current dir]
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Signing key. [default: your only key]
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Build without a signature (installs refuse it under the default policy).
    #[arg(long, conflicts_with = "key")]
    pub unsigned: bool,
    /// Target triple(s) of native code. [default: this machine's when the dir holds ELF
    /// files, else "any"]
    #[arg(long = "target", value_name = "TRIPLE")]
    pub targets: Vec<String>,
}

/// Builds the package bytes; `report` is embedded in the manifest (signed with it).
pub(crate) fn build(
    pkg: &Pkg,
    dir: &Path,
    key: Option<&str>,
    unsigned: bool,
    targets: &[String],
    report: Option<Report>,
) -> Result<(Vec<u8>, logos_pkg::Manifest), Error> {
    let pair = if unsigned {
        None
    } else {
        Some(pkg.signing_key(key)?)
    };
    let signer = pair.as_ref().map(|k| Signer {
        name: k.name.clone(),
        key: k.public().key,
    });
    let mut c = archive::collect(dir, targets, signer)?;
    c.manifest.quality = report;
    let sig = pair
        .as_ref()
        .map(|k| k.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes()));
    let bytes = archive::write(&c.manifest, sig.as_deref(), &c.sources)?;
    Ok((bytes, c.manifest))
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, args: PackArgs) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let (bytes, m) = build(
        &p,
        &args.dir,
        args.key.as_deref(),
        args.unsigned,
        &args.targets,
        None,
    )?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.lgx", m.name, m.version)));
    logos_pkg::store::write_atomic(&out, &bytes)?;
    if ctx.json {
        output::json(
            &json!({"status": "ok", "file": out, "name": m.name, "version": m.version.to_string(), "root": m.root,
                    "size": bytes.len(), "files": m.files.len(), "targets": m.targets,
                    "signer": m.signer.as_ref().map(|s| &s.name)}),
            false,
        )?;
    } else {
        output::line(&format!(
            "packed {} {} into {} ({} files, {} bytes, root {}, {})",
            m.name,
            m.version,
            out.display(),
            m.files.len(),
            bytes.len(),
            &m.root[..16],
            m.signer.as_ref().map_or_else(
                || "UNSIGNED".to_owned(),
                |s| format!("signed by {}", s.name)
            )
        ))?;
    }
    Ok(())
}
