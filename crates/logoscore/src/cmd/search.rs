//! `logoscore search TEXT` and `logoscore show NAME`: what the configured registries offer,
//! read from their static files (so any web host works). `show` verifies every review's
//! signature itself and says whether each signer is in the local trust store. Never
//! installs.

use crate::error::Error;
use crate::packages::{Pkg, PkgArgs};
use crate::{Ctx, output};
use serde_json::{Value as Json, json};

pub(crate) fn search(ctx: &Ctx, pkg: &PkgArgs, text: &str) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let clients = p.clients()?;
    crate::cmd::block_on(async move {
        let needle = text.to_lowercase();
        let mut hits = Vec::new();
        for c in &clients {
            for m in c.catalog().await?.modules {
                if m.name.contains(&needle) || m.description.to_lowercase().contains(&needle) {
                    hits.push((c.url().to_owned(), m));
                }
            }
        }
        if ctx.json {
            let items: Vec<Json> = hits
                .iter()
                .map(|(u, m)| {
                    let mut v = serde_json::to_value(m).unwrap_or_default();
                    v["registry"] = json!(u);
                    v
                })
                .collect();
            output::json(&json!({"status": "ok", "results": items}), false)?;
        } else if hits.is_empty() {
            output::line(&format!("no module matches {text:?}"))?;
        } else {
            let rows: Vec<Vec<String>> = hits
                .iter()
                .map(|(u, m)| {
                    vec![
                        m.name.clone(),
                        m.latest.to_string(),
                        m.quality.map_or("unchecked".into(), |q| q.to_string()),
                        m.downloads.to_string(),
                        m.active_installs.to_string(),
                        m.rating.map_or("-".into(), |r| format!("{r:.1}")),
                        m.signer.clone(),
                        u.clone(),
                        m.description.clone(),
                    ]
                })
                .collect();
            output::line(&output::table(
                &[
                    "NAME",
                    "LATEST",
                    "QUALITY",
                    "DOWNLOADS",
                    "ACTIVE",
                    "RATING",
                    "SIGNER",
                    "REGISTRY",
                    "DESCRIPTION",
                ],
                &rows,
            ))?;
        }
        Ok(())
    })
}

pub(crate) fn show(ctx: &Ctx, pkg: &PkgArgs, name: &str) -> Result<(), Error> {
    let p = Pkg::load(pkg)?;
    let clients = p.clients()?;
    crate::cmd::block_on(async move {
        let mut docs = Vec::new();
        let mut text = String::new();
        for c in &clients {
            let Some(idx) = c.index(name).await? else {
                continue;
            };
            let counts = c.counts(name).await?;
            let reviews = c.reviews(name).await?;
            let active = c
                .catalog()
                .await?
                .modules
                .into_iter()
                .find(|m| m.name == name)
                .map_or(0, |m| m.active_installs);
            let trusted = |signer: &str, key: &str| {
                p.keyring.trusted_key(signer).is_some_and(|k| k.key == key)
            };
            text.push_str(&format!(
                "{name} at {} — {} downloads, {active} active installs\n",
                c.url(),
                counts.total()
            ));
            let rows: Vec<Vec<String>> = idx
                .versions
                .iter()
                .map(|r| {
                    vec![
                        r.version.to_string(),
                        r.root[..12].to_owned(),
                        format!(
                            "{}{}",
                            r.signer.name,
                            if trusted(&r.signer.name, &r.signer.key) {
                                " (trusted)"
                            } else {
                                " (NOT trusted)"
                            }
                        ),
                        r.quality
                            .as_ref()
                            .map_or("unchecked".into(), |q| q.summary()),
                        counts
                            .downloads
                            .get(&r.version.to_string())
                            .copied()
                            .unwrap_or(0)
                            .to_string(),
                        r.published_at.clone(),
                    ]
                })
                .collect();
            text.push_str(&output::table(
                &[
                    "VERSION",
                    "ROOT",
                    "SIGNER",
                    "QUALITY",
                    "DOWNLOADS",
                    "PUBLISHED",
                ],
                &rows,
            ));
            text.push('\n');
            if let Some(q) = idx.latest().and_then(|r| r.quality.as_ref()) {
                text.push_str(&q.render());
            }
            let mut rev_docs = Vec::new();
            for r in &reviews {
                let verified = r.check().is_ok();
                let t = trusted(&r.reviewer.name, &r.reviewer.key);
                text.push_str(&format!(
                    "  {} {}/5 by {} ({}{}) on {}: {}\n",
                    r.version,
                    r.stars,
                    r.reviewer.name,
                    if verified {
                        "signature ok"
                    } else {
                        "BAD SIGNATURE"
                    },
                    if t { ", trusted" } else { "" },
                    r.time,
                    r.text
                ));
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["verified"] = json!(verified);
                v["trusted"] = json!(t);
                rev_docs.push(v);
            }
            docs.push(json!({"registry": c.url(), "index": idx, "counts": counts, "downloads": counts.total(), "active_installs": active, "reviews": rev_docs}));
        }
        if docs.is_empty() {
            return Err(Error::Package(logos_pkg::Error::NotFound(format!(
                "no configured registry has {name:?} (try `logoscore search {name}`)"
            ))));
        }
        if ctx.json {
            output::json(
                &json!({"status": "ok", "name": name, "registries": docs}),
                false,
            )?;
        } else {
            output::line(text.trim_end())?;
        }
        Ok(())
    })
}
