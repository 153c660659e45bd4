//! The guardian: a tiny `/bin/sh` process that cleans up after a core that died without
//! cleaning up itself (SIGKILL, abort, OOM).
//!
//! The core keeps the guardian's stdin open for its whole life and writes `+ PID` / `- PID`
//! as module processes start and end. When stdin reaches end of file, which the kernel does for
//! us however the core died, the guardian SIGKILLs the process groups still listed and removes
//! the sockets and token the core created. It runs in its own session so a terminal's Ctrl-C
//! does not reach it. Module processes also carry a parent-death signal; the guardian is the
//! second line and the only one that can remove files. It never removes anything else.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

const SCRIPT: &str = r#"
pids=
while read -r op pid; do
  case "$op" in
    +) pids="$pids $pid" ;;
    -) np=; for p in $pids; do [ "$p" = "$pid" ] || np="$np $p"; done; pids=$np ;;
  esac
done
for p in $pids; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
rm -f -- "$0/core.sock" "$0/client.token" "$0"/modules/*.sock
rmdir -- "$0/modules" 2>/dev/null
rmdir -- "$0" 2>/dev/null
exit 0
"#;

/// Handle to the guardian process.
#[derive(Debug)]
pub(crate) struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guardian {
    /// Starts the guardian for `runtime_dir`.
    pub fn start(runtime_dir: &Path) -> std::io::Result<Guardian> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(runtime_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::sys::detach_session(&mut cmd);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(Guardian { child, stdin })
    }

    /// Tells the guardian a module process started.
    pub fn started(&mut self, pid: u32) {
        self.send(&format!("+ {pid}\n"));
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
