//! The frame-length rule of section 10, over TCP, with `--max-frame 256`:
//! a MSG whose relayed frame or HISTORY item would pass the limit gets
//! `ERR::MSG::413` and is neither relayed nor stored, and one that just fits
//! is relayed and stored, its HISTORY item exactly at the limit. Tested at
//! the boundary for the lobby, a room (a long name) and a direct message,
//! with texts that grow when escaped (`\t`, a lone trailing `\`) and with
//! long usernames (32 four-byte characters, 32 backslashes). And every frame
//! the server sends in a session using every v2 request is at most the
//! limit: the clients decode with the same limit, so a longer line fails
//! the test (ROOMS answers are the contract's exception).

mod common;

use common::{TestClient, TestServer, config, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

/// The limit every test here runs with.
const MAX: usize = 256;

async fn start_limited() -> TestServer {
    start_with(Config {
        max_frame_bytes: MAX,
        ..config()
    })
    .await
}

/// Registers `username` on a client that decodes with the server's limit.
async fn limited(server: &TestServer, username: &str, n_others: usize) -> TestClient {
    let mut client = server.client().await;
    client.limit_frames(MAX);
    client.register(username).await;
    for _ in 0..n_others {
        client
            .expect_where("the roster", |f| f.action == Action::NtfyJoin)
            .await;
    }
    client
}

/// How long `text` is once escaped as a BODY.
fn escaped_len(text: &str) -> usize {
    text.len()
        + text
            .bytes()
            .filter(|b| matches!(b, b'\\' | b'\n' | b'\r'))
            .count()
}

/// The length of a HISTORY item line (terminator excluded) for a message
/// with this author, id, conversation label, username and text:
/// `RES::HISTORY::200::<author>::<msg_id>::<conversation>::<unix ms>::<username>::<text>`,
/// with Unix milliseconds of 13 digits.
fn history_item_len(author: &str, id_len: usize, conv: &str, username: &str, text: &str) -> usize {
    "RES::HISTORY::200".len()
        + 6 * 2
        + author.len()
        + id_len
        + conv.len()
        + 13
        + escaped_len(username)
        + escaped_len(text)
}

/// How a test builds a text whose escaped form is `escaped` bytes long.
#[derive(Debug, Clone, Copy)]
enum Filling {
    /// Plain `x`s.
    Plain,
    /// As many `\t` (sent raw: an unknown escape, 2 bytes in, 3 out) as
    /// fit, then `x`s.
    UnknownEscapes,
    /// `x`s ending in a lone backslash (sent raw as a trailing `\`).
    TrailingBackslash,
}

impl Filling {
    /// The decoded text whose escaped length is `escaped`, and its raw form
    /// as sent on the wire.
    fn text(self, escaped: usize) -> (String, String) {
        match self {
            Filling::Plain => ("x".repeat(escaped), "x".repeat(escaped)),
            Filling::UnknownEscapes => {
                let (n_tabs, n_x) = (escaped / 3, escaped % 3);
                (
                    format!("{}{}", "\\t".repeat(n_tabs), "x".repeat(n_x)),
                    format!("{}{}", "\\t".repeat(n_tabs), "x".repeat(n_x)),
                )
            }
            Filling::TrailingBackslash => (
                format!("{}\\", "x".repeat(escaped - 2)),
                format!("{}\\", "x".repeat(escaped - 2)),
            ),
        }
    }
}

/// Sends a raw MSG line with `raw` as BODY, exactly as given.
async fn send_raw_msg(client: &mut TestClient, dst: &str, raw: &str) {
    let line = format!("REQ::MSG::200::::::{dst}::{raw}\n");
    assert!(line.len() - 1 <= MAX, "the request itself must fit");
    client.send_raw(line.as_bytes()).await;
}

/// The boundary for one author, recipient and conversation: the longest
/// text that fits is relayed and stored (its HISTORY item exactly `MAX`
/// bytes), one byte more is refused with 413, neither relayed nor stored.
/// `dst` is the MSG's DST; `label_at_recipient` the conversation as the
/// recipient names it in HISTORY; `longest_label` the longest label any
/// side of the conversation sees.
#[allow(clippy::too_many_arguments)]
async fn boundary(
    author: &mut TestClient,
    username: &str,
    recipient: &mut TestClient,
    dst: &str,
    label_at_recipient: &str,
    longest_label: &str,
    filling: Filling,
) {
    author.send(Frame::direct(dst, "probe")).await;
    let probe = recipient.expect_msg().await;
    let id_len = probe.src().len();
    let room = MAX - history_item_len(&author.id, id_len, longest_label, username, "");

    let (fits, raw) = filling.text(room);
    assert_eq!(escaped_len(&fits), room);
    send_raw_msg(author, dst, &raw).await;
    let relayed = recipient.expect_msg().await;
    assert_eq!(relayed.body(), fits.as_str(), "{filling:?}");
    assert_eq!(
        relayed.src().len(),
        id_len,
        "the test assumes ids of one length"
    );
    assert!(relayed.to_string().len() <= MAX);
    let history = recipient.history(label_at_recipient, "1").await;
    assert_eq!(history.ids(), [relayed.src().to_string()]);
    let item = history.items[0].to_string();
    let expected = history_item_len(&author.id, id_len, label_at_recipient, username, &fits);
    assert_eq!(item.len(), expected, "{item}");
    if label_at_recipient.len() == longest_label.len() {
        assert_eq!(item.len(), MAX, "the longest text that fits: {item}");
    }

    let (over, raw) = filling.text(room + 1);
    send_raw_msg(author, dst, &raw).await;
    let error = author
        .expect_where("the refusal", |f| f.kind == Kind::Err)
        .await;
    assert!(
        error.action == Action::Msg && error.status == Status::PayloadTooLarge,
        "{error}"
    );
    assert!(error.to_string().len() <= MAX, "{error}");
    author.send(Frame::direct(dst, "after")).await;
    let next = recipient.expect_msg().await;
    assert_eq!(
        next.body(),
        "after",
        "the refused message was relayed: {over:?}"
    );
    let history = recipient.history(label_at_recipient, "2").await;
    assert_eq!(history.texts(), [fits, "after".to_owned()]);
}

#[tokio::test]
async fn a_broadcast_just_fits_and_one_byte_more_is_refused_413() {
    let server = start_limited().await;
    let mut alice = limited(&server, "alice", 0).await;
    let mut bob = limited(&server, "bob", 1).await;
    alice.sync().await;
    for filling in [
        Filling::Plain,
        Filling::UnknownEscapes,
        Filling::TrailingBackslash,
    ] {
        boundary(&mut alice, "alice", &mut bob, "*", "*", "*", filling).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn long_usernames_count_in_the_history_item() {
    let server = start_limited().await;
    let wide = "\u{1D11E}".repeat(32); // 32 characters, 128 bytes.
    let slashes = "\\".repeat(32); // 32 bytes, 64 escaped.
    let mut wide_author = limited(&server, &wide, 0).await;
    let mut slash_author = limited(&server, &slashes, 1).await;
    let mut bob = limited(&server, "bob", 2).await;
    wide_author.sync().await;
    slash_author.sync().await;
    // The relayed frame does not hold the username; the HISTORY item does,
    // so the text that fits is shorter for a longer name.
    for (author, name) in [(&mut wide_author, &wide), (&mut slash_author, &slashes)] {
        boundary(author, name, &mut bob, "*", "*", "*", Filling::Plain).await;
        boundary(
            author,
            name,
            &mut bob,
            "*",
            "*",
            "*",
            Filling::UnknownEscapes,
        )
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn room_and_direct_messages_just_fit_and_one_byte_more_is_refused_413() {
    let server = start_limited().await;
    let wide = "\u{E9}".repeat(32); // 64 bytes.
    let mut alice = limited(&server, &wide, 0).await;
    let mut bob = limited(&server, "bob", 1).await;
    alice.sync().await;
    let room = format!("#{}", "r".repeat(32));
    for client in [&mut alice, &mut bob] {
        client.send(Frame::join(&room)).await;
        let id = client.id.clone();
        client
            .expect_where("own JOIN", |f| {
                f.action == Action::Join && f.sender_id() == id
            })
            .await;
    }
    alice.sync().await;
    bob.sync().await;
    for filling in [Filling::Plain, Filling::UnknownEscapes] {
        boundary(&mut alice, &wide, &mut bob, &room, &room, &room, filling).await;
        let (a, b) = (alice.id.clone(), bob.id.clone());
        let longest = if a.len() >= b.len() { &a } else { &b };
        boundary(&mut alice, &wide, &mut bob, &b, &a, longest, filling).await;
    }
    server.stop().await;
}

/// "every frame the server sends is at most `--max-frame` bytes (ROOMS
/// answers excepted)": a session using every v2 request, with the longest
/// usernames and room names, read by clients that enforce the limit.
#[tokio::test]
async fn every_frame_of_a_v2_session_fits_the_limit() {
    let server = start_limited().await;
    let wide = "\u{1D11E}".repeat(32);
    let room = format!("#{}", "R".repeat(32));
    let mut alice = limited(&server, &wide, 0).await;
    let mut bob = limited(&server, &wide, 1).await;
    alice.sync().await;
    alice.send(Frame::join(&room)).await;
    bob.send(Frame::join(&room)).await;
    alice.send(Frame::join(&room)).await;
    alice.send(Frame::get_peer(bob.id.clone())).await;
    alice
        .expect_where("GET_PEER's answer", |f| f.action == Action::GetPeer)
        .await;
    // Errors that quote what the client sent.
    let long_id = "z".repeat(200);
    alice.send(Frame::get_peer(long_id.clone())).await;
    alice.expect_error(Action::GetPeer, Status::NotFound).await;
    alice.send(Frame::direct(long_id.clone(), "hi")).await;
    alice.expect_error(Action::Msg, Status::NotFound).await;
    alice.send(Frame::history(long_id.clone(), "5")).await;
    alice.expect_error(Action::History, Status::NotFound).await;
    alice
        .send(Frame::history("*", format!("5 before {long_id}")))
        .await;
    alice.expect_error(Action::History, Status::NotFound).await;
    alice
        .send(Frame::part(format!("#{}", "y".repeat(32))))
        .await;
    alice.expect_error(Action::Part, Status::NotFound).await;
    alice
        .send(Frame::direct(format!("#{}", "y".repeat(32)), "hi"))
        .await;
    alice.expect_error(Action::Msg, Status::Forbidden).await;
    // Messages at the limit, relayed and in HISTORY.
    let text = "x".repeat(8);
    for _ in 0..3 {
        alice.send(Frame::broadcast(text.clone())).await;
        alice.send(Frame::direct(room.clone(), text.clone())).await;
        alice
            .send(Frame::direct(bob.id.clone(), text.clone()))
            .await;
    }
    alice.send(Frame::history("*", "10")).await;
    alice.send(Frame::history(room.clone(), "10")).await;
    alice.send(Frame::history(bob.id.clone(), "10")).await;
    for _ in 0..3 {
        alice
            .expect_where("a HISTORY end", |f| {
                f.action == Action::History && f.sender_id() == "server"
            })
            .await;
    }
    alice.send(Frame::part(room.clone())).await;
    // Everything alice was sent, up to her GET_PEER, decoded within the limit.
    alice.sync().await;
    let seen = bob.sync().await;
    assert_eq!(
        seen.iter().filter(|f| f.action == Action::Msg).count(),
        9,
        "{seen:#?}"
    );
    bob.send(Frame::history(alice.id.clone(), "10")).await;
    bob.send(Frame::comm_end()).await;
    bob.expect_closed_skipping(|_| true).await;
    alice
        .expect_where("bob left", |f| f.action == Action::NtfyKill)
        .await;
    // The server's COMM_END at shutdown fits too.
    server.shutdown.cancel();
    alice
        .expect_where("COMM_END", |f| f.action == Action::CommEnd)
        .await;
    server.stop().await;
}
