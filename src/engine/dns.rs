//! DNS in the one pass: a lookup is kept when it fails (NXDOMAIN, SERVFAIL, REFUSED, no answer)
//! or names a host or address a kept flow uses. Its packets wait for the answer and for a kept
//! flow; a transaction leaves the table as soon as it is decided, so a flood of unanswered
//! queries costs the waiting queue's bound, not the capture's size.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::{
    Class, Content, Decision, Decoded, DnsFacts, Engine, Event, Flow, FlowKey, Phase, Proto, Side, Stats, Verdict,
    WaitOn, Waiting,
};
use crate::capture::RecordMeta;
use crate::proto::dns;
use crate::wire::Addr;

pub(super) use crate::proto::dns::name_key;

/// A DNS query/response exchange, decided together. Small, because a query flood keeps as
/// many of these as the queue holds waiting packets: the common transaction (one packet, one
/// name) is held inline, and anything more goes in `more`.
struct DnsTxn {
    key: (FlowKey, u16),
    answered: bool,
    /// Its flow was already counted as kept for a lookup when this transaction opened: forcing
    /// it need not look the flow up again.
    flow_done: bool,
    /// The first waiting packet (0: none; packets are numbered from 1).
    packet: u64,
    /// `name_key` of the first name asked or answered.
    name: Option<u64>,
    more: Option<Box<More>>,
}

#[derive(Default)]
struct More {
    packets: Vec<u64>,
    names: Vec<u64>,
    addrs: Vec<Addr>,
}

impl DnsTxn {
    fn new(key: (FlowKey, u16), flow_done: bool) -> DnsTxn {
        DnsTxn { key, answered: false, flow_done, packet: 0, name: None, more: None }
    }

    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    fn add_name(&mut self, n: u64) {
        if self.name.is_none() {
            self.name = Some(n);
        } else {
            self.more().names.push(n);
        }
    }

    fn add_packet(&mut self, p: u64) {
        if self.packet == 0 {
            self.packet = p;
        } else {
            self.more().packets.push(p);
        }
    }

    fn packets(&self) -> impl Iterator<Item = u64> + '_ {
        let more = self.more.as_ref().map_or(&[][..], |m| &m.packets[..]);
        (self.packet != 0).then_some(self.packet).into_iter().chain(more.iter().copied())
    }

    /// Forgets a packet that was decided; returns whether any is still waiting.
    fn remove_packet(&mut self, p: u64) -> bool {
        let more = self.more.as_mut().map(|m| &mut m.packets);
        if self.packet == p {
            self.packet = more.filter(|m| !m.is_empty()).map_or(0, |m| m.remove(0));
        } else if let Some(m) = more {
            m.retain(|&x| x != p);
        }
        self.packet != 0
    }

    fn names_a_kept_host(&self, names: &rustc_hash::FxHashSet<u64>, addrs: &rustc_hash::FxHashSet<Addr>) -> bool {
        self.name.is_some_and(|n| names.contains(&n))
            || self
                .more
                .as_ref()
                .is_some_and(|m| m.names.iter().any(|n| names.contains(n)) || m.addrs.iter().any(|a| addrs.contains(a)))
    }
}

/// Open transactions in the order they were opened, which is the order the waiting queue
/// forces their packets in: forcing takes the front, and a decided transaction leaves a hole
/// that is popped when it reaches the front. A waiting packet's ticket carries its
/// transaction's number, so forcing goes straight to it; a new packet finds its transaction
/// through its flow's `OpenIds`, in memory the flow lookup has just touched. (A global hash
/// table from (flow, id) made a query flood cost two cache misses a query.)
#[derive(Default)]
pub(super) struct DnsTable {
    slots: VecDeque<Option<DnsTxn>>,
    /// Number of the transaction in `slots[0]`.
    base: u64,
    live: usize,
}

/// One flow's open transactions by id: the first few inline, in the flow's own memory (which
/// the flow lookup has just brought in), the rest in a map. Entries of decided transactions
/// are left behind and ignored: an inline one is reused once the queue has passed it, and the
/// map is pruned all at once when it has doubled since the last pruning, so a flow that sends
/// many queries costs its open ones, not its history.
pub(super) struct OpenIds {
    /// Ids and transaction numbers apart (no padding between pairs): every flow, TCP ones
    /// too, carries these 112 bytes. A number is held as its low 32 bits, read against the
    /// table's window of live transactions (`DnsTable::widen`): sixteen entries in the space
    /// of eight full ones, as a port that keeps ten or more lookups open at once otherwise
    /// went to the map, a cache miss a query.
    ids: [u16; NEAR],
    nums: [u32; NEAR],
    /// Bit k: entry k was ever used.
    used: u16,
    far: Option<Box<Far>>,
}

