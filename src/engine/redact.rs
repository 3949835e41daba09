//! Scrubbing's view of the pass: each direction's in-order bytes, as the reassembly hands
//! them to the classifiers, go to the flow's redaction cursors too (`scrub::stream`). They are
//! noted where the reassembly delivers them and redacted once the call that delivered them
//! is done, so that the cursors see what the engine made of the flow with them (a head that
//! classified it, a plaintext answer) as the classifiers do.

use super::*;
use crate::scrub::ScrubOptions;
use crate::scrub::stream::{Delivered, Patches, Redaction};

/// In-order bytes noted for redaction: `len` bytes of `side`'s stream at `offset` in the TCP
/// payload of `packet`, found at `at` in the current frame or in `Scrubbing::delivery_bytes`.
/// `lost_after`: the stream's next bytes are not in the capture.
#[derive(Clone, Copy, Debug)]
pub(super) struct Delivery {
    key: FlowKey,
    side: Side,
    packet: u64,
    offset: u32,
    at: u32,
    len: u32,
    in_frame: bool,
    lost_after: bool,
}

impl Delivery {
    /// What the redaction is handed of it, its bytes `bytes`.
    fn delivered(self, bytes: &[u8]) -> Delivered<'_> {
        let (side, packet, offset, lost_after) = (self.side, self.packet, self.offset as usize, self.lost_after);
        Delivered { side, packet, offset, bytes, lost_after }
    }
}

/// The engine's scrubbing: the streams' redaction, the in-order bytes noted during the
/// current call (the held segments' copied into `delivery_bytes`), and flows whose reading
/// changed.
pub(super) struct Scrubbing {
    pub(super) redaction: Redaction,
    deliveries: Vec<Delivery>,
    delivery_bytes: Vec<u8>,
    to_flush: Vec<FlowKey>,
}

impl Engine {
    /// Redacts every flow's bytes as they are read (`scrub`, `trim --scrub`): the patches are
    /// taken after each call (`patches`).
    pub fn scrub(&mut self, opts: &ScrubOptions) {
        self.scrubbing = Some(Box::new(Scrubbing {
            redaction: Redaction::new(opts),
            deliveries: Vec::new(),
            delivery_bytes: Vec::new(),
            to_flush: Vec::new(),
        }));
    }

