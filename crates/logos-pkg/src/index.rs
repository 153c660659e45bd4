//! The registry's documents, as served and as stored (the static layout):
//!
//! ```text
//! <dir>/index.json                       Catalog: every module, latest version, quality, adoption
//! <dir>/modules/<name>/index.json        ModuleIndex: owners, every release
//! <dir>/modules/<name>/<name>-<v>.lgx    the package files
//! <dir>/modules/<name>/reviews.json      signed reviews
//! <dir>/modules/<name>/counts.json       downloads per version
//! <dir>/pings.json                       active installs: install id → last ping and modules
//! ```
//!
//! Owns the shapes and the bytes a review signature covers. Never does I/O.

use crate::manifest::Signer;
use crate::quality::{Report, Status};
use crate::sign::PublicKey;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Version.
    pub version: Version,
    /// Root hash of the files.
    pub root: String,
    /// The package file, relative to the module's dir in the registry.
    pub file: String,
    /// Its size.
    pub size: u64,
    /// SHA-256 of the package file.
    pub sha256: String,
    /// Who signed it.
    pub signer: Signer,
    /// Dependencies (for resolution without downloading).
    #[serde(default)]
    pub dependencies: BTreeMap<String, VersionReq>,
    /// Target triples.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The embedded quality report.
    #[serde(default)]
    pub quality: Option<Report>,
    /// RFC 3339 time of publication.
    #[serde(default)]
    pub published_at: String,
}

/// `modules/<name>/index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleIndex {
    /// Module name.
    pub name: String,
    /// Publisher keys (hex) allowed to publish new versions: the first publisher's.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Releases, sorted by version.
    #[serde(default)]
    pub versions: Vec<Release>,
}

impl ModuleIndex {
    /// The highest version.
    pub fn latest(&self) -> Option<&Release> {
        self.versions
            .iter()
            .max_by(|a, b| a.version.cmp(&b.version))
    }
}

/// Download counts of one module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Per version.
    #[serde(default)]
    pub downloads: BTreeMap<String, u64>,
}

impl Counts {
    /// All versions together.
    pub fn total(&self) -> u64 {
        self.downloads.values().sum()
    }
}

/// One line of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Module name.
    pub name: String,
    /// Highest version.
    pub latest: Version,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// Signer of the latest version.
    pub signer: String,
    /// Its quality verdict, if checked.
    #[serde(default)]
    pub quality: Option<Status>,
    /// Its quality summary line.
    #[serde(default)]
    pub quality_summary: Option<String>,
    /// Downloads of every version.
    pub downloads: u64,
    /// Installs that pinged within the activity window.
    pub active_installs: u64,
    /// Number of reviews.
    pub reviews: u64,
    /// Mean stars, if reviewed.
    #[serde(default)]
    pub rating: Option<f64>,
}

/// `index.json` at the top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Modules sorted by name.
    pub modules: Vec<CatalogEntry>,
}

/// A review, signed by its author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Module.
    pub module: String,
    /// Version reviewed.
    pub version: Version,
    /// 1 to 5.
    pub stars: u8,
    /// Free text (at most 4 KiB).
    pub text: String,
    /// Who wrote it.
    pub reviewer: PublicKey,
    /// RFC 3339.
    pub time: String,
    /// Hex Ed25519 signature over [`Review::signed_bytes`] with [`crate::sign::REVIEW_DOMAIN`].
    pub signature: String,
}

impl Review {
    /// What the signature covers: every field but the signature, in a fixed form.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "module": self.module,
            "version": self.version.to_string(),
            "stars": self.stars,
            "text": self.text,
            "reviewer": {"name": self.reviewer.name, "key": self.reviewer.key},
            "time": self.time,
        }))
        .unwrap_or_default()
    }

    /// Checks the fields and the signature.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.stars) {
            return Err(format!("stars must be 1 to 5, not {}", self.stars));
        }
        if self.text.len() > 4096 {
            return Err("text is longer than 4 KiB".into());
        }
        crate::manifest::check_signer_name(&self.reviewer.name)?;
        let sig = hex::decode(&self.signature).map_err(|_| "signature is not hex".to_owned())?;
        crate::sign::verify(
            crate::sign::REVIEW_DOMAIN,
            &self.signed_bytes(),
            &self.reviewer.key,
            &sig,
        )
        .map_err(|e| format!("review by {:?}: {e}", self.reviewer.name))
    }
}

/// An anonymous adoption ping: a random install id and the modules active there. No
/// address is ever stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// 32 hex digits, random per installation, only sent when the operator opted in.
    pub install_id: String,
    /// `name@version` of each active module.
    pub modules: Vec<String>,
}

/// What the publish endpoint answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// Module.
    pub name: String,
    /// Version.
    pub version: Version,
    /// Root hash.
    pub root: String,
    /// Where the file is, relative to the registry's base URL.
    pub url: String,
}
