//! Server-sent events, read incrementally from the model server's response body: the
//! bytes of each socket read go in, whole events come out.
//!
//! The event stream format of the WHATWG HTML standard (§ 9.2.6), as far as a chat
//! completion stream needs it: lines end in CRLF, LF or CR (a CRLF may be split across two
//! reads); a blank line dispatches the event; `data` lines are joined with `\n`; `event`
//! names it; comments (`:` first) and `id` / `retry` are skipped; a leading BOM is
//! dropped. An event whose data grows past the cap is an error, not unbounded memory.
//!
//! Why not `eventsource-stream` (under async-openai, which the bot used before): its nom
//! parser walks every line character by character through a closure, and with the
//! size-first release profile that was 12 % of all instructions a message costs
//! (callgrind, BENCHMARKS.md "One small binary"); this reader finds line ends with
//! `memchr` and copies each byte once.

use memchr::memchr2;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event` field; empty when the server named none (a "message").
    pub kind: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("an event is larger than {0} bytes")]
    TooLarge(usize),
    #[error("an event is not UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub struct Decoder {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The event being gathered.
    data: Vec<u8>,
    has_data: bool,
    kind: Vec<u8>,
    /// The last line ended in CR: an LF at the start of the next read belongs to it.
    after_cr: bool,
    /// Nothing read yet (a BOM may come first).
    at_start: bool,
    max_event: usize,
}

impl Decoder {
    /// `max_event` bounds one event's bytes (its data and the line being read).
    pub fn new(max_event: usize) -> Decoder {
        Decoder {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            kind: Vec::new(),
            after_cr: false,
            at_start: true,
            max_event,
        }
    }

    /// Feeds one read's bytes; every event they complete is added to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl Extend<Event>) -> Result<(), SseError> {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', bytes) {
            let tail = &bytes[..end];
            if self.line.is_empty() {
                self.line_done(tail, out)?;
            } else {
                self.grow(tail)?;
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, out)?;
                self.line = line;
                self.line.clear();
            }
            let cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.grow(bytes)
    }

    fn grow(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + self.data.len() + bytes.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, mut line: &[u8], out: &mut impl Extend<Event>) -> Result<(), SseError> {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch(out);
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => return Ok(()),
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseError::TooLarge(self.max_event));
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.kind.clear();
                self.kind.extend_from_slice(value);
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut impl Extend<Event>) -> Result<(), SseError> {
        let kind = std::mem::take(&mut self.kind);
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data);
        out.extend([Event {
            kind: String::from_utf8(kind).map_err(|_| SseError::NotUtf8)?,
            data: String::from_utf8(data).map_err(|_| SseError::NotUtf8)?,
        }]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]]) -> Result<Vec<Event>, SseError> {
        let mut decoder = Decoder::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn data(s: &str) -> Event {
        Event {
            kind: String::new(),
            data: s.into(),
        }
    }

    #[test]
    fn a_chat_completion_stream() {
        let body = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            decode(&[body]).unwrap(),
            vec![data("{\"a\":1}"), data("{\"b\":2}"), data("[DONE]")]
        );
    }

    #[test]
    fn the_standard_cases() {
        // Multi-line data, no space after the colon, a field with no colon, comments,
        // id and retry skipped, an event name, an event with no data (not dispatched).
        let body = "\u{feff}: hello\ndata:one\ndata\ndata:  two\nid: 7\nretry: 10\n\n\
                    event: keepalive\ndata: x\n\nevent: nothing\n\n";
        assert_eq!(
            decode(&[body.as_bytes()]).unwrap(),
            vec![
                data("one\n\n two"),
                Event {
                    kind: "keepalive".into(),
                    data: "x".into()
                }
            ]
        );
    }

    #[test]
    fn line_ends_of_every_kind_split_anywhere() {
        assert_eq!(
            decode(&[b"data: a\r", b"\n\r", b"\ndata: b\r\r", b"data: c\n", b"\n"]).unwrap(),
            vec![data("a"), data("b"), data("c")]
        );
        // A CR at the end of a read followed by a line that is not an LF.
        assert_eq!(decode(&[b"data: a\r", b"\r"]).unwrap(), vec![data("a")]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        assert_eq!(
            decode(&[b"data: a\n\ndata: half"]).unwrap(),
            vec![data("a")]
        );
    }

    #[test]
    fn an_event_over_the_cap_is_an_error_whether_in_one_line_or_many() {
        let mut decoder = Decoder::new(16);
        let mut out = Vec::new();
        assert_eq!(
            decoder.feed(&[b'x'; 64], &mut out),
            Err(SseError::TooLarge(16))
        );
        let mut decoder = Decoder::new(16);
        let lines = b"data: 12345\ndata: 12345\ndata: 12345\n";
        assert_eq!(decoder.feed(lines, &mut out), Err(SseError::TooLarge(16)));
        assert!(out.is_empty());
    }

    #[test]
    fn data_that_is_not_utf8_is_an_error() {
        assert_eq!(decode(&[b"data: \xff\n\n"]), Err(SseError::NotUtf8));
    }

    fn line_end() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
    }

    proptest! {
        /// Events written with any line end (one kind per stream: a CR then an LF is
        /// one line end, by the standard) and comments, cut into reads at any points,
        /// come out as they went in.
        #[test]
        fn any_events_cut_anywhere_come_out_whole(
            events in prop::collection::vec(
                (prop::option::of("[a-z]{1,8}"), prop::collection::vec("[^\r\n]{0,20}", 1..4)),
                0..8,
            ),
            end in line_end(),
            comments in prop::collection::vec(any::<bool>(), 64),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut body = String::new();
            let end = || end;
            let mut expected = Vec::new();
            for (i, (kind, lines)) in events.iter().enumerate() {
                if comments[i % comments.len()] {
                    body += ": a comment";
                    body += end();
                }
                if let Some(kind) = kind {
                    body += &format!("event: {kind}");
                    body += end();
                }
                for line in lines {
                    body += &format!("data: {line}");
                    body += end();
                }
                body += end();
                expected.push(Event { kind: kind.clone().unwrap_or_default(), data: lines.join("\n") });
            }
            let bytes = body.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            prop_assert_eq!(decode(&chunks).unwrap(), expected);
        }
    }
}
