//! The core's TLS identity for remote modules: a self-signed certificate and its key, made on
//! first use and kept in `<data dir>/.logos-core/remote/` (`core.key` 0600, `core.crt`), so
//! the pin in every credential stays valid across restarts.
//!
//! Owns creating, reading and checking those two files. Never decides who may connect. To
//! retire the key (it leaked, or every credential must die at once), stop the core and delete
//! both files: a new pair is made and every credential issued before stops working.

use crate::error::Error;
use logos_remote::Pin;
use std::path::Path;

/// The certificate (DER) and its PKCS#8 key (DER).
pub(crate) struct Identity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub pin: Pin,
}

fn setup(reason: String) -> Error {
    Error::RemoteSetup { reason }
}

/// Reads the identity in `dir`, or makes one when neither file exists.
///
/// # Errors
/// [`Error::RemoteSetup`]: one file without the other, unreadable files, a key readable by
/// others, or a key that does not match the certificate.
pub(crate) fn load_or_create(dir: &Path) -> Result<Identity, Error> {
    let key_path = dir.join("core.key");
    let cert_path = dir.join("core.crt");
    match (key_path.exists(), cert_path.exists()) {
        (false, false) => create(&key_path, &cert_path),
        (true, true) => {
            use std::os::unix::fs::MetadataExt as _;
            let meta = std::fs::metadata(&key_path)
                .map_err(|e| setup(format!("reading {}: {e}", key_path.display())))?;
            if meta.mode() & 0o077 != 0 {
                return Err(setup(format!(
                    "{} has mode {:04o}, so others may read the core's private key; run `chmod 600 {}` (and consider the key leaked: delete both files to make a new one, which invalidates every credential)",
                    key_path.display(),
                    meta.mode() & 0o7777,
                    key_path.display()
                )));
            }
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| setup(format!("reading {}: {e}", p.display())))
            };
            let (key, cert) = (read(&key_path)?, read(&cert_path)?);
            // Fails when the key does not belong to the certificate.
            logos_remote::tls::server_config(cert.clone(), key.clone()).map_err(|e| {
                setup(format!(
                    "{} and {} do not make a usable TLS identity ({e}); delete both to make a new one (every credential issued so far then stops working)",
                    key_path.display(),
                    cert_path.display()
                ))
            })?;
            let pin = Pin::of_certificate(&cert);
            Ok(Identity { cert, key, pin })
        }
        (k, _) => {
            let (have, missing) = if k {
                (&key_path, &cert_path)
            } else {
                (&cert_path, &key_path)
            };
            Err(setup(format!(
                "{} exists but {} does not; restore it, or delete {} to make a new identity (every credential issued so far then stops working)",
                have.display(),
                missing.display(),
                have.display()
            )))
        }
    }
}

fn create(key_path: &Path, cert_path: &Path) -> Result<Identity, Error> {
    let made = rcgen::generate_simple_self_signed(vec!["logos-core".to_owned()])
        .map_err(|e| setup(format!("cannot make the core's certificate: {e}")))?;
    let cert = made.cert.der().to_vec();
    let key = made.signing_key.serialize_der();
    super::credential::write_private(key_path, &key)
        .map_err(|e| setup(format!("writing {}: {e}", key_path.display())))?;
    super::credential::write_private(cert_path, &cert)
        .map_err(|e| setup(format!("writing {}: {e}", cert_path.display())))?;
    let pin = Pin::of_certificate(&cert);
    tracing::info!(%pin, "made the core's TLS identity for remote modules ({})", key_path.display());
    Ok(Identity { cert, key, pin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first = load_or_create(dir.path())?;
        let again = load_or_create(dir.path())?;
        assert_eq!(first.pin, again.pin);
        std::fs::remove_file(dir.path().join("core.crt"))?;
        let e = load_or_create(dir.path())
            .err()
            .ok_or("accepted half an identity")?;
        assert!(e.to_string().contains("core.crt does not"), "{e}");
        Ok(())
    }
}
