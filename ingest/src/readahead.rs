//! Read-ahead: a batch of fetched messages -> each message's reports read on helper
//! threads -> handed to the batch's sink in message order, as if read there.
//!
//! The daemon's batch is parsed (MIME, base64, decompression, XML) by one thread while
//! the other core waits. Here helper threads read the next messages into memory
//! ([`Prepared`]: every report's records, every failure, in the order
//! [`input::read_message`] produced them) while the calling thread feeds the ones before
//! into the batch ([`Prepared::replay`]). What the sink sees is what it would have seen
//! reading the message itself, record by record, header as read so far included, so
//! outcomes, rows and failures are unchanged.
//!
//! Memory stays bounded: a message is read ahead only if it is at most
//! [`MAX_MESSAGE_BYTES`] and while its reports hold at most [`MAX_AHEAD_BYTES`] (else it
//! is left to the calling thread, which streams it as before), and helpers stay at most
//! [`WINDOW`] messages ahead of the calling thread: about 10 MiB more than streaming.
//! A panic while reading ahead leaves the message to the calling thread too, where the
//! sink's own panic guard sees it.

use std::sync::{Condvar, Mutex};

use crate::config::Limits;
use crate::input::{self, Flow, InputError, ReportSink};
use crate::report::{Record, ReportError, ReportHeader, ReportStream};

/// Bytes (as [`record_bytes`] and [`header_bytes`] count them) a message's reports may
/// hold to be read ahead (20-record reports hold about 15 KB).
pub const MAX_AHEAD_BYTES: usize = 1 << 20;

/// Larger messages are not read ahead: what a helper decodes stays this small.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Messages read ahead of the one being fed, at most.
pub const WINDOW: usize = 8;

/// Helper threads for read-ahead on this machine: one less than its cores, at most 3
/// (0 on one core: no read-ahead).
pub fn helpers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(0)
        .min(3)
}

/// One message read ahead, or left to be streamed.
pub enum Ahead {
    Ready(Prepared),
    /// Too large to hold (or its reading panicked): read it on the calling thread.
    Stream,
}

/// What [`input::read_message`] gave a sink for one message, in order.
#[derive(Default)]
pub struct Prepared {
    items: Vec<Item>,
}

enum Item {
    Report {
        source: String,
        report: Box<RecordedReport>,
    },
    Failure {
        source: String,
        error: InputError,
    },
}

/// A report read to its end (or to its error): its records with the header as it was
/// when each was read.
pub struct RecordedReport {
    /// Distinct header states, in order; `headers[0]` is the header at open.
    headers: Vec<ReportHeader>,
    /// Each record with the index of its header state.
    records: std::vec::IntoIter<(usize, Record)>,
    /// The header after the last record (when the report ended without error).
    last: ReportHeader,
    /// Where the reader stopped with an error, after the records.
    error: Option<ReportError>,
    /// Header state of the record returned last (`None` before the first, and at the
    /// end, where `last` is shown).
    current: Option<usize>,
    ended: bool,
    records_read: u64,
    messages_read: u64,
}

