//! The library API: push frames from Rust into a go2rtc-ready stream.
//!
//! ```sh
//! cargo run --example push_frames -- /tmp/agent.h264 &   # writes a FIFO
//! cat /tmp/agent.h264 | ffplay -f h264 -                  # or go2rtc: exec:cat /tmp/agent.h264
//! ```

use std::time::{Duration, Instant};

use agentcast::cli::Cli;
use agentcast::stream::Stream;

fn main() -> anyhow::Result<()> {
    let fifo = std::env::args().nth(1).unwrap_or_else(|| "/tmp/agent.h264".into());
    let output = format!("fifo:{fifo}");
    let (width, height) = (640usize, 360usize);
    // The same flags, defaults and checks as the CLI.
    let cli = Cli::parse_args(["agentcast", "--width", "640", "--height", "360", "--output", &output])?;
    let cfg = cli.stream.push_config().map_err(anyhow::Error::msg)?;
    let stream = Stream::start(cfg)?;
    let start = Instant::now();
    let mut frame = vec![0u8; width * height * 3];
    for t in 0..300usize {
        // A white bar sweeping over grey, in rgb24 (ffmpeg's rawvideo layout).
        frame.fill(60);
        let x = t * 2 % (width - 40);
        for row in frame.chunks_exact_mut(width * 3) {
            row[x * 3..(x + 40) * 3].fill(255);
        }
        stream.push(&frame)?; // never waits for the encoder: the newest frame wins
        let next = start + Duration::from_millis(33 * (t as u64 + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    eprintln!("{}", stream.stats());
    stream.stop(); // drain: every accepted frame is written
    stream.wait()
}
