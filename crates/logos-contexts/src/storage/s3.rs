//! The S3-compatible backend: every context under its own prefix `<root>/<context id>/` of
//! one bucket, through `object_store` (AWS S3 and anything speaking its API: MinIO, Ceph,
//! Garage, moto in the tests).
//!
//! Object names are `<root>/<context id>/<sha256(key) hex>`; the key text rides in a small
//! header of the object body (as the file-system backend does), so no key character ever
//! reaches a URL and no two contexts' prefixes can overlap (each id is 64 hex digits, and a
//! prefix ends with `/`). Each key's write is atomic (a PUT replaces the whole object);
//! a batch is not.
//!
//! `object_store` is async; this backend owns a small tokio runtime (one worker thread) and
//! blocks on it, since namespaces are used from the worker's evaluation threads, never from
//! inside an async task. Every request has a timeout ([`S3Config::timeout`]), so a slow or
//! hung service turns into an error, never a stuck evaluation.

use super::{Backend, Change, Namespace};
use crate::error::Error;
use crate::id::ContextId;
use crate::key::StorageKey;
use crate::state::ContextState;
use futures::StreamExt as _;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

const BACKEND: &str = "s3";

/// Where the bucket is and how to sign requests.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Service URL, e.g. `http://127.0.0.1:9000` (empty: AWS itself).
    pub endpoint: String,
    /// Bucket name (must exist).
    pub bucket: String,
    /// Prefix under which the worker keeps its contexts (e.g. its name).
    pub root: String,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Deadline of each request (default 10 s).
    pub timeout: Duration,
}

impl S3Config {
    /// A configuration with the defaults above.
    pub fn new(endpoint: &str, bucket: &str, root: &str) -> S3Config {
        S3Config {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            root: root.to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// With these credentials.
    #[must_use]
    pub fn with_credentials(mut self, key_id: &str, secret: &str) -> S3Config {
        self.access_key_id = key_id.to_owned();
        self.secret_access_key = secret.to_owned();
        self
    }
}

/// Contexts as prefixes of one bucket.
#[derive(Debug)]
pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    root: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl S3Backend {
    /// Connects (lazily: the first request does) to the bucket of `config`.
    ///
    /// # Errors
    /// [`Error::Storage`] for a bad configuration or when the runtime cannot start.
    pub fn new(config: &S3Config) -> Result<S3Backend, Error> {
        if config.root.is_empty()
            || !config
                .root
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::storage(
                BACKEND,
                "configuring",
                format!(
                    "root {:?} must be a non-empty word of A-Z a-z 0-9 - _ .",
                    config.root
                ),
            ));
        }
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.timeout)
                    .with_connect_timeout(config.timeout)
                    .with_allow_http(config.endpoint.starts_with("http://")),
            )
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: config.timeout,
                ..RetryConfig::default()
            });
        if !config.endpoint.is_empty() {
            b = b
                .with_endpoint(&config.endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = b
            .build()
            .map_err(|e| Error::storage(BACKEND, "configuring", e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("contexts-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::storage(BACKEND, "starting its runtime", e))?;
        Ok(S3Backend {
            store: Arc::new(store),
            root: config.root.clone(),
            rt: Arc::new(rt),
        })
    }
}

impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn open(&self, context: ContextId, _: &ContextState) -> Result<Box<dyn Namespace>, Error> {
        Ok(Box::new(S3Namespace {
            store: self.store.clone(),
            prefix: format!("{}/{context}", self.root),
            rt: self.rt.clone(),
        }))
    }

    fn destroy(&self, context: ContextId) -> Result<(), Error> {
        let ns = S3Namespace {
            store: self.store.clone(),
            prefix: format!("{}/{context}", self.root),
            rt: self.rt.clone(),
        };
        let names = ns.object_names()?;
        ns.rt.block_on(async {
            for n in names {
                match ns.store.delete(&n).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::storage(BACKEND, format!("deleting {n}"), e)),
                }
            }
            Ok(())
        })
    }
}

/// One context's prefix.
#[derive(Debug)]
pub struct S3Namespace {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl S3Namespace {
    fn object(&self, key: &StorageKey) -> ObjPath {
        ObjPath::from(format!(
            "{}/{}",
            self.prefix,
            hex::encode(crate::signing::sha256(key.as_str().as_bytes()))
        ))
    }

    fn object_names(&self) -> Result<Vec<ObjPath>, Error> {
        let prefix = ObjPath::from(self.prefix.as_str());
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&prefix));
            while let Some(meta) = stream.next().await {
                out.push(
                    meta.map_err(|e| Error::storage(BACKEND, "listing", e))?
                        .location,
                );
            }
            Ok(out)
        })
    }

    fn fetch(&self, path: &ObjPath) -> Result<Option<(String, Vec<u8>)>, Error> {
        let bytes = self.rt.block_on(async {
            match self.store.get(path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) =
            bytes.map_err(|e| Error::storage(BACKEND, format!("reading {path}"), e))?
        else {
            return Ok(None);
        };
        let corrupt = || Error::storage(BACKEND, format!("reading {path}"), "corrupt object");
        let len = usize::from(u16::from_be_bytes(
            bytes
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(corrupt)?,
        ));
        let key = String::from_utf8(bytes.get(2..2 + len).ok_or_else(corrupt)?.to_vec())
            .map_err(|_| corrupt())?;
        Ok(Some((key, bytes[2 + len..].to_vec())))
    }
}

impl Namespace for S3Namespace {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error> {
        match self.fetch(&self.object(key))? {
            Some((k, v)) if k == key.as_str() => Ok(Some(v)),
            Some(_) => Err(Error::storage(
                BACKEND,
                format!("reading {key}"),
                "the object holds another key",
            )),
            None => Ok(None),
        }
    }

    fn size_of(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        Ok(self.get(key)?.map(|v| v.len() as u64))
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error> {
        let mut keys = Vec::new();
        for name in self.object_names()? {
            if let Some((k, _)) = self.fetch(&name)?
                && k.starts_with(prefix)
                && let Ok(k) = StorageKey::parse(&k)
            {
                keys.push(k);
            }
        }
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), Error> {
        self.rt.block_on(async {
            for c in changes {
                let path = self.object(c.key());
                match c {
                    Change::Put(k, v) => {
                        let len = u16::try_from(k.as_str().len())
                            .map_err(|e| Error::storage(BACKEND, format!("writing {k}"), e))?;
                        let mut body = Vec::with_capacity(2 + k.as_str().len() + v.len());
                        body.extend_from_slice(&len.to_be_bytes());
                        body.extend_from_slice(k.as_str().as_bytes());
                        body.extend_from_slice(v);
                        self.store
                            .put(&path, PutPayload::from(body))
                            .await
                            .map_err(|e| Error::storage(BACKEND, format!("writing {k}"), e))?;
                    }
                    Change::Delete(k) => match self.store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(Error::storage(BACKEND, format!("deleting {k}"), e)),
                    },
                }
            }
            Ok(())
        })
    }

    fn usage(&self) -> Result<u64, Error> {
        let mut total = 0;
        for name in self.object_names()? {
            if let Some((k, v)) = self.fetch(&name)? {
                total += (k.len() + v.len()) as u64;
            }
        }
        Ok(total)
    }
}
