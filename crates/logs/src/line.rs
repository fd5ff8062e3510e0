//! One log line as the analysis reads it: its ANSI escapes stripped ([`clean`]) and its shape
//! ([`shape`]: the hash that says two runs printed "the same line"). Both the excerpt and the
//! step tracker read lines through here.

/// The line without ANSI escapes (also the `[1;31m` left when a log lost its ESC bytes), as text
/// (invalid UTF-8 replaced).
pub fn clean(raw: &[u8]) -> String {
    strip_escapes(raw, false)
}

/// [`clean`], with ASCII letters lower-cased: what the scorer reads.
pub(crate) fn lower_clean(raw: &[u8]) -> String {
    strip_escapes(raw, true)
}

fn strip_escapes(raw: &[u8], lower: bool) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if (c == 0x1b || c == b'[')
            && let Some(n) = escape_len(raw, i)
        {
            i += n;
            continue;
        }
        out.push(if lower { c.to_ascii_lowercase() } else { c });
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `body` after the escape sequences it starts with.
pub(crate) fn skip_escapes(body: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some(n) = body.get(start).and_then(|_| escape_len(body, start)) {
        start += n;
    }
    &body[start..]
}

/// The length of an escape sequence starting at `i`: ESC `[` … letter, ESC and one byte, or a
/// bare `[` digits/`;` `m` (an SGR code that lost its ESC).
pub(crate) fn escape_len(b: &[u8], i: usize) -> Option<usize> {
    match b[i] {
        0x1b => match b.get(i + 1) {
            Some(b'[') => {
                let end = b[i + 2..].iter().position(u8::is_ascii_alphabetic).map_or(b.len(), |p| i + 2 + p + 1);
                Some(end - i)
            }
            // Character set selection: ESC ( B.
            Some(b'(' | b')') => Some(3.min(b.len() - i)),
            _ => Some(2.min(b.len() - i)),
        },
        b'[' => {
            let n = b[i + 1..].iter().take(12).take_while(|c| c.is_ascii_digit() || **c == b';').count();
            (b.get(i + 1 + n) == Some(&b'm')).then_some(n + 2)
        }
        _ => None,
    }
}

/// A word-at-a-time hash of the bytes pushed: eight bytes per multiply, stable across runs and
/// versions (fingerprints are made of it).
struct WordHash {
    h: u64,
    word: u64,
}

impl WordHash {
    fn new() -> WordHash {
        WordHash { h: 0x243f_6a88_85a3_08d3, word: 0 }
    }

    #[inline]
    fn mix(&mut self) {
        self.h = (self.h.rotate_left(23) ^ self.word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.word = 0;
    }

    fn finish(mut self, len: usize) -> u64 {
        self.word ^= (len as u64) << 56;
        self.mix();
        // A final avalanche so nearby inputs spread over all bits.
        let mut h = self.h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// The hash of a line's shape: ANSI stripped, letters lowercased, every run of digits (and
/// every hex word of 7+ characters with a digit, like a commit) one `#`, runs of whitespace one
/// space. Equal shapes across runs of the same job mean "the same line".
pub fn shape(body: &[u8]) -> u64 {
    let mut out = Normalised::new();
    let mut i = level_tag(body);
    let mut last = b' ';
    while i < body.len() {
        let c = body[i];
        match BYTE_CLASS[c as usize] {
            PLAIN => {
                last = c.to_ascii_lowercase();
                out.push(last);
                i += 1;
            }
            SPACE => {
                if last != b' ' {
                    out.push(b' ');
                    last = b' ';
                }
                i += 1;
            }
            ESCAPE if let Some(n) = escape_len(body, i) => i += n,
            _ => {
                // A digit or a hex letter (or a `[` that starts no escape).
                let word_start = i == 0 || !body[i - 1].is_ascii_alphanumeric();
                let word = if word_start { body[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count() } else { 0 };
                if word >= 7
                    && body.get(i + word).is_none_or(|c| !c.is_ascii_alphanumeric())
                    && body[i..i + word].iter().any(u8::is_ascii_digit)
                {
                    // A hash.
                    if last != b'#' {
                        out.push(b'#');
                        last = b'#';
                    }
                    i += word;
                } else if c.is_ascii_digit() {
                    if last != b'#' {
                        out.push(b'#');
                        last = b'#';
                    }
                    i += 1;
                } else {
                    last = c.to_ascii_lowercase();
                    out.push(last);
                    i += 1;
                }
            }
        }
    }
    out.finish()
}

/// The length of a leading log level tag (`[ERROR] `, `[[1;31mERROR[m] `), which a tool puts
/// before lines it also prints without one.
pub(crate) fn level_tag(body: &[u8]) -> usize {
    let text = body.trim_ascii_start();
    let skipped = body.len() - text.len();
    if text.first() != Some(&b'[') {
        return 0;
    }
    let Some(end) = text.iter().take(24).position(|c| *c == b']') else { return 0 };
    let inner = &text[1..end];
    let letters = inner.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if letters >= 3 && inner.iter().all(|c| c.is_ascii_alphanumeric() || *c == b';' || *c == b'[' || *c == 0x1b) {
        skipped + end + 1 + usize::from(text.get(end + 1) == Some(&b' '))
    } else {
        0
    }
}

const PLAIN: u8 = 0;
const SPACE: u8 = 1;
const ESCAPE: u8 = 2;
const HEXISH: u8 = 3;

/// What [`shape`] does with each byte.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c == b' ' || c == b'\t' {
            SPACE
        } else if c == 0x1b || c == b'[' {
            ESCAPE
        } else if c.is_ascii_hexdigit() {
            HEXISH
        } else {
            PLAIN
        };
        b += 1;
    }
    t
};

/// The normalised bytes of a line, hashed a block at a time.
struct Normalised {
    buf: [u8; 64],
    n: usize,
    len: usize,
    h: WordHash,
}

impl Normalised {
    fn new() -> Normalised {
        Normalised { buf: [0; 64], n: 0, len: 0, h: WordHash::new() }
    }

    #[inline]
    fn push(&mut self, b: u8) {
        self.buf[self.n] = b;
        self.n += 1;
        if self.n == self.buf.len() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for chunk in self.buf[..self.n].chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.h.word = u64::from_le_bytes(w);
            self.h.mix();
        }
        self.len += self.n;
        self.n = 0;
    }

    fn finish(mut self) -> u64 {
        self.flush();
        self.h.finish(self.len)
    }
}
