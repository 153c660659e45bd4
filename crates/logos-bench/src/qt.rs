//! The Qt Remote Objects reference (`../shared/bench/qtro`): the transport the reference
//! platform carries every inter-module call over, measured in the same run.
//!
//! Owns finding the C++ sources, building them once with CMake into a cache beside this
//! executable (`target/<profile>/qtro`), running `qtro_server` and `qtro_client` as two
//! processes and reading the client's figures. When Qt 6 (RemoteObjects), CMake or a C++
//! compiler is missing the row is skipped with the reason; nothing here is needed for the
//! rest of the benchmark.

use anyhow::{Context as _, Result, anyhow, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The client's figures, in nanoseconds and calls per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QtFigures {
    /// `ping()` + `waitForFinished()` per call.
    pub sync_median_ns: f64,
    pub sync_p99_ns: f64,
    /// Every call in flight at once.
    pub pipelined_per_sec: Option<f64>,
}

/// The sources: `dir` if given, else `../shared/bench/qtro` beside the workspace.
pub fn source(dir: Option<PathBuf>) -> Option<PathBuf> {
    let dir = dir.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/qtro")
    });
    dir.join("CMakeLists.txt").is_file().then_some(dir)
}

/// Builds the sources into `<exe dir>/qtro` unless a build is already there; returns the
/// build dir.
///
/// # Errors
/// When CMake is missing or the build fails (the error carries the tail of its output).
pub fn build(src: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let root = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent dir", exe.display()))?
        .join("qtro");
    let build = root.join("build");
    if build.join("qtro_server").is_file() && build.join("qtro_client").is_file() {
        return Ok(build);
    }
    // The sources may sit on a read-only mount: build from a writable copy.
    let copy = root.join("src");
    std::fs::create_dir_all(&copy).with_context(|| format!("creating {}", copy.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.is_file()
            && let Some(name) = path.file_name()
        {
            let dest = copy.join(name);
            std::fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
            let mut perms = std::fs::metadata(&dest)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&dest, perms)?;
        }
    }
    run_tool(
        Command::new("cmake")
            .arg("-S")
            .arg(&copy)
            .arg("-B")
            .arg(&build)
            .arg("-DCMAKE_BUILD_TYPE=Release"),
        "cmake (configure)",
    )?;
    run_tool(
        Command::new("cmake").arg("--build").arg(&build).arg("-j2"),
        "cmake --build",
    )?;
    Ok(build)
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what} could not run (is CMake installed?)"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}): {}", out.status, tail.join(" / "));
    }
    Ok(())
}

/// Kills and reaps the server on drop, and removes the socket file it leaves behind
/// (`QLocalServer` puts `local:NAME` at `$TMPDIR/NAME` and a killed server cannot remove it).
struct Server {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Runs the server and a client making `n` calls; reads the client's figures.
///
/// # Errors
/// When either program fails or prints something unexpected.
pub fn measure(build: &Path, n: usize) -> Result<QtFigures> {
    let name = format!("logos-bench-qtro-{}", std::process::id());
    let mut server = Server {
        child: Command::new(build.join("qtro_server"))
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting qtro_server")?,
        socket: std::env::temp_dir().join(&name),
    };
    let stdout = server
        .child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("qtro_server has no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("qtro_server did not print ready"))?;
    if line.trim() != "ready" {
        bail!("qtro_server printed {line:?} instead of ready");
    }
    let started = Instant::now();
    let out = Command::new(build.join("qtro_client"))
        .arg(&name)
        .arg(n.to_string())
        .stdin(Stdio::null())
        .output()
        .context("running qtro_client")?;
    drop(server);
    if !out.status.success() {
        bail!(
            "qtro_client failed ({}) after {:?}: {}",
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Reads `qtro_client`'s output.
fn parse(text: &str) -> Result<QtFigures> {
    let sync = text
        .lines()
        .find(|l| l.starts_with("qtro sync"))
        .ok_or_else(|| anyhow!("no sync line in qtro_client output: {text:?}"))?;
    let micros = |key: &str| -> Result<f64> {
        let rest = sync
            .split_once(key)
            .map(|(_, r)| r.trim_start())
            .ok_or_else(|| anyhow!("no {key} in {sync:?}"))?;
        let number = rest.split("us").next().unwrap_or_default().trim();
        number
            .parse::<f64>()
            .map(|us| us * 1e3)
            .with_context(|| format!("{key} {number:?} in {sync:?}"))
    };
    let pipelined_per_sec = text
        .lines()
        .find(|l| l.starts_with("qtro pipelined"))
        .and_then(|l| l.split_once("all in flight:"))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    Ok(QtFigures {
        sync_median_ns: micros("median=")?,
        sync_p99_ns: micros("p99=")?,
        pipelined_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_client_output() {
        let text = "qtro replica setup             0.58 ms (connectToNode + acquire + waitForSource)\n\
            qtro sync waitForFinished 64B  n=  20000 median=   68.09us p90=   85.86us p99=  102.42us min=  37.09us rate=    14129 rt/s\n\
            qtro chained async 64B         n=  20000 median=   68.27us p90=   71.56us p99=   95.24us min=  24.18us rate=    14646 rt/s\n\
            qtro pipelined 64B             n=  20000 all in flight:    265605 calls/s (75.3 ms total)\n";
        let f = parse(text).unwrap_or_else(|e| panic!("{e:#}"));
        assert!((f.sync_median_ns - 68_090.0).abs() < 1e-6);
        assert!((f.sync_p99_ns - 102_420.0).abs() < 1e-6);
        assert_eq!(f.pipelined_per_sec, Some(265_605.0));
        assert!(parse("nothing").is_err());
    }
}
