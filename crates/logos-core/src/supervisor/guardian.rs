//! The guardian: a tiny `/bin/sh` process that cleans up after a core that died without
//! cleaning up itself (SIGKILL, abort, OOM).
//!
//! The core keeps the guardian's stdin open for its whole life and never writes to it: the
//! guardian blocks reading it, and the kernel closes it however the core died. The facts the
//! guardian acts on are in a **ledger**, a memory file (`memfd`) the guardian holds as its
//! stdout and reads only once stdin reaches end of file. The core writes each fact in place
//! with `pwrite`, which wakes nobody: a start or an exit of a module costs the core one write
//! of 256 bytes and the guardian nothing (a pipe write woke the shell on every start and
//! every exit, on the start path; docs/performance.md, nineteenth step).
//!
//! The ledger is a table of fixed records of [`RECORD`] bytes, one line each, padded with
//! spaces: `+ PID` for a module process that runs, `f ID PATH` for each file the core created
//! in the runtime dir (`PATH` relative to it, `ID` the file's device, inode and change time as
//! `stat -c %d:%i:%.9Z` prints them), `#` for a free record. A process that ended frees its
//! record and the next fact reuses it, so the ledger stays as long as the largest number of
//! facts true at once. A page holds a whole number of records and a record never straddles
//! two, so a core killed in the middle of a write leaves the record whole, or as it was.
//!
//! Once stdin reaches end of file, the guardian SIGKILLs the process groups still listed,
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

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// `$0` is the runtime dir, `$1` the directory holding this core's cgroups and `$2` their name
/// prefix (both empty without cgroups). The ledger arrives as stdout and moves to fd 3; the
/// core never writes to stdin, so the first loop only waits for its end.
const SCRIPT: &str = r#"
exec 3<&1 >/dev/null
while read -r _; do :; done
pids=
files=
ident() { stat -c '%d:%i:%.9Z' -- "$1" 2>/dev/null; }
while read -r op a b; do
  case "$op" in
    +) pids="$pids $a" ;;
    f) files="$files $a=$b" ;;
  esac
done <&3
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

/// Size of one ledger record, its newline included. It divides every page size, so no record
/// straddles two pages.
const RECORD: usize = 256;
const _: () = assert!(4096 % RECORD == 0);

/// Handle to the guardian process.
#[derive(Debug)]
pub(crate) struct Guardian {
    child: Child,
    /// Held open and never written: its end is the guardian's signal.
    stdin: Option<ChildStdin>,
    ledger: Ledger,
    runtime_dir: PathBuf,
}

/// The core's side of the ledger: the memory file, and which record holds which fact.
#[derive(Debug)]
struct Ledger {
    /// `None` once a write failed (logged once): the guardian then acts on what it has.
    file: Option<File>,
    records: Records,
    pids: HashMap<u32, u64>,
    files: HashMap<String, u64>,
}

impl Guardian {
    /// Starts the guardian for `runtime_dir` and tells it about the client token already
    /// written there.
    pub fn start(runtime_dir: &Path) -> std::io::Result<Guardian> {
        let ledger =
            match rustix::fs::memfd_create(c"logos-guardian", rustix::fs::MemfdFlags::CLOEXEC) {
                Ok(fd) => File::from(fd),
                // A sandbox that refuses `memfd_create`: a file with no name in the runtime
                // dir (tmpfs, as a rule) serves the same.
                Err(_) => unnamed_file_in(runtime_dir).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "creating its ledger: memfd_create refused, and no unnamed file (O_TMPFILE) in {}: {e}",
                            runtime_dir.display()
                        ),
                    )
                })?,
            };
        Guardian::start_with(runtime_dir, ledger)
    }

    fn start_with(runtime_dir: &Path, ledger: File) -> std::io::Result<Guardian> {
        let (cgroups, prefix) = crate::sys::cgroup_pattern(runtime_dir).unwrap_or_default();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(runtime_dir)
            .arg(cgroups)
            .arg(prefix)
            .stdin(Stdio::piped())
            // One open file shared with the guardian: the core writes with `pwrite`, which
            // leaves the shared offset at 0 for the guardian's one read through it.
            .stdout(Stdio::from(ledger.try_clone()?))
            .stderr(Stdio::null());
        crate::sys::detach_session(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let mut g = Guardian {
            child,
            stdin,
            ledger: Ledger {
                file: Some(ledger),
                records: Records::default(),
                pids: HashMap::new(),
                files: HashMap::new(),
            },
            runtime_dir: runtime_dir.to_path_buf(),
        };
        g.owns(CLIENT_TOKEN);
        Ok(g)
    }

    /// Tells the guardian a module process started, listening on `modules/<name>.sock`.
    pub fn started(&mut self, pid: u32, name: &str) {
        // A pid told again (its exit never was) keeps its one record.
        let ledger = &mut self.ledger;
        let slot = *ledger
            .pids
            .entry(pid)
            .or_insert_with(|| ledger.records.take());
        ledger.write(slot, &format!("+ {pid}"));
        self.owns(&format!("modules/{name}.sock"));
    }

    /// Tells the guardian the core created `rel` (relative to the runtime dir): it removes it
    /// after a crash of the core if it is still this very file.
    pub fn owns(&mut self, rel: &str) {
        let m = match std::fs::symlink_metadata(self.runtime_dir.join(rel)) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("guardian: cannot identify {rel}: {e}");
                return;
            }
        };
        let line = format!("f {} {rel}", identity(&m));
        if line.len() >= RECORD || line.contains('\n') {
            tracing::debug!("guardian: {rel} does not fit a ledger record; left to the next core");
            return;
        }
        let ledger = &mut self.ledger;
        let slot = *ledger
            .files
            .entry(rel.to_owned())
            .or_insert_with(|| ledger.records.take());
        ledger.write(slot, &line);
    }

    /// Tells the guardian a module process ended.
    pub fn ended(&mut self, pid: u32) {
        if let Some(slot) = self.ledger.pids.remove(&pid) {
            self.ledger.write(slot, "#");
            self.ledger.records.free.push(slot);
        }
    }

    /// Ends the guardian after a clean shutdown (it finds nothing left to do) and reaps it.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// Which records of the ledger are free.
