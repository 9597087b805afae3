//! The weekly digest as a phone shows it: `digest::sample()` rendered to a standalone
//! HTML file (charts as `data:` URIs), screenshot by headless Chromium 390 px wide
//! (`deploy/dev/chromium.sh render`, installed by `deploy/dev/chromium.sh install`), and
//! the picture checked for the page's colours and the charts'.
//!
//! `DMARC_UPDATE_DOCS_SAMPLE=1` also writes the screenshot, the empty bottom cropped, to
//! `docs/digest-sample.png`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dmarc_ingest::alerts::digest::{self, ImageLinks};

const WIDTH: u32 = 390;
const RED_BADGE: [u8; 3] = [198, 40, 40];
const AMBER_BADGE: [u8; 3] = [249, 168, 37];
const CHART_PASS: [u8; 3] = [67, 160, 71];
const CHART_FAIL: [u8; 3] = [229, 57, 53];

/// The image as 8-bit RGB rows, whatever Chromium wrote (RGB or RGBA).
fn decode_rgb(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let samples = info.color_type.samples();
    assert!(samples >= 3, "not a colour image: {:?}", info.color_type);
    let rgb = buf
        .chunks(samples)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

fn count_near(rgb: &[u8], colour: [u8; 3]) -> usize {
    let near = |p: &[u8]| (0..3).all(|i| p[i].abs_diff(colour[i]) <= 12);
    rgb.chunks(3).filter(|p| near(p)).count()
}

/// The image without the rows at the bottom that are all the page background, 16 kept.
fn crop_bottom(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let row = width as usize * 3;
    let background = &rgb[rgb.len() - 3..];
    let used = rgb
        .chunks(row)
        .rposition(|r| r.chunks(3).any(|p| p != background));
    let keep = (used.unwrap_or(0) + 1 + 16).min(height as usize) as u32;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, keep);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&rgb[..keep as usize * row])
        .unwrap();
    writer.finish().unwrap();
    out
}

#[test]
fn sample_digest_renders_in_headless_chromium_at_phone_width() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (html, shot) = (
        dir.path().join("digest.html"),
        dir.path().join("digest.png"),
    );
    let rendered = digest::render(&digest::sample(), ImageLinks::DataUri);
    std::fs::write(&html, &rendered.html).unwrap();

    let started = Instant::now();
    let out = Command::new(repo.join("deploy/dev/chromium.sh"))
        .arg("render")
        .args([&html, &shot])
        .arg(WIDTH.to_string())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("digest.png.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "chromium.sh render failed: {}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("rendered in {:?}", started.elapsed());
    // Chromium logs dbus and GPU complaints on a headless box; only the page's count.
    let page_errors: Vec<&str> = (log.lines())
        .filter(|l| {
            ["Uncaught", "Failed to load resource", "digest.html"]
                .iter()
                .any(|s| l.contains(s))
        })
        .collect();
    assert!(
        page_errors.is_empty(),
        "the page logged errors:\n{}",
        page_errors.join("\n")
    );

    let (width, height, rgb) = decode_rgb(&std::fs::read(&shot).unwrap());
    assert!(width >= WIDTH && width % WIDTH == 0, "width {width}");
    assert!(rgb.chunks(3).any(|p| p != &rgb[..3]), "a flat image");
    // The badges (the page's own colours) and both charts' bars (the data: images).
    assert!(count_near(&rgb, RED_BADGE) > 200, "no RED badge");
    assert!(count_near(&rgb, AMBER_BADGE) > 200, "no AMBER badge");
    assert!(
        count_near(&rgb, CHART_PASS) > 5_000,
        "no green bars: the charts did not load"
    );
    assert!(
        count_near(&rgb, CHART_FAIL) > 500,
        "no red bars: the charts did not load"
    );

    if std::env::var("DMARC_UPDATE_DOCS_SAMPLE").as_deref() == Ok("1") {
        let sample = repo.join("docs/digest-sample.png");
        std::fs::write(&sample, crop_bottom(width, height, &rgb)).unwrap();
        eprintln!("wrote {}", sample.display());
    }
}
