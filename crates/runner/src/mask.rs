//! Secret masking on a byte stream. Values are replaced by `[MASKED]` wherever they appear, also
//! when a value arrives split across two reads: the masker holds back the few bytes at the end
//! of a chunk that could still be the start of a secret.

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &[u8] = b"[MASKED]";

/// Shorter values are not masked: masking every `1` or `ab` in a log would destroy it and
/// protect nothing. The runner says so in the job log.
pub const MIN_SECRET_LEN: usize = 3;

pub struct Masker {
    automaton: Option<AhoCorasick>,
    /// Longest pattern minus one: a chunk's tail this long may be the start of a secret.
    hold: usize,
    carry: Vec<u8>,
}

impl Masker {
    /// A masker for `values`. A multi-line value is masked line by line (a log is read line by
    /// line, and a private key printed by a tool is split the same way); lines shorter than
    /// [`MIN_SECRET_LEN`] are skipped.
    pub fn new<I, V>(values: I) -> Masker
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            for line in value.as_ref().split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() >= MIN_SECRET_LEN && !patterns.iter().any(|p| p == line) {
                    patterns.push(line.to_vec());
                }
            }
        }
        let hold = patterns.iter().map(Vec::len).max().unwrap_or(1) - 1;
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok()
        };
        Masker { automaton, hold, carry: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// Masks `input` and appends to `out` every byte that can no longer be part of a secret.
    /// Patterns never contain a newline, so everything up to the last newline is final.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(automaton) = &self.automaton else {
            out.extend_from_slice(input);
            return;
        };
        self.carry.extend_from_slice(input);
        let buf = &self.carry;
        let after_newline = memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1);
        let mut boundary = after_newline.max(buf.len().saturating_sub(self.hold));
        let mut copied = 0;
        for m in automaton.find_iter(buf.as_slice()) {
            if m.start() >= boundary {
                break;
            }
            out.extend_from_slice(&buf[copied..m.start()]);
            out.extend_from_slice(MASK);
            copied = m.end();
            boundary = boundary.max(m.end());
        }
        out.extend_from_slice(&buf[copied..boundary]);
        self.carry.drain(..boundary);
    }

    /// Ends the stream (or a line the runner closes early): masks and emits what was held back.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let Some(automaton) = &self.automaton else {
            return;
        };
        let buf = std::mem::take(&mut self.carry);
        let mut copied = 0;
        for m in automaton.find_iter(buf.as_slice()) {
            out.extend_from_slice(&buf[copied..m.start()]);
            out.extend_from_slice(MASK);
            copied = m.end();
        }
        out.extend_from_slice(&buf[copied..]);
    }

    /// Masks a whole string at once (command texts, messages).
    pub fn mask_str(&self, text: &str) -> String {
        match &self.automaton {
            Some(automaton) => automaton.replace_all(text, &vec!["[MASKED]"; automaton.patterns_len()]),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_in_pieces(secrets: &[&str], input: &[u8], piece: usize) -> Vec<u8> {
        let mut masker = Masker::new(secrets);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            masker.push(chunk, &mut out);
        }
        masker.flush(&mut out);
        out
    }

    #[test]
    fn masks_values_split_at_every_position() {
        let input = b"token=hunter22 and again hunter22\nsplit: hunter22";
        let want = b"token=[MASKED] and again [MASKED]\nsplit: [MASKED]".to_vec();
        for piece in 1..input.len() {
            assert_eq!(mask_in_pieces(&["hunter22"], input, piece), want, "piece size {piece}");
        }
    }

    #[test]
    fn longest_value_wins_and_short_values_are_left_alone() {
        let out = mask_in_pieces(&["abc", "abcdef", "x"], b"abcdefg abc x", 2);
        assert_eq!(String::from_utf8_lossy(&out), "[MASKED]g [MASKED] x");
    }

    #[test]
    fn multi_line_values_are_masked_per_line() {
        let out = mask_in_pieces(&["-----BEGIN KEY-----\nsecretline1\n-----END KEY-----\n"], b"x secretline1 y\n", 3);
        assert_eq!(String::from_utf8_lossy(&out), "x [MASKED] y\n");
    }

    #[test]
    fn binary_and_invalid_utf8_pass_through() {
        let input: Vec<u8> = (0..=255u8).chain(b"s3cret".iter().copied()).collect();
        let out = mask_in_pieces(&["s3cret"], &input, 7);
        assert_eq!(&out[..256], &input[..256]);
        assert_eq!(&out[256..], MASK);
    }
}
