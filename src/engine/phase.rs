//! A direction's in-order bytes through its phase: HTTP heads collected and parsed, then
//! WebSocket frames or TLS records walked unit by unit, each segment judged important or
//! bulk. Reassembly hands bytes here in stream order; classification (`classify.rs`) decides
//! which phase a flow starts in.

use super::*;

impl Engine {
    /// Runs new in-order bytes of one direction through its phase. `start` is the stream
    /// offset of `bytes[0]`; `base` is where the packet's TCP payload starts (a bulk packet's cut).
    pub(super) fn consume(
        &mut self,
        key: FlowKey,
        side: Side,
        start: u64,
        bytes: &[u8],
        packet: u64,
        base: u32,
    ) -> Consumed {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let class = flow.class;
        let client = flow.client;
        let conv = flow.conv;
        let dir = &mut flow.dirs[side.index()];
        match dir.phase {
            Phase::Collect | Phase::AwaitPeer => {
                if dir.head.is_empty() {
                    dir.head_start = start;
                }
                if class == Class::Undecided
                    && client.is_none()
                    && dir.segments.len() < MID_STREAM_CLASSIFY_SEGMENTS as usize
                {
                    // Where each segment starts in the head: frames met mid-connection are read
                    // from it segment by segment, citing the packet that carried them.
                    dir.segments.push((dir.head.len() as u32, self.ev.at));
                }
                if dir.head.len() < http::MAX_HEAD_BYTES {
                    let room = http::MAX_HEAD_BYTES - dir.head.len();
                    dir.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                if class == Class::Undecided && client.is_none() {
                    match websocket::segment_is_frames(bytes) {
                        Some(true) => dir.masked_runs = dir.masked_runs.saturating_add(1),
                        Some(false) => dir.unmasked_runs = dir.unmasked_runs.saturating_add(1),
                        None => {}
                    }
                }
                if class.kept() {
                    self.advance_heads(key);
                }
                Consumed::Important
            }
            Phase::Bulk => Consumed::Bulk,
            Phase::FramesLost if !self.reading_inner => self.resync_frames(key, side, start, bytes, packet, base),
            Phase::FramesLost => {
                // Decrypted plaintext: one record's at a time, as it comes.
                if websocket::segment_is_frames(bytes) != Some(client == Some(side)) {
                    return Consumed::Bulk;
                }
                dir.frames.resync();
                dir.pending_close = None;
                dir.phase = Phase::Frames;
                let fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::PlainAnswer(left) => {
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = if n >= left { Phase::Bulk } else { Phase::PlainAnswer(left - n) };
                Consumed::Important
            }
            Phase::Records
                if client.is_some_and(|c| c != side)
                    && dir.records.at_boundary()
                    && !dir.records.failed()
                    && start == dir.handshake_end.unwrap_or(0)
                    && matches!(http::plaintext_answer(bytes), Some(Some(_))) =>
            {
                // The server's first bytes are plaintext, not a TLS record.
                let status = http::plaintext_answer(bytes).flatten().unwrap_or(0);
                self.ev.push(conv, key, side, Event::PlainAnswer { status });
                flow.plain_answer = true;
                let dir = &mut flow.dirs[side.index()];
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = Phase::PlainAnswer(PLAIN_ANSWER_BYTES.saturating_sub(n));
                Consumed::Important
            }
            Phase::RecordsLost => {
                if let Some(dec) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
                    if !dec.resync(bytes) {
                        return Consumed::Bulk;
                    }
                    dir.records.resync();
                    dir.records.capture_units();
                } else {
                    // Without keys: a whole segment that is exactly a run of records (an
                    // alert after a long transfer, in a segment of its own).
                    if !tls::segment_is_records(bytes) {
                        return Consumed::Bulk;
                    }
                    dir.records.resync();
                }
                dir.phase = Phase::Records;
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                fed.important |= self.after_records(key, side, base);
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::Frames | Phase::Records => {
                // What a reader of a trimmed output knows follows frames in the clear.
                let follow = dir.phase == Phase::Frames && !self.reading_inner;
                let (left, boundary) = (dir.frames.body_left(), dir.frames.at_boundary());
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                // Most segments change nothing that reader knows: body bytes between headers,
                // cut or kept (spared a second flow lookup).
                let quiet = !follow || (dir.chain == 0 && !fed.header && (!boundary || !dir.out_lost));
                if dir.tls.as_ref().is_some_and(|t| t.dec.is_some() || t.server_hello.is_some()) {
                    fed.important |= self.after_records(key, side, base);
                }
                let len = bytes.len() as u64;
                let consumed = self.after_feed(key, side, fed, start, len, packet, base);
                if quiet {
                    return consumed;
                }
                self.follow_reader(key, side, (left, boundary, len), fed, consumed, (packet, base))
            }
        }
    }

    /// Records what a walker found: resolves packets that waited on a header it completed,
    /// and says whether this segment is important, bulk, or itself ends in an open header.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_feed(
        &mut self,
        key: FlowKey,
        side: Side,
        fed: Fed,
        start: u64,
        len: u64,
        packet: u64,
        base: u32,
    ) -> Consumed {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        // A unit header split across segments is kept whole, in every packet that carries
        // part of it, even when its unit is bulk: cut after their TCP headers, those bytes
        // would be missing from the output, and a reader of it (diagnose of a trimmed capture)
        // could not tell where the unit ends, losing every later frame, the close included.
        let straddled = fed.completed_open.is_some();
        if straddled {
            flow.dirs[side.index()].keep_unit_waiters(&mut self.resolved);
        }
        let dir = &mut flow.dirs[side.index()];
        if fed.failed {
            dir.phase = Phase::Bulk;
        }
        if fed.important || straddled {
            dir.remember_important(start, start + len);
            Consumed::Important
        } else if fed.open_header {
            // If the unit turns out bulk, the packet is cut after its TCP header like any bulk.
            dir.open.push(Waiting { packet, cut: base });
            Consumed::Open
        } else {
            Consumed::Bulk
        }
    }

    /// Parses HTTP heads collected so far and moves the directions of a kept flow on.
    pub(super) fn advance_heads(&mut self, key: FlowKey) {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(client) = flow.client else { return };
        let (ci, si) = (client.index(), client.other().index());
        if !matches!(flow.class, Class::WebSocket | Class::Port | Class::Tunnel) {
            return;
        }
        if !matches!(flow.content, Content::Http | Content::Unknown) {
            return;
        }
        let conv = flow.conv;
        // Client: the request head.
        if flow.dirs[ci].phase == Phase::Collect && flow.dirs[ci].handshake_end.is_none() {
            let head = &flow.dirs[ci].head;
            if let Some(n) = flow.dirs[ci].head_len() {
                let request = http::parse_request(&head[..n]);
                let body = request.as_ref().map_or(0, |r| r.content_length);
                let dir = &mut flow.dirs[ci];
                dir.handshake_end = Some(dir.head_start.saturating_add(n as u64).saturating_add(body));
                dir.phase = Phase::AwaitPeer;
                if let Some(r) = request {
                    self.ev.push(conv, key, client, Event::Request(Box::new(r)));
                }
            } else if head.len() >= http::MAX_HEAD_BYTES {
                flow.dirs[ci].phase = Phase::Bulk;
            }
        }
        // Server: response heads until a final one (skipping 1xx other than 101).
        loop {
            let dir = &flow.dirs[si];
            if dir.phase != Phase::Collect || dir.head.is_empty() {
                break;
            }
            let Some(n) = dir.head_len() else {
                if dir.head.len() >= http::MAX_HEAD_BYTES || http::looks_like_response(&dir.head) == Some(false) {
                    flow.dirs[si].phase = Phase::Bulk;
                    flow.dirs[ci].phase = Phase::Bulk;
                }
                break;
            };
            let response = http::parse_response(&dir.head[..n]);
            let status = response.as_ref().map_or(0, |r| r.status);
            let content_length = response.as_ref().and_then(|r| r.content_length);
            let end = dir.head_start + n as u64;
            if (100..200).contains(&status) && status != 101 {
                let dir = &mut flow.dirs[si];
                dir.head.drain(..n);
                dir.head_start = end;
                continue;
            }
            if let Some(r) = response {
                self.ev.push(conv, key, client.other(), Event::Response(Box::new(r)));
            }
            flow.dirs[si].handshake_end = Some(end);
            if flow.class == Class::Tunnel && !flow.tunnel_open && (200..300).contains(&status) {
                flow.tunnel_open = true;
                // The tunnel is open: what follows each head is a new connection's first
                // bytes (TLS, or plain HTTP for ws://), read and classified afresh.
                flow.content = Content::Unknown;
                for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                    let dir = &mut flow.dirs[i];
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    dir.head.drain(..from);
                    dir.head_start = skip_to.max(dir.head_start);
                    dir.handshake_end = None;
                    dir.phase = Phase::Collect;
                }
                let flow_has_inner = flow.dirs.iter().any(|d| !d.head.is_empty());
                if flow_has_inner {
                    self.try_classify(key);
                }
                return;
            }
            let next = if status == 101 { Phase::Frames } else { Phase::Bulk };
            // The body of a refusal (a proxy's 407 page, a 403, a 502) is kept whole up to
            // PLAIN_ANSWER_BYTES: Wireshark shows the response only when it can reassemble it.
            let body_left = if status == 101 || status == 204 || status == 304 {
                0
            } else {
                let want =
                    content_length.map_or(u64::from(PLAIN_ANSWER_BYTES), |n| n.min(u64::from(PLAIN_ANSWER_BYTES)));
                let here =
                    (flow.dirs[si].head.len() as u64).saturating_sub(end.saturating_sub(flow.dirs[si].head_start));
                want.saturating_sub(here) as u32
            };
            for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                let dir = &mut flow.dirs[i];
                if dir.phase == Phase::Bulk {
                    continue;
                }
                dir.phase = if i == si && body_left > 0 { Phase::PlainAnswer(body_left) } else { next };
                if dir.handshake_end.is_none() {
                    dir.handshake_end = Some(skip_to);
                }
                if next == Phase::Frames {
                    // Replay bytes that followed the head into the frame walker.
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    let rest = std::mem::take(&mut dir.head);
                    let side = if i == ci { client } else { client.other() };
                    let _ = feed_units(dir, &rest[from..], keep_frames, &mut self.ev, (conv, key, side));
                } else {
                    dir.head = Vec::new();
                }
            }
            break;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Consumed {
    /// Some bytes are important: the packet is kept whole. A packet is whole or cut after its
    /// TCP header, never inside a frame or record (see `Bulk`).
    Important,
    /// Not important. A bulk packet is cut right after its TCP header, never inside a frame
    /// or record: Wireshark takes the first bytes of a cut segment for a header, invents frames
    /// (reserved opcodes, "Pong [FRAGMENT]") and loses the frames after them.
    Bulk,
    Open,
}

/// Which flow and side bytes belong to, for the events they yield.
pub(super) type Source = (u64, FlowKey, Side);

/// Feeds bytes to the direction's frame or record walker, judging importance and reporting
/// what the units are.
pub(super) fn feed_units(dir: &mut Dir, bytes: &[u8], keep_frames: u32, ev: &mut Events, src: Source) -> Fed {
    let (conv, key, side) = src;
    let data_units = &mut dir.data_units;
    match dir.phase {
        Phase::Frames => {
            // The rest of a close status code that a segment boundary cut off: the walker
            // takes these bytes as the frame's body; they are only read here.
            if let Some((mut code, mut have, mask)) = dir.pending_close.take() {
                for &b in bytes.iter().take(2 - have) {
                    code[have] = b ^ mask[have];
                    have += 1;
                }
                if have == 2 {
                    ev.push(conv, key, side, Event::CloseCode(u16::from_be_bytes(code)));
                } else {
                    dir.pending_close = Some((code, have, mask));
                }
            }
            let pending = &mut dir.pending_close;
            let fed = dir.frames.feed(bytes, |h, body| {
                let close_code = websocket::close_code(h, body);
                if h.opcode == websocket::OP_CLOSE && close_code.is_none() && h.payload_len >= 2 {
                    let mask = h.mask.unwrap_or([0; 4]);
                    let mut first = [0u8; 2];
                    for (k, &b) in body.iter().take(2).enumerate() {
                        first[k] = b ^ mask[k];
                    }
                    *pending = Some((first, body.len().min(2), mask));
                }
                ev.push(conv, key, side, Event::Frame { opcode: h.opcode, payload_len: h.payload_len, close_code });
                frame_importance(h, data_units, keep_frames)
            });
            if fed.failed {
                dir.phase = Phase::FramesLost;
            }
            fed
        }
        Phase::Records => {
            let encrypted = &mut dir.encrypted;
            let want_hello = dir.tls.is_some();
            let keyed = dir.tls.as_ref().is_some_and(|t| t.dec.is_some());
            let mut found_hello = None;
            let tls_state = &mut dir.tls;
            let on_unit = |h: &tls::RecordHeader, body: Option<&[u8]>| {
                let Some(t) = tls_state.as_mut() else { return };
                if let Some(d) = t.dec.as_mut() {
                    d.record(h, body);
                } else if t.held.len() < MAX_HELD_RECORDS {
                    t.held.push((*h, body.map(<[u8]>::to_vec)));
                }
            };
            let fed = dir.records.feed_units(
                bytes,
                |h, body| {
                    match h.content_type {
                        tls::CHANGE_CIPHER_SPEC => {
                            *encrypted = true;
                            ev.push(conv, key, side, Event::ChangeCipherSpec);
                        }
                        // A protected alert of a keyed session is reported once decrypted.
                        tls::ALERT if keyed && *encrypted => {}
                        tls::ALERT => {
                            let clear = !*encrypted && body.len() >= 2;
                            let (level, description) = (clear.then(|| body[0]), clear.then(|| body[1]));
                            ev.push(conv, key, side, Event::Alert { level, description });
                        }
                        tls::APPLICATION_DATA => ev.push(conv, key, side, Event::ApplicationData),
                        // A keyed session's ServerHello may follow a ChangeCipherSpec: TLS 1.3 sends
                        // one after a HelloRetryRequest for compatibility.
                        tls::HANDSHAKE
                            if (ev.on || want_hello)
                                && (!*encrypted || (want_hello && !keyed))
                                && body.len() == usize::from(h.len) =>
                        {
                            let mut rec = vec![
                                tls::HANDSHAKE,
                                (h.version >> 8) as u8,
                                h.version as u8,
                                (h.len >> 8) as u8,
                                h.len as u8,
                            ];
                            rec.extend_from_slice(body);
                            if let tls::Hello::Parsed(sh) = tls::parse_server_hello(&rec) {
                                ev.push(conv, key, side, Event::ServerAlpn(sh.alpn.clone().unwrap_or_default()));
                                if want_hello {
                                    found_hello = Some(sh);
                                }
                            }
                        }
                        _ => {}
                    }
                    record_importance(h, data_units, keep_frames)
                },
                on_unit,
            );
            if let (Some(sh), Some(t)) = (found_hello, dir.tls.as_mut()) {
                t.server_hello = Some(sh);
            }
            fed
        }
        _ => Fed::default(),
    }
}

/// The capture lost bytes of this direction (a hole given up on): frames and records
/// resynchronise where a boundary shows again (`Phase::FramesLost`, `Phase::RecordsLost`);
/// anything else is read no further.
pub(super) fn lose_sync(dir: &mut Dir) {
    if let Some(d) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
        d.lost = None;
    }
    dir.out_lost = true;
    dir.phase = match dir.phase {
        Phase::Collect => Phase::Collect,
        Phase::Frames | Phase::FramesLost => Phase::FramesLost,
        Phase::Records | Phase::RecordsLost => Phase::RecordsLost,
        _ => Phase::Bulk,
    };
}

/// Stream bytes that were on the wire but not captured: frame and record walks pass over
/// them when they are body bytes; a lost header loses sync.
pub(super) fn skip_uncaptured(dir: &mut Dir, n: u64) {
    match dir.phase {
        Phase::Frames => {
            if !dir.frames.skip(n) {
                dir.phase = Phase::FramesLost;
                dir.out_lost = true;
            }
        }
        Phase::Records => {
            if !dir.records.skip(n) {
                dir.phase = Phase::RecordsLost;
                if let Some(d) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
                    d.add_lost(n);
                }
            }
        }
        Phase::RecordsLost => {
            if let Some(d) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
                d.add_lost(n);
            }
        }
        Phase::FramesLost | Phase::Bulk | Phase::PlainAnswer(_) => {}
        Phase::Collect | Phase::AwaitPeer => dir.phase = Phase::Bulk,
    }
}
