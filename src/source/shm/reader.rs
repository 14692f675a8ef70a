//! The reader thread: [`spawn`] waits for the ring to appear, then polls it ([`Ring::poll`]) and
//! hands each new frame to [`Latest`], napping between frames as the writer's pace allows
//! ([`Pacer`]), until the writer closes the ring or the frame loop stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ring::{Counters, Found, Ring, Step, bad_data, find, ring_path};
use crate::clock::monotonic_ns;
use crate::exit::{Exit, fail};
use crate::frame::PixFmt;
use crate::source::live::{Latest, SourceEnd};

/// How often the reader looks for a new frame when one is due.
pub const POLL: Duration = Duration::from_millis(1);
/// How often it looks while the writer pauses (longer than [`IDLE_AFTER`] and 4 frame intervals),
/// or while the newest slot stays half-written.
const IDLE_POLL: Duration = Duration::from_millis(4);
const IDLE_AFTER: Duration = Duration::from_millis(250);
/// A newest slot half-written for this long gets a warning.
const STUCK_AFTER: Duration = Duration::from_secs(1);
/// The longest it sleeps on a prediction.
const MAX_NAP: Duration = Duration::from_millis(50);
/// How often it looks for the ring while waiting for it to appear.
const WAIT_POLL: Duration = Duration::from_millis(20);
/// How often it checks whether the writer closed the ring.
const CLOSED_EVERY: Duration = Duration::from_millis(100);

/// When to look next. The writer's frame timestamps give its frame interval and how much that
/// varies (jitter); the reader sleeps until a margin before the next frame is due, then polls every
/// [`POLL`]. The margin is a quarter interval, at least 2 ms, and at least three times the jitter,
/// so a writer whose frames come irregularly gets short naps and loses no latency to them. A steady
/// 30 fps writer costs about ten polls a frame instead of thirty-three. Timestamps from another
/// clock (a time namespace) fall back to plain polling.
#[derive(Debug, Default)]
struct Pacer {
    /// (frame number, timestamp ns) of the last frame taken.
    last: Option<(u64, u64)>,
    /// Smoothed frame interval, ns.
    interval: Option<u64>,
    /// Smoothed absolute difference between an interval and the smoothed one, ns.
    jitter: u64,
}

impl Pacer {
    fn frame(&mut self, number: u64, timestamp_ns: u64) {
        if let Some((n, ts)) = self.last
            && number > n
            && timestamp_ns > ts
        {
            let sample = (timestamp_ns - ts) / (number - n);
            if let Some(i) = self.interval {
                self.jitter = (3 * self.jitter + sample.abs_diff(i)) / 4;
            }
            self.interval = Some(self.interval.map_or(sample, |i| (3 * i + sample) / 4));
        }
        self.last = Some((number, timestamp_ns));
    }

    /// How long to sleep, `now_ns` being CLOCK_MONOTONIC now.
    fn pause(&self, now_ns: u64) -> Duration {
        let (Some((_, ts)), Some(interval)) = (self.last, self.interval) else { return POLL };
        let Some(since) = now_ns.checked_sub(ts) else { return POLL };
        let since = Duration::from_nanos(since);
        let interval = Duration::from_nanos(interval);
        if since > IDLE_AFTER.max(interval * 4) {
            return IDLE_POLL;
        }
        let margin = (interval / 4).max(Duration::from_millis(2)).max(Duration::from_nanos(3 * self.jitter));
        interval.saturating_sub(margin).saturating_sub(since).clamp(POLL, MAX_NAP)
    }
}

/// The reader thread and what it counts.
#[derive(Debug)]
pub struct Reader {
    pub thread: JoinHandle<()>,
    pub counters: Arc<Counters>,
}

fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Starts the thread that reads the ring `shm:NAME` into `latest`.
///
/// When the ring already exists, its header is checked here, so a bad ring fails before anything
/// starts: `Exit::BadData` (65) for a wrong magic, version or size, `Exit::Usage` (2) naming the
/// flag that does not match. Otherwise the thread waits for the ring to appear, up to `wait_for`
/// (`None`: forever), then checks it the same way; a failure there, or no ring in time
/// (`Exit::NoInput`), ends `latest` with `SourceEnd::Failed`. The thread offers every new whole
/// frame (arrival time: when it was read), ends `latest` with `SourceEnd::Finished` when the
/// writer closes the ring, and stops when `latest` is closed.
pub fn spawn(
    name: &str,
    width: u32,
    height: u32,
    format: PixFmt,
    latest: Arc<Latest>,
    wait_for: Option<Duration>,
) -> anyhow::Result<Reader> {
    let counters = Arc::new(Counters::default());
    let early = match find(name, width, height, format)? {
        Found::Ready(ring) => Some(ring),
        _ => None,
    };
    let (name, shared) = (name.to_string(), counters.clone());
    let thread = std::thread::Builder::new().name("shm".into()).spawn(move || {
        let ring = match early {
            Some(ring) => Ok(Some(ring)),
            None => wait(&name, width, height, format, &latest, wait_for),
        };
        let end = match ring {
            Ok(Some(mut ring)) => {
                ring.counters = shared;
                read(&mut ring, &latest)
            }
            Ok(None) => None,
            Err(e) => Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
        };
        if let Some(end) = end {
            if let SourceEnd::Failed(_, why) = &end {
                log::error!("{why}");
            }
            latest.end(end);
        }
    })?;
    Ok(Reader { thread, counters })
}