impl ReportStream for RecordedReport {
    fn header(&self) -> &ReportHeader {
        match (self.ended, self.current) {
            (true, _) => &self.last,
            (false, Some(i)) => &self.headers[i],
            (false, None) => &self.headers[0],
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReportError> {
        if self.ended {
            return Ok(None);
        }
        match self.records.next() {
            Some((header, record)) => {
                self.current = Some(header);
                self.records_read += 1;
                self.messages_read += record.count;
                Ok(Some(record))
            }
            None => match self.error.take() {
                Some(e) => Err(e),
                None => {
                    self.ended = true;
                    Ok(None)
                }
            },
        }
    }

    fn records_read(&self) -> u64 {
        self.records_read
    }

    fn messages_read(&self) -> u64 {
        self.messages_read
    }
}

impl Prepared {
    /// Feeds the message's reports and failures into `sink`, in the order and with the
    /// outcomes [`input::read_message`] would have given them. `Flow::Stop` when the sink
    /// stopped.
    pub fn replay(self, sink: &mut dyn ReportSink) -> Flow {
        for item in self.items {
            let flow = match item {
                Item::Report { source, mut report } => match sink.report(&source, &mut *report) {
                    Ok(flow) => flow,
                    Err(e) => sink.failure(&source, &e),
                },
                Item::Failure { source, error } => sink.failure(&source, &error),
            };
            if flow == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

/// Reads one message (`raw`, shown as `source`) ahead: [`Ahead::Stream`] when it is over
/// [`MAX_MESSAGE_BYTES`], its reports hold more than [`MAX_AHEAD_BYTES`] or reading it
/// panicked.
pub fn prepare_message(raw: &[u8], source: &str, limits: &Limits) -> Ahead {
    if raw.len() > MAX_MESSAGE_BYTES {
        return Ahead::Stream;
    }
    prepare_message_within(raw, source, limits, MAX_AHEAD_BYTES)
}

fn prepare_message_within(raw: &[u8], source: &str, limits: &Limits, cap: usize) -> Ahead {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut recorder = Recorder {
            cap,
            ..Recorder::default()
        };
        input::read_message(raw, source, limits, &mut recorder);
        recorder
    }));
    match read {
        Ok(recorder) if !recorder.over => Ahead::Ready(Prepared {
            items: recorder.items,
        }),
        _ => Ahead::Stream,
    }
}

/// The sink that reads ahead: keeps every report whole, and every failure.
#[derive(Default)]
struct Recorder {
    items: Vec<Item>,
    bytes: usize,
    cap: usize,
    /// The message holds more than `cap`: given up (it will be streamed).
    over: bool,
}

impl Recorder {
    fn charge(&mut self, bytes: usize) -> bool {
        self.bytes += bytes;
        if self.bytes > self.cap {
            self.over = true;
        }
        !self.over
    }
}

impl ReportSink for Recorder {
    fn report(&mut self, source: &str, reader: &mut dyn ReportStream) -> Result<Flow, InputError> {
        let opened = reader.header().clone();
        if !self.charge(header_bytes(&opened)) {
            return Ok(Flow::Stop);
        }
        let mut headers = vec![opened];
        let mut records = Vec::new();
        let mut error = None;
        loop {
            match reader.next_record() {
                Ok(Some(record)) => {
                    let now = reader.header();
                    let mut cost = record_bytes(&record);
                    if headers.last() != Some(now) {
                        cost += header_bytes(now);
                        headers.push(now.clone());
                    }
                    if !self.charge(cost) {
                        return Ok(Flow::Stop);
                    }
                    records.push((headers.len() - 1, record));
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let last = reader.header().clone();
        if !self.charge(header_bytes(&last)) {
            return Ok(Flow::Stop);
        }
        // A report that ended in an error is kept with it and taken as read (the input
        // layer is not told): the replay hands the error to the sink from the report
        // itself, after its records, as the stream did.
        self.items.push(Item::Report {
            source: source.to_owned(),
            report: Box::new(RecordedReport {
                headers,
                records: records.into_iter(),
                last,
                error,
                current: None,
                ended: false,
                records_read: 0,
                messages_read: 0,
            }),
        });
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        // What a sink uses of a failure: its text and its kind.
        self.items.push(Item::Failure {
            source: source.to_owned(),
            error: InputError::Sink {
                message: error.to_string(),
                kind: error.kind(),
            },
        });
        if !self.charge(source.len() + error.to_string().len() + 64) {
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// Bytes one record holds in memory, about.
fn record_bytes(r: &Record) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<Record>()
        + r.source_ip.len()
        + r.header_from.len()
        + opt(&r.envelope_from)
        + opt(&r.envelope_to)
        + r.reasons
            .iter()
            .map(|x| 64 + x.kind.len() + opt(&x.comment))
            .sum::<usize>()
        + r.dkim
            .iter()
            .map(|d| 96 + d.domain.len() + opt(&d.selector) + opt(&d.human_result))
            .sum::<usize>()
        + r.spf
            .iter()
            .map(|s| 96 + s.domain.len() + opt(&s.human_result))
            .sum::<usize>()
        + r.extensions.iter().map(|e| 24 + e.len()).sum::<usize>()
}

/// Bytes one header state holds in memory, about (its lists may grow by the record).
fn header_bytes(h: &ReportHeader) -> usize {
    let list = |v: &[String]| v.iter().map(|s| 24 + s.len()).sum::<usize>();
    1024 + h.org_name.len()
        + h.report_id.len()
        + h.email.len()
        + h.policy.domain.len()
        + list(&h.errors)
        + list(&h.extensions)
        + list(&h.problems)
}

/// Reads `items` ahead on `helpers` threads with `prepare` (at most [`WINDOW`] ahead of
/// the one being consumed) and calls `consume` with each item's index and its result, in
/// order, on the calling thread. The calling thread prepares items too: the one it
/// needs when no helper has taken it (or `prepare` panicked on a helper: the calling
/// thread then meets the panic itself), and the next one while a helper finishes it.
/// Stops early when `consume` returns `Flow::Stop`.
pub fn in_order<T: Sync, P: Send>(
    items: &[T],
    helpers: usize,
    prepare: impl Fn(&T) -> P + Sync,
    mut consume: impl FnMut(usize, P) -> Flow,
) {
    struct State<P> {
        /// Next item to be claimed by whoever prepares it.
        next: usize,
        /// Items consumed so far.
        consumed: usize,
        ready: Vec<Option<P>>,
        /// Items whose preparation panicked on a helper.
        dropped: Vec<bool>,
        stop: bool,
    }
    let state = Mutex::new(State {
        next: 0,
        consumed: 0,
        ready: (0..items.len()).map(|_| None).collect(),
        dropped: vec![false; items.len()],
        stop: false,
    });
    let changed = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..helpers.min(items.len().saturating_sub(1)) {
            scope.spawn(|| loop {
                let mut s = lock();
                while !s.stop && s.next < items.len() && s.next >= s.consumed + WINDOW {
                    s = changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                if s.stop || s.next >= items.len() {
                    return;
                }
                let i = s.next;
                s.next += 1;
                drop(s);
                let prepared =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(&items[i])));
                match prepared {
                    Ok(p) => lock().ready[i] = Some(p),
                    Err(_) => lock().dropped[i] = true,
                }
                changed.notify_all();
            });
        }
        for (i, item) in items.iter().enumerate() {
            let mut s = lock();
            let prepared = loop {
                if let Some(p) = s.ready[i].take() {
                    break p;
                }
                if s.next == i || s.dropped[i] {
                    // Nobody has taken it (or a helper panicked on it): prepare it here.
                    s.next = s.next.max(i + 1);
                    drop(s);
                    let p = prepare(item);
                    s = lock();
                    break p;
                }
                if s.next < items.len() && s.next < i + WINDOW {
                    // A helper has it: read the next one meanwhile rather than wait.
                    let j = s.next;
                    s.next += 1;
                    drop(s);
                    let p = prepare(&items[j]);
                    s = lock();
                    s.ready[j] = Some(p);
                    continue;
                }
                s = changed.wait(s).unwrap_or_else(|e| e.into_inner());
            };
            s.consumed = i + 1;
            drop(s);
            changed.notify_all();
            if consume(i, prepared) == Flow::Stop {
                break;
            }
        }
        lock().stop = true;
        changed.notify_all();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_are_consumed_in_order_and_prepared_once() {
        let items: Vec<usize> = (0..200).collect();
        let prepared = AtomicUsize::new(0);
        let mut seen = Vec::new();
        in_order(
            &items,
            3,
            |&i| {
                prepared.fetch_add(1, Ordering::Relaxed);
                // Uneven work, so helpers finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((i % 7) as u64 * 50));
                i * 2
            },
            |i, p| {
                seen.push((i, p));
                Flow::Continue
            },
        );
        assert_eq!(prepared.into_inner(), 200);
        assert_eq!(seen, (0..200).map(|i| (i, i * 2)).collect::<Vec<_>>());
    }

    #[test]
    fn helpers_stay_within_the_window_and_stop_with_the_consumer() {
        let items: Vec<usize> = (0..100).collect();
        let consumed = AtomicUsize::new(0);
        let max_ahead = AtomicUsize::new(0);
        let prepared = AtomicUsize::new(0);
        in_order(
            &items,
            2,
            |&i| {
                prepared.fetch_add(1, Ordering::SeqCst);
                let ahead = i.saturating_sub(consumed.load(Ordering::SeqCst));
                max_ahead.fetch_max(ahead, Ordering::SeqCst);
            },
            |i, ()| {
                consumed.store(i + 1, Ordering::SeqCst);
                if i == 9 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        );
        assert!(max_ahead.into_inner() <= WINDOW, "read too far ahead");
        // Stopped at item 9: at most a window more was read.
        let prepared = prepared.into_inner();
        assert!((10..=10 + WINDOW).contains(&prepared), "{prepared}");
    }

    #[test]
    fn an_item_whose_preparation_panics_on_a_helper_is_prepared_by_the_caller() {
        let caller = std::thread::current().id();
        let items: Vec<usize> = (0..50).collect();
        let mut seen = Vec::new();
        in_order(
            &items,
            2,
            |&i| {
                if i % 5 == 3 && std::thread::current().id() != caller {
                    panic!("test: item {i} on a helper");
                }
                i
            },
            |_, p| {
                seen.push(p);
                Flow::Continue
            },
        );
        assert_eq!(seen, items);
    }

    #[test]
    fn without_helpers_the_calling_thread_prepares_each_item() {
        let items = ["a", "b"];
        let mut seen = Vec::new();
        in_order(
            &items,
            0,
            |s| s.to_uppercase(),
            |_, p| {
                seen.push(p);
                Flow::Continue
            },
        );
        assert_eq!(seen, ["A", "B"]);
    }

    /// A sink that writes down everything it is shown: each report's header at open,
    /// each record with the header as read then, the end, and each failure.
    #[derive(Default)]
    struct Trace(Vec<String>);

    impl ReportSink for Trace {
        fn report(
            &mut self,
            source: &str,
            reader: &mut dyn ReportStream,
        ) -> Result<Flow, InputError> {
            self.0
                .push(format!("report {source} {:?}", reader.header()));
            while let Some(r) = reader.next_record()? {
                self.0.push(format!("record {:?} {r:?}", reader.header()));
            }
            let (records, messages) = (reader.records_read(), reader.messages_read());
            self.0
                .push(format!("end {:?} {records} {messages}", reader.header()));
            Ok(Flow::Continue)
        }

        fn failure(&mut self, source: &str, error: &InputError) -> Flow {
            self.0
                .push(format!("failure {source}: {error} ({})", error.kind()));
            Flow::Continue
        }
    }

    /// Every file under `dir`, as a message: `.eml` as it is, anything else attached.
    fn messages_under(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                messages_under(&path, out);
                continue;
            }
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let raw = if name.ends_with(".eml") {
                data
            } else {
                mail_with_attachment(&name, &data)
            };
            out.push((path.display().to_string(), raw));
        }
    }

    /// What reading ahead and replaying shows a sink is what reading the message shows
    /// it, on every sample (broken ones included) and on the shared corpus when present.
    #[test]
    fn a_replayed_message_shows_the_sink_what_reading_it_shows() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut messages = Vec::new();
        messages_under(&root.join("sample-reports"), &mut messages);
        messages_under(&root.join("../shared/corpus"), &mut messages);
        assert!(messages.len() > 60, "{} samples", messages.len());
        // A report that breaks after some records (its failure comes from the reader
        // once the sink has its first rows), and one with a problem noted mid-way (the
        // header changes between records).
        let xml = report_xml(20);
        let broken = &xml[..xml.len() * 2 / 3];
        messages.push((
            "cut".into(),
            mail_with_attachment("cut.xml", broken.as_bytes()),
        ));
        let noted = xml.replacen("<source_ip>192.0.2.7</source_ip>", "", 1);
        messages.push((
            "noted".into(),
            mail_with_attachment("n.xml", noted.as_bytes()),
        ));
        let limits = Limits::default();
        let mut failures = 0;
        for (source, raw) in &messages {
            let mut streamed = Trace::default();
            let flow = input::read_message(raw, source, &limits, &mut streamed);
            // Whatever their size (the corpus has a large one).
            let Ahead::Ready(prepared) = prepare_message_within(raw, source, &limits, usize::MAX)
            else {
                panic!("{source}: not read ahead");
            };
            let mut replayed = Trace::default();
            assert_eq!(prepared.replay(&mut replayed), flow, "{source}");
            assert_eq!(replayed.0, streamed.0, "{source}");
            failures += streamed
                .0
                .iter()
                .filter(|l| l.starts_with("failure"))
                .count();
        }
        // The broken samples exercise failures before, inside and after reports.
        assert!(failures > 5, "{failures} failures");
    }

    /// A report of `records` records.
    fn report_xml(records: usize) -> String {
        let mut xml = String::from(
            "<feedback><report_metadata><org_name>o</org_name><email>e@o</email>\
             <report_id>1</report_id><date_range><begin>1700000000</begin>\
             <end>1700086399</end></date_range></report_metadata><policy_published>\
             <domain>example.com</domain><p>none</p></policy_published>",
        );
        for i in 0..records {
            xml.push_str(&format!(
                "<record><row><source_ip>192.0.2.{i}</source_ip><count>1</count>\
                 <policy_evaluated><disposition>none</disposition><dkim>pass</dkim>\
                 <spf>pass</spf></policy_evaluated></row><identifiers>\
                 <header_from>example.com</header_from></identifiers><auth_results>\
                 <spf><domain>example.com</domain><result>pass</result></spf>\
                 </auth_results></record>"
            ));
        }
        xml.push_str("</feedback>");
        xml
    }

    #[test]
    fn a_message_over_the_cap_is_left_to_be_streamed() {
        let xml = report_xml(50);
        let raw = mail_with_attachment("r.xml", xml.as_bytes());
        let limits = Limits::default();
        assert!(matches!(
            prepare_message_within(&raw, "m", &limits, 1 << 20),
            Ahead::Ready(_)
        ));
        assert!(matches!(
            prepare_message_within(&raw, "m", &limits, 4096),
            Ahead::Stream
        ));
        // Within the cap, but the message itself is over the size read ahead.
        let mut big = raw.clone();
        big.splice(0..0, b"X-Padding: ".iter().copied());
        big.splice(11..11, std::iter::repeat_n(b'x', MAX_MESSAGE_BYTES));
        big.splice(11 + MAX_MESSAGE_BYTES..11 + MAX_MESSAGE_BYTES, *b"\r\n");
        assert!(matches!(
            prepare_message(&raw, "m", &limits),
            Ahead::Ready(_)
        ));
        assert!(matches!(prepare_message(&big, "m", &limits), Ahead::Stream));
    }

    /// A plain message with `data` attached as `name` (base64).
    pub(crate) fn mail_with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            "From: r@example.net\r\nTo: d@example.com\r\nSubject: Report\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             hi\r\n--b\r\nContent-Type: text/xml; name=\"{name}\"\r\nContent-Disposition: attachment; \
             filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    }
}