#[derive(Default)]
struct Far {
    by_id: FxHashMap<u16, u64>,
    prune_at: usize,
}

const NEAR: usize = 16;

impl Default for OpenIds {
    fn default() -> Self {
        OpenIds { ids: [0; NEAR], nums: [0; NEAR], used: 0, far: None }
    }
}

/// What a DNS flow is called until one of its lookups is kept.
pub(super) const ANOTHER_NAME: &str = "lookup of another name";

impl Flow {
    /// Whether the flow's label says no more than that it looked names up, so that a kept
    /// lookup may say why it is kept.
    fn says_only_lookups(&self) -> bool {
        matches!(self.why, "" | ANOTHER_NAME)
    }

    /// Counts the flow as kept for a lookup, labelled `why` unless its label already says more.
    fn keep_for_lookup(&mut self, why: &'static str, stats: &mut Stats) {
        if self.says_only_lookups() {
            self.why = why;
        }
        self.count_kept(stats);
    }
}

impl DnsTable {
    /// Where transaction `n` is in `slots` (None once the front has passed it).
    fn index(&self, n: u64) -> Option<usize> {
        usize::try_from(n.checked_sub(self.base)?).ok().filter(|&i| i < self.slots.len())
    }

    fn get(&self, n: u64) -> Option<&DnsTxn> {
        self.slots[self.index(n)?].as_ref()
    }

    fn get_mut(&mut self, n: u64) -> Option<&mut DnsTxn> {
        let i = self.index(n)?;
        self.slots[i].as_mut()
    }

    fn is_open(&self, n: u64) -> bool {
        self.get(n).is_some()
    }

    /// The transaction number whose low 32 bits are `low`, if it is in the window of
    /// transactions still in the table (which is far narrower than 2^32: the waiting queue
    /// bounds it); None for one the queue has passed.
    fn widen(&self, low: u32) -> Option<u64> {
        let n = self.base + u64::from(low.wrapping_sub(self.base as u32));
        self.index(n).map(|_| n)
    }

    /// The number of the open transaction `tk` (listed in `ids`, its flow's), opening one if
    /// there is none.
    fn find_or_open(&mut self, ids: &mut OpenIds, tk: (FlowKey, u16), flow_done: bool) -> u64 {
        let id = tk.1;
        let near = (0..NEAR)
            .filter(|&k| ids.used & (1 << k) != 0 && ids.ids[k] == id)
            // (The key is compared too: an entry left from 2^32 transactions ago would read as
            // a live number of another flow.)
            .find_map(|k| self.widen(ids.nums[k]).filter(|&n| self.get(n).is_some_and(|t| t.key == tk)));
        let found = near.or_else(|| ids.far.as_ref()?.by_id.get(&id).copied().filter(|&n| self.is_open(n)));
        if let Some(n) = found {
            return n;
        }
        let n = self.base + self.slots.len() as u64;
        self.slots.push_back(Some(DnsTxn::new(tk, flow_done)));
        self.live += 1;
        // An inline entry the queue has passed (its transaction is surely decided) is reused;
        // one of the same id is overwritten, so that an id is listed once.
        if let Some(k) =
            (0..NEAR).find(|&k| ids.used & (1 << k) == 0 || ids.ids[k] == id || self.widen(ids.nums[k]).is_none())
        {
            (ids.ids[k], ids.nums[k]) = (id, n as u32);
            ids.used |= 1 << k;
            return n;
        }
        let far = ids.far.get_or_insert_with(Box::default);
        far.by_id.insert(id, n);
        if far.by_id.len() >= far.prune_at {
            far.by_id.retain(|_, n| self.is_open(*n));
            far.prune_at = (2 * far.by_id.len()).max(16);
        }
        n
    }

    fn close(&mut self, n: u64) -> Option<DnsTxn> {
        let i = self.index(n)?;
        let t = self.slots[i].take()?;
        self.live -= 1;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(t)
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }
}

