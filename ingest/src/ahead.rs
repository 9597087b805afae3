//! Read-ahead: messages -> [`Parsed`] units (reports read whole into rows, failures) on
//! worker threads, while the feeder stages the messages before them; the feeder takes
//! them back in the messages' order (see [`in_order`]).
//!
//! Why: parsing is most of the daemon's work on small reports, and one thread parsing
//! leaves cores idle where there are more than ClickHouse, the IMAP server and the
//! batch's thread keep busy (`[imap] read_ahead_threads`). What is read ahead is
//! bounded: only a message of at most [`MAX_RAW_BYTES`] is parsed ahead, its rows at
//! most [`MAX_ROW_BYTES`], and the workers are at most [`DEPTH`] messages each ahead;
//! anything larger is read by the feeder itself, streaming, as without read-ahead. The
//! outcome of every message is the one the feeder would have reached reading it itself.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Condvar, Mutex};

use uuid::Uuid;

use crate::config::Limits;
use crate::failure::FailureKind;
use crate::input::{self, Flow, InputError, ReportSink};
use crate::inventory::Accepted;
use crate::pipeline::{self, Parsed, ParsedReport};
use crate::report::ReportReader;
use crate::rows::{self, RecordRows};
use crate::store;

/// Messages larger than this (raw) are not read ahead.
pub const MAX_RAW_BYTES: usize = 512 << 10;

/// Rows (estimated bytes) of one message read ahead; a message with more is read again
/// by the feeder, streaming.
pub const MAX_ROW_BYTES: usize = 2 << 20;

/// Messages parsed ahead and not yet taken by the feeder, per worker.
pub const DEPTH: usize = 3;

/// Read-ahead threads by default on this machine: one per core beyond two, at most four,
/// and none below four cores. On two cores the batch's own thread, ClickHouse and the IMAP
/// server (when they run here) keep both busy already, and read-ahead measured no faster
/// there; one thread alone is slower than none (the batch thread waits for it instead of
/// parsing; `benches/README.md`).
pub fn default_workers() -> usize {
    workers_for(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// [`default_workers`] on a machine of `cores`.
fn workers_for(cores: usize) -> usize {
    match cores.saturating_sub(2) {
        0 | 1 => 0,
        spare => spare.min(4),
    }
}

/// One message as read ahead.
#[derive(Debug)]
pub enum Ahead {
    /// Its units, in the order the feeder would have met them.
    Parsed(Vec<Parsed>),
    /// Not read ahead (too large, or no read-ahead threads): the feeder streams it.
    Inline,
}

/// Reads one raw message whole (`source` names it), as [`input::read_message`] would
/// hand it to a sink; reports for domains outside `accepted` fail as the feeder fails
/// them. A panic fails the message (kind `panic`), as the feeder's guard would.
pub fn read_message(
    raw: &[u8],
    source: &str,
    limits: &Limits,
    accepted: Option<&Accepted>,
) -> Ahead {
    read_bounded(
        raw,
        source,
        limits,
        accepted,
        (MAX_RAW_BYTES, MAX_ROW_BYTES),
    )
}

/// [`read_message`] with the bounds (raw bytes, row bytes) given.
fn read_bounded(
    raw: &[u8],
    source: &str,
    limits: &Limits,
    accepted: Option<&Accepted>,
    (max_raw_bytes, max_row_bytes): (usize, usize),
) -> Ahead {
    if raw.len() > max_raw_bytes {
        return Ahead::Inline;
    }
    let mut collector = Collector {
        units: Vec::new(),
        row_bytes: 0,
        max_row_bytes,
        overflow: false,
        accepted,
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        input::read_message(raw, source, limits, &mut collector)
    }));
    match caught {
        Ok(_) if collector.overflow => Ahead::Inline,
        Ok(_) => Ahead::Parsed(collector.units),
        Err(payload) => {
            let message = pipeline::panic_message(payload.as_ref());
            tracing::error!(source, panic = %message, "a stage panicked on this input");
            Ahead::Parsed(vec![Parsed::Failure {
                source: source.to_owned(),
                error: InputError::Sink {
                    message: format!("a processing stage panicked: {message}"),
                    kind: FailureKind::Panic,
                },
            }])
        }
    }
}

