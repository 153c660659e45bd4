//! `logoscore trace [--module M] [--slow 10ms] [--limit N] [--json] [--otlp URL]`: recent call
//! trees across modules, from the core's ring of spans (docs/tracing.md).
//!
//! Owns the rendering of `core.getTraces` (one tree per root call, caller → callee → nested
//! calls, each with the caller's duration, the callee's and the error) and the export of
//! `core.getSpans` to an OpenTelemetry collector with `opentelemetry-otlp` (HTTP/protobuf):
//! each module's spans go as one resource whose `service.name` is the module. Never changes
//! anything in the core.

use crate::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// `10ms`, `250us`, `1.5s`, `0`: a threshold for `--slow`.
pub(crate) fn parse_threshold(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10ms, 250us or 1.5s"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "" if n == 0.0 => 1.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ns, us, ms or s (e.g. 10ms)"
            ));
        }
    };
    Duration::try_from_secs_f64(n * scale).map_err(|e| format!("{text:?}: {e}"))
}

/// What the user asked for.
pub(crate) struct Args {
    pub module: Option<String>,
    pub slow: Option<Duration>,
    pub limit: usize,
    pub otlp: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let mut opts = BTreeMap::new();
    if let Some(m) = &args.module {
        opts.insert("module".to_owned(), Value::from(m.as_str()));
    }
    if let Some(s) = args.slow {
        let us = u64::try_from(s.as_micros()).unwrap_or(u64::MAX);
        opts.insert("slow_us".to_owned(), Value::UInt(us));
    }
    if let Some(url) = &args.otlp {
        let spans = client
            .core("getSpans", vec![Value::Map(opts.clone())])
            .await?;
        let n = export(url, &spans).await?;
        if ctx.json {
            output::json(&serde_json::json!({"exported": n, "endpoint": url}), false)?;
        } else {
            output::line(&format!("exported {n} spans to {url}"))?;
        }
        return Ok(());
    }
    opts.insert("limit".to_owned(), Value::UInt(args.limit as u64));
    let doc = client.core("getTraces", vec![Value::Map(opts)]).await?;
    if ctx.json {
        output::json(&output::value_json(&doc), true)?;
        return Ok(());
    }
    let traces = doc.get("traces").and_then(Value::as_list).unwrap_or(&[]);
    if traces.is_empty() {
        output::line("no call trees recorded (yet) that match")?;
        return Ok(());
    }
    let mut out = String::new();
    for t in traces.iter().rev() {
        let id = t.get("trace").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(out, "trace {id}");
        if let Some(root) = t.get("root") {
            render(root, "", true, true, &mut out);
        }
        out.push('\n');
    }
    let figure = |k: &str| doc.get(k).and_then(Value::as_u64).unwrap_or(0);
    let _ = write!(
        out,
        "{} trees from {} spans kept (of {}; {} evicted, {} dropped by modules)",
        traces.len(),
        figure("spans"),
        figure("capacity"),
        figure("evicted"),
        figure("dropped"),
    );
    output::line(&out)?;
    Ok(())
}

/// `1.234ms`, `12.3µs`, `2.50s`.
fn dur(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.3}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// One node and its children, drawn as a tree.
fn render(node: &Value, prefix: &str, root: bool, last: bool, out: &mut String) {
    let text = |k: &str| node.get(k).and_then(Value::as_str);
    let call = text("call").unwrap_or("?");
    let duration = node.get("duration_ns").and_then(Value::as_u64).unwrap_or(0);
    let (branch, below) = match (root, last) {
        (true, _) => ("", ""),
        (false, true) => ("└─ ", "   "),
        (false, false) => ("├─ ", "│  "),
    };
    let _ = write!(out, "{prefix}{branch}{call}  {}", dur(duration));
    let who = match (text("caller"), text("served_by")) {
        (Some(c), Some(s)) => format!("{c} → {s}"),
        (Some(c), None) => format!("{c} → ? (callee sent no span)"),
        (None, Some(s)) => format!("→ {s}"),
        (None, None) => String::new(),
    };
    let _ = write!(out, "  [{who}");
    if let Some(served) = node.get("served_ns").and_then(Value::as_u64)
        && text("caller").is_some()
    {
        let _ = write!(out, ", served in {}", dur(served));
    }
    out.push(']');
    if let Some(e) = text("error") {
        let _ = write!(out, "  ERROR {e}");
    }
    out.push('\n');
    let children = node.get("children").and_then(Value::as_list).unwrap_or(&[]);
    let prefix = format!("{prefix}{below}");
    for (i, c) in children.iter().enumerate() {
        render(c, &prefix, false, i + 1 == children.len(), out);
    }
}

