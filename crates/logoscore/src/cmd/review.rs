//! `logoscore review NAME VERSION --stars N --text T`: a review signed with the reviewer's
//! key, posted to every configured registry that has that version. Never changes anything
//! locally.

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::{Ctx, output};
use logos_pkg::index::Review;
use logos_pkg::sign::REVIEW_DOMAIN;

/// What `review` needs.
#[derive(Debug, clap::Args)]
pub(crate) struct ReviewArgs {
    /// Module.
    pub name: String,
    /// Version reviewed.
    pub version: semver::Version,
    /// 1 to 5.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stars: u8,
    /// The review's text.
    #[arg(long, default_value = "")]
    pub text: String,
    /// Reviewer key. [default: your only key]
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
}

pub(crate) fn run(ctx: &Ctx, pkg: &PkgArgs, a: ReviewArgs) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let clients = p.clients()?;
    let key = p.signing_key(a.key.as_deref())?;
    let mut r = Review {
        module: a.name.clone(),
        version: a.version.clone(),
        stars: a.stars,
        text: a.text,
        reviewer: key.public(),
        time: logos_pkg::server::rfc3339(std::time::SystemTime::now()),
        signature: String::new(),
    };
    r.signature = hex::encode(key.sign(REVIEW_DOMAIN, &r.signed_bytes()));
    r.check().map_err(Error::Usage)?;
    crate::cmd::block_on(async move {
        let mut posted = Vec::new();
        for c in &clients {
            let has = c
                .index(&a.name)
                .await?
                .is_some_and(|i| i.versions.iter().any(|v| v.version == a.version));
            if has {
                c.review(&r).await?;
                posted.push(c.url().to_owned());
            }
        }
        if posted.is_empty() {
            return Err(Error::Package(logos_pkg::Error::NotFound(format!(
                "no configured registry has {} {}",
                a.name, a.version
            ))));
        }
        if ctx.json {
            output::json(
                &serde_json::json!({"status": "ok", "review": r, "registries": posted}),
                false,
            )?;
        } else {
            output::line(&format!(
                "reviewed {} {} ({}/5, signed by {}) at {}",
                a.name,
                a.version,
                a.stars,
                key.name,
                posted.join(", ")
            ))?;
        }
        Ok(())
    })
}