/// A sink that keeps what it is handed (see [`read_message`]).
struct Collector<'a> {
    units: Vec<Parsed>,
    /// Rows kept so far (estimated bytes), and the most kept.
    row_bytes: usize,
    max_row_bytes: usize,
    /// Set when the rows passed `max_row_bytes`: the message is read again inline.
    overflow: bool,
    accepted: Option<&'a Accepted>,
}

impl ReportSink for Collector<'_> {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        let identity = rows::identity(reader.header())?;
        pipeline::test_fault(&identity.report_id);
        pipeline::check_accepted(self.accepted, &identity)?;
        let mut rows = Vec::new();
        let mut make = RecordRows::new(source).ingest(Uuid::nil(), store::now());
        while let Some(record) = reader.next_record()? {
            let row = make.row(reader.header(), record)?;
            self.row_bytes += row.estimated_bytes();
            if self.row_bytes > self.max_row_bytes {
                self.overflow = true;
                return Ok(Flow::Stop);
            }
            rows.push(row);
        }
        let (counts, staged) = pipeline::finished_report(reader, &identity, source, Uuid::nil())?;
        self.units.push(Parsed::Report {
            source: source.to_owned(),
            report: Box::new(ParsedReport {
                identity,
                rows,
                counts,
                staged,
            }),
        });
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        self.units.push(Parsed::Failure {
            source: source.to_owned(),
            // Owned, with the text and the kind the sink is told.
            error: InputError::Sink {
                message: error.to_string(),
                kind: error.kind(),
            },
        });
        Flow::Continue
    }
}

/// Runs `prepare` over `items` on up to `workers` threads of `runtime`'s blocking pool
/// (kept between calls), at most `workers * depth` items ahead of `consume`, which gets
/// every item with what was prepared for it, on this thread, in the items' order; stops
/// early when `consume` returns false. An item no worker has taken yet when its turn
/// comes is prepared here: the caller never waits for a worker that has not started (a
/// full pool cannot stall it). A panic in `prepare` is raised again here at its item.
/// Call it from a blocking thread, not a runtime worker.
pub fn in_order<I, P>(
    runtime: &tokio::runtime::Handle,
    items: Arc<[I]>,
    workers: usize,
    depth: usize,
    prepare: Arc<dyn Fn(&I) -> P + Send + Sync>,
    mut consume: impl FnMut(&I, P) -> bool,
) where
    I: Send + Sync + 'static,
    P: Send + 'static,
{
    let board = Arc::new(Board {
        state: Mutex::new(Claims {
            next: 0,
            consumed: 0,
            window: (workers * depth).max(1),
            ready: HashMap::new(),
            stop: false,
        }),
        changed: Condvar::new(),
    });
    for _ in 0..workers {
        let (items, prepare, board) = (items.clone(), prepare.clone(), board.clone());
        // Not awaited: a worker ends once nothing is left to take or the caller stopped.
        drop(runtime.spawn_blocking(move || {
            while let Some(i) = board.claim(items.len()) {
                let prepared =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(&items[i])));
                board.post(i, prepared);
            }
        }));
    }
    // Workers stop taking items when this returns or unwinds.
    let _stop = StopOnDrop(&*board);
    for (i, item) in items.iter().enumerate() {
        let prepared = match board.take(i) {
            Some(Ok(prepared)) => prepared,
            Some(Err(payload)) => std::panic::resume_unwind(payload),
            None => prepare(item),
        };
        if !consume(item, prepared) {
            return;
        }
    }
}

/// What the workers of one [`in_order`] call and its caller share.
struct Board<P> {
    state: Mutex<Claims<P>>,
    changed: Condvar,
}

