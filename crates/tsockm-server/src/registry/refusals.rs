//! Refusals: the error frame answering a line the registry does not accept,
//! its reason cut short to fit the frame limit.

use std::borrow::Cow;

use tsockm_proto::{Action, Status};

use super::admission::Refusal;
use super::{ConnId, Registry};
use crate::wire;

impl Registry {
    /// Answers a refused line with its error frame.
    /// The reason is shortened if the frame would pass `--max-frame` (a
    /// reason may quote what the client sent).
    pub(super) fn refuse(&mut self, conn_id: ConnId, refusal: Refusal) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        // `ERR::<action>::<status>::server::<srv>::<dst>::`.
        let header = "ERR::".len()
            + refusal.action.as_str().len()
            + "::000::server::".len()
            + self.wire.srv.len()
            + "::".len()
            + conn.dst.len()
            + "::".len();
        let room = self.limits.max_frame_bytes.saturating_sub(header);
        let reason = fit_reason(&refusal.reason, room).into_owned();
        let answer = self
            .wire
            .error(refusal.action, refusal.status, &conn.dst, reason);
        self.send_to_conn(conn_id, &answer);
    }

    /// Answers with `ERR::<action>::<status>`, the reason cut short if the
    /// frame would pass the frame limit: reasons quote what the client sent
    /// (an unknown id, a room name), and every frame the server sends is at
    /// most `--max-frame` bytes (section 10).
    pub(super) fn refuse_with(
        &mut self,
        conn_id: ConnId,
        action: Action,
        status: Status,
        reason: &str,
    ) {
        self.refuse(conn_id, Refusal::new(action, status, reason));
    }

    /// Answers with `ERR::<action>::502`: something that should never fail did.
    pub(super) fn refuse_internal(&mut self, conn_id: ConnId, action: Action, reason: &str) {
        self.refuse_with(conn_id, action, Status::BadGateway, reason);
    }
}

/// What marks a reason cut short to fit the frame limit.
const CUT: &str = "...";

/// `reason` if it takes at most `max_bytes` once escaped; else as much of
/// it as fits with [`CUT`] after it.
fn fit_reason(reason: &str, max_bytes: usize) -> Cow<'_, str> {
    if wire::escaped_len(reason) <= max_bytes {
        return Cow::Borrowed(reason);
    }
    let budget = max_bytes.saturating_sub(CUT.len());
    let mut used = 0;
    let mut end = 0;
    for (at, c) in reason.char_indices() {
        used += if matches!(c, '\\' | '\n' | '\r') {
            2
        } else {
            c.len_utf8()
        };
        if used > budget {
            break;
        }
        end = at + c.len_utf8();
    }
    Cow::Owned(format!("{}{CUT}", &reason[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_to_fit() {
        assert_eq!(fit_reason("short", 5), "short");
        assert_eq!(fit_reason("too long", 7), "too ...");
        // Escapes count twice; a character is never split.
        assert_eq!(fit_reason("a\\b\\c", 6), "a\\...");
        assert_eq!(fit_reason("\u{e9}\u{e9}\u{e9}\u{e9}", 7), "\u{e9}\u{e9}...");
        assert_eq!(fit_reason("abcdef", 2), "...");
    }
}