    /// The patches made by the last call (`packet`, `force`), until `clear_patches`.
    pub fn patches(&self) -> Option<Patches<'_>> {
        self.scrubbing.as_deref().map(|s| s.redaction.patches())
    }

    pub fn clear_patches(&mut self) {
        if let Some(s) = self.scrubbing.as_deref_mut() {
            s.redaction.clear_patches();
        }
    }

    /// What the redaction of the streams overwrote, per rule.
    pub fn scrub_counts(&self) -> Option<&crate::scrub::Counts> {
        self.scrubbing.as_deref().map(|s| s.redaction.counts())
    }

    /// Notes the current packet's in-order payload from `skip` (when scrubbing: the callers
    /// look, so that the other commands pay for no call).
    #[inline(never)]
    pub(super) fn note_delivery(&mut self, key: FlowKey, side: Side, packet: u64, d: &Decoded<'_>, skip: usize) {
        let Some(s) = self.scrubbing.as_deref_mut() else { return };
        let new = d.payload.len().saturating_sub(skip);
        let lost_after = (d.wire_payload_len as usize) > d.payload.len().max(skip);
        s.deliveries.push(Delivery {
            key,
            side,
            packet,
            offset: skip as u32,
            at: (d.layout.payload_offset + skip.min(d.payload.len())) as u32,
            len: new as u32,
            in_frame: true,
            lost_after,
        });
    }

    /// Notes the in-order bytes of a held segment released by the reassembly (when scrubbing).
    #[inline(never)]
    pub(super) fn note_held_delivery(&mut self, key: FlowKey, side: Side, seg: &HeldSegment, skip: usize) {
        let Some(s) = self.scrubbing.as_deref_mut() else { return };
        let bytes = seg.bytes.get(skip..).unwrap_or(&[]);
        let at = s.delivery_bytes.len() as u32;
        s.delivery_bytes.extend_from_slice(bytes);
        let lost_after = (seg.wire_len as usize) > seg.bytes.len().max(skip);
        s.deliveries.push(Delivery {
            key,
            side,
            packet: seg.packet,
            offset: skip as u32,
            at,
            len: bytes.len() as u32,
            in_frame: false,
            lost_after,
        });
    }

    /// Notes that bytes of `side`'s stream were lost (a hole skipped): what follows cannot
    /// be read as a continuation.
    #[inline(never)]
    pub(super) fn note_loss(&mut self, key: FlowKey, side: Side) {
        let Some(s) = self.scrubbing.as_deref_mut() else { return };
        s.deliveries.push(Delivery {
            key,
            side,
            packet: 0,
            offset: 0,
            at: 0,
            len: 0,
            in_frame: false,
            lost_after: true,
        });
    }

    /// DNS messages the engine gave up waiting for (`Flow::give_up_partial_lookups`, the sides
    /// as bits): the redaction waits for them no longer either.
    pub(super) fn note_losses(&mut self, key: FlowKey, sides: u8) {
        for side in [Side::A, Side::B] {
            if sides & (1 << side.index()) != 0 {
                self.note_loss(key, side);
            }
        }
    }

    /// A flow the engine forgets takes its cursors with it.
    pub(super) fn forget_redactor(&mut self, handle: u32) {
        if let Some(s) = self.scrubbing.as_deref_mut() {
            s.redaction.forget(handle);
        }
    }

    /// What the flow now says may let held bytes go through its cursors.
    #[inline]
    pub(super) fn note_reading_changed(&mut self, key: FlowKey) {
        if let Some(s) = self.scrubbing.as_deref_mut() {
            s.to_flush.push(key);
        }
    }

    /// A packet of a flow dropped whole, when every flow is written (`scrub`): its bytes are
    /// placed and redacted like any flow's, for nothing else reads them.
    #[inline(never)]
    pub(super) fn deliver_dropped(&mut self, key: FlowKey, side: Side, d: &Decoded<'_>, packet: u64) {
        let Transport::Tcp { seq, flags, .. } = d.transport else { return };
        let Some(flow) = self.flows.get_mut(&key) else { return };
        let stream = &mut flow.dirs[side.index()].stream;
        if flags & tcp_flags::SYN != 0 {
            stream.syn(seq);
            return;
        }
        if d.wire_payload_len == 0 {
            return;
        }
        match stream.place(seq, d.wire_payload_len, d.payload, packet) {
            Placement::InOrder { skip } => self.note_delivery(key, side, packet, d, skip),
            Placement::Gap => self.note_loss(key, side),
            Placement::Old { .. } | Placement::Held | Placement::Empty => {}
        }
        loop {
            let flow = self.flows.get_mut(&key).expect("flow exists");
            let Some((seg, skip)) = flow.dirs[side.index()].stream.pop_ready() else { return };
            self.note_held_delivery(key, side, &seg, skip);
        }
    }

    /// Redacts what the call for packet `number` noted. Returns whether the reassembly did
    /// not hand its payload over from its first byte (a retransmission, a segment ahead of a
    /// hole: `Outcome::reordered`).
    #[inline(never)]
    pub(super) fn redact_packet(&mut self, number: u64, frame: &[u8]) -> bool {
        let Some(s) = self.scrubbing.as_deref() else { return false };
        let in_order = s.deliveries.iter().any(|d| d.in_frame && d.packet == number && d.offset == 0);
        self.redact_deliveries(frame);
        !in_order
    }

    /// Redacts what the call noted, now that the engine has read it (`frame`: the current
    /// packet's frame, empty when the call read none).
    #[inline(never)]
    pub(super) fn redact_deliveries(&mut self, frame: &[u8]) {
        let Some(s) = self.scrubbing.as_deref_mut() else { return };
        if s.deliveries.is_empty() && s.to_flush.is_empty() {
            return;
        }
        let Scrubbing { redaction: red, deliveries, delivery_bytes, to_flush } = s;
        let keep_all = self.opts.keep_all;
        for (i, d) in deliveries.iter().enumerate() {
            let Some(flow) = self.flows.get_mut(&d.key) else { continue };
            if !flow.written(keep_all) {
                red.forget(std::mem::take(&mut flow.redactor));
                continue;
            }
            let reading = flow.scrub_reading();
            let src = if d.in_frame { frame } else { &delivery_bytes[..] };
            let bytes = src.get(d.at as usize..(d.at + d.len) as usize).unwrap_or(&[]);
            // A segment that filled a hole comes with the held ones it released: they are read
            // together, each looking ahead into the next as into one segment.
            let more = deliveries[i + 1..].iter().any(|e| e.key == d.key && e.side == d.side);
            let bytes = d.delivered(bytes);
            if more {
                red.hold(&mut flow.redactor, bytes);
            } else {
                red.deliver(&mut flow.redactor, reading, bytes);
            }
        }
        deliveries.clear();
        delivery_bytes.clear();
        for key in to_flush.drain(..) {
            let Some(flow) = self.flows.get_mut(&key) else { continue };
            if !flow.written(keep_all) {
                red.forget(std::mem::take(&mut flow.redactor));
                continue;
            }
            red.flush(flow.redactor, flow.scrub_reading());
        }
    }
}

impl Flow {
    /// Whether the flow's packets may be written (and so need redacting): every flow's are
    /// when `scrub` writes them all, else those of a flow not dropped whole.
    fn written(&self, keep_all: bool) -> bool {
        keep_all || self.class != Class::Dropped
    }

    /// How the redaction is to read the flow, once the engine knows what it carries (or has
    /// decided it without knowing: then its bytes are overwritten): until then the bytes
    /// wait, as the packets of an undecided flow do. DNS over TCP is known by its first
    /// message, before its lookups decide the flow; a flow kept for its port is not known
    /// until its bytes say what they are.
    fn scrub_reading(&self) -> Option<Reading> {
        let known = self.content != Content::Unknown || !matches!(self.class, Class::Undecided | Class::Port);
        known.then_some(Reading {
            content: self.content,
            client: self.client,
            tunnel: self.class == Class::Tunnel,
            plain_answer: self.plain_answer,
        })
    }
}
