//! The node's identity: an Ed25519 key pair in a file, made on first start.
//!
//! The file holds the key in libp2p's protobuf encoding (what `Keypair::to_protobuf_encoding`
//! writes, readable by other libp2p tools). It is created with mode 0600 (written to a
//! temporary file, synced and renamed, so a crash never leaves half a key), and a file that
//! others may read or write is refused, as ssh refuses such keys. Never logs key material.

use libp2p::identity::Keypair;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Reads the key at `path`, or makes one there when the file does not exist.
///
/// # Errors
/// A message naming the file: unreadable, open to others, not a libp2p key, or not writable.
pub fn load_or_create(path: &Path) -> Result<Keypair, String> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "key file {} has mode {mode:o}: others may read the node's secret key; run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ));
            }
            let bytes = std::fs::read(path)
                .map_err(|e| format!("reading key file {}: {e}", path.display()))?;
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                format!(
                    "key file {} is not a libp2p private key ({e}); move it away to have a new identity made",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(format!("key file {}: {e}", path.display())),
    }
}

fn create(path: &Path) -> Result<Keypair, String> {
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| format!("encoding a new key: {e}"))?;
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("creating the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    // A leftover from a crash between write and rename holds no key anyone uses.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("creating key file", e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("writing key file", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| fail("renaming the new key file to", e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    tracing::info!(file = %path.display(), peer = %key.public().to_peer_id(), "made a new node identity");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let a = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn open_or_garbage_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::write(&path, b"garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(e.contains("is not a libp2p private key"), "{e}");
    }
}