impl Engine {
    /// A UDP packet: one flow-table lookup, then DNS when either port is 53 (anything else on
    /// UDP is dropped).
    /// Also says whether the packet's flow is dropped whole (a flow of no lookup kept yet).
    pub(super) fn udp_packet(
        &mut self,
        key: FlowKey,
        side: Side,
        d: &Decoded<'_>,
        meta: &RecordMeta,
    ) -> (Decision, bool) {
        let flow = match self.flows.get_mut(&key) {
            Some(f) => f,
            None => {
                self.new_flow(key, side, meta.ts_ns);
                self.flows.get_mut(&key).expect("flow inserted above")
            }
        };
        flow.udp = true;
        flow.count(meta);
        if d.sport != super::DNS_PORT && d.dport != super::DNS_PORT {
            return (Decision::Now(Verdict::Drop), !flow.counted_kept);
        }
        flow.proto = Proto::Dns;
        if flow.why.is_empty() {
            flow.why = ANOTHER_NAME;
        }
        let conv = flow.conv;
        let flow_done = flow.counted_kept && !flow.says_only_lookups();
        // A plain query (most of a flood) is read without building strings; its name becomes
        // one only for an event.
        let mut text = [0u8; 256];
        if let Some((q, name)) = dns::query_named(d.payload, &mut text) {
            let text = || std::str::from_utf8(name).unwrap_or_default();
            let selected = self.opts.select.has_hosts() && self.opts.select.host_matches(text());
            let n = self.dns.find_or_open(&mut flow.dns_ids, (key, q.id), flow_done);
            let txn = self.dns.get_mut(n).expect("transaction open");
            txn.add_name(q.name_key);
            let matched = selected || txn.names_a_kept_host(&self.kept_names, &self.kept_addrs);
            if self.ev.on {
                let rcode = d.payload[3] & 0x0f;
                let facts = DnsFacts { id: q.id, response: false, rcode, name: text().into(), addrs: Box::default() };
                self.ev.push(conv, key, side, Event::Dns(facts));
            }
            return (self.dns_decided(key, n, matched, false, meta.number), false);
        }
        // Not a plain query (checked just above): the full parse.
        let Some(msg) = dns::parse_all(d.payload) else {
            return (Decision::Now(Verdict::Drop), !flow.counted_kept);
        };
        let failure = msg.is_failure();
        let selected = msg.names.iter().any(|n| self.opts.select.host_matches(n));
        let n = self.dns.find_or_open(&mut flow.dns_ids, (key, msg.id), flow_done);
        let txn = self.dns.get_mut(n).expect("transaction open");
        for name in &msg.names {
            txn.add_name(name_key(name));
        }
        if !msg.addrs.is_empty() {
            txn.more().addrs.extend(msg.addrs.iter().copied());
        }
        txn.answered |= msg.response;
        let matched = failure || selected || txn.names_a_kept_host(&self.kept_names, &self.kept_addrs);
        if self.ev.on {
            self.ev.push(conv, key, side, Event::Dns(msg.into()));
        }
        (self.dns_decided(key, n, matched, failure, meta.number), false)
    }

    /// Keeps the transaction's packets now when its lookup matters; otherwise the packet waits.
    fn dns_decided(&mut self, key: FlowKey, n: u64, matched: bool, failure: bool, packet: u64) -> Decision {
        if matched {
            if let Some(f) = self.flows.get_mut(&key) {
                f.why = if failure { "failed lookup" } else { "lookup of a kept host" };
                f.count_kept(&mut self.stats);
            }
            let txn = self.dns.close(n).expect("transaction open");
            for p in txn.packets() {
                self.resolved.push((p, Verdict::Keep));
            }
            return Decision::Now(Verdict::Keep);
        }
        self.dns.get_mut(n).expect("transaction open").add_packet(packet);
        Decision::Wait(WaitOn::Dns(n))
    }

    pub(super) fn count_dns_kept(&mut self, key: FlowKey) {
        if let Some(f) = self.flows.get_mut(&key)
            && !f.counted_kept
        {
            f.keep_for_lookup("lookup of a kept host", &mut self.stats);
        }
    }

    pub(super) fn resolve_dns_matches(&mut self) {
        self.resolve_tcp_lookups();
        if self.dns.is_empty() {
            return;
        }
        let hits: Vec<u64> = self
            .dns
            .slots
            .iter()
            .zip(self.dns.base..)
            .filter(|(t, _)| t.as_ref().is_some_and(|t| t.names_a_kept_host(&self.kept_names, &self.kept_addrs)))
            .map(|(_, n)| n)
            .collect();
        for n in hits {
            if let Some(txn) = self.dns.close(n) {
                self.count_dns_kept(txn.key.0);
                for p in txn.packets() {
                    self.resolved.push((p, Verdict::Keep));
                }
            }
        }
    }

