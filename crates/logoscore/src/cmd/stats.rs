//! `logoscore stats`: what each module process (and the core itself) costs right now, next to
//! its state: resident memory, CPU time, average CPU use since it started, threads.
//!
//! The core has no stats method yet, so the numbers come from `/proc/<pid>/{stat,status}` of
//! the pids `core.listModules` reports (and the core's pid from the connection's peer
//! credentials); this works because the CLI runs on the core's host as the core's user. A
//! process that is gone between the listing and the read shows `-`. Never signals or
//! changes anything.

use crate::Ctx;
use crate::client::Client;
use crate::cmd::modules;
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use std::time::Duration;

/// What `/proc` says about one process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    rss: Option<u64>,
    cpu: Duration,
    age: Option<Duration>,
    threads: Option<u64>,
}

impl Usage {
    fn cpu_percent(&self) -> Option<f64> {
        let age = self.age?.as_secs_f64();
        (age > 0.0).then(|| self.cpu.as_secs_f64() / age * 100.0)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rssBytes": self.rss,
            "cpuMs": self.cpu.as_millis() as u64,
            "cpuPercent": self.cpu_percent().map(|p| (p * 10.0).round() / 10.0),
            "threads": self.threads,
        })
    }
}

pub(crate) async fn run(ctx: &Ctx) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let list = modules(&client).await?;
    let core_pid = client.core_pid();
    let core_usage = core_pid.and_then(usage);
    let rows: Vec<(Value, Option<Usage>)> = list
        .into_iter()
        .map(|m| {
            let u = m
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .and_then(usage);
            (m, u)
        })
        .collect();
    if ctx.json {
        let modules: Vec<serde_json::Value> = rows
            .iter()
            .map(|(m, u)| {
                let mut doc = m.to_json();
                if let (Some(obj), Some(u)) = (doc.as_object_mut(), u)
                    && let serde_json::Value::Object(extra) = u.json()
                {
                    obj.extend(extra);
                }
                doc
            })
            .collect();
        let mut core = serde_json::json!({ "pid": core_pid });
        if let (Some(obj), Some(serde_json::Value::Object(extra))) =
            (core.as_object_mut(), core_usage.map(|u| u.json()))
        {
            obj.extend(extra);
        }
        output::json(
            &serde_json::json!({ "source": "proc", "core": core, "modules": modules }),
            true,
        )?;
        return Ok(());
    }
    let cells = |u: Option<Usage>| -> [String; 4] {
        match u {
            None => ["-".into(), "-".into(), "-".into(), "-".into()],
            Some(u) => [
                u.rss.map_or_else(|| "-".into(), output::size),
                output::duration(u.cpu),
                u.cpu_percent()
                    .map_or_else(|| "-".into(), |p| format!("{p:.1}%")),
                u.threads.map_or_else(|| "-".into(), |t| t.to_string()),
            ],
        }
    };
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut core_row = vec![
        "(core)".to_owned(),
        "running".to_owned(),
        core_pid.map_or_else(|| "-".into(), |p| p.to_string()),
        core_usage
            .and_then(|u| u.age)
            .map_or_else(|| "-".into(), output::duration),
        "-".to_owned(),
    ];
    core_row.extend(cells(core_usage));
    table.push(core_row);
    let (mut loaded, mut failed) = (0, 0);
    for (m, u) in &rows {
        let state = output::field(m, "state");
        match state.as_str() {
            "starting" | "ready" | "crashed" | "backoff" => loaded += 1,
            "failed" => failed += 1,
            _ => {}
        }
        let mut row = vec![
            output::field(m, "name"),
            state,
            output::field(m, "pid"),
            output::millis_field(m, "uptimeMs"),
            output::field(m, "restarts"),
        ];
        row.extend(cells(*u));
        table.push(row);
    }
    output::line(&output::table(
        &[
            "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "RSS", "CPU", "CPU%", "THREADS",
        ],
        &table,
    ))?;
    output::line(&format!(
        "{} known, {loaded} loaded, {failed} failed (CPU% is the average since the process started)",
        rows.len()
    ))?;
    Ok(())
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` when the process is gone.
fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uptime = std::fs::read_to_string("/proc/uptime").ok();
    parse(
        &stat,
        &status,
        uptime.as_deref(),
        rustix::param::clock_ticks_per_second(),
    )
}

/// The pure part of [`usage`].
fn parse(stat: &str, status: &str, uptime: Option<&str>, ticks: u64) -> Option<Usage> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // `rest[0]` is field 3 (state); utime/stime are fields 14/15, num_threads 20, starttime 22.
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = ticks.max(1);
    let to_duration = |t: u64| Duration::from_millis(t.saturating_mul(1000) / ticks);
    let cpu = to_duration(field(14)?.saturating_add(field(15)?));
    let age = uptime
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .zip(field(22))
        .and_then(|(up, start)| Duration::try_from_secs_f64(up - start as f64 / ticks as f64).ok());
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024);
    Some(Usage {
        rss,
        cpu,
        age,
        threads: field(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (logos host (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 1000 1000000 300 18446744073709551615";
        let status = "Name:\tlogos_host\nVmRSS:\t   2048 kB\nThreads:\t3\n";
        let u = parse(stat, status, Some("30.00 12.00"), 100).unwrap_or_else(|| panic!("parse"));
        assert_eq!(u.cpu, Duration::from_secs(2));
        assert_eq!(u.rss, Some(2 * 1024 * 1024));
        assert_eq!(u.threads, Some(3));
        assert_eq!(u.age, Some(Duration::from_secs(20)));
        assert_eq!(u.cpu_percent(), Some(10.0));
    }

    #[test]
    fn our_own_process_is_readable() {
        let u = usage(std::process::id()).unwrap_or_else(|| panic!("/proc/self"));
        assert!(u.rss.is_some_and(|r| r > 0));
        assert!(u.threads.is_some_and(|t| t >= 1));
    }
}
