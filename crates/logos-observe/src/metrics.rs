//! `/metrics`: a [`View`] in the Prometheus text format (0.0.4), written by
//! `prometheus-client`'s encoder from a [`Collector`] over the view, so every name, label
//! and number is escaped and formatted by the crate made for it, never by hand.
//!
//! Every family and its labels are listed in docs/operations.md. Label values are bounded:
//! `module` is a known module (or `core`), `method` a name from that module's interface or
//! `other`, `outcome` `ok` or an error code, `state` one of the nine lifecycle states,
//! `direction` `in` or `out`, `caller`/`target` known modules. Never touches the core: it
//! only reads a view.

use crate::view::View;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, MetricEncoder};
use prometheus_client::encoding::{EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The nine lifecycle states, each a series of `logos_module_state` (`disconnected` is a
/// remote module's link being down).
pub const STATES: [&str; 9] = [
    "known",
    "starting",
    "ready",
    "stopping",
    "stopped",
    "crashed",
    "backoff",
    "failed",
    "disconnected",
];

/// The text `GET /metrics` answers with.
///
/// # Errors
/// Only if formatting into a `String` fails, which it does not.
pub fn render(view: Arc<View>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ViewCollector(view)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct ViewCollector(Arc<View>);

/// Writes one family: `name`, `help`, `kind`, then every series `each` yields.
fn family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    each: impl FnOnce(&mut MetricEncoder<'_>) -> Result<(), std::fmt::Error> + 'a,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    each(&mut metric)
}

fn counter(
    m: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    v: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(m.encode_family(labels)?)
}

fn counter_f(
    m: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    v: f64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(m.encode_family(labels)?)
}

fn gauge(
    m: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    v: impl prometheus_client::encoding::EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_gauge(&v)
}

impl Collector for ViewCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = &*self.0;
        let ms = &v.modules;
        family(
            &mut e,
            "logos_module_up",
            "1 while the module is ready, else 0.",
            MetricType::Gauge,
            |f| {
                for m in ms {
                    gauge(
                        f,
                        &[("module", m.name.as_str())],
                        i64::from(m.state == "ready"),
                    )?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_state",
            "1 for the state the module is in, 0 for the others.",
            MetricType::Gauge,
            |f| {
                for m in ms {
                    for s in STATES {
                        gauge(
                            f,
                            &[("module", m.name.as_str()), ("state", s)],
                            i64::from(m.state == s),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_restarts",
            "Crash restarts since the core started (reloads do not count).",
            MetricType::Counter,
            |f| {
                for m in ms {
                    counter(f, &[("module", m.name.as_str())], m.restarts)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_crashes",
            "Crashes (unrequested exits, missed heartbeats) since the core started.",
            MetricType::Counter,
            |f| {
                for m in ms {
                    counter(f, &[("module", m.name.as_str())], m.crashes)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_rss_bytes",
            "Resident memory of the module's process.",
            MetricType::Gauge,
            |f| {
                for m in ms {
                    if let Some(rss) = m.rss_bytes {
                        gauge(f, &[("module", m.name.as_str())], rss)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_cpu_seconds",
            "CPU time (user + system) of all the module's processes since the core started, as last seen.",
            MetricType::Counter,
            |f| {
                for m in ms {
                    if m.cpu_seconds.is_some() || m.cpu_seconds_total > 0.0 {
                        counter_f(f, &[("module", m.name.as_str())], m.cpu_seconds_total)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_calls_in_flight",
            "Calls the module is serving now.",
            MetricType::Gauge,
            |f| {
                for m in ms {
                    if let Some(n) = m.in_flight {
                        gauge(f, &[("module", m.name.as_str())], n)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_calls",
            "Calls to a module's methods by outcome: served by the module, or answered by the core while it was down. Methods outside the interface count as `other`.",
            MetricType::Counter,
            |f| {
                for m in ms {
                    for method in &m.methods {
                        for (outcome, n) in &method.outcomes {
                            let labels = [
                                ("module", m.name.as_str()),
                                ("method", method.name.as_str()),
                                ("outcome", outcome.as_str()),
                            ];
                            counter(f, &labels, *n)?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_call_duration_seconds",
            "How long calls a module served took, per method.",
            MetricType::Histogram,
            |f| {
                for m in ms {
                    for method in &m.methods {
                        let Some(buckets) = &method.buckets else {
                            continue;
                        };
                        if buckets.len() != m.bounds_seconds.len() + 1 {
                            continue;
                        }
                        let count: u64 = buckets.iter().sum();
                        let pairs: Vec<(f64, u64)> = m
                            .bounds_seconds
                            .iter()
                            .copied()
                            .chain([f64::INFINITY])
                            .zip(buckets.iter().copied())
                            .collect();
                        let labels = [
                            ("module", m.name.as_str()),
                            ("method", method.name.as_str()),
                        ];
                        f.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                            method.sum_seconds,
                            count,
                            &pairs,
                            None,
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_events",
            "Events published: by each module, and by the core itself (module=\"core\").",
            MetricType::Counter,
            |f| {
                counter(f, &[("module", "core")], v.core.events_total)?;
                for m in ms {
                    counter(f, &[("module", m.name.as_str())], m.events_total)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_events_dropped",
            "Event deliveries dropped because a subscriber read too slowly.",
            MetricType::Counter,
            |f| {
                counter(f, &[("module", "core")], v.core.events_dropped_total)?;
                for m in ms {
                    counter(f, &[("module", m.name.as_str())], m.events_dropped_total)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_streams_open",
            "Byte streams open on the module's connections.",
            MetricType::Gauge,
            |f| {
                for m in ms {
                    gauge(f, &[("module", m.name.as_str())], m.streams_open)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_stream_bytes",
            "Stream payload bytes the module read (in) and wrote (out).",
            MetricType::Counter,
            |f| {
                for m in ms {
                    counter(
                        f,
                        &[("module", m.name.as_str()), ("direction", "in")],
                        m.stream_bytes_in_total,
                    )?;
                    counter(
                        f,
                        &[("module", m.name.as_str()), ("direction", "out")],
                        m.stream_bytes_out_total,
                    )?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "logos_module_starts",
            "Module processes started: in the spare host kept for the next library module \
             (way=\"spare\"), or as a new process (way=\"cold\").",
            MetricType::Counter,
            |f| {
                counter(f, &[("way", "spare")], v.core.starts_spare_total)?;
                counter(f, &[("way", "cold")], v.core.starts_cold_total)
            },
        )?;
        family(
            &mut e,
            "logos_heartbeats",
            "Heartbeats of local modules: a count that moved on the module's heartbeat page \
             (way=\"page\"), or an answered ping (way=\"ping\": the count stood still, or the \
             module does not count).",
            MetricType::Counter,
            |f| {
                counter(f, &[("way", "page")], v.core.heartbeats_page_total)?;
                counter(f, &[("way", "ping")], v.core.heartbeats_ping_total)
            },
        )?;
        family(
            &mut e,
            "logos_policy_denials",
            "Calls and token requests the access policy refused, by caller and target.",
            MetricType::Counter,
            |f| {
                for (caller, target, n) in &v.core.denials {
                    counter(
                        f,
                        &[("caller", caller.as_str()), ("target", target.as_str())],
                        *n,
                    )?;
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}
