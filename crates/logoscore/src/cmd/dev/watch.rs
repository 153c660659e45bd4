//! Watching a module project for edits with the `notify` crate (inotify on Linux), debounced:
//! a burst of events (an editor's save is several: a temp file, a rename, a chmod) becomes one
//! "changed" once the project has been quiet for [`QUIET`].
//!
//! Owns which paths are not sources ([`ignored`]): the build's target dirs, `.git` and other
//! hidden dirs, Python caches and editor temp files. Only the project's top-level entries that
//! are not ignored are watched (recursively), so a big `target/` costs no inotify watches.
//! Never builds, never stages.

use crate::error::Error;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the project must be quiet before a change is acted on.
pub(crate) const QUIET: Duration = Duration::from_millis(100);

/// Whether `path` (inside `project`) is not a source: a build output, version control, a
/// cache or an editor's temp file. `extra` are more dirs to skip (a target dir set elsewhere
/// that lies inside the project).
pub(crate) fn ignored(project: &Path, extra: &[PathBuf], path: &Path) -> bool {
    if extra.iter().any(|d| path.starts_with(d)) {
        return true;
    }
    let Ok(rel) = path.strip_prefix(project) else {
        return true;
    };
    let mut parts = rel.components().peekable();
    if let Some(std::path::Component::Normal(first)) = parts.peek()
        && first.to_str() == Some("target")
    {
        return true;
    }
    rel.components().any(|c| {
        let std::path::Component::Normal(part) = c else {
            return false;
        };
        let name = part.to_string_lossy();
        name.starts_with('.')            // .git, .idea, .foo.swp, .#lock (emacs), .staging
            || name.ends_with('~')        // emacs, kate backups
            || name.ends_with(".swp")
            || name.ends_with(".swx")
            || name.ends_with(".tmp")
            || name.ends_with(".pyc")
            || (name.starts_with('#') && name.ends_with('#')) // emacs autosave
            || name == "4913"             // vim's probe of a dir's writability
            || name == "__pycache__"
    })
}

/// A running watch: `changed()` returns once per debounced burst of source edits.
pub(crate) struct Watch {
    /// Kept alive: dropping it stops the watch.
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl Watch {
    /// Starts watching `project` (skipping what [`ignored`] says, with `extra` dirs).
    ///
    /// # Errors
    /// [`Error::Io`] when the OS refuses a watch (e.g. the inotify watch limit).
    pub fn start(project: &Path, extra: Vec<PathBuf>) -> Result<Watch, Error> {
        // One slot: while a change waits to be acted on, more changes add nothing.
        let (tx, rx) = mpsc::channel(1);
        let root = project.to_path_buf();
        let extra = Arc::new(extra);
        let skip = {
            let (root, extra) = (root.clone(), Arc::clone(&extra));
            move |p: &Path| ignored(&root, &extra, p)
        };
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let relevant = matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(
                        notify::event::ModifyKind::Data(_)
                            | notify::event::ModifyKind::Name(_)
                            | notify::event::ModifyKind::Any
                    )
            );
            if relevant && event.paths.iter().any(|p| !skip(p)) {
                let _ = tx.try_send(());
            }
        })
        .map_err(|e| Error::io("cannot watch the project", std::io::Error::other(e)))?;
        let watch = |w: &mut notify::RecommendedWatcher, p: &Path, mode| {
            w.watch(p, mode).map_err(|e| {
                Error::io(
                    format!("cannot watch {}", p.display()),
                    std::io::Error::other(e),
                )
            })
        };
        // The project dir itself sees files added, removed or renamed at its top level.
        watch(&mut watcher, &root, RecursiveMode::NonRecursive)?;
        let entries = std::fs::read_dir(&root)
            .map_err(|e| Error::io(format!("cannot list {}", root.display()), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !ignored(&root, &extra, &path) {
                watch(&mut watcher, &path, RecursiveMode::Recursive)?;
            }
        }
        Ok(Watch {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits for an edit, then for the project to be quiet for [`QUIET`]. `None` when the
    /// watch has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: a change not yet returned is returned by the next call.
    pub async fn changed(&mut self) -> Option<()> {
        self.rx.recv().await?;
        self.settle().await;
        Some(())
    }

    /// Whether an edit arrived since the last [`Watch::changed`] (then waits for quiet).
    pub async fn pending(&mut self) -> bool {
        if self.rx.try_recv().is_ok() {
            self.settle().await;
            true
        } else {
            false
        }
    }

    async fn settle(&mut self) {
        while let Ok(Some(())) = tokio::time::timeout(QUIET, self.rx.recv()).await {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_outputs_vcs_caches_and_editor_files_are_not_sources() {
        let p = Path::new("/p");
        let extra = [PathBuf::from("/p/out")];
        for skip in [
            "/p/target/debug/libx.so",
            "/p/.git/index",
            "/p/src/.lib.rs.swp",
            "/p/src/lib.rs~",
            "/p/src/4913",
            "/p/src/#lib.rs#",
            "/p/src/.#lib.rs",
            "/p/__pycache__/module.cpython-312.pyc",
            "/p/out/x",
            "/elsewhere/x",
        ] {
            assert!(ignored(p, &extra, Path::new(skip)), "{skip}");
        }
        for keep in [
            "/p/src/lib.rs",
            "/p/Cargo.toml",
            "/p/metadata.json",
            "/p/module.py",
            "/p/src/target.rs",
            "/p/logos_module/codec.py",
        ] {
            assert!(!ignored(p, &extra, Path::new(keep)), "{keep}");
        }
    }
}
