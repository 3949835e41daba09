//! What keeps the engine's memory bounded: a packet that waited too long (or for a full
//! queue) is decided now, and flows that went quiet or overflow the table are forgotten.

use super::*;

impl Engine {
    /// Decides a waiting packet now: the caller's buffer is full or the packet waited too
    /// long. Evidence wins over size: an undecided connect is kept if its SYN was seen, a
    /// half-parsed unit is kept whole, an unanswered DNS query is kept; a DNS lookup for a
    /// name no kept flow used is dropped.
    pub fn force(&mut self, packet: u64, ticket: Ticket) -> Verdict {
        let v = self.force_one(packet, ticket);
        self.redact_deliveries(&[]);
        if self.opts.keep_all { Verdict::Keep } else { v }
    }

    fn force_one(&mut self, packet: u64, ticket: Ticket) -> Verdict {
        match ticket.on {
            WaitOn::Dns(n) => self.force_dns(n, packet),
            WaitOn::Classification => {
                let Some(flow) = self.flows.get_mut(&ticket.key) else {
                    return Verdict::Drop;
                };
                if flow.content == Content::Dns {
                    forget_waiting(&mut flow.waiting, packet);
                    let given_up = flow.give_up_partial_lookups();
                    self.note_losses(ticket.key, given_up);
                    let flow = self.flows.get_mut(&ticket.key).expect("flow exists");
                    if flow.class != Class::Undecided {
                        // Decided while a message was arriving: it waited for the message.
                        for d in &mut flow.dirs {
                            d.open.retain(|w| w.packet != packet);
                        }
                        return if flow.class.kept() { Verdict::Keep } else { Verdict::Drop };
                    }
                    return self.force_lookup(ticket.key);
                }
                if flow.hello_waits.is_some() {
                    // No answer came in time: decided as what the hello offered.
                    flow.hello_timed_out = true;
                    self.try_classify(ticket.key);
                    let flow = self.flows.get_mut(&ticket.key).expect("flow exists");
                    forget_waiting(&mut flow.waiting, packet);
                    return if flow.class.kept() { Verdict::Keep } else { Verdict::Drop };
                }
                forget_waiting(&mut flow.waiting, packet);
                // On port 53, a first message that never ends is not waited for: the flow is
                // what it would have been without one (not HTTP, TLS or WebSocket).
                let given_up = if ticket.key.has_port(DNS_PORT) { flow.give_up_partial_lookups() } else { 0 };
                if given_up != 0 {
                    self.note_losses(ticket.key, given_up);
                    let flow = self.flows.get_mut(&ticket.key).expect("flow exists");
                    flow.class = Class::Dropped;
                    flow.content = Content::Other;
                    (flow.proto, flow.why) = (Proto::Other, "not HTTP, TLS or WebSocket");
                    self.on_classified(ticket.key);
                    return Verdict::Drop;
                }
                if !flow.syn_seen {
                    return Verdict::Drop;
                }
                if flow.why.is_empty() {
                    flow.why = if flow.synack_seen {
                        "a connect with too little payload to classify"
                    } else {
                        "an unanswered connect"
                    };
                }
                flow.count_kept(&mut self.stats);
                Verdict::Keep
            }
            WaitOn::Unit(side) => {
                let Some(flow) = self.flows.get_mut(&ticket.key) else { return Verdict::Keep };
                let open = &mut flow.dirs[side.index()].open;
                let behind = open.iter().find(|w| w.packet == packet).map(|w| w.cut).filter(|c| c & BEHIND_MARK != 0);
                open.retain(|w| w.packet != packet);
                let given_up = if flow.content == Content::Dns { flow.give_up_partial_lookups() } else { 0 };
                // Bulk that waited behind a chain stays bulk; a unit's packet is kept whole.
                let v = match behind {
                    Some(cut) => bulk_verdict(&self.opts, &mut flow.bulk_used, cut & !MARKS),
                    None => Verdict::Keep,
                };
                self.note_losses(ticket.key, given_up);
                v
            }
            WaitOn::Reorder(side) => {
                let Some(flow) = self.flows.get_mut(&ticket.key) else {
                    return Verdict::Keep;
                };
                flow.dirs[side.index()].open.retain(|w| w.packet != packet);
                // Whatever this packet waited for will not come: parse no further in this
                // direction, and let the rest of what was held go as bulk.
                let held = flow.dirs[side.index()].stream.skip_hole();
                let dir = &mut flow.dirs[side.index()];
                if dir.phase != Phase::Collect {
                    dir.phase = Phase::Bulk;
                }
                for seg in held {
                    if let Some(pos) = flow.dirs[side.index()].open.iter().position(|w| w.packet == seg.packet) {
                        let w = flow.dirs[side.index()].open.remove(pos);
                        let v = if flow.class.kept() {
                            bulk_verdict(&self.opts, &mut flow.bulk_used, w.cut & !REORDER_MARK)
                        } else {
                            Verdict::Drop
                        };
                        self.resolved.push((w.packet, v));
                    }
                }
                // The redaction cannot read past the hole either.
                self.note_loss(ticket.key, side);
                Verdict::Keep
            }
        }
    }

