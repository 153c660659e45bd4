//! `logoscore publish FILE --registry URL`: checks the package (`logoscore check`), embeds
//! the report in its manifest, signs it again with the publisher's key (which must be the
//! key that signed it) and uploads it, authenticated with that key. The registry refuses an
//! unsigned package and any version it has already. Never installs.

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::{Ctx, output};
use logos_pkg::archive::{self, Limits};
use std::path::PathBuf;

/// What `publish` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// The `.lgx` to publish.
    pub file: PathBuf,
    /// Publisher key (must have signed FILE). [default: the signer's key, if it is yours]
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Publish without running the quality check (a report already embedded is kept).
    #[arg(long)]
    pub no_check: bool,
    /// Modules dirs holding dependencies the check needs (beyond the installed ones).
    #[arg(short = 'm', long = "modules-dir", value_name = "DIR")]
    pub modules_dirs: Vec<PathBuf>,
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, args: PublishArgs) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let clients = p.clients()?;
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Error::io(format!("cannot read {}", args.file.display()), e))?;
    let tmp = tempdir()?;
    let src = tmp.path().join("module");
    std::fs::create_dir_all(&src).map_err(|e| Error::io("cannot create a temporary dir", e))?;
    let mut check =
        |m: &logos_pkg::Manifest, b: &[u8], s: Option<&[u8]>| -> logos_pkg::Result<()> {
            // Only altered packages are refused here; the registry insists on a signature.
            p.keyring
                .check_package(m, b, s, logos_pkg::Policy::Warn)
                .map(|_| ())
        };
    let un = archive::read(
        &bytes[..],
        &args.file.display().to_string(),
        &Limits::default(),
        &mut check,
        Some(&src),
    )?;
    let signer = un.manifest.signer.clone().ok_or_else(|| {
        Error::Usage(format!(
            "{} is not signed; registries accept signed packages only: `logoscore pack --key NAME`",
            args.file.display()
        ))
    })?;
    let key_name = args.key.clone().unwrap_or_else(|| signer.name.clone());
    let key = p.keyring.load(&key_name)?;
    if key.public().key != signer.key {
        return Err(Error::Usage(format!(
            "{} is signed by {:?} with another key than your key {key_name:?}; publish with the key that signed it",
            args.file.display(),
            signer.name
        )));
    }
    let report = if args.no_check {
        un.manifest.quality.clone()
    } else {
        let r = crate::cmd::check::check_dir(
            &p,
            &src,
            &un.manifest.name,
            &args.modules_dirs,
            !ctx.json,
        )?;
        if !ctx.json {
            eprint!("{}", r.render());
        }
        Some(r)
    };
    let (package, m) = crate::cmd::pack::build(
        &p,
        &src,
        Some(&key_name),
        false,
        &un.manifest.targets,
        report,
    )?;
    if m.root != un.manifest.root {
        return Err(Error::Usage(
            "the package's files changed while re-signing it; try again".into(),
        ));
    }
    drop(tmp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let mut published = Vec::new();
    for c in &clients {
        let r = rt.block_on(c.publish(package.clone(), &key))?;
        if !ctx.json {
            output::line(&format!(
                "published {} {} to {} ({}/{}; quality {})",
                r.name,
                r.version,
                c.url(),
                c.url(),
                r.url,
                m.quality
                    .as_ref()
                    .map_or_else(|| "not checked".to_owned(), |q| q.summary())
            ))?;
        }
        published.push(serde_json::json!({"registry": c.url(), "name": r.name, "version": r.version.to_string(), "root": r.root, "url": r.url}));
    }
    if ctx.json {
        output::json(
            &serde_json::json!({"status": "ok", "published": published, "quality": m.quality}),
            false,
        )?;
    }
    Ok(())
}

/// A fresh private (0700) temporary dir, removed when dropped: on every return, errors
/// included, so a refused package leaves nothing behind in the temp dir.
pub(crate) fn tempdir() -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("logoscore-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a temporary dir", e))
}