    /// Decides a DNS packet whose wait is over: kept when its lookup was never answered.
    pub(super) fn force_dns(&mut self, n: u64, packet: u64) -> Verdict {
        // Decided, answered or not: the packet is done with, and the transaction with its
        // last packet. (Unanswered ones kept forever took a million lookups to over a
        // gigabyte.)
        let Some(t) = self.dns.get_mut(n) else {
            return Verdict::Drop;
        };
        let (answered, key, flow_done) = (t.answered, t.key.0, t.flow_done);
        if !t.remove_packet(packet) {
            self.dns.close(n);
        }
        if answered {
            return Verdict::Drop;
        }
        if !flow_done && let Some(f) = self.flows.get_mut(&key) {
            f.keep_for_lookup("unanswered lookup", &mut self.stats);
        }
        Verdict::Keep
    }
}

/// What a DNS-over-TCP flow's messages said so far. Such a flow is decided whole, as a lookup
/// is: kept when one of its lookups failed, was never answered, or names a kept host or
/// address; dropped when it was answered and no kept flow used it within the wait.
#[derive(Default)]
pub(super) struct TcpLookup {
    answered: bool,
    failure: bool,
    selected: bool,
    /// Listed in `Engine::tcp_lookups`.
    listed: bool,
    names: Vec<u64>,
    addrs: Vec<Addr>,
}

/// Names and addresses a DNS-over-TCP flow keeps for naming checks while undecided.
const MAX_TCP_LOOKUP_NAMES: usize = 64;

/// What a direction's head holds after the messages read from it: part of the next one.
fn head_rest(dir: &super::Dir) -> &[u8] {
    if dir.phase == Phase::Collect { &dir.head } else { &[] }
}

/// Whether `rest` starts a message that has not ended yet.
fn partial(rest: &[u8]) -> bool {
    !rest.is_empty() && dns::tcp_frame(rest) == dns::TcpFrame::Partial
}

impl Flow {
    /// A message that did not end while its packets could wait is not read: its bytes are
    /// bulk from there, and its head is let go. So what DNS-over-TCP flows hold is bounded
    /// by the waiting queue, not by the number of flows an attacker opens.
    /// Returns the sides that had one (bit 0 side A, bit 1 side B).
    pub(super) fn give_up_partial_lookups(&mut self) -> u8 {
        let mut sides = 0;
        for (i, d) in self.dirs.iter_mut().enumerate() {
            if partial(head_rest(d)) {
                d.stop_reading();
                sides |= 1 << i;
            }
        }
        sides
    }

    /// A decided DNS-over-TCP flow whose `side` has sent part of a message: its packet waits
    /// for the rest (`WaitOn::Unit`), so that the scrubber reads the message whole, with the
    /// packets after it, before it writes any of them.
    pub(super) fn lookup_partial(&self, side: Side) -> bool {
        self.lookup.is_some() && partial(head_rest(&self.dirs[side.index()]))
    }
}

impl TcpLookup {
    fn names_a_kept_host(&self, names: &rustc_hash::FxHashSet<u64>, addrs: &rustc_hash::FxHashSet<Addr>) -> bool {
        self.names.iter().any(|n| names.contains(n)) || self.addrs.iter().any(|a| addrs.contains(a))
    }
}

/// Answered DNS-over-TCP flows not decided yet, looked at again whenever a flow is kept.
/// Entries of flows decided or forgotten meanwhile are pruned when the list has doubled.
#[derive(Default)]
pub(super) struct TcpLookups {
    keys: Vec<FlowKey>,
    prune_at: usize,
}