    /// Forgets `n` flows when the table is full: those that matter least and were quiet
    /// longest.
    pub(super) fn evict_oldest(&mut self, n: usize) {
        let rank = |f: &Flow| -> u8 {
            match f.class {
                Class::Dropped => 0,
                _ if f.closed() => 1,
                Class::Undecided if !f.has_waiters() => 2,
                Class::Undecided => 3,
                _ => 4,
            }
        };
        let mut candidates = std::mem::take(&mut self.evict_candidates);
        candidates.clear();
        candidates.extend(self.flows.slots().map(|(i, f)| (rank(f), f.last_ns, i)));
        for &(_, _, slot) in crate::flow::least_telling(&mut candidates, n) {
            if let Some((key, f)) = self.flows.remove_at(slot) {
                if self.opts.record_flows {
                    self.retired.push(f.record(key));
                }
                self.forget_redactor(f.redactor);
                self.stats.flows_evicted += 1;
            }
        }
        self.evict_candidates = candidates;
    }

    /// Forgets flows that ended or went quiet, so the table does not grow with the capture.
    pub(super) fn sweep(&mut self, now: u64) {
        self.last_sweep_ns = now;
        let before = self.flows.len();
        let record = self.opts.record_flows;
        let first_retired = self.retired.len();
        let retired = &mut self.retired;
        let mut redaction = self.scrubbing.as_deref_mut().map(|s| &mut s.redaction);
        self.flows.retain(|k, f| {
            if f.has_waiters() {
                return true;
            }
            let idle = now.saturating_sub(f.last_ns);
            let limit = if f.closed() || f.udp {
                CLOSED_LINGER_NS
            } else if f.class == Class::Dropped || f.class == Class::Undecided {
                DROPPED_IDLE_NS
            } else {
                OPEN_IDLE_NS
            };
            let keep = idle < limit;
            if !keep && record {
                retired.push(f.record(*k));
            }
            if !keep && let Some(r) = redaction.as_deref_mut() {
                r.forget(f.redactor);
            }
            keep
        });
        // Flows forgotten together are listed in the order they began, as at the capture's end
        // (not in the table's order, which says nothing).
        self.retired[first_retired..].sort_by_key(|r| (r.first_ns, r.last_ns));
        self.stats.flows_evicted += (before - self.flows.len()) as u64;
    }
}

/// Removes a forced packet from its flow's waiting list: usually the front.
fn forget_waiting(waiting: &mut std::collections::VecDeque<Waiting>, packet: u64) {
    if waiting.front().is_some_and(|w| w.packet == packet) {
        waiting.pop_front();
    } else {
        waiting.retain(|w| w.packet != packet);
    }
}
