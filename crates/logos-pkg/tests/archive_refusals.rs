//! Reading hostile packages: every tampered part, every forbidden entry kind, bombs. Each
//! case is a real archive built byte by byte and read through the same code `install` uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_pkg::archive::{self, Limits};
use logos_pkg::manifest::Signer;
use logos_pkg::sign::MANIFEST_DOMAIN;
use logos_pkg::{Error, KeyPair, Keyring, Policy};
use std::path::Path;

fn module_dir(root: &Path) -> std::path::PathBuf {
    let d = root.join("calc");
    std::fs::create_dir_all(d.join("share")).unwrap();
    std::fs::write(
        d.join("metadata.json"),
        r#"{"name":"calc","version":"1.2.0","description":"adds numbers","main":"run.sh","dependencies":{"kv":"^1"}}"#,
    )
    .unwrap();
    std::fs::write(d.join("run.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        d.join("share/UNIQUE-DATA.txt"),
        "the quick brown fox UNIQUEPAYLOAD\n",
    )
    .unwrap();
    std::fs::write(d.join(".hidden"), "not packed").unwrap();
    d
}

/// A signed package of a small module, and a keyring that trusts its signer.
fn signed(tmp: &Path) -> (Vec<u8>, Keyring) {
    let ring = Keyring::new(tmp.join("config"));
    let key = ring.create("alice").unwrap();
    let c = archive::collect(
        &module_dir(tmp),
        &[],
        Some(Signer {
            name: key.name.clone(),
            key: key.public().key,
        }),
    )
    .unwrap();
    let sig = key.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes());
    (
        archive::write(&c.manifest, Some(&sig), &c.sources).unwrap(),
        ring,
    )
}

fn read(bytes: &[u8], ring: &Keyring, limits: &Limits) -> Result<archive::Unpacked, Error> {
    let mut check = |m: &logos_pkg::Manifest, b: &[u8], s: Option<&[u8]>| {
        ring.check_package(m, b, s, Policy::Require).map(|_| ())
    };
    archive::read(bytes, "test.lgx", limits, &mut check, None)
}

fn refused(bytes: &[u8], ring: &Keyring, want: &str) {
    match read(bytes, ring, &Limits::default()) {
        Ok(_) => panic!("accepted, expected a refusal containing {want:?}"),
        Err(e) => assert!(e.to_string().contains(want), "{e}\n(expected {want:?})"),
    }
}

fn untar(lgx: &[u8]) -> Vec<u8> {
    zstd::decode_all(lgx).unwrap()
}

fn retar(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

/// Replaces the first occurrence of `from` (same length as `to`) inside the tar stream.
fn tamper(lgx: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut t = untar(lgx);
    let at = t
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in archive");
    t[at..at + to.len()].copy_from_slice(to);
    retar(&t)
}

#[test]
fn a_package_reads_back_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, ring) = signed(tmp.path());
    let un = read(&a, &ring, &Limits::default()).unwrap();
    assert_eq!(un.manifest.name, "calc");
    let paths: Vec<&str> = un.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["metadata.json", "run.sh", "share/UNIQUE-DATA.txt"],
        "sorted, hidden left out"
    );
    assert!(un.manifest.files[1].executable);
    assert_eq!(un.manifest.targets, ["any"]);
    // Same inputs, same key: the same bytes (Ed25519 signatures are deterministic).
    let key = ring.load("alice").unwrap();
    let c = archive::collect(
        &tmp.path().join("calc"),
        &[],
        Some(Signer {
            name: "alice".into(),
            key: key.public().key,
        }),
    )
    .unwrap();
    let b = archive::write(
        &c.manifest,
        Some(&key.sign(MANIFEST_DOMAIN, &c.manifest.to_bytes())),
        &c.sources,
    )
    .unwrap();
    assert_eq!(a, b);
    // Every header: zero owner and time, modes 644/755.
    let t = untar(&a);
    let mut ar = tar::Archive::new(&t[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, 0)
        );
        assert!(matches!(h.mode().unwrap(), 0o644 | 0o755));
    }
}

