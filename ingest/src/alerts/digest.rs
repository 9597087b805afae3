//! The weekly digest of one owner, rendered for a mail.
//!
//! In: a [`Digest`]: the owner's domains with the week's status, pass rates, busiest and
//! new senders, open alerts and mail per day, queried and ordered by the caller.
//! Out: a [`RenderedDigest`]: the subject, an HTML part (inline styles, one column,
//! readable on a phone), a plain-text part, a CSV attachment and one PNG bar chart per
//! domain with mail, which the HTML links by `cid:` (multipart/related) or embeds as
//! `data:` URIs. Pure: no I/O, nothing can fail.
//!
//! Every string of a digest comes from reports or reverse DNS: the HTML escapes all of
//! them, the CSV defuses spreadsheet formulas, the text part and subject drop control
//! characters.

use std::fmt::Write as _;

use base64::Engine as _;

/// One owner's week.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Digest {
    pub owner: String,
    /// The week's first and last day, "YYYY-MM-DD" (Monday..Sunday).
    pub week_start: String,
    pub week_end: String,
    /// Their domains, in the order to show (worst status first is the caller's job).
    pub domains: Vec<DomainDigest>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainDigest {
    pub domain: String,
    /// "red" | "amber" | "green"
    pub status: String,
    pub reasons: Vec<String>,
    /// Messages reported this week, those passing DMARC, those with aligned DKIM pass,
    /// aligned SPF pass.
    pub messages: u64,
    pub dmarc_pass: u64,
    pub dkim_pass: u64,
    pub spf_pass: u64,
    /// Busiest senders of the week (at most 10, the caller cuts).
    pub top_senders: Vec<SenderVolume>,
    /// Sources seen this week and not in the 30 days before.
    pub new_sources: Vec<SenderVolume>,
    pub open_alerts: Vec<OpenAlert>,
    /// One entry per day of the week, in order (days without mail have zeros).
    pub daily: Vec<DayVolume>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderVolume {
    /// The sender's name (a service such as "Google Workspace", a reverse-DNS
    /// organisation, or an address).
    pub sender: String,
    /// The known service's name, '' when none.
    pub service: String,
    /// One example source address ('' when the row sums several).
    pub source_ip: String,
    pub messages: u64,
    pub dmarc_pass: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenAlert {
    pub rule: String,
    pub severity: String,
    pub summary: String,
    /// "YYYY-MM-DD HH:MM UTC"
    pub first_seen: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayVolume {
    /// "YYYY-MM-DD"
    pub day: String,
    pub pass: u64,
    pub fail: u64,
}

/// How the HTML refers to the charts: `cid:` links for a MIME mail (multipart/related),
/// or data: URIs for a standalone file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLinks {
    ContentId,
    DataUri,
}

/// A chart image: its content id (without angle brackets, e.g. "chart-1@dmarc-ingest"),
/// a file name ("example.org.png"), the PNG bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub content_id: String,
    pub file_name: String,
    pub png: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderedDigest {
    pub subject: String,
    pub html: String,
    pub text: String,
    pub csv: String,
    /// One per domain with mail, in the domains' order; `chart-<n>` is the n-th chart.
    pub charts: Vec<Chart>,
}

/// The chart's size in pixels.
pub const CHART_WIDTH: u32 = 560;
pub const CHART_HEIGHT: u32 = 160;
const PASS_RGB: [u8; 3] = [67, 160, 71];
const FAIL_RGB: [u8; 3] = [229, 57, 53];
const BASELINE_RGB: [u8; 3] = [140, 149, 159];
/// The text part's line length.
const TEXT_WIDTH: usize = 78;
const NO_DOMAINS: &str = "No domains are assigned to you: nothing to report this week.";
const GREY: &str = "color:#57606a";
const SMALL: &str = "font-size:12px;color:#57606a";
const H3: &str = "font-size:15px;margin:14px 0 4px";
const CELL: &str = "padding:4px 6px 4px 0;border-bottom:1px solid #eaeef2;vertical-align:top";
const NUM: &str = "text-align:right;white-space:nowrap";

pub fn render(digest: &Digest, links: ImageLinks) -> RenderedDigest {
    let with_mail = digest.domains.iter().filter(|d| d.messages > 0);
    let charts: Vec<Chart> = (with_mail.enumerate())
        .map(|(i, d)| Chart {
            content_id: format!("chart-{}@dmarc-ingest", i + 1),
            file_name: format!("{}.png", file_safe(&d.domain)),
            png: chart_png(&d.daily),
        })
        .collect();
    RenderedDigest {
        subject: clean(&format!(
            "DMARC weekly digest {}: {}",
            week(digest),
            tally(digest)
        )),
        html: html(digest, &charts, links),
        text: text(digest),
        csv: csv(digest),
        charts,
    }
}

/// A small bar chart (about 560x160 px, RGB) of the days' pass (green) and fail (red)
/// volume, stacked per day, with a 1 px baseline; all-zero days draw nothing; scaled to
/// the busiest day.
pub fn chart_png(daily: &[DayVolume]) -> Vec<u8> {
    let (w, h) = (CHART_WIDTH as usize, CHART_HEIGHT as usize);
    let mut rgb = vec![255u8; w * h * 3];
    let mut fill = |xs: std::ops::Range<usize>, ys: std::ops::Range<usize>, c: [u8; 3]| {
        for y in ys {
            for x in xs.clone() {
                rgb[(y * w + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    };
    let (base, tallest) = (h - 1, h - 9);
    let busiest = daily.iter().map(|d| d.pass.saturating_add(d.fail)).max();
    let busiest = busiest.unwrap_or(0).max(1) as u128;
    // Any mail at all shows as at least 1 px.
    let bar = |v: u64| match v {
        0 => 0,
        v => ((v as u128 * tallest as u128 / busiest) as usize).max(1),
    };
    let slot = w / daily.len().max(1);
    for (i, day) in daily.iter().enumerate() {
        let total = bar(day.pass.saturating_add(day.fail));
        let pass = bar(day.pass).min(total);
        let fail = if day.fail > 0 {
            (total - pass).max(1)
        } else {
            0
        };
        let pass = total - fail;
        let xs = i * slot + slot / 5..(i + 1) * slot - slot / 5;
        fill(xs.clone(), base - pass..base, PASS_RGB);
        fill(xs, base - total..base - pass, FAIL_RGB);
    }
    fill(0..w, base..h, BASELINE_RGB);
    // Cannot fail: a valid header and a Vec to write to.
    encode_png(&rgb).unwrap_or_default()
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, CHART_WIDTH, CHART_HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

fn html(d: &Digest, charts: &[Chart], links: ImageLinks) -> String {
    let (week, owner, tally) = (esc(&week(d)), esc(&d.owner), esc(&tally(d)));
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>DMARC weekly digest {week}</title>\
         <style>@media (max-width:480px){{.digest{{padding:12px !important}}}}</style>\
         </head>\n<body style=\"margin:0;padding:0;background:#f3f4f6\">\n\
         <div class=\"digest\" style=\"max-width:640px;margin:0 auto;padding:20px;\
         background:#ffffff;color:#1f2328;font-family:-apple-system,'Segoe UI',Roboto,\
         Helvetica,Arial,sans-serif;font-size:15px;line-height:1.45;\
         word-break:break-word;overflow-wrap:anywhere\">\n\
         <h1 style=\"font-size:20px;margin:0\">DMARC weekly digest</h1>\n\
         <p style=\"margin:2px 0 0;{GREY}\">{week} · {owner}</p>\n\
         <p style=\"margin:8px 0 0\"><b>{tally}</b></p>\n"
    );
    if d.domains.is_empty() {
        let _ = writeln!(h, "<p>{NO_DOMAINS}</p>");
    }
    let mut charts = charts.iter().peekable();
    for dom in &d.domains {
        let (bg, fg) = match dom.status.to_ascii_lowercase().as_str() {
            "red" => ("#c62828", "#ffffff"),
            "amber" => ("#f9a825", "#000000"),
            "green" => ("#2e7d32", "#ffffff"),
            _ => ("#6e7781", "#ffffff"),
        };
        let _ = write!(
            h,
            "<div style=\"border-top:1px solid #d0d7de;margin-top:18px;padding-top:14px\">\n\
             <h2 style=\"font-size:18px;margin:0 0 6px\"><span style=\"display:inline-block;\
             padding:1px 8px;border-radius:4px;background:{bg};color:{fg};font-size:13px;\
             font-weight:700;vertical-align:2px\">{}</span> {}</h2>\n",
            esc(&dom.status.to_uppercase()),
            esc(&dom.domain),
        );
        list(&mut h, dom.reasons.iter().map(|r| esc(r)));
        let _ = writeln!(h, "<p style=\"margin:6px 0\">{}</p>", esc(&volume(dom)));
        if let Some(chart) = charts.next_if(|_| dom.messages > 0) {
            chart_html(&mut h, dom, chart, links);
        }
        senders(&mut h, "Top senders", &dom.top_senders);
        senders(
            &mut h,
            "New sources (not seen in the 30 days before)",
            &dom.new_sources,
        );
        if !dom.open_alerts.is_empty() {
            let _ = writeln!(h, "<h3 style=\"{H3}\">Open alerts</h3>");
        }
        list(
            &mut h,
            dom.open_alerts.iter().map(|a| {
                let (severity, summary) = (esc(&a.severity.to_uppercase()), esc(&a.summary));
                let (since, rule) = (esc(&a.first_seen), esc(&a.rule));
                format!(
                    "<b>{severity}</b> {summary}<br>\
                     <span style=\"{SMALL}\">since {since} · {rule}</span>"
                )
            }),
        );
        h.push_str("</div>\n");
    }
    let _ = write!(
        h,
        "<p style=\"margin:24px 0 0;padding-top:12px;border-top:1px solid #d0d7de;{SMALL}\">\
         From dmarc-ingest: the DMARC aggregate reports received for these days (UTC). \
         The attached CSV has the numbers per day and per sender.</p>\n</div>\n</body></html>\n"
    );
    h
}

/// The chart's `<img>` (the numbers in its alt text) and the days under it.
fn chart_html(h: &mut String, dom: &DomainDigest, chart: &Chart, links: ImageLinks) {
    let src = match links {
        ImageLinks::ContentId => format!("cid:{}", chart.content_id),
        ImageLinks::DataUri => {
            let png = base64::engine::general_purpose::STANDARD.encode(&chart.png);
            format!("data:image/png;base64,{png}")
        }
    };
    let alt: Vec<String> = (dom.daily.iter())
        .map(|v| format!("{} {} passed, {} failed", v.day, v.pass, v.fail))
        .collect();
    let _ = write!(
        h,
        "<img src=\"{}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" \
         alt=\"Messages per day: {}\" style=\"display:block;width:100%;\
         max-width:{CHART_WIDTH}px;height:auto;border:0;margin-top:8px\">\n\
         <table role=\"presentation\" style=\"width:100%;max-width:{CHART_WIDTH}px;\
         table-layout:fixed;border-collapse:collapse;font-size:11px;{GREY};\
         text-align:center\"><tr>",
        esc(&src),
        esc(&alt.join("; ")),
    );
    for v in &dom.daily {
        // "2026-11-23" as "11-23", under its bar (the chart's slots are as wide).
        let _ = write!(h, "<td>{}</td>", esc(v.day.get(5..).unwrap_or(&v.day)));
    }
    let _ = writeln!(
        h,
        "</tr></table>\n<p style=\"margin:2px 0 0;font-size:13px;{GREY}\">\
         Messages per day (UTC): green passed DMARC, red failed.</p>"
    );
}

/// A `<ul>` of items already escaped; nothing when there are none.
fn list(h: &mut String, items: impl Iterator<Item = String>) {
    let items: String = items.map(|i| format!("<li>{i}</li>")).collect();
    if !items.is_empty() {
        let _ = writeln!(
            h,
            "<ul style=\"margin:4px 0;padding-left:20px\">{items}</ul>"
        );
    }
}

fn senders(h: &mut String, title: &str, rows: &[SenderVolume]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h3 style=\"{H3}\">{title}</h3>\n<table role=\"presentation\" style=\"width:100%;\
         border-collapse:collapse;font-size:14px\"><tr style=\"{GREY};text-align:left\">\
         <th style=\"{CELL}\">Sender</th><th style=\"{CELL};{NUM}\">Messages</th>\
         <th style=\"{CELL};{NUM}\">Passing</th></tr>"
    );
    for s in rows {
        // Mostly failing: in bold red (the number says it too).
        let failing = match s.dmarc_pass.saturating_mul(2) < s.messages {
            true => ";color:#c62828;font-weight:700",
            false => "",
        };
        let _ = writeln!(
            h,
            "<tr><td style=\"{CELL}\">{}<br><span style=\"{SMALL}\">{}</span></td>\
             <td style=\"{CELL};{NUM}\">{}</td><td style=\"{CELL};{NUM}{failing}\">{}</td></tr>",
            esc(&s.sender),
            esc(&detail(s)),
            thousands(s.messages),
            pct(s.dmarc_pass, s.messages),
        );
    }
    h.push_str("</table>\n");
}

/// What a sender row adds to the name: the service (or that none is known), the address.
fn detail(s: &SenderVolume) -> String {
    let service = if s.service.is_empty() {
        "unknown service"
    } else {
        &s.service
    };
    let parts = [service, &s.source_ip];
    let parts: Vec<&str> = parts
        .into_iter()
        .filter(|p| !p.is_empty() && *p != s.sender)
        .collect();
    parts.join(" · ")
}

/// "37,350 messages; passing DMARC 84.4%, DKIM aligned 83.5%, SPF aligned 82.7%."
fn volume(dom: &DomainDigest) -> String {
    if dom.messages == 0 {
        return "No reports this week.".into();
    }
    let n = dom.messages;
    let (dmarc, dkim, spf) = (
        pct(dom.dmarc_pass, n),
        pct(dom.dkim_pass, n),
        pct(dom.spf_pass, n),
    );
    let n = thousands(n);
    format!("{n} messages; passing DMARC {dmarc}, DKIM aligned {dkim}, SPF aligned {spf}.")
}

fn text(d: &Digest) -> String {
    let mut t = String::new();
    wrap(&mut t, "", &format!("DMARC weekly digest {}", week(d)));
    wrap(&mut t, "", &format!("For {}: {}", d.owner, tally(d)));
    if d.domains.is_empty() {
        wrap(&mut t, "", NO_DOMAINS);
    }
    for dom in &d.domains {
        t.push('\n');
        wrap(
            &mut t,
            "",
            &format!("{} - {}", dom.domain, dom.status.to_uppercase()),
        );
        for reason in &dom.reasons {
            wrap(&mut t, "  - ", reason);
        }
        wrap(&mut t, "  ", &volume(dom));
        if dom.messages > 0 {
            t.push_str("  Per day, passing / failing DMARC:\n");
            for v in &dom.daily {
                let (day, pass, fail) = (clean(&v.day), thousands(v.pass), thousands(v.fail));
                let _ = writeln!(t, "    {day}  {pass:>9} / {fail}");
            }
        }
        for (title, rows) in [
            ("Top senders", &dom.top_senders),
            ("New sources", &dom.new_sources),
        ] {
            if !rows.is_empty() {
                let _ = writeln!(t, "  {title}:");
            }
            for s in rows {
                let (n, p) = (thousands(s.messages), pct(s.dmarc_pass, s.messages));
                let line = match detail(s) {
                    none if none.is_empty() => format!("{}: {n} messages, {p} passing", s.sender),
                    some => format!("{} ({some}): {n} messages, {p} passing", s.sender),
                };
                wrap(&mut t, "    - ", &line);
            }
        }
        if !dom.open_alerts.is_empty() {
            t.push_str("  Open alerts:\n");
        }
        for a in &dom.open_alerts {
            let (severity, summary) = (a.severity.to_uppercase(), &a.summary);
            let line = format!(
                "[{severity}] {summary} (since {}, {})",
                a.first_seen, a.rule
            );
            wrap(&mut t, "    - ", &line);
        }
    }
    t.push_str("\nFrom dmarc-ingest; the attached CSV has the numbers per day and sender.\n");
    t
}

/// Appends `text` in lines of at most `TEXT_WIDTH` characters (longer words stay whole),
/// the first starting with `first`, the others indented as far; control characters
/// dropped.
fn wrap(out: &mut String, first: &str, text: &str) {
    let mut line = first.to_string();
    let indent = " ".repeat(first.chars().count());
    for word in clean(text).split(' ').filter(|w| !w.is_empty()) {
        let used = line.chars().count();
        if used > indent.len() && used + 1 + word.chars().count() > TEXT_WIDTH {
            let _ = writeln!(out, "{}", line.trim_end());
            line.clone_from(&indent);
        }
        if line.chars().count() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

fn csv(d: &Digest) -> String {
    let mut c = String::new();
    let header = "section,domain,status,day,sender,service,source_ip,messages,dmarc_pass";
    csv_row(&mut c, &header.split(',').collect::<Vec<_>>());
    for dom in &d.domains {
        let (domain, status) = (dom.domain.as_str(), dom.status.as_str());
        for v in &dom.daily {
            let (n, pass) = (
                v.pass.saturating_add(v.fail).to_string(),
                v.pass.to_string(),
            );
            csv_row(
                &mut c,
                &["daily", domain, status, &v.day, "", "", "", &n, &pass],
            );
        }
        for (section, rows) in [
            ("sender", &dom.top_senders),
            ("new_source", &dom.new_sources),
        ] {
            for s in rows {
                let (n, pass) = (s.messages.to_string(), s.dmarc_pass.to_string());
                let (sender, service, ip) = (&s.sender, &s.service, &s.source_ip);
                csv_row(
                    &mut c,
                    &[section, domain, status, "", sender, service, ip, &n, &pass],
                );
            }
        }
    }
    c
}

/// One RFC 4180 record (CRLF); a field a spreadsheet would take for a formula gets a `'`.
fn csv_row(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut f = field.to_string();
        if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            f.insert(0, '\'');
        }
        if f.contains([',', '"', '\n', '\r']) {
            f = format!("\"{}\"", f.replace('"', "\"\""));
        }
        out.push_str(&f);
    }
    out.push_str("\r\n");
}

fn week(d: &Digest) -> String {
    format!("{} – {}", d.week_start, d.week_end)
}

/// "3 domains, 1 red, 1 amber": red and amber counted when there are some.
fn tally(d: &Digest) -> String {
    let n = d.domains.len();
    let mut s = format!("{n} domain{}", if n == 1 { "" } else { "s" });
    for status in ["red", "amber"] {
        let is = |x: &&DomainDigest| x.status.eq_ignore_ascii_case(status);
        match d.domains.iter().filter(is).count() {
            0 => {}
            k => {
                let _ = write!(s, ", {k} {status}");
            }
        }
    }
    s
}

/// HTML-escaped, control characters as spaces.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A domain as a file name: anything outside [A-Za-z0-9.-] becomes `_`.
fn file_safe(s: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    s.chars().map(|c| if ok(c) { c } else { '_' }).collect()
}

/// `part` of `whole` in percent, rounded down to one decimal (100% only when all).
fn pct(part: u64, whole: u64) -> String {
    match (part as u128 * 1000).checked_div(whole as u128) {
        Some(permille) => format!("{}.{}%", permille / 10, permille % 10),
        None => "–".to_string(),
    }
}

fn thousands(n: u64) -> String {
    let mut out = n.to_string();
    let mut i = out.len();
    while i > 3 {
        i -= 3;
        out.insert(i, ',');
    }
    out
}

/// A made-up digest for docs and render tests.
pub fn sample() -> Digest {
    let sv = |sender: &str, known: bool, ip: &str, messages, dmarc_pass| SenderVolume {
        sender: sender.into(),
        service: if known { sender.into() } else { String::new() },
        source_ip: ip.into(),
        messages,
        dmarc_pass,
    };
    let domain = |name: &str, status: &str, reasons: &[&str], pass: [u64; 7], fail: [u64; 7]| {
        let day = |i: usize| DayVolume {
            day: format!("2026-11-{}", 23 + i),
            pass: pass[i],
            fail: fail[i],
        };
        DomainDigest {
            domain: name.into(),
            status: status.into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            messages: pass.iter().chain(&fail).sum(),
            dmarc_pass: pass.iter().sum(),
            daily: (0..7).map(day).collect(),
            ..DomainDigest::default()
        }
    };
    let spoofer = sv("203.0.113.66", false, "203.0.113.66", 5_690, 0);
    let relay = sv(
        "mail-relay.unknown-hosting.example",
        false,
        "198.51.100.23",
        70,
        0,
    );
    let bulk = "mta-out-17.eu-west.bulk-newsletter-delivery.example-hosting.net";
    let bulk = sv(bulk, false, "192.0.2.44", 76, 20);
    let reasons = [
        "15.5% of messages fail DMARC (5,800 of 37,350)",
        "An unknown source, 203.0.113.66, sent 5,690 messages that fail DMARC",
        "DMARC policy is p=none: failing mail is delivered",
    ];
    let (pass, fail) = (
        [5820, 6140, 6010, 5930, 5460, 1210, 980],
        [40, 35, 1900, 2450, 1320, 30, 25],
    );
    let red = DomainDigest {
        dkim_pass: 31_200,
        spf_pass: 30_900,
        top_senders: vec![
            sv("Google Workspace", true, "209.85.220.41", 24_310, 24_290),
            sv("Mailchimp", true, "198.2.128.10", 7_280, 7_260),
            spoofer.clone(),
            relay.clone(),
        ],
        new_sources: vec![spoofer, relay],
        open_alerts: vec![OpenAlert {
            rule: "status_red".into(),
            severity: "critical".into(),
            summary: "example.com turned red: 15.5% of its mail fails DMARC".into(),
            first_seen: "2026-11-25 06:00 UTC".into(),
        }],
        ..domain("example.com", "red", &reasons, pass, fail)
    };
    let reasons = [
        "DMARC policy is p=quarantine, not yet p=reject",
        "DKIM is not aligned for 9.7% of messages (Mailchimp signs with its own domain)",
    ];
    let (pass, fail) = (
        [1210, 1340, 1290, 1385, 1150, 120, 95],
        [12, 18, 9, 22, 15, 0, 0],
    );
    let amber = DomainDigest {
        dkim_pass: 6_020,
        spf_pass: 6_400,
        top_senders: vec![
            sv("Microsoft 365", true, "40.107.22.55", 5_210, 5_200),
            sv("Mailchimp", true, "198.2.180.12", 1_380, 1_370),
            bulk.clone(),
        ],
        new_sources: vec![bulk],
        ..domain("example.org", "amber", &reasons, pass, fail)
    };
    let parked = ["Parked domain: p=reject, SPF -all, no mail expected"];
    Digest {
        owner: "Marketing & Web <web-team@example.com>".into(),
        week_start: "2026-11-23".into(),
        week_end: "2026-11-29".into(),
        domains: vec![
            red,
            amber,
            domain("example.net", "green", &parked, [0; 7], [0; 7]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(rgb: &[u8], x: usize, y: usize) -> [u8; 3] {
        let i = (y * CHART_WIDTH as usize + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    fn days(volumes: &[(u64, u64)]) -> Vec<DayVolume> {
        let day = |&(pass, fail)| DayVolume {
            pass,
            fail,
            ..DayVolume::default()
        };
        volumes.iter().map(day).collect()
    }

    #[test]
    fn subject_counts_domains_and_only_nonzero_red_and_amber() {
        let week = "DMARC weekly digest 2026-11-23 – 2026-11-29";
        let subject = render(&sample(), ImageLinks::ContentId).subject;
        assert_eq!(subject, format!("{week}: 3 domains, 1 red, 1 amber"));
        let mut green = sample();
        green.domains.drain(..2);
        let subject = render(&green, ImageLinks::ContentId).subject;
        assert_eq!(subject, format!("{week}: 1 domain"));
    }

    #[test]
    fn html_is_a_whole_self_contained_page_with_badges_rates_and_tables() {
        let html = render(&sample(), ImageLinks::DataUri).html;
        for part in [
            "<!DOCTYPE html>",
            "<meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "max-width:640px",
            "word-break:break-word",
            ">RED</span> example.com</h2>",
            ">AMBER</span> example.org</h2>",
            ">GREEN</span> example.net</h2>",
            "37,350 messages; passing DMARC 84.4%, DKIM aligned 83.5%, SPF aligned 82.7%.",
            "No reports this week.",
            "<li>DMARC policy is p=none: failing mail is delivered</li>",
            "Google Workspace<br><span style=\"font-size:12px;color:#57606a\">209.85.220.41<",
            "203.0.113.66<br><span style=\"font-size:12px;color:#57606a\">unknown service<",
            "New sources (not seen in the 30 days before)",
            "<b>CRITICAL</b> example.com turned red",
            "since 2026-11-25 06:00 UTC · status_red",
            "alt=\"Messages per day: 2026-11-23 5820 passed, 40 failed; 2026-11-24",
            "Marketing &amp; Web &lt;web-team@example.com&gt;",
        ] {
            assert!(html.contains(part), "missing {part:?}");
        }
        for absent in [
            "<script", "http://", "https://", "<link", "onerror", "onload",
        ] {
            assert!(!html.contains(absent), "unexpected {absent:?}");
        }
    }

    #[test]
    fn html_escapes_every_string_from_the_digest() {
        let evil = "\"><img src=x onerror=1>";
        let mut d = sample();
        (d.owner, d.week_start) = (evil.into(), evil.into());
        let dom = &mut d.domains[0];
        (dom.domain, dom.status, dom.daily[0].day) = (evil.into(), evil.into(), evil.into());
        dom.reasons.push(evil.into());
        dom.top_senders[0].sender = "<script>alert(1)</script>".into();
        dom.top_senders[0].service = evil.into();
        dom.top_senders[1].source_ip = "'><script>".into();
        dom.new_sources[0].sender = evil.into();
        let a = &mut dom.open_alerts[0];
        (a.rule, a.severity, a.summary, a.first_seen) =
            (evil.into(), evil.into(), evil.into(), evil.into());
        let r = render(&d, ImageLinks::ContentId);
        let upper = r.html.to_uppercase();
        assert!(!upper.contains("<SCRIPT") && !upper.contains("<IMG SRC=X"));
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(r.html.contains("&quot;&gt;&lt;img src=x onerror=1&gt;"));
        assert!(r.html.contains("&#39;&gt;&lt;script&gt;"));
        assert_eq!(r.charts[0].file_name, "___img_src_x_onerror_1_.png");
    }

    #[test]
    fn images_link_by_content_id_or_embed_data_uris_one_per_domain_with_mail() {
        let mut d = sample();
        d.domains.rotate_right(1); // the domain without mail (and chart) first
        let cid = render(&d, ImageLinks::ContentId);
        let ids: Vec<_> = cid
            .charts
            .iter()
            .map(|c| (&c.content_id[..], &c.file_name[..]))
            .collect();
        assert_eq!(
            ids,
            [
                ("chart-1@dmarc-ingest", "example.com.png"),
                ("chart-2@dmarc-ingest", "example.org.png")
            ]
        );
        let at = |s: &str| cid.html.find(s).unwrap();
        assert!(
            at("example.com</h2>")
                < at("<img src=\"cid:chart-1@dmarc-ingest\" width=\"560\" height=\"160\"")
        );
        assert!(at("example.org</h2>") < at("<img src=\"cid:chart-2@dmarc-ingest\""));
        assert_eq!(cid.html.matches("<img").count(), 2);

        let data = render(&d, ImageLinks::DataUri);
        let src = data
            .html
            .split("<img src=\"data:image/png;base64,")
            .nth(1)
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(&src[..src.find('"').unwrap()]);
        assert_eq!(png.unwrap(), data.charts[0].png);
        assert!(!data.html.contains("cid:"));
    }

    #[test]
    fn owner_without_domains_still_gets_a_digest() {
        let r = render(
            &Digest {
                domains: vec![],
                ..sample()
            },
            ImageLinks::DataUri,
        );
        assert!(r.subject.ends_with(": 0 domains"));
        assert!(r.html.contains(NO_DOMAINS) && r.html.ends_with("</html>\n"));
        assert!(r.text.contains(NO_DOMAINS));
        assert!(r.charts.is_empty());
        assert_eq!(r.csv.lines().count(), 1);
    }

    #[test]
    fn text_part_has_the_facts_in_short_lines_without_markup() {
        let mut d = sample();
        d.domains[0]
            .reasons
            .push(format!("a very long reason {}", "word ".repeat(40)));
        d.domains[0].top_senders[0].sender = "line\r\nbreak".into();
        let text = render(&d, ImageLinks::ContentId).text;
        for part in [
            "DMARC weekly digest 2026-11-23 – 2026-11-29\n",
            "For Marketing & Web <web-team@example.com>: 3 domains, 1 red, 1 amber\n",
            "\nexample.com - RED\n",
            "  37,350 messages; passing DMARC 84.4%, DKIM aligned 83.5%, SPF aligned 82.7%",
            "    2026-11-25      6,010 / 1,900\n",
            "    - 203.0.113.66 (unknown service): 5,690 messages, 0.0% passing\n",
            "    - line break (Google Workspace · 209.85.220.41): 24,310 messages",
            "    - Mailchimp (198.2.128.10): 7,280 messages, 99.7% passing\n",
            "    - [CRITICAL] example.com turned red: 15.5% of its mail fails DMARC (since\n",
            "\nexample.net - GREEN\n  - Parked domain",
            "  No reports this week.\n",
        ] {
            assert!(text.contains(part), "missing {part:?} in\n{text}");
        }
        assert!(
            text.lines().all(|l| l.chars().count() <= TEXT_WIDTH),
            "{text}"
        );
        assert!(!text.contains("<b>") && !text.contains("&amp;") && !text.contains('\r'));
    }

    #[test]
    fn csv_has_a_row_per_domain_day_and_per_sender_with_crlf() {
        let csv = render(&sample(), ImageLinks::ContentId).csv;
        let rows: Vec<&str> = csv.split_terminator("\r\n").collect();
        assert_eq!(
            rows[0],
            "section,domain,status,day,sender,service,source_ip,messages,dmarc_pass"
        );
        assert_eq!(rows[1], "daily,example.com,red,2026-11-23,,,,5860,5820");
        for row in [
            "sender,example.com,red,,Google Workspace,Google Workspace,209.85.220.41,24310,24290",
            "new_source,example.com,red,,203.0.113.66,,203.0.113.66,5690,0",
            "daily,example.net,green,2026-11-29,,,,0,0",
        ] {
            assert!(rows.contains(&row), "missing {row}");
        }
        // 3 domains x 7 days, 7 top senders, 3 new sources.
        assert_eq!(rows.len(), 1 + 21 + 7 + 3);
        assert!(csv.ends_with("\r\n") && !csv.replace("\r\n", "").contains(['\r', '\n']));
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines_as_rfc_4180() {
        let mut out = String::new();
        csv_row(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn csv_defuses_spreadsheet_formulas() {
        let mut out = String::new();
        csv_row(
            &mut out,
            &[
                "=HYPERLINK(\"x\")",
                "+1",
                "-1",
                "@SUM(A1)",
                "\tx",
                "\rx",
                "a=b",
            ],
        );
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-1,'@SUM(A1),'\tx,\"'\rx\",a=b\r\n"
        );
    }

    #[test]
    fn chart_stacks_green_pass_under_red_fail_scaled_to_the_busiest_day() {
        let week = days(&[(60, 40), (0, 50), (0, 0), (1, 0), (0, 0), (0, 0), (0, 0)]);
        let (w, h, rgb) = decode(&chart_png(&week));
        assert_eq!((w, h), (CHART_WIDTH, CHART_HEIGHT));
        let (base, tallest, slot) = (159, 151, 80);
        let at = |day: usize, up: usize| pixel(&rgb, day * slot + slot / 2, base - up);
        // The busiest day, 100 messages, full height: 60% green under 40% red.
        assert_eq!(
            [at(0, 1), at(0, 90), at(0, 91), at(0, tallest)],
            [PASS_RGB, PASS_RGB, FAIL_RGB, FAIL_RGB]
        );
        assert_eq!(at(0, tallest + 1), [255; 3]);
        // Half as much, all failing; a single message still shows (1 px).
        assert_eq!(
            [at(1, 1), at(1, 75), at(1, 76)],
            [FAIL_RGB, FAIL_RGB, [255; 3]]
        );
        assert_eq!([at(3, 1), at(3, 2)], [PASS_RGB, [255; 3]]);
        // A day without mail draws nothing; bars leave gaps between days.
        assert!((1..=base).all(|up| at(2, up) == [255; 3]));
        assert!((0..base).all(|y| pixel(&rgb, slot, y) == [255; 3]));
        assert!((0..w as usize).all(|x| pixel(&rgb, x, base) == BASELINE_RGB));
    }

    #[test]
    fn chart_of_a_week_without_mail_is_blank_but_the_baseline() {
        for week in [days(&[(0, 0); 7]), vec![]] {
            let (w, h, rgb) = decode(&chart_png(&week));
            assert_eq!((w, h), (CHART_WIDTH, CHART_HEIGHT));
            let (above, baseline) = rgb.split_at(rgb.len() - w as usize * 3);
            assert!(above.iter().all(|&b| b == 255));
            assert!(baseline.chunks(3).all(|p| p == BASELINE_RGB));
        }
    }

    #[test]
    fn numbers_read_as_thousands_and_percentages_rounded_down() {
        assert_eq!(
            [thousands(0), thousands(999), thousands(1_234_567)],
            ["0", "999", "1,234,567"]
        );
        assert_eq!(
            [pct(9_999, 10_000), pct(5, 5), pct(0, 0)],
            ["99.9%", "100.0%", "–"]
        );
        assert_eq!(pct(u64::MAX, u64::MAX), "100.0%");
    }
}
