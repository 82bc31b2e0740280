//! Server-sent events framing (the `text/event-stream` format all three APIs stream in).
//!
//! Pure and incremental: bytes go in as they arrive, in pieces split anywhere (inside a line,
//! inside a UTF-8 character), and complete events come out.

/// One dispatched event: its `event:` name (when the server gave one) and its `data:` lines
/// joined with `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being read (kept as bytes: a chunk may end inside a character).
    line: Vec<u8>,
    /// The previous byte was `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &byte in chunk {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    self.end_line(&mut out);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
        out
    }

    /// The body ended: an event still being read is dispatched (some servers close the stream
    /// without the final blank line). Whether the stream was complete is for the caller to
    /// decide from the events themselves.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.dispatch(&mut out);
        out.pop()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&line);
        // Lines starting with ':' are comments (keep-alives).
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            // `id` and `retry` steer browser reconnection, which a model call never does.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            out.push(SseEvent { event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = parser.push(body);
        events.extend(parser.finish());
        events
    }

    #[test]
    fn events_with_and_without_names_and_spaces() {
        let body = b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata:{\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        assert_eq!(
            all(body),
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{\"type\":\"ping\"}".into()
                },
                SseEvent {
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn crlf_multiline_data_and_a_missing_last_blank_line() {
        let body = b"data: one\r\ndata: two\r\n\r\nevent: x\r\ndata: tail";
        assert_eq!(
            all(body),
            vec![
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: Some("x".into()),
                    data: "tail".into()
                },
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body = "event: a\ndata: {\"t\":\"héllo wörld\"}\n\ndata: b\r\n\r\n".as_bytes();
        let whole = all(body);
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let mut parser = SseParser::new();
                let mut events = parser.push(&body[..i]);
                events.extend(parser.push(&body[i..j]));
                events.extend(parser.push(&body[j..]));
                events.extend(parser.finish());
                assert_eq!(events, whole, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(all(b"event: lonely\n\n"), vec![]);
    }
}
