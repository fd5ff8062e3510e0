//! A job's log on disk: `log` holds the output bytes exactly as produced (after masking), and
//! `log.idx` is a sparse index of fixed 24-byte records `(line, byte offset, unix ms)` written
//! whenever a line starts in a later millisecond than the last record. The index gives every
//! line a timestamp (that of the record at or before it) and lets a reader seek near any line
//! without reading the log from the start. Both files are append-only; memory use does not grow
//! with the log.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mask::Masker;

pub const LOG_FILE: &str = "log";
pub const INDEX_FILE: &str = "log.idx";
const RECORD: usize = 24;

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub struct LogWriter {
    log: BufWriter<File>,
    index: BufWriter<File>,
    masker: Masker,
    scratch: Vec<u8>,
    /// Lines started so far (the line being written is `lines - 1` when not at a line start).
    lines: u64,
    bytes: u64,
    at_line_start: bool,
    last_ms: u64,
}

impl LogWriter {
    pub fn create(dir: &Path, masker: Masker) -> io::Result<LogWriter> {
        let open = |name| OpenOptions::new().create(true).append(true).open(dir.join(name));
        Ok(LogWriter {
            log: BufWriter::with_capacity(64 * 1024, open(LOG_FILE)?),
            index: BufWriter::new(open(INDEX_FILE)?),
            masker,
            scratch: Vec::with_capacity(64 * 1024),
            lines: 0,
            bytes: 0,
            at_line_start: true,
            last_ms: 0,
        })
    }

    /// The number of the line the next byte goes to (0-based).
    pub fn next_line(&self) -> u64 {
        if self.at_line_start { self.lines } else { self.lines - 1 }
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Appends job output; returns the bytes stored (masked; a possible secret's first bytes
    /// are held back until the rest shows whether it is one).
    pub fn write(&mut self, input: &[u8]) -> io::Result<&[u8]> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.masker.push(input, &mut out);
        let result = self.store(&out);
        self.scratch = out;
        result.map(|()| self.scratch.as_slice())
    }

    /// Ends the current line if output left it open (before a command boundary or a message).
    pub fn end_line(&mut self) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        self.masker.flush(&mut out);
        if !out.is_empty() || !self.at_line_start {
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            self.store(&out)?;
        }
        self.scratch = out;
        Ok(())
    }

    /// Appends a line of Salve's own (what happened to the job), on a line of its own.
    pub fn note(&mut self, message: &str) -> io::Result<()> {
        self.end_line()?;
        let line = format!("salve: {}\n", self.masker.mask_str(message));
        self.store(line.as_bytes())
    }

    /// Hands what was stored so far to the file system, so readers (live logs, a server that
    /// restarts) see it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.log.flush()?;
        self.index.flush()
    }

    pub fn finish(mut self) -> io::Result<(u64, u64)> {
        self.end_line()?;
        self.log.flush()?;
        self.index.flush()?;
        Ok((self.lines, self.bytes))
    }

    fn store(&mut self, out: &[u8]) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if self.at_line_start {
            self.index_line(self.lines, self.bytes)?;
        }
        let mut newlines = memchr::memchr_iter(b'\n', out);
        let mut started = u64::from(self.at_line_start);
        if let Some(first) = newlines.next() {
            // The first line starting inside this chunk, for the index.
            if first + 1 < out.len() {
                self.index_line(self.lines + started, self.bytes + first as u64 + 1)?;
            }
            let count = 1 + newlines.count() as u64;
            // Every newline not at the very end starts another line.
            started += count - u64::from(out.last() == Some(&b'\n'));
        }
        self.lines += started;
        self.at_line_start = out.last() == Some(&b'\n');
        self.log.write_all(out)?;
        self.bytes += out.len() as u64;
        Ok(())
    }

    fn index_line(&mut self, line: u64, offset: u64) -> io::Result<()> {
        let ms = unix_ms();
        if ms == self.last_ms {
            return Ok(());
        }
        self.last_ms = ms;
        let mut record = [0u8; RECORD];
        record[..8].copy_from_slice(&line.to_le_bytes());
        record[8..16].copy_from_slice(&offset.to_le_bytes());
        record[16..].copy_from_slice(&ms.to_le_bytes());
        self.index.write_all(&record)
    }
}