struct Claims<P> {
    /// The first item nobody has taken.
    next: usize,
    /// Items the caller has consumed.
    consumed: usize,
    /// Items that may be taken and not yet consumed.
    window: usize,
    /// Prepared items (or their panic), by index.
    ready: HashMap<usize, std::thread::Result<P>>,
    stop: bool,
}

impl<P> Board<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Claims<P>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker takes the next item of `len`, waiting while the window is full; `None`
    /// once every item is taken or the caller stopped.
    fn claim(&self, len: usize) -> Option<usize> {
        let mut claims = self.lock();
        loop {
            if claims.stop || claims.next >= len {
                return None;
            }
            if claims.next < claims.consumed + claims.window {
                claims.next += 1;
                return Some(claims.next - 1);
            }
            claims = self.changed.wait(claims).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn post(&self, i: usize, prepared: std::thread::Result<P>) {
        self.lock().ready.insert(i, prepared);
        self.changed.notify_all();
    }

    /// The caller's turn at item `i`: what a worker prepared for it (waiting for a worker
    /// that took it), or `None` when nobody took it (the caller takes it then).
    fn take(&self, i: usize) -> Option<std::thread::Result<P>> {
        let mut claims = self.lock();
        let taken = loop {
            if let Some(prepared) = claims.ready.remove(&i) {
                break Some(prepared);
            }
            if claims.next <= i {
                claims.next = i + 1;
                break None;
            }
            claims = self.changed.wait(claims).unwrap_or_else(|e| e.into_inner());
        };
        claims.consumed = i + 1;
        drop(claims);
        self.changed.notify_all();
        taken
    }
}

struct StopOnDrop<'a, P>(&'a Board<P>);

