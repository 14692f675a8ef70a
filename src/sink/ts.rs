//! MPEG-TS on its way out (`--mux mpegts`): mpegtsmux hands the sink one 188-byte packet per
//! buffer, so the sink groups a frame's packets into one write. [`PesTracker`] follows the video
//! PES through the packets (pure, no I/O) and says when a PES whose header declares its length is
//! complete: then the frame is whole and goes out at once, never waiting for the next frame.

/// Bytes in one TS packet.
pub const PACKET: usize = 188;

/// Follows the video PES across TS packets.
#[derive(Debug, Default, Clone)]
pub struct PesTracker {
    video_pid: Option<u16>,
    /// Bytes of the current video PES still to come, when its header declared a length.
    left: Option<usize>,
}

impl PesTracker {
    /// Feeds whole TS packets; true when one of them completed a video PES of declared length.
    /// Bytes that are not whole packets with a sync byte end the grouping too (true), so nothing is
    /// ever held back on a guess.
    pub fn feed(&mut self, buf: &[u8]) -> bool {
        if buf.is_empty() || !buf.len().is_multiple_of(PACKET) {
            return true;
        }
        let mut completed = false;
        for p in buf.chunks(PACKET) {
            if p[0] != 0x47 {
                self.left = None;
                return true;
            }
            let pusi = p[1] & 0x40 != 0;
            let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            let afc = p[3] >> 4;
            let start = if afc & 2 != 0 { 5 + usize::from(p[4]) } else { 4 };
            let payload = if afc & 1 != 0 && start < PACKET { &p[start..] } else { &[][..] };
            if pusi && payload.len() >= 6 && payload[..3] == [0, 0, 1] && (0xe0..=0xef).contains(&payload[3]) {
                self.video_pid = Some(pid);
                let declared = (usize::from(payload[4]) << 8) | usize::from(payload[5]);
                // The length counts the bytes after its own field: the PES is 6 + declared bytes.
                self.left = (declared > 0).then(|| (declared + 6).saturating_sub(payload.len()));
            } else if Some(pid) == self.video_pid
                && let Some(left) = self.left
            {
                self.left = Some(left.saturating_sub(payload.len()));
            } else {
                continue;
            }
            if self.left == Some(0) {
                self.left = None;
                completed = true;
            }
        }
        completed
    }

    /// Inside a video PES of declared length whose bytes are still coming (worth a short wait).
    pub fn mid_pes(&self) -> bool {
        self.left.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet of `pid` carrying `payload` (padded with an adaptation field to 188 bytes).
    fn packet(pid: u16, pusi: bool, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 184);
        let mut p = vec![0x47, (u8::from(pusi) << 6) | (pid >> 8) as u8, pid as u8];
        let stuffing = 184 - payload.len();
        if stuffing == 0 {
            p.push(0x10);
        } else {
            p.push(0x30);
            p.push((stuffing - 1) as u8);
            if stuffing > 1 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, stuffing - 2));
            }
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), PACKET);
        p
    }

    /// A video PES of `es` bytes split into packets; `declared`: whether its header carries the length.
    fn pes_packets(pid: u16, es: usize, declared: bool) -> Vec<Vec<u8>> {
        let header = [0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        let mut pes = header.to_vec();
        pes.extend(std::iter::repeat_n(0xab, es));
        if declared {
            let n = pes.len() - 6;
            (pes[4], pes[5]) = ((n >> 8) as u8, n as u8);
        }
        pes.chunks(184).enumerate().map(|(i, c)| packet(pid, i == 0, c)).collect()
    }

    #[test]
    fn a_pes_of_declared_length_ends_with_its_last_packet() {
        let mut t = PesTracker::default();
        assert!(!t.feed(&packet(0, true, &[0, 0, 0xb0, 0x0d])), "a PAT ends nothing");
        let packets = pes_packets(0x41, 500, true);
        assert_eq!(packets.len(), 3);
        assert!(!t.feed(&packets[0]) && t.mid_pes());
        assert!(!t.feed(&packets[1]) && t.mid_pes());
        assert!(t.feed(&packets[2]) && !t.mid_pes());
        // A burst fed at once, and a PES that fits one packet.
        assert!(t.feed(&pes_packets(0x41, 500, true).concat()));
        assert!(t.feed(&pes_packets(0x41, 100, true).concat()));
        // Other PIDs between the packets do not count.
        let packets = pes_packets(0x41, 300, true);
        assert!(!t.feed(&packets[0]));
        assert!(!t.feed(&packet(0x1000, true, &[0, 2, 0xb0])));
        assert!(t.feed(&packets[1]));
    }

    #[test]
    fn an_unbounded_pes_never_ends_on_its_own_and_garbage_ends_the_group() {
        let mut t = PesTracker::default();
        for p in pes_packets(0x41, 70_000, false) {
            assert!(!t.feed(&p) && !t.mid_pes());
        }
        assert!(t.feed(&[0x47; 100]), "not whole packets");
        let mut bad = packet(0x41, false, &[1, 2, 3]);
        bad[0] = 0;
        assert!(t.feed(&bad));
    }
}