#[test]
fn tampering_any_part_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, ring) = signed(tmp.path());
    // A file's byte.
    refused(
        &tamper(&good, b"UNIQUEPAYLOAD", b"UNIQUEPAYLOAE"),
        &ring,
        "SHA-256",
    );
    // A manifest byte (the description).
    refused(
        &tamper(&good, b"adds numbers", b"adds numberz"),
        &ring,
        "signature does not verify",
    );
    // The signer's name inside the manifest.
    refused(
        &tamper(&good, b"\"name\": \"alice\"", b"\"name\": \"alicf\""),
        &ring,
        "signature does not verify",
    );
    // The signature.
    let t = untar(&good);
    let at = t.windows(12).position(|w| w == b"manifest.sig").unwrap();
    // The signature's hex starts 512 bytes after its header's name field.
    let mut t2 = t.clone();
    let sig_at = at + 512;
    t2[sig_at] = if t2[sig_at] == b'0' { b'1' } else { b'0' };
    refused(&retar(&t2), &ring, "signature does not verify");
    // Unsigned: drop the signature entry.
    let key = ring.load("alice").unwrap();
    let c = archive::collect(
        &tmp.path().join("calc"),
        &[],
        Some(Signer {
            name: "alice".into(),
            key: key.public().key,
        }),
    )
    .unwrap();
    let unsigned = archive::write(&c.manifest, None, &c.sources).unwrap();
    refused(&unsigned, &ring, "is not signed");
    // A key not in the trust store.
    let stranger = KeyPair::generate("alice").unwrap();
    let c2 = archive::collect(
        &tmp.path().join("calc"),
        &[],
        Some(Signer {
            name: "alice".into(),
            key: stranger.public().key,
        }),
    )
    .unwrap();
    let other = archive::write(
        &c2.manifest,
        Some(&stranger.sign(MANIFEST_DOMAIN, &c2.manifest.to_bytes())),
        &c2.sources,
    )
    .unwrap();
    refused(&other, &ring, "the trust store has \"alice\" with key");
    // Policy warn installs an untrusted one with a warning, but never an altered one.
    let m = &c2.manifest;
    let warn = ring
        .check_package(
            m,
            &m.to_bytes(),
            Some(&stranger.sign(MANIFEST_DOMAIN, &m.to_bytes())),
            Policy::Warn,
        )
        .unwrap();
    assert!(warn.is_some_and(|w| w.contains("policy is warn")));
    assert!(
        ring.check_package(m, &m.to_bytes(), Some(&[7; 64]), Policy::Warn)
            .is_err()
    );
}

/// An archive written by hand: a valid signed manifest for `files`, then `entries` as given.
struct Raw {
    tar: tar::Builder<Vec<u8>>,
}

impl Raw {
    fn new() -> Raw {
        Raw {
            tar: tar::Builder::new(Vec::new()),
        }
    }
    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }
    fn file(mut self, path: &str, data: &[u8]) -> Raw {
        let mut h = Raw::header(tar::EntryType::Regular, data.len() as u64, 0o644);
        // Write the name bytes directly: the tar crate refuses to write `..` or absolute paths.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
        self
    }
    fn special(mut self, path: &str, kind: tar::EntryType, link: Option<&str>) -> Raw {
        let mut h = Raw::header(kind, 0, 0o644);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(path).unwrap();
        h.set_cksum();
        self.tar.append(&h, &[][..]).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        retar(&self.tar.into_inner().unwrap())
    }
}

/// Manifest + signature for one file `lib.so` with `data`, plus metadata.json.
fn prelude(ring: &Keyring, data: &[u8]) -> (Raw, Vec<u8>) {
    let key = ring.load("alice").unwrap();
    let meta = br#"{"name":"calc","version":"1.2.0","main":"lib.so"}"#.to_vec();
    let f = |p: &str, d: &[u8]| logos_pkg::manifest::FileEntry {
        path: p.into(),
        size: d.len() as u64,
        sha256: logos_pkg::manifest::sha256_hex(d),
        executable: false,
    };
    let files = vec![f("lib.so", data), f("metadata.json", &meta)];
    let m = logos_pkg::Manifest {
        format: 1,
        name: "calc".into(),
        version: semver::Version::new(1, 2, 0),
        description: String::new(),
        author: String::new(),
        dependencies: Default::default(),
        targets: vec!["any".into()],
        root: logos_pkg::manifest::root_hash(&files),
        files,
        signer: Some(Signer {
            name: "alice".into(),
            key: key.public().key,
        }),
        quality: None,
    };
    let mb = m.to_bytes();
    let sig = format!("{}\n", hex::encode(key.sign(MANIFEST_DOMAIN, &mb)));
    (
        Raw::new()
            .file("manifest.json", &mb)
            .file("manifest.sig", sig.as_bytes()),
        meta,
    )
}

