//! The store: versions side by side, atomic switching, rollback without a network, pins,
//! uninstall, verification, and the rebuilt package being byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_pkg::archive::{self, Limits};
use logos_pkg::manifest::Signer;
use logos_pkg::sign::MANIFEST_DOMAIN;
use logos_pkg::{Keyring, Policy, Store};
use std::path::Path;

fn pkg(tmp: &Path, ring: &Keyring, version: &str) -> Vec<u8> {
    let key = ring.load("alice").unwrap();
    let d = tmp.join(format!("src-{version}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("metadata.json"),
        format!(r#"{{"name":"calc","version":"{version}","main":"run.sh"}}"#),
    )
    .unwrap();
    std::fs::write(d.join("run.sh"), format!("#!/bin/sh\necho {version}\n")).unwrap();
    let c = archive::collect(
        &d,
        &[],
        Some(Signer {
            name: "alice".into(),
            key: key.public().key,
        }),
    )
    .unwrap();
    archive::write(
        &c.manifest,
        Some(&key.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes())),
        &c.sources,
    )
    .unwrap()
}

#[test]
fn versions_switch_roll_back_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let ring = Keyring::new(tmp.path().join("cfg"));
    ring.create("alice").unwrap();
    let store = Store::open(tmp.path().join("pkg")).unwrap();
    let lock = store.lock().unwrap();
    let mut check = |m: &logos_pkg::Manifest, b: &[u8], s: Option<&[u8]>| {
        ring.check_package(m, b, s, Policy::Require).map(|_| ())
    };
    let v1 = pkg(tmp.path(), &ring, "1.0.0");
    let v2 = pkg(tmp.path(), &ring, "2.0.0");
    let a1 = store
        .add(&lock, &v1[..], "v1", &Limits::default(), &mut check)
        .unwrap();
    assert!(a1.fresh);
    assert!(
        !store
            .add(&lock, &v1[..], "v1", &Limits::default(), &mut check)
            .unwrap()
            .fresh,
        "same root: kept"
    );
    let a2 = store
        .add(&lock, &v2[..], "v2", &Limits::default(), &mut check)
        .unwrap();
    assert_eq!(store.activate(&lock, &a1.entry.root).unwrap(), None);
    assert_eq!(
        store.activate(&lock, &a2.entry.root).unwrap(),
        Some(a1.entry.root.clone())
    );
    let link = store.modules_dir().join("calc");
    assert_eq!(
        std::fs::read_to_string(link.join("run.sh")).unwrap(),
        "#!/bin/sh\necho 2.0.0\n"
    );
    assert_eq!(store.previous("calc"), Some(a1.entry.root.clone()));
    store.activate(&lock, &a1.entry.root).unwrap();
    assert_eq!(store.active("calc"), Some(a1.entry.root.clone()));
    assert_eq!(
        store.previous("calc"),
        Some(a2.entry.root.clone()),
        "rollback toggles"
    );
    assert!(store.verify().is_empty(), "{:?}", store.verify());
    // Store files are read-only; the rebuilt package is the installed bytes.
    let meta = std::fs::metadata(link.join("run.sh")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(store.archive(&a2.entry.root).unwrap(), v2);
    // An altered store file is found.
    let f = tmp
        .path()
        .join("pkg/store")
        .join(&a2.entry.root)
        .join("module/run.sh");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&f, "#!/bin/sh\nrm -rf ~\n").unwrap();
    assert!(
        store.verify().iter().any(|p| p.contains("altered")),
        "{:?}",
        store.verify()
    );
    store
        .set_pin(&lock, "calc", Some(semver::Version::new(1, 0, 0)))
        .unwrap();
    assert_eq!(
        store.installed()[0].pinned,
        Some(semver::Version::new(1, 0, 0))
    );
    let removed = store.uninstall(&lock, "calc").unwrap();
    assert_eq!(removed.len(), 2);
    assert!(store.installed().is_empty());
    assert!(store.verify().is_empty());
}
