//! `raw:PATH`: raw frames from standard input (`raw:-`), a FIFO or a file, in ffmpeg's `rawvideo`
//! convention: `--width` x `--height` frames of `--pix-fmt`, back to back, no header. The same
//! reader serves the frames of a `unix:` connection.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::exit::{Exit, fail};
use crate::frame::{HostFrame, PixFmt};
use crate::source::live::{Latest, SourceEnd};

/// How often a reader waiting for bytes looks whether the stream has stopped.
const POLL: Duration = Duration::from_millis(100);

/// How one read of a frame went.
#[derive(Debug, PartialEq, Eq)]
pub enum Read1 {
    /// A whole frame was read.
    Frame,
    /// The input ended cleanly, at a frame boundary.
    Eof,
    /// The input ended `got` bytes into a frame.
    Partial { got: usize },
    /// The stream stopped (the slot closed) while waiting.
    Stopped,
}

/// Reads one whole frame into `buf`, waiting in slices of [`POLL`] so a stopped stream is noticed.
pub fn read_frame<R: Read + AsFd>(input: &mut R, buf: &mut [u8], latest: &Latest) -> io::Result<Read1> {
    let mut got = 0;
    while got < buf.len() {
        if latest.is_closed() {
            return Ok(Read1::Stopped);
        }
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(POLL.as_millis() as u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(Read1::Eof),
            Ok(0) => return Ok(Read1::Partial { got }),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Read1::Frame)
}

/// Reads frames of `frame_bytes` from `input` and offers each to `latest` until the input ends or
/// the stream stops. `what` names the input in messages.
pub fn pump<R: Read + AsFd>(input: &mut R, frame_bytes: usize, latest: &Latest, what: &str) -> Result<u64, SourceEnd> {
    let mut frames = 0u64;
    loop {
        let mut buf = latest.buffer(frame_bytes);
        match read_frame(input, &mut buf, latest) {
            Ok(Read1::Frame) => {
                frames += 1;
                if frames == 1 {
                    info!("{what}: the first frame arrived");
                }
                if !latest.offer(HostFrame { data: buf, arrived: Instant::now() }) {
                    return Ok(frames);
                }
            }
            Ok(Read1::Stopped) => return Ok(frames),
            Ok(Read1::Eof) => {
                return Err(SourceEnd::Finished(format!("{what}: end of input after {frames} frames")));
            }
            Ok(Read1::Partial { got }) => {
                return Err(SourceEnd::Failed(
                    Exit::BadData,
                    format!(
                        "{what}: the input ended {got} bytes into frame {} (a frame is {frame_bytes} bytes); the {frames} whole frames before it were streamed",
                        frames + 1
                    ),
                ));
            }
            Err(e) => return Err(SourceEnd::Failed(Exit::Io, format!("{what}: reading frames: {e}"))),
        }
    }
}

/// Checks `raw:PATH` before anything heavy starts (a missing file fails in milliseconds). A
/// regular file must hold whole `width` x `height` frames of `format`.
pub fn check(path: &Path, format: PixFmt, (width, height): (u32, u32)) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return Ok(());
    }
    let frame_bytes = format.frame_bytes(width, height);
    let frame = format!("{width}x{height} {format}");
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            Err(fail(Exit::NoInput, format!("--source raw:{shown}: is a directory, not a file or FIFO")))
        }
        Ok(m) if m.is_file() && (m.len() == 0 || m.len() % frame_bytes as u64 != 0) => Err(fail(
            Exit::Usage,
            format!(
                "--width/--height/--pix-fmt: raw:{shown} is {} bytes, not a whole number of {frame} frames ({frame_bytes} bytes each)",
                m.len()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(fail(Exit::NoInput, format!("--source raw:{shown}: {e}"))),
    }
}

/// Starts the reading thread for `raw:PATH`. Opening a FIFO waits for its writer, so it happens on
/// that thread; the stream meanwhile waits for the first frame.
pub fn spawn(path: PathBuf, frame_bytes: usize, latest: Arc<Latest>) -> anyhow::Result<()> {
    let what = format!("raw:{}", path.display());
    thread::Builder::new().name("source-raw".into()).spawn(move || {
        let result = if path == Path::new("-") {
            pump(&mut io::stdin().lock(), frame_bytes, &latest, &what)
        } else {
            debug!("{what}: opening (a FIFO waits for its writer)");
            match File::open(&path) {
                Ok(mut f) => pump(&mut f, frame_bytes, &latest, &what),
                Err(e) => Err(SourceEnd::Failed(Exit::NoInput, format!("--source {what}: {e}"))),
            }
        };
        if let Err(end) = result {
            latest.end(end);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn whole_frames_then_a_partial_one_is_bad_data_naming_the_byte_count() {
        let (mut w, mut r) = UnixStream::pair().unwrap();
        let latest = Latest::new(crate::source::live::Overrun::Wait);
        let writer = thread::spawn(move || {
            w.write_all(&[1; 8]).unwrap();
            w.write_all(&[2; 8]).unwrap();
            w.write_all(&[3; 5]).unwrap();
        });
        let reader = {
            let latest = &latest;
            thread::scope(|s| {
                let h = s.spawn(|| pump(&mut r, 8, latest, "raw:test"));
                let mut seen = Vec::new();
                for _ in 0..2 {
                    match latest.wait(Instant::now() + Duration::from_secs(5)) {
                        crate::source::live::Taken::Frame(f) => seen.push(f.data[0]),
                        other => panic!("{other:?}"),
                    }
                }
                (seen, h.join().unwrap())
            })
        };
        writer.join().unwrap();
        assert_eq!(reader.0, [1, 2]);
        match reader.1 {
            Err(SourceEnd::Failed(Exit::BadData, m)) => {
                assert!(m.contains("5 bytes into frame 3 (a frame is 8 bytes)"), "{m}");
                assert!(m.contains("the 2 whole frames before it were streamed"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eof_at_a_frame_boundary_is_a_clean_end() {
        let (mut w, mut r) = UnixStream::pair().unwrap();
        w.write_all(&[9; 4]).unwrap();
        drop(w);
        let latest = Latest::new(crate::source::live::Overrun::Replace);
        match pump(&mut r, 4, &latest, "raw:t") {
            Err(SourceEnd::Finished(m)) => assert!(m.contains("after 1 frames"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_file_is_no_input_a_file_of_partial_frames_a_usage_error_and_stdin_is_fine() {
        assert!(check(Path::new("-"), PixFmt::Rgb24, (2, 1)).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.rgb");
        std::fs::write(&file, [0; 12]).unwrap();
        assert!(check(&file, PixFmt::Rgb24, (2, 1)).is_ok());
        let e = check(&file, PixFmt::Gray, (5, 1)).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::Usage);
        assert!(
            format!("{e:#}").contains("is 12 bytes, not a whole number of 5x1 gray frames (5 bytes each)"),
            "{e:#}"
        );
        let e = check(Path::new("/nonexistent/frames.rgb"), PixFmt::Rgb24, (2, 1)).unwrap_err();
        assert_eq!(crate::exit::classify(&e), Exit::NoInput);
        assert!(format!("{e:#}").starts_with("--source raw:/nonexistent/frames.rgb: "), "{e:#}");
    }
}
