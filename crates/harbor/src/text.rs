//! Cutting long text for a reader with a budget: its head and its tail are kept, the middle
//! goes (the end of a log or an output usually says how it ended).

use std::borrow::Cow;

/// A text longer than its budget, cut in two. Counts are in characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTail<'a> {
    /// The first `max / 2` characters.
    pub head: &'a str,
    /// The last `max / 2` characters.
    pub tail: &'a str,
    /// How many characters were left out between them.
    pub omitted: usize,
    /// How many characters the whole text has.
    pub total: usize,
}

/// `s` cut to its first and last `max / 2` characters, or `None` when it has at most `max`.
pub fn head_tail(s: &str, max: usize) -> Option<HeadTail<'_>> {
    let total = s.chars().count();
    if total <= max {
        return None;
    }
    let half = max / 2;
    let byte_at = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    let head_end = byte_at(half);
    let tail_start = byte_at(total - half);
    Some(HeadTail {
        head: &s[..head_end],
        tail: &s[tail_start..],
        omitted: total - 2 * half,
        total,
    })
}

/// `s` when it has at most `max` characters; else its head and tail around a `marker` line.
pub fn cut_middle<'a>(s: &'a str, max: usize, marker: &str) -> Cow<'a, str> {
    match head_tail(s, max) {
        None => Cow::Borrowed(s),
        Some(HeadTail { head, tail, .. }) => Cow::Owned(format!("{head}\n{marker}\n{tail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_by_characters() {
        assert_eq!(head_tail("abc", 3), None);
        let cut = head_tail("ééabcdef", 4).unwrap();
        assert_eq!(
            (cut.head, cut.tail, cut.omitted, cut.total),
            ("éé", "ef", 4, 8)
        );
        assert_eq!(cut_middle("0123456789", 5, "[...]"), "01\n[...]\n89");
        assert_eq!(cut_middle("short", 5, "[...]"), "short");
        let odd = head_tail("abcdef", 1).unwrap();
        assert_eq!((odd.head, odd.tail, odd.omitted), ("", "", 6));
    }
}