#[test]
fn every_forbidden_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ring) = signed(tmp.path());
    let data = b"\x7fELF pretend library";
    let ok = {
        let (r, meta) = prelude(&ring, data);
        r.file("lib.so", data).file("metadata.json", &meta).finish()
    };
    assert!(
        read(&ok, &ring, &Limits::default()).is_ok(),
        "the hand-built baseline reads"
    );
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "symlink",
            prelude(&ring, data)
                .0
                .special("lib.so", T::Symlink, Some("/etc/passwd"))
                .finish(),
            "is a symlink",
        ),
        (
            "hard link",
            prelude(&ring, data)
                .0
                .special("lib.so", T::Link, Some("metadata.json"))
                .finish(),
            "is a hard link",
        ),
        (
            "char device",
            prelude(&ring, data)
                .0
                .special("lib.so", T::Char, None)
                .finish(),
            "character device",
        ),
        (
            "block device",
            prelude(&ring, data)
                .0
                .special("lib.so", T::Block, None)
                .finish(),
            "block device",
        ),
        (
            "fifo",
            prelude(&ring, data)
                .0
                .special("lib.so", T::Fifo, None)
                .finish(),
            "FIFO",
        ),
        (
            "directory",
            prelude(&ring, data)
                .0
                .special("share/", T::Directory, None)
                .finish(),
            "directory entry",
        ),
        (
            "absolute path",
            prelude(&ring, data).0.file("/etc/cron.d/x", data).finish(),
            "absolute path",
        ),
        (
            "dot-dot path",
            prelude(&ring, data).0.file("../../.bashrc", data).finish(),
            "`..` component",
        ),
        (
            "duplicate",
            {
                let (r, meta) = prelude(&ring, data);
                r.file("lib.so", data)
                    .file("lib.so", data)
                    .file("metadata.json", &meta)
                    .finish()
            },
            "appears twice",
        ),
        (
            "unlisted file",
            {
                let (r, meta) = prelude(&ring, data);
                r.file("evil.so", data)
                    .file("lib.so", data)
                    .file("metadata.json", &meta)
                    .finish()
            },
            "is not listed",
        ),
        (
            "missing file",
            prelude(&ring, data).0.file("lib.so", data).finish(),
            "missing from the archive",
        ),
        (
            "size mismatch",
            {
                let (r, meta) = prelude(&ring, data);
                r.file("lib.so", b"short")
                    .file("metadata.json", &meta)
                    .finish()
            },
            "bytes but manifest.json says",
        ),
        (
            "manifest not first",
            Raw::new().file("lib.so", data).finish(),
            "first entry must be manifest.json",
        ),
        (
            "not zstd",
            b"PK\x03\x04 a zip file".to_vec(),
            "not a zstd-compressed tar",
        ),
    ];
    for (what, bytes, want) in cases {
        match read(&bytes, &ring, &Limits::default()) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "{what}: {e}\n(expected {want:?})"
            ),
        }
    }
    // Nothing about a refused archive reaches the destination.
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let evil = prelude(&ring, data).0.file("../escape", data).finish();
    let mut check = |m: &logos_pkg::Manifest, b: &[u8], s: Option<&[u8]>| {
        ring.check_package(m, b, s, Policy::Require).map(|_| ())
    };
    assert!(archive::read(&evil[..], "x", &Limits::default(), &mut check, Some(&dest)).is_err());
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn bombs_stop_at_the_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, ring) = signed(tmp.path());
    // A small file that decompresses to 4 GiB: a tar header claiming 4 GiB, then 4 GiB of
    // zeros as 256 identical zstd frames of 16 MiB each (a few KiB on disk).
    let big: u64 = 4 << 30;
    let (r, _) = prelude(&ring, b"x");
    let mut head = r.tar.into_inner().unwrap();
    head.truncate(head.len() - 1024); // drop the end-of-archive blocks
    let mut h = Raw::header(tar::EntryType::Regular, big, 0o644);
    h.set_path("lib.so").unwrap();
    h.set_cksum();
    head.extend_from_slice(h.as_bytes());
    let mut bomb = zstd::encode_all(&head[..], 3).unwrap();
    let zeros = zstd::encode_all(&vec![0u8; 16 << 20][..], 19).unwrap();
    for _ in 0..256 {
        bomb.extend_from_slice(&zeros);
    }
    assert!(bomb.len() < 4 << 20, "the bomb is small: {}", bomb.len());
    refused(&bomb, &ring, "per-file cap");
    // Files adding up past the total cap.
    let (r, meta) = prelude(&ring, b"\x7fELF pretend library");
    let many = r
        .file("lib.so", b"\x7fELF pretend library")
        .file("metadata.json", &meta)
        .finish();
    let tiny = Limits {
        max_unpacked: 8,
        ..Limits::default()
    };
    let e = read(&many, &ring, &tiny)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("over the cap"), "{e}");
    // The compressed file itself.
    let e = read(
        &good,
        &ring,
        &Limits {
            max_compressed: 100,
            ..Limits::default()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("larger than the cap"), "{e}");
    // Too many entries.
    let e = read(
        &good,
        &ring,
        &Limits {
            max_entries: 1,
            ..Limits::default()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("more than 1"), "{e}");
}

#[test]
fn owners_and_times_must_be_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, ring) = signed(tmp.path());
    let mut t = untar(&good);
    // Rewrite the mtime field (offset 136, 12 bytes) of the first header and fix its checksum.
    t[136..147].copy_from_slice(b"00000001750");
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&t[..512]);
    h.set_cksum();
    t[..512].copy_from_slice(h.as_bytes());
    refused(&retar(&t), &ring, "not a deterministic .lgx");
}