/// Waits for the ring to appear and be initialised. `Ok(None)`: the frame loop stopped first.
fn wait(
    name: &str,
    width: u32,
    height: u32,
    format: PixFmt,
    latest: &Latest,
    wait_for: Option<Duration>,
) -> anyhow::Result<Option<Ring>> {
    let start = Instant::now();
    let path = ring_path(name)?;
    log::info!("shm:{name}: waiting for a writer to create {}", path.display());
    loop {
        let why = match find(name, width, height, format)? {
            Found::Ready(ring) => return Ok(Some(ring)),
            Found::Missing => None,
            Found::NotReady(why) => Some(why),
        };
        if latest.is_closed() {
            return Ok(None);
        }
        if wait_for.is_some_and(|limit| start.elapsed() >= limit) {
            let waited = start.elapsed().as_secs_f64();
            return Err(match why {
                None => fail(Exit::NoInput, format!("shm:{name}: no ring at {} after {waited:.0} s", path.display())),
                Some(why) => bad_data(&format!("shm:{name}"), format!("{why}, still after {waited:.0} s")),
            });
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Polls until the frame loop stops (None) or the ring ends.
fn read(ring: &mut Ring, latest: &Latest) -> Option<SourceEnd> {
    let h = ring.header().clone();
    log::info!(
        "{}: {}x{} {} frames, {} slots of {} bytes, writer pid {}",
        ring.label,
        h.width,
        h.height,
        ring.format,
        h.slot_count,
        h.slot_stride,
        h.writer_pid
    );
    let (started, cpu0) = (Instant::now(), thread_cpu_ns());
    let mut checked = Instant::now();
    let mut pacer = Pacer::default();
    // Since when the newest slot has been found half-written, and whether that was said.
    let mut busy_since: Option<(Instant, bool)> = None;
    let end = loop {
        let step = ring.poll(latest);
        if !matches!(step, Ok(Step::Busy)) {
            busy_since = None;
        }
        match step {
            Ok(Step::Frame { number, timestamp_ns }) => {
                pacer.frame(number, timestamp_ns);
                let delay = monotonic_ns().saturating_sub(timestamp_ns);
                if delay < 10_000_000_000 {
                    Counters::add(&ring.counters.delay_ns, delay);
                }
            }
            Ok(Step::Busy) => {
                let (since, said) = busy_since.get_or_insert((Instant::now(), false));
                if !*said && since.elapsed() >= STUCK_AFTER {
                    *said = true;
                    log::warn!(
                        "{}: the newest frame has stayed half-written for {} s (did the writer die mid-frame?); \
                         it will not be shown",
                        ring.label,
                        STUCK_AFTER.as_secs()
                    );
                }
            }
            Ok(Step::Stopped) => break None,
            Ok(Step::Nothing) if checked.elapsed() >= CLOSED_EVERY => {
                checked = Instant::now();
                ring.counters.cpu_ns.store(thread_cpu_ns() - cpu0, Ordering::Relaxed);
                match ring.finished() {
                    Ok(true) => break Some(SourceEnd::Finished(format!("{}: the writer closed the ring", ring.label))),
                    Ok(false) => {}
                    Err(e) => break Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
                }
            }
            Ok(_) => {}
            Err(e) => break Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
        }
        if latest.is_closed() {
            break None;
        }
        let stuck = busy_since.is_some_and(|(since, _)| since.elapsed() >= IDLE_AFTER);
        std::thread::sleep(if stuck { IDLE_POLL } else { pacer.pause(monotonic_ns()) });
    };
    let c = &ring.counters;
    let cpu = thread_cpu_ns() - cpu0;
    c.cpu_ns.store(cpu, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    log::info!(
        "{}: {} frames taken (mean {:.2} ms after the writer finished them), {} torn copies dropped, {} frames missed, \
         {} busy polls; reader CPU {:.2}% of a core over {secs:.1} s",
        ring.label,
        c.taken.load(Ordering::Relaxed),
        c.delay_ns.load(Ordering::Relaxed) as f64 / 1e6 / c.taken.load(Ordering::Relaxed).max(1) as f64,
        c.torn.load(Ordering::Relaxed),
        c.missed.load(Ordering::Relaxed),
        c.busy.load(Ordering::Relaxed),
        cpu as f64 / 1e7 / secs.max(1e-9),
    );
    end
}

#[cfg(test)]
mod tests {
    use super::super::layout::{FLAG_CLOSED, Header, off};
    use super::super::ring::testing::Writer;
    use super::*;
    use crate::source::live::Taken;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_pacer_naps_until_just_before_the_next_frame() {
        let ms = |n: u64| n * 1_000_000;
        let mut p = Pacer::default();
        assert_eq!(p.pause(ms(5)), POLL, "no interval known yet");
        p.frame(1, ms(1000));
        p.frame(2, ms(1040));
        // 40 ms frames: nap until 10 ms before the next one is due.
        assert_eq!(p.pause(ms(1040)), Duration::from_millis(30));
        assert_eq!(p.pause(ms(1065)), Duration::from_millis(5));
        assert_eq!(p.pause(ms(1075)), POLL, "due: poll");
        assert_eq!(p.pause(ms(1500)), IDLE_POLL, "the writer paused");
        assert_eq!(p.pause(ms(900)), POLL, "a timestamp from another clock");
        // 120 fps: a 2 ms margin; a frame number jump divides the time.
        let mut p = Pacer::default();
        p.frame(1, ms(0));
        p.frame(3, ms(16));
        assert_eq!(p.pause(ms(16)), Duration::from_millis(6));
        let mut p = Pacer::default();
        p.frame(1, ms(0));
        p.frame(2, ms(1000));
        assert_eq!(p.pause(ms(1000)), MAX_NAP);
        // Irregular frames (30, 50, 30, 50 ms) widen the margin: the nap ends well before the
        // next frame can come (30 ms), where a steady 40 ms writer's would end at 30 ms.
        let mut p = Pacer::default();
        for (n, t) in [(1, 0), (2, 30), (3, 80), (4, 110), (5, 160), (6, 190), (7, 240)] {
            p.frame(n, ms(t));
        }
        assert!(p.jitter > ms(5), "jitter {} ms", p.jitter / ms(1));
        assert!(p.pause(ms(240)) <= Duration::from_millis(20), "{:?}", p.pause(ms(240)));
    }

    #[test]
    fn spawn_waits_for_the_ring_reads_it_and_ends_when_the_writer_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let latest = Arc::new(Latest::new(crate::source::live::Overrun::Replace));
        let reader =
            spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), Some(Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Half-created first: a header with no magic yet must be waited for, not refused.
        std::fs::File::create(&path).unwrap().write_all(&[0; 300]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Gray, 2));
        w.frame(9);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(latest.wait(deadline), Taken::Frame(f) if f.data == [9; 128]));
        w.file.write_all_at(&FLAG_CLOSED.to_le_bytes(), off::FLAGS).unwrap();
        match latest.wait(Instant::now() + Duration::from_secs(5)) {
            Taken::Ended(SourceEnd::Finished(why)) => assert!(why.contains("closed"), "{why}"),
            other => panic!("{other:?}"),
        }
        reader.thread.join().unwrap();
        assert_eq!(reader.counters.taken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn spawn_refuses_a_bad_ring_at_once_and_gives_up_on_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let latest = Arc::new(Latest::new(crate::source::live::Overrun::Replace));
        let err = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap_err();
        assert_eq!(crate::exit::classify(&err), Exit::BadData);
        let missing = dir.path().join("none");
        let reader =
            spawn(missing.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), Some(Duration::from_millis(50)))
                .unwrap();
        match latest.wait(Instant::now() + Duration::from_secs(5)) {
            Taken::Ended(SourceEnd::Failed(Exit::NoInput, why)) => assert!(why.contains("no ring at"), "{why}"),
            other => panic!("{other:?}"),
        }
        reader.thread.join().unwrap();
    }

    #[test]
    fn a_closed_frame_loop_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let latest = Arc::new(Latest::new(crate::source::live::Overrun::Replace));
        let reader = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap();
        latest.close();
        reader.thread.join().unwrap();
        let _w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Gray, 2));
        let reader = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap();
        reader.thread.join().unwrap();
    }
}
