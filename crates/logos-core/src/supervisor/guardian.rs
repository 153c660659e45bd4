//! The guardian: a tiny `/bin/sh` process that cleans up after a core that died without
//! cleaning up itself (SIGKILL, abort, OOM).
//!
//! The core keeps the guardian's stdin open for its whole life and writes one line per fact:
//! `+ PID` / `- PID` as module processes start and end, and `f ID PATH` for each file it
//! created in the runtime dir (`PATH` relative to it, `ID` the file's device, inode and change
//! time as `stat -c %d:%i:%.9Z` prints them). When stdin reaches end of file, which the kernel
//! does for us however the core died, the guardian SIGKILLs the process groups still listed,
//! kills this core's module cgroups (`cgroup.kill`) and removes them, and removes each file it
//! was told about **only if it is still the same file** (same `ID`): a successor core that took
//! the runtime dir over in the meantime has replaced them with its own, which the guardian
//! leaves alone (issue 10, item 14). It runs in its own session so a terminal's Ctrl-C does not
//! reach it. Module processes also carry a parent-death signal; the guardian is the second line
//! and the only one that can also remove files. It never removes anything else.
//!
//! Where `stat` cannot print a file's identity (no GNU or compatible `stat`), nothing is
//! removed: a stale file is harmless, as the next core replaces it, while removing a
//! successor's would not be.
//!
//! The guardian never removes the runtime dir or its `modules` dir: a successor core may have
//! just taken them over and be about to bind its first socket there, and an empty 0700
//! directory left behind after a crash costs nothing (the next core reuses it).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// `$0` is the runtime dir, `$1` the directory holding this core's cgroups and `$2` their name
/// prefix (both empty without cgroups).
const SCRIPT: &str = r#"
pids=
files=
ident() { stat -c '%d:%i:%.9Z' -- "$1" 2>/dev/null; }
while read -r op a b; do
  case "$op" in
    +) pids="$pids $a" ;;
    -) np=; for p in $pids; do [ "$p" = "$a" ] || np="$np $p"; done; pids=$np ;;
    f) nf=; for e in $files; do [ "${e#*=}" = "$b" ] || nf="$nf $e"; done; files="$nf $a=$b" ;;
  esac
done
for p in $pids; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
if [ -n "$1" ]; then
  for cg in "$1/$2"*; do [ -d "$cg" ] && echo 1 > "$cg/cgroup.kill"; done 2>/dev/null
fi
for e in $files; do
  id=${e%%=*}; rel=${e#*=}
  [ -n "$id" ] && [ "$(ident "$0/$rel")" = "$id" ] && rm -f -- "$0/$rel"
done
if [ -n "$1" ]; then
  for cg in "$1/$2"*; do
    [ -d "$cg" ] || continue
    i=0
    while [ $i -lt 50 ] && ! rmdir -- "$cg" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  done
fi
exit 0
"#;

/// Handle to the guardian process.
#[derive(Debug)]
pub(crate) struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    runtime_dir: PathBuf,
}

impl Guardian {
    /// Starts the guardian for `runtime_dir` and tells it about the client token already
    /// written there.
    pub fn start(runtime_dir: &Path) -> std::io::Result<Guardian> {
        let (cgroups, prefix) = crate::sys::cgroup_pattern(runtime_dir).unwrap_or_default();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(runtime_dir)
            .arg(cgroups)
            .arg(prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::sys::detach_session(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let mut g = Guardian {
            child,
            stdin,
            runtime_dir: runtime_dir.to_path_buf(),
        };
        g.owns(CLIENT_TOKEN);
        Ok(g)
    }

    /// Tells the guardian a module process started, listening on `modules/<name>.sock`.
    pub fn started(&mut self, pid: u32, name: &str) {
        // One write for both facts: each write wakes the shell, on the start path.
        let mut lines = format!("+ {pid}\n");
        lines.extend(self.owned_line(&format!("modules/{name}.sock")));
        self.send(&lines);
    }

    /// Tells the guardian the core created `rel` (relative to the runtime dir): it removes it
    /// after a crash of the core if it is still this very file.
    pub fn owns(&mut self, rel: &str) {
        if let Some(line) = self.owned_line(rel) {
            self.send(&line);
        }
    }

    /// The `f ID PATH` line of `rel`, or `None` (logged) when it cannot be identified.
    fn owned_line(&self, rel: &str) -> Option<String> {
        match std::fs::symlink_metadata(self.runtime_dir.join(rel)) {
            Ok(m) => Some(format!("f {} {rel}\n", identity(&m))),
            Err(e) => {
                tracing::debug!("guardian: cannot identify {rel}: {e}");
                None
            }
        }
    }

    /// Tells the guardian a module process ended.
    pub fn ended(&mut self, pid: u32) {
        self.send(&format!("- {pid}\n"));
    }

    fn send(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut()
            && s.write_all(line.as_bytes()).is_err()
        {
            tracing::warn!(
                "guardian process is gone; cleanup after a crash of the core may be incomplete"
            );
            self.stdin = None;
        }
    }

    /// Ends the guardian after a clean shutdown (it finds nothing left to do) and reaps it.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// The client token's name in the runtime dir.
const CLIENT_TOKEN: &str = "client.token";

/// A file's identity as `stat -c %d:%i:%.9Z` prints it: device, inode, change time. A
/// successor's file at the same path differs in inode or change time even when the file
/// system reuses the inode number.
fn identity(m: &std::fs::Metadata) -> String {
    format!(
        "{}:{}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.ctime(),
        m.ctime_nsec()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_dead_cores_guardian_removes_its_own_files_and_leaves_a_successors() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let rt = tmp.path().join("run");
        std::fs::create_dir_all(rt.join("modules"))?;
        for f in [
            "client.token",
            "core.sock",
            "modules/a.sock",
            "modules/b.sock",
        ] {
            std::fs::write(rt.join(f), "first core")?;
        }
        let mut g = Guardian::start(&rt)?;
        g.owns("core.sock");
        let mut module = Command::new("sleep").arg("30").spawn()?;
        g.started(module.id(), "a");
        g.owns("modules/b.sock");

        // A successor takes the dir over: new token and a.sock (new files, new inodes), and a
        // socket the first core never had.
        for f in ["client.token", "modules/a.sock", "modules/c.sock"] {
            let fresh = rt.join("fresh");
            std::fs::write(&fresh, "successor")?;
            std::fs::rename(&fresh, rt.join(f))?;
        }
        // The first core dies: its end of the pipe closes.
        g.finish();

        for kept in ["client.token", "modules/a.sock", "modules/c.sock"] {
            assert_eq!(
                std::fs::read_to_string(rt.join(kept)).ok().as_deref(),
                Some("successor"),
                "{kept} of the successor was removed"
            );
        }
        for gone in ["core.sock", "modules/b.sock"] {
            assert!(!rt.join(gone).exists(), "{gone} of the dead core was left");
        }
        // The module process it was told about is dead.
        let status = module.wait()?;
        assert!(!status.success(), "{status:?}");
        Ok(())
    }

    #[test]
    fn the_identity_matches_what_stat_prints() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let f = tmp.path().join("x");
        std::fs::write(&f, "x")?;
        let out = Command::new("stat")
            .args(["-c", "%d:%i:%.9Z", "--"])
            .arg(&f)
            .output()?;
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8(out.stdout)?;
        assert_eq!(printed.trim(), identity(&std::fs::symlink_metadata(&f)?));
        Ok(())
    }
}