/// One stored line: its number (0-based), when it started, and its bytes without the newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: u64,
    pub unix_ms: u64,
    pub bytes: Vec<u8>,
}

pub struct LogReader {
    dir: PathBuf,
    index: Vec<(u64, u64, u64)>,
}

impl LogReader {
    pub fn open(dir: &Path) -> io::Result<LogReader> {
        let mut raw = Vec::new();
        match File::open(dir.join(INDEX_FILE)) {
            Ok(mut f) => {
                f.read_to_end(&mut raw)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let word = |r: &[u8], i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
        let index = raw.chunks_exact(RECORD).map(|r| (word(r, 0), word(r, 8), word(r, 16))).collect();
        Ok(LogReader { dir: dir.to_owned(), index })
    }

    /// The raw log, for streaming it out whole.
    pub fn raw(&self) -> io::Result<File> {
        File::open(self.dir.join(LOG_FILE))
    }

    /// Up to `count` lines starting at line `from`.
    pub fn lines(&self, from: u64, count: usize) -> io::Result<Vec<Line>> {
        let mut lines = Vec::new();
        self.each_line(from, |number, bytes| {
            lines.push(Line { number, unix_ms: self.time_of(number), bytes: bytes.to_vec() });
            lines.len() < count
        })?;
        Ok(lines)
    }

    /// Calls `f` with each line from line `from` on (its number and bytes without the newline),
    /// reading the log as a stream, until `f` returns false.
    pub fn each_line(&self, from: u64, mut f: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
        let slot = self.index.partition_point(|&(line, _, _)| line <= from);
        let (mut line, offset) = match slot.checked_sub(1).map(|i| self.index[i]) {
            Some((line, offset, _)) => (line, offset),
            None => (0, 0),
        };
        let mut file = self.raw()?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = io::BufReader::with_capacity(64 * 1024, file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if io::BufRead::read_until(&mut reader, b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            if line >= from {
                let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                if !f(line, bytes) {
                    return Ok(());
                }
            }
            line += 1;
        }
    }

    /// How many lines the log holds: counted from the last index entry, not from the start.
    pub fn count(&self) -> io::Result<u64> {
        let (mut line, offset) = self.index.last().map_or((0, 0), |&(line, offset, _)| (line, offset));
        let mut file = match self.raw() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = b'\n';
        let mut any = false;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            any = true;
            line += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            last = buf[n - 1];
        }
        // A last line without its newline (a job still writing) counts too.
        Ok(line + u64::from(any && last != b'\n'))
    }

    /// The last `count` lines (read from the end of the file, whatever its size).
    pub fn tail(&self, count: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut file = self.raw()?;
        let len = file.metadata()?.len();
        let mut window = 64 * 1024u64;
        loop {
            let start = len.saturating_sub(window);
            file.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
            // The first piece may be the end of a longer line, unless the window reached the start.
            if start > 0 {
                lines.remove(0);
            }
            if lines.len() >= count || start == 0 {
                let skip = lines.len().saturating_sub(count);
                return Ok(lines[skip..].iter().map(|l| l.to_vec()).collect());
            }
            window *= 4;
        }
    }

    fn time_of(&self, line: u64) -> u64 {
        let slot = self.index.partition_point(|&(l, _, _)| l <= line);
        slot.checked_sub(1).map_or(0, |i| self.index[i].2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_across_chunks_and_reads_windows_back() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut w = LogWriter::create(dir.path(), Masker::new(["pa55word"]))?;
        w.write(b"one\ntw")?;
        assert_eq!(w.next_line(), 1);
        w.write(b"o pa5")?;
        w.write(b"5word\nthree\n")?;
        assert_eq!(w.next_line(), 3);
        w.write(b"partial")?;
        w.note("job stopped")?;
        let (lines, _) = w.finish()?;
        assert_eq!(lines, 5);
        let r = LogReader::open(dir.path())?;
        let got: Vec<String> = r
            .lines(1, 10)?
            .into_iter()
            .map(|l| format!("{}:{}", l.number, String::from_utf8_lossy(&l.bytes)))
            .collect();
        assert_eq!(got, ["1:two [MASKED]", "2:three", "3:partial", "4:salve: job stopped"]);
        let tail: Vec<String> = r.tail(2)?.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        assert_eq!(tail, ["partial", "salve: job stopped"]);
        Ok(())
    }
}