impl<P> Drop for StopOnDrop<'_, P> {
    fn drop(&mut self) {
        let mut claims = self.0.lock();
        claims.stop = true;
        claims.ready.clear();
        drop(claims);
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        runtime_with_blocking_threads(512)
    }

    fn runtime_with_blocking_threads(n: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(n)
            .build()
            .unwrap()
    }

    /// Runs `in_order` on a blocking thread of a fresh runtime, as the daemon does.
    fn run_in_order<P: Send + 'static>(
        items: Vec<u32>,
        workers: usize,
        depth: usize,
        prepare: Arc<dyn Fn(&u32) -> P + Send + Sync>,
        consume: impl FnMut(&u32, P) -> bool + Send + 'static,
    ) -> std::thread::Result<()> {
        run_in_order_on(runtime(), items, workers, depth, prepare, consume)
    }

    fn run_in_order_on<P: Send + 'static>(
        rt: tokio::runtime::Runtime,
        items: Vec<u32>,
        workers: usize,
        depth: usize,
        prepare: Arc<dyn Fn(&u32) -> P + Send + Sync>,
        consume: impl FnMut(&u32, P) -> bool + Send + 'static,
    ) -> std::thread::Result<()> {
        let handle = rt.handle().clone();
        rt.block_on(rt.spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                in_order(&handle, items.into(), workers, depth, prepare, consume)
            }))
        }))
        .unwrap()
    }

    #[test]
    fn items_come_back_in_order_whatever_the_workers_and_their_speed() {
        for workers in [0, 1, 2, 3] {
            let items: Vec<u32> = (0..200).collect();
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let out = seen.clone();
            // Uneven work: some items take longer, so workers finish out of order.
            let prepare = Arc::new(|i: &u32| {
                if i.is_multiple_of(7) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                i * 10
            });
            run_in_order(items, workers, 2, prepare, move |i, p| {
                out.lock().unwrap().push((*i, p));
                true
            })
            .unwrap();
            let seen = seen.lock().unwrap();
            let expected: Vec<(u32, u32)> = (0..200).map(|i| (i, i * 10)).collect();
            assert_eq!(*seen, expected, "{workers} workers");
        }
    }

    #[test]
    fn the_consumer_stops_early_and_workers_stay_a_bounded_distance_ahead() {
        let (workers, depth) = (2, 2);
        let prepared = Arc::new(AtomicUsize::new(0));
        let counter = prepared.clone();
        let prepare = Arc::new(move |i: &u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            *i
        });
        let ahead_most = Arc::new(AtomicUsize::new(0));
        let (most, count) = (ahead_most.clone(), prepared.clone());
        let consumed = Arc::new(AtomicUsize::new(0));
        let taken = consumed.clone();
        run_in_order((0..1000).collect(), workers, depth, prepare, move |i, p| {
            assert_eq!(*i, p);
            std::thread::sleep(Duration::from_millis(1));
            let ahead = count.load(Ordering::SeqCst) - (*i as usize + 1);
            most.fetch_max(ahead, Ordering::SeqCst);
            taken.fetch_add(1, Ordering::SeqCst);
            *i < 49
        })
        .unwrap();
        assert_eq!(consumed.load(Ordering::SeqCst), 50);
        let bound = workers * depth;
        assert!(ahead_most.load(Ordering::SeqCst) <= bound);
        assert!(prepared.load(Ordering::SeqCst) <= 50 + bound);
    }

    #[test]
    fn read_ahead_by_default_only_where_cores_are_spare() {
        let by_cores: Vec<usize> = [1, 2, 3, 4, 5, 6, 64].map(workers_for).to_vec();
        assert_eq!(by_cores, [0, 0, 0, 2, 3, 4, 4]);
    }

    #[test]
    fn workers_that_cannot_start_leave_every_item_to_the_caller() {
        // The caller holds the pool's only blocking thread: no worker ever starts.
        let rt = runtime_with_blocking_threads(1);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = seen.clone();
        let prepare = Arc::new(|i: &u32| i + 1);
        run_in_order_on(rt, (0..100).collect(), 2, 3, prepare, move |i, p| {
            out.lock().unwrap().push((*i, p));
            true
        })
        .unwrap();
        let expected: Vec<(u32, u32)> = (0..100).map(|i| (i, i + 1)).collect();
        assert_eq!(*seen.lock().unwrap(), expected);
    }

    #[test]
    fn a_panic_in_a_worker_is_raised_in_the_caller() {
        let prepare = Arc::new(|i: &u32| {
            assert!(*i != 5, "prepare failed on 5");
            *i
        });
        let consumed = Arc::new(AtomicUsize::new(0));
        let taken = consumed.clone();
        let result = run_in_order((0..20).collect(), 2, 2, prepare, move |_, _| {
            taken.fetch_add(1, Ordering::SeqCst);
            true
        });
        let payload = result.expect_err("the worker's panic reaches the caller");
        assert!(pipeline::panic_message(payload.as_ref()).contains("prepare failed on 5"));
        assert_eq!(
            consumed.load(Ordering::SeqCst),
            5,
            "items before the panic only"
        );
    }

    /// What a sink is handed, in order: (source, "report <id> <records>") or (source,
    /// "failure <kind>: <text>").
    #[derive(Default)]
    struct Transcript(Vec<(String, String)>);

    impl ReportSink for Transcript {
        fn report(
            &mut self,
            source: &str,
            reader: &mut ReportReader<&mut dyn BufRead>,
        ) -> Result<Flow, InputError> {
            let identity = rows::identity(reader.header())?;
            let mut records = 0;
            while reader.next_record()?.is_some() {
                records += 1;
            }
            pipeline::finished_report(reader, &identity, source, Uuid::nil())?;
            self.0.push((
                source.to_owned(),
                format!("report {} {records}", identity.report_id),
            ));
            Ok(Flow::Continue)
        }

        fn failure(&mut self, source: &str, error: &InputError) -> Flow {
            self.0.push((
                source.to_owned(),
                format!("failure {}: {error}", error.kind()),
            ));
            Flow::Continue
        }
    }

    fn transcript_of(units: &[Parsed]) -> Vec<(String, String)> {
        units
            .iter()
            .map(|unit| match unit {
                Parsed::Report { source, report } => {
                    assert_eq!(report.rows.len() as u64, report.counts.0);
                    assert!(report.rows.iter().all(|r| r.ingest_id.is_nil()));
                    (
                        source.clone(),
                        format!("report {} {}", report.identity.report_id, report.rows.len()),
                    )
                }
                Parsed::Failure { source, error } => {
                    (source.clone(), format!("failure {}: {error}", error.kind()))
                }
            })
            .collect()
    }

    fn sample_files() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-reports");
        let mut files = Vec::new();
        for dir in ["containers", "broken", "reporters"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if !path.to_string_lossy().ends_with(".expected.jsonl") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn a_message_read_ahead_gives_what_the_sink_would_have_been_handed() {
        let limits = Limits::default();
        let files = sample_files();
        assert!(files.len() > 20, "sample-reports found: {}", files.len());
        let mut reports = 0;
        for path in files {
            let raw = std::fs::read(&path).unwrap();
            let source = path.display().to_string();
            let mut direct = Transcript::default();
            input::read_message(&raw, &source, &limits, &mut direct);
            let Ahead::Parsed(units) = read_message(&raw, &source, &limits, None) else {
                panic!("{source}: small sample read inline");
            };
            assert_eq!(transcript_of(&units), direct.0, "{source}");
            reports += units
                .iter()
                .filter(|u| matches!(u, Parsed::Report { .. }))
                .count();
        }
        assert!(
            reports >= 5,
            "messages with reports among the samples: {reports}"
        );
    }

    fn two_report_mail(records: usize) -> Vec<u8> {
        let xml = |id: &str, domain: &str| {
            let mut x = format!(
                "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>r.example</org_name>\
                 <report_id>{id}</report_id><date_range><begin>1700000000</begin>\
                 <end>1700086400</end></date_range></report_metadata><policy_published>\
                 <domain>{domain}</domain><p>none</p></policy_published>"
            );
            for i in 0..records {
                x.push_str(&format!(
                    "<record><row><source_ip>192.0.2.{}</source_ip><count>1</count></row>\
                     <identifiers><header_from>{domain}</header_from></identifiers></record>",
                    i % 250
                ));
            }
            x + "</feedback>"
        };
        let mut mail = String::from(
            "From: r@r.example\r\nSubject: Report\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n",
        );
        for (name, domain) in [("one", "a.example"), ("two", "b.example")] {
            mail.push_str(&format!(
                "--b\r\nContent-Type: text/xml\r\nContent-Disposition: attachment; \
                 filename=\"{name}.xml\"\r\n\r\n{}\r\n",
                xml(name, domain)
            ));
        }
        (mail + "--b--\r\n").into_bytes()
    }

    #[test]
    fn reports_outside_the_inventory_fail_as_the_feeder_fails_them() {
        let raw = two_report_mail(3);
        let accepted = Accepted::new(["b.example".to_owned()]);
        let Ahead::Parsed(units) = read_message(&raw, "m", &Limits::default(), Some(&accepted))
        else {
            panic!("read inline");
        };
        let got = transcript_of(&units);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0]
            .1
            .starts_with("failure unknown_domain: the report is for a.example"));
        assert_eq!(got[1].1, "report two 3");
    }

    #[test]
    fn large_messages_and_many_rows_are_left_to_the_feeder() {
        let raw = two_report_mail(50);
        let limits = Limits::default();
        let read = |bounds| read_bounded(&raw, "m", &limits, None, bounds);
        assert!(matches!(read((raw.len(), usize::MAX)), Ahead::Parsed(u) if u.len() == 2));
        assert!(matches!(read((raw.len() - 1, usize::MAX)), Ahead::Inline));
        // 100 rows of at least 512 estimated bytes each.
        assert!(matches!(read((raw.len(), 100 * 512)), Ahead::Inline));
        assert!(matches!(read((raw.len(), 100 * 2048)), Ahead::Parsed(_)));
    }
}