impl Engine {
    /// Reads the DNS messages that arrived whole on a DNS-over-TCP flow (`Content::Dns`),
    /// reports each, and decides the flow when a lookup says it matters.
    pub(super) fn read_lookups(&mut self, key: FlowKey) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let conv = flow.conv;
        let undecided = flow.class == Class::Undecided;
        let lk = flow.lookup.get_or_insert_with(Box::default);
        let mut messages = Vec::new();
        for s in [Side::A, Side::B] {
            let dir = &mut flow.dirs[s.index()];
            let mut at = 0;
            while let Some(rest) = dir.head.get(at..)
                && let dns::TcpFrame::Whole(n) = dns::tcp_frame(rest)
            {
                if let Some(m) = dns::parse(&rest[2..2 + n]) {
                    lk.answered |= m.response;
                    lk.failure |= m.is_failure();
                    lk.selected |= m.names.iter().any(|n| self.opts.select.host_matches(n));
                    // What a kept flow may yet name; a long-lived connection to a resolver
                    // carries thousands of lookups, and the first are what an attempt follows.
                    if undecided && lk.names.len() + lk.addrs.len() < MAX_TCP_LOOKUP_NAMES {
                        lk.names.extend(m.names.iter().map(|n| name_key(n)));
                        lk.addrs.extend(m.addrs.iter().copied());
                    }
                    messages.push((s, m));
                }
                at += 2 + n;
            }
            // Messages read are let go: the head holds at most the one still arriving.
            if at > 0 {
                dir.head.drain(..at);
                dir.head_start += at as u64;
            }
            // Packets that waited for a message to end (`Flow::lookup_partial`) are kept once
            // it has.
            if !partial(head_rest(dir)) {
                dir.keep_unit_waiters(&mut self.resolved);
            }
        }
        let (failure, selected, answered) = (lk.failure, lk.selected, lk.answered);
        let named = lk.names_a_kept_host(&self.kept_names, &self.kept_addrs);
        // A message longer than a head may hold (a zone transfer) is not read; the
        // connection's bytes are bulk from there, and what was read still decides it.
        if flow.dirs.iter().any(|d| d.head.len() >= crate::proto::http::MAX_HEAD_BYTES) {
            flow.dirs.iter_mut().for_each(super::Dir::stop_reading);
        }
        if self.ev.on {
            for (s, m) in messages {
                self.ev.push(conv, key, s, Event::Dns(m.into()));
            }
        }
        if !undecided {
            return;
        }
        if failure || selected || named {
            let why = if failure { "failed lookup" } else { "lookup of a kept host" };
            self.decide_lookup(key, true, why);
        } else if answered {
            self.list_tcp_lookup(key);
        }
    }

    /// Keeps or drops a DNS-over-TCP flow whole, with the packets that waited for it.
    pub(super) fn decide_lookup(&mut self, key: FlowKey, keep: bool, why: &'static str) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        flow.class = if keep { Class::Lookup } else { Class::Dropped };
        (flow.proto, flow.why) = (Proto::Dns, why);
        if !keep {
            for d in &mut flow.dirs {
                d.head = Vec::new();
            }
            flow.lookup = None;
        } else if let Some(s) = [Side::A, Side::B].into_iter().find(|&s| flow.lookup_partial(s)) {
            // A message is still arriving: what waited is decided with it, so that the
            // scrubber reads the packets of both directions in order, together.
            let waited: Vec<Waiting> = flow.waiting.drain(..).collect();
            flow.dirs[s.index()].open.extend(waited);
        }
        self.on_classified(key);
    }

    /// Decides a waiting packet of a DNS-over-TCP flow whose wait is over, and the flow with
    /// it: kept when a lookup was never answered.
    pub(super) fn force_lookup(&mut self, key: FlowKey) -> Verdict {
        let answered = self.flows.get(&key).and_then(|f| f.lookup.as_ref()).is_some_and(|l| l.answered);
        if answered {
            self.decide_lookup(key, false, ANOTHER_NAME);
            Verdict::Drop
        } else {
            self.decide_lookup(key, true, "unanswered lookup");
            Verdict::Keep
        }
    }

    fn list_tcp_lookup(&mut self, key: FlowKey) {
        let Some(lk) = self.flows.get_mut(&key).and_then(|f| f.lookup.as_mut()) else { return };
        if std::mem::replace(&mut lk.listed, true) {
            return;
        }
        let list = &mut self.tcp_lookups;
        list.keys.push(key);
        if list.keys.len() >= list.prune_at {
            let flows = &self.flows;
            list.keys
                .retain(|k| flows.get(k).is_some_and(|f| f.class == Class::Undecided && f.content == Content::Dns));
            list.prune_at = (2 * list.keys.len()).max(16);
        }
    }

    /// Keeps the listed DNS-over-TCP flows whose lookups name a kept host or address now.
    fn resolve_tcp_lookups(&mut self) {
        if self.tcp_lookups.keys.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.tcp_lookups.keys);
        let mut still = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(f) = self.flows.get(&key) else { continue };
            if f.class != Class::Undecided || f.content != Content::Dns {
                continue;
            }
            if f.lookup.as_ref().is_some_and(|l| l.names_a_kept_host(&self.kept_names, &self.kept_addrs)) {
                self.decide_lookup(key, true, "lookup of a kept host");
            } else {
                still.push(key);
            }
        }
        still.append(&mut self.tcp_lookups.keys);
        self.tcp_lookups.keys = still;
    }
}
