//! `agentcast._agentcast`, the extension module behind the Python package: a `_Stream` that starts
//! an agentcast stream fed by `push()` (the library's push source) from the keyword settings,
//! read onto the library's `ConfigBuilder` (`keywords`) whose checks validate them, and
//! `cli_main`, the whole CLI for `python -m agentcast`.
//!
//! The Python-facing API (the keywords' values as text, docs, the exception classes) lives in the
//! pure-Python package `agentcast/`; this module raises those exceptions through
//! `agentcast.errors.from_code` so every kind carries the CLI's exit code.
//!
//! `push` reads the frame through the buffer protocol (no Python-side copy), checks dtype, shape
//! and contiguity against `--pix-fmt`, and releases the GIL while agentcast copies the bytes into
//! its recycled buffer. It never waits for the encoder: the newest frame wins.

use std::ffi::OsString;
use std::sync::Mutex;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

mod keywords;
use keywords::Given;

use agentcast::exit::{self, Exit};
use agentcast::frame::PixFmt;
use agentcast::stream::{Handle, Stream};

/// The exception for an exit kind, built by `agentcast.errors.from_code` (one class per kind).
fn error(py: Python<'_>, code: u8, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let made = py
        .import("agentcast.errors")
        .and_then(|m| m.getattr("from_code"))
        .and_then(|from_code| from_code.call1((code, message.as_str())));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// A coded agentcast error as its exception, with the CLI's one-line message.
fn coded(py: Python<'_>, err: &anyhow::Error) -> PyErr {
    error(py, exit::classify(err).code(), format!("{err:#}"))
}

/// How a stream ended, kept so that `close()` and a later `push()` report it again.
#[derive(Clone)]
enum Outcome {
    /// Closed by `close()`, or ended cleanly by itself (the reader left, `frames=` reached).
    Clean,
    Failed(u8, String),
}

/// A stream that is garbage-collected unclosed ends cleanly: dropping its [`Handle`] stops it,
/// drains the encoder (nothing accepted is lost) and joins its threads.
#[pyclass(name = "_Stream", module = "agentcast._agentcast", frozen)]
struct PyStream {
    handle: Handle,
    fmt: PixFmt,
    width: u32,
    height: u32,
    fps: u32,
    /// Set once the stream's threads have been joined.
    outcome: Mutex<Option<Outcome>>,
    /// Held (without the GIL) by the one thread that joins the stream.
    joining: Mutex<()>,
}

impl PyStream {
    /// Stops the stream (if still running), joins it without the GIL, and records the outcome.
    /// No lock is held while the GIL is taken back (a thread in `push` may hold the GIL while it
    /// waits for `outcome`); `joining` makes a second caller wait for the first one's outcome.
    fn finish(&self, py: Python<'_>) -> Outcome {
        py.detach(|| {
            let _joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(done) = self.outcome().clone() {
                return done;
            }
            self.handle.stop();
            let done = match self.handle.wait() {
                Ok(()) => Outcome::Clean,
                Err(e) => match exit::classify(&e) {
                    Exit::Ok => Outcome::Clean,
                    kind => Outcome::Failed(kind.code(), format!("{e:#}")),
                },
            };
            *self.outcome() = Some(done.clone());
            done
        })
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Option<Outcome>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.outcome().is_some()
    }

    /// The shapes `push` takes, for messages: "(720, 1280, 3)".
    fn expected(&self) -> String {
        let (w, h) = (self.width as usize, self.height as usize);
        let bytes = self.fmt.frame_bytes(self.width, self.height);
        let shape = frame_shape(self.fmt, self.width, self.height);
        let shape = shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        format!(
            "a C-contiguous uint8 array of shape ({shape}) for pix_fmt {} at {w}x{h}, or any buffer of {bytes} bytes",
            self.fmt
        )
    }

    /// Checks the buffer's element type, shape and layout against the stream's frames.
    fn check(&self, buf: &PyUntypedBuffer, what: &Bound<'_, PyAny>) -> PyResult<()> {
        let format = buf.format().to_string_lossy();
        if buf.item_size() != 1 || !matches!(format.as_ref(), "B" | "c") {
            let got = what.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| format!("format '{format}'"));
            return Err(PyTypeError::new_err(format!("push() expects uint8 frames ({}); got {got}", self.expected())));
        }
        let shape = buf.shape();
        let want = frame_shape(self.fmt, self.width, self.height);
        let bytes = self.fmt.frame_bytes(self.width, self.height);
        let fits = shape == want.as_slice()
            || shape == [bytes]
            || (self.fmt == PixFmt::Gray && shape == [self.height as usize, self.width as usize, 1]);
        if !fits {
            return Err(PyValueError::new_err(format!(
                "push() expects {}; got shape {}",
                self.expected(),
                tuple(shape)
            )));
        }
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "push() expects a C-contiguous frame (a slice or transposed view is not; numpy.ascontiguousarray makes one); got strides {}",
                tuple(buf.strides())
            )));
        }
        Ok(())
    }
}