fn id<const N: usize>(v: Option<&Value>) -> Option<[u8; N]> {
    let text = v?.as_str()?;
    let raw = hex::decode(text).ok()?;
    raw.try_into().ok()
}

/// One span of `core.getSpans` as OpenTelemetry span data, with the module that recorded it.
fn span_data(v: &Value) -> Option<(String, SpanData)> {
    let trace_id = TraceId::from_bytes(id::<16>(v.get("trace"))?);
    let span_id = SpanId::from_bytes(id::<8>(v.get("span"))?);
    let parent = id::<8>(v.get("parent")).map_or(SpanId::INVALID, SpanId::from_bytes);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let module = text("module")?;
    let (target, method) = (text("target")?, text("method")?);
    let start = UNIX_EPOCH + Duration::from_nanos(v.get("start_ns")?.as_u64()?);
    let end = start + Duration::from_nanos(v.get("duration_ns")?.as_u64()?);
    let kind = match v.get("kind").and_then(Value::as_str) {
        Some("server") => SpanKind::Server,
        _ => SpanKind::Client,
    };
    let status = match text("error") {
        Some(e) => Status::error(e),
        None => Status::Ok,
    };
    let data = SpanData {
        span_context: SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: parent,
        parent_span_is_remote: kind == SpanKind::Server,
        span_kind: kind,
        name: format!("{target}.{method}").into(),
        start_time: start,
        end_time: end,
        attributes: vec![
            KeyValue::new("rpc.system", "logos"),
            KeyValue::new("rpc.service", target),
            KeyValue::new("rpc.method", method),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("logos-core")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    Some((module, data))
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is used as given.
fn traces_endpoint(url: &str) -> Result<String, Error> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--otlp {url:?}: expected an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318"
            ))
        })?;
    Ok(match rest.find('/') {
        None => format!("{url}/v1/traces"),
        Some(i) if rest[i..] == *"/" => format!("{}v1/traces", url),
        Some(_) => url.to_owned(),
    })
}

/// Sends `spans` (a `core.getSpans` list) to the collector at `url`; returns how many.
async fn export(url: &str, spans: &Value) -> Result<usize, Error> {
    let endpoint = traces_endpoint(url)?;
    let mut by_module: BTreeMap<String, Vec<SpanData>> = BTreeMap::new();
    for v in spans.as_list().unwrap_or(&[]) {
        if let Some((module, data)) = span_data(v) {
            by_module.entry(module).or_default().push(data);
        }
    }
    let failed = |e: String| {
        Error::io(
            format!("cannot export spans to {endpoint}"),
            std::io::Error::other(e),
        )
    };
    let mut n = 0;
    for (module, batch) in by_module {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(module.clone())
                .build(),
        );
        n += batch.len();
        exporter
            .export(batch)
            .await
            .map_err(|e| failed(format!("{module}'s spans: {e}")))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_the_traces_path() {
        assert_eq!(
            traces_endpoint("http://127.0.0.1:4318").ok(),
            Some("http://127.0.0.1:4318/v1/traces".into())
        );
        assert_eq!(
            traces_endpoint("http://h:1/").ok(),
            Some("http://h:1/v1/traces".into())
        );
        assert_eq!(
            traces_endpoint("http://h:1/custom").ok(),
            Some("http://h:1/custom".into())
        );
        assert!(traces_endpoint("h:1").is_err());
    }

    #[test]
    fn thresholds_parse() {
        assert_eq!(parse_threshold("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_threshold("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_threshold("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_threshold("10 parsecs").is_err());
        assert!(parse_threshold("ms").is_err());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(dur(999), "999ns");
        assert_eq!(dur(1_500), "1.5µs");
        assert_eq!(dur(2_345_678), "2.346ms");
    }
}