#[derive(Debug, Default)]
struct Records {
    /// Records past the last one ever used.
    next: u64,
    free: Vec<u64>,
}

impl Records {
    /// A free record (reused before the ledger grows).
    fn take(&mut self) -> u64 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

impl Ledger {
    /// Writes `line` (shorter than a record, no newline) as record `slot`.
    fn write(&mut self, slot: u64, line: &str) {
        let Some(file) = &self.file else { return };
        let mut record = [b' '; RECORD];
        let n = line.len().min(RECORD - 1);
        record[..n].copy_from_slice(&line.as_bytes()[..n]);
        record[RECORD - 1] = b'\n';
        if let Err(e) = file.write_all_at(&record, slot * RECORD as u64) {
            tracing::warn!(
                "guardian ledger unwritable ({e}); cleanup after a crash of the core may be incomplete"
            );
            self.file = None;
        }
    }
}

/// A file in `dir` that no path names (`O_TMPFILE`), read and written by its descriptors only.
fn unnamed_file_in(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
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
    fn an_ended_process_is_left_alone_and_its_record_reused() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let rt = tmp.path().join("run");
        std::fs::create_dir_all(rt.join("modules"))?;
        for f in ["client.token", "modules/a.sock", "modules/b.sock"] {
            std::fs::write(rt.join(f), "")?;
        }
        let mut g = Guardian::start(&rt)?;
        let mut ended = Command::new("sleep").arg("30").spawn()?;
        let mut running = Command::new("sleep").arg("30").spawn()?;
        g.started(ended.id(), "a");
        g.started(running.id(), "b");
        // Told twice (an exit that was never told): still one record.
        g.started(running.id(), "b");
        g.ended(ended.id());
        // A crash loop: many starts and exits reuse the same records.
        for pid in 1_000_000..1_001_000 {
            g.started(pid, "a");
            g.ended(pid);
        }
        let records = g.ledger.file.as_ref().map(|f| f.metadata()).transpose()?;
        // The token, two processes and their two sockets: the crash loop's process takes the
        // record of the one that ended, its socket the record of the same path.
        assert_eq!(records.map(|m| m.len()), Some(5 * RECORD as u64));
        g.finish();

        assert!(
            !running.wait()?.success(),
            "a listed process was left running"
        );
        assert_eq!(ended.try_wait()?, None, "a process that ended was killed");
        ended.kill()?;
        ended.wait()?;
        Ok(())
    }

    #[test]
    fn a_ledger_in_an_unnamed_file_serves_the_same() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let rt = tmp.path().join("run");
        std::fs::create_dir_all(rt.join("modules"))?;
        std::fs::write(rt.join("modules/a.sock"), "")?;
        let mut g = Guardian::start_with(&rt, unnamed_file_in(&rt)?)?;
        let mut module = Command::new("sleep").arg("30").spawn()?;
        g.started(module.id(), "a");
        g.finish();
        assert!(
            !module.wait()?.success(),
            "the listed process was left running"
        );
        assert!(!rt.join("modules/a.sock").exists(), "its socket was left");
        // Nothing but what the test made is in the runtime dir.
        assert_eq!(std::fs::read_dir(&rt)?.count(), 1);
        Ok(())
    }

    /// Reads a process's count of voluntary context switches (each time it slept).
    fn sleeps(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .ok_or("no voluntary_ctxt_switches in /proc/PID/status")?;
        Ok(line.trim().parse()?)
    }

    #[test]
    fn facts_do_not_wake_the_guardian() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let rt = tmp.path().join("run");
        std::fs::create_dir_all(rt.join("modules"))?;
        let mut g = Guardian::start(&rt)?;
        let pid = g.child.id();
        // Waits (with a deadline) until the shell has gone to sleep on its stdin.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sleeps(pid)? == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the guardian never slept"
            );
            std::thread::yield_now();
        }
        let before = sleeps(pid)?;
        // Spaced out, so each fact would find the shell asleep if it were sent to it (the
        // pipe this replaces woke it 20 times here).
        for n in 0..20 {
            g.started(2_000_000 + n, "a");
            std::thread::sleep(std::time::Duration::from_millis(2));
            g.ended(2_000_000 + n);
        }
        let after = sleeps(pid)?;
        assert!(
            after - before <= 2,
            "the guardian woke {} times for 40 facts",
            after - before
        );
        g.finish();
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