/// A shape as Python prints it.
fn tuple<T: ToString>(items: &[T]) -> String {
    match items {
        [one] => format!("({},)", one.to_string()),
        _ => format!("({})", items.iter().map(T::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The natural numpy shape of a frame: (H, W, C) for packed formats, (H, W) for gray and
/// (H * 3 / 2, W) for the 4:2:0 formats (ffmpeg's rawvideo layout as rows of W bytes).
fn frame_shape(fmt: PixFmt, width: u32, height: u32) -> Vec<usize> {
    let (w, h) = (width as usize, height as usize);
    match fmt {
        PixFmt::Gray => vec![h, w],
        PixFmt::Nv12 | PixFmt::I420 => vec![fmt.frame_bytes(width, height) / w, w],
        _ => vec![h, w, fmt.bytes_per_pixel()],
    }
}

#[pymethods]
impl PyStream {
    /// Reads the keyword settings onto the library's `ConfigBuilder` (see `keywords`), validates
    /// them with its checks (as the CLI does), and starts a stream fed by `push`.
    #[new]
    fn new(py: Python<'_>, settings: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut given = Vec::with_capacity(settings.len());
        for (keyword, value) in settings.iter() {
            let value = match value.cast::<PyBool>() {
                Ok(flag) if flag.is_true() => Given::Flag,
                _ => Given::Values(value.extract()?),
            };
            given.push((keyword.extract::<String>()?, value));
        }
        let usage = |message: String| error(py, Exit::Usage.code(), message);
        let settings = keywords::settings(given).map_err(usage)?;
        let cfg = settings.builder.build_push().map_err(|e| usage(e.to_string()))?;
        agentcast::init_logging(settings.log_level.as_deref());
        let (fmt, width, height, fps) = (cfg.pix_fmt, cfg.width, cfg.height, cfg.fps);
        let handle = py.detach(|| Stream::start(cfg)).map_err(|e| coded(py, &e))?;
        Ok(PyStream { handle, fmt, width, height, fps, outcome: Mutex::new(None), joining: Mutex::new(()) })
    }

    /// Copies one frame into the stream (see `agentcast.Stream.push`).
    fn push(&self, py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<()> {
        let done = self.outcome().clone();
        if let Some(outcome) = done {
            return Err(ended(py, outcome, "push() on a closed agentcast.Stream"));
        }
        let buf = PyUntypedBuffer::get(frame).map_err(|_| {
            PyTypeError::new_err(format!(
                "push() expects {}; got {}, which does not support the buffer protocol",
                self.expected(),
                frame.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an object".into())
            ))
        })?;
        self.check(&buf, frame)?;
        let buf = buf.into_typed::<u8>()?;
        let ptr = buf.as_slice_ptr().ok_or_else(|| PyValueError::new_err("push() expects a C-contiguous frame"))?;
        // SAFETY: `buf` holds the exporter's buffer (PyObject_GetBuffer) until it is dropped at
        // the end of this function, so the memory stays valid and unmoved while the slice lives;
        // `as_slice_ptr` checked that it is C-contiguous, and `check` that it holds exactly one
        // frame of u8. The GIL is released while agentcast copies it: another Python thread that
        // writes the same array meanwhile can tear the frame (as with any C extension that reads
        // a buffer without the GIL) but cannot free or resize it while the export is held.
        let bytes: &[u8] = unsafe { ptr.as_ref() };
        let handle = &self.handle;
        let pushed = py.detach(|| handle.push(bytes));
        drop(buf);
        if pushed.is_err() {
            // The stream stopped by itself: report how.
            let outcome = self.finish(py);
            return Err(ended(py, outcome, "push() on a stream that has ended"));
        }
        Ok(())
    }

    /// Whether a frame pushed now would be seen (see `agentcast.Stream.wants_frame`): two atomic
    /// loads and a clock read, with the GIL held (releasing it would cost more than the call).
    fn wants_frame(&self) -> bool {
        self.handle.wants_frame()
    }

    /// No frame is wanted for the next `seconds` (see `agentcast.Stream.hold_frames`).
    fn hold_frames(&self, seconds: f64) -> PyResult<()> {
        let span = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err(format!("hold_frames() takes seconds >= 0; got {seconds}")))?;
        self.handle.hold_frames(span);
        Ok(())
    }

    /// Whether someone would see a frame pushed now, due or not (see `agentcast.Stream.watched`).
    #[getter]
    fn watched(&self) -> bool {
        self.handle.is_watched()
    }

    /// Makes the next encoded frame an IDR with SPS and PPS.
    fn request_keyframe(&self) {
        self.handle.request_keyframe();
    }

    /// The stats line's JSON (parsed into a dict by `agentcast.Stream.stats`).
    fn stats_json(&self) -> String {
        self.handle.stats().to_string()
    }

    /// Stops the stream, drains the encoder and joins its threads; raises the stream's error.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let first = !self.is_closed();
        match self.finish(py) {
            Outcome::Failed(code, msg) if first => Err(error(py, code, msg)),
            _ => Ok(()),
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    /// Whether the stream still runs (it ends by itself at `frames=`/`duration=`, or when the
    /// reader of a stdout stream leaves).
    #[getter]
    fn running(&self) -> bool {
        self.handle.is_running()
    }

    #[getter]
    fn fps(&self) -> u32 {
        self.fps
    }

    #[getter]
    fn width(&self) -> u32 {
        self.width
    }

    #[getter]
    fn height(&self) -> u32 {
        self.height
    }

    #[getter]
    fn pix_fmt(&self) -> &'static str {
        self.fmt.name()
    }

    /// The numpy shape `push` expects (a flat buffer of the frame's bytes works too).
    #[getter]
    fn frame_shape(&self) -> Vec<usize> {
        frame_shape(self.fmt, self.width, self.height)
    }
}

/// The exception for `push` on a stream that has ended.
fn ended(py: Python<'_>, outcome: Outcome, clean: &str) -> PyErr {
    match outcome {
        Outcome::Clean => error(py, Exit::Ok.code(), clean),
        Outcome::Failed(code, msg) => error(py, code, msg),
    }
}

/// Runs the agentcast command with `argv` (program name first) and returns its exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| agentcast::cli_main(argv))
}

#[pymodule]
fn _agentcast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStream>()?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("DEFAULT_WIDTH", agentcast::settings::DEFAULT_WIDTH)?;
    m.add("DEFAULT_HEIGHT", agentcast::settings::DEFAULT_HEIGHT)?;
    m.add("DEFAULT_FPS", agentcast::settings::DEFAULT_FPS)?;
    m.add("DEFAULT_BITRATE", agentcast::settings::DEFAULT_BITRATE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
