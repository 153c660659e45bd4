//! The registry's own page: plain server-rendered HTML listing every module with its
//! latest version, quality verdict (a coloured badge), downloads, active installs and
//! rating. No script, no external resource. Owns markup and escaping only.

use crate::index::Catalog;
use crate::quality::Status;

/// Badge colours, also what the browser test looks for in the screenshot.
pub const PASS_RGB: (u8, u8, u8) = (0x1a, 0x7f, 0x37);
/// Warn badge.
pub const WARN_RGB: (u8, u8, u8) = (0xbf, 0x87, 0x00);
/// Fail badge.
pub const FAIL_RGB: (u8, u8, u8) = (0xcf, 0x22, 0x2e);
/// Unchecked badge.
pub const NONE_RGB: (u8, u8, u8) = (0x6e, 0x77, 0x81);

fn css(rgb: (u8, u8, u8)) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb.0, rgb.1, rgb.2)
}

/// Escapes text for HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The whole page.
pub fn render(catalog: &Catalog) -> String {
    let mut rows = String::new();
    for m in &catalog.modules {
        let (class, label) = match m.quality {
            Some(Status::Pass) => ("pass", "pass"),
            Some(Status::Warn) => ("warn", "warn"),
            Some(Status::Fail) => ("fail", "fail"),
            None => ("none", "unchecked"),
        };
        let rating = m
            .rating
            .map_or_else(|| "–".to_owned(), |r| format!("{r:.1} ★ ({})", m.reviews));
        rows.push_str(&format!(
            "<tr class=\"module\" data-name=\"{n}\"><td class=\"name\">{n}</td><td class=\"version\">{v}</td><td class=\"desc\">{d}</td>\
<td><span class=\"q q-{class}\" title=\"{qs}\">{label}</span></td><td class=\"downloads\">{dl}</td><td class=\"active\">{ai}</td>\
<td class=\"rating\">{rating}</td><td class=\"signer\">{s}</td></tr>\n",
            n = escape(&m.name),
            v = escape(&m.latest.to_string()),
            d = escape(&m.description),
            qs = escape(m.quality_summary.as_deref().unwrap_or("not checked")),
            dl = m.downloads,
            ai = m.active_installs,
            s = escape(&m.signer),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"8\" class=\"empty\">No modules published yet. <code>logoscore publish FILE --registry URL</code></td></tr>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>logos module registry</title>\n<style>\n\
body{{font-family:sans-serif;margin:24px;background:#ffffff;color:#1f2328}}\n\
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:8px 12px;border-bottom:1px solid #d0d7de}}\n\
.q{{display:inline-block;min-width:90px;padding:6px 10px;color:#ffffff;font-weight:bold;text-align:center}}\n\
.q-pass{{background:{pass}}}.q-warn{{background:{warn}}}.q-fail{{background:{fail}}}.q-none{{background:{none}}}\n\
</style></head><body>\n<h1>logos module registry</h1>\n<p>{count} modules. Packages are signed by their authors: trust the signature, not this registry.</p>\n\
<table id=\"modules\"><thead><tr><th>Module</th><th>Version</th><th>Description</th><th>Quality</th><th>Downloads</th><th>Active installs</th><th>Rating</th><th>Signer</th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n</body></html>\n",
        pass = css(PASS_RGB),
        warn = css(WARN_RGB),
        fail = css(FAIL_RGB),
        none = css(NONE_RGB),
        count = catalog.modules.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let page = render(&Catalog::default());
        assert!(page.contains("No modules published yet"));
    }
}
