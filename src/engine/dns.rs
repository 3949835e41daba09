//! DNS in the one pass: a lookup is kept when it fails (NXDOMAIN, SERVFAIL, REFUSED, no answer)
//! or names a host or address a kept flow uses. Its packets wait for the answer and for a kept
//! flow; a transaction leaves the table as soon as it is decided, so a flood of unanswered
//! queries costs the waiting queue's bound, not the capture's size.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::{Decision, Decoded, Engine, Event, FlowKey, Proto, Side, Verdict, WaitOn};
use crate::capture::RecordMeta;
use crate::proto::dns;
use crate::wire::Addr;

pub(super) use crate::proto::dns::name_key;

/// One value inline, more on the heap: a transaction almost always has one waiting packet
/// and one name, and a flood of queries should not cost two allocations each.
#[derive(Default)]
struct Few<T: Copy> {
    first: Option<T>,
    more: Vec<T>,
}

impl<T: Copy + PartialEq> Few<T> {
    fn push(&mut self, v: T) {
        if self.first.is_none() {
            self.first = Some(v);
        } else {
            self.more.push(v);
        }
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }

    fn remove(&mut self, v: T) {
        if self.first == Some(v) {
            self.first = if self.more.is_empty() { None } else { Some(self.more.remove(0)) };
        } else {
            self.more.retain(|&x| x != v);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// A DNS query/response exchange, decided together.
struct DnsTxn {
    key: (FlowKey, u16),
    packets: Few<u64>,
    /// `name_key`s of the names asked and answered.
    names: Few<u64>,
    addrs: Vec<Addr>,
    answered: bool,
}

impl DnsTxn {
    fn names_a_kept_host(&self, names: &rustc_hash::FxHashSet<u64>, addrs: &rustc_hash::FxHashSet<Addr>) -> bool {
        self.names.iter().any(|n| names.contains(&n)) || self.addrs.iter().any(|a| addrs.contains(a))
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

/// One flow's open transactions by id. Entries of decided transactions are left behind and
/// ignored (one is overwritten when its id comes again); they are pruned all at once when the
/// map has doubled since the last pruning, so a flow that sends many queries costs its open
/// ones, not its history.
#[derive(Default)]
pub(super) struct OpenIds {
    by_id: FxHashMap<u16, u64>,
    prune_at: usize,
}

impl DnsTable {
    fn get_mut(&mut self, n: u64) -> Option<&mut DnsTxn> {
        let i = usize::try_from(n.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)?.as_mut()
    }

    fn is_open(&self, n: u64) -> bool {
        n.checked_sub(self.base).and_then(|i| self.slots.get(i as usize)).is_some_and(Option::is_some)
    }

    /// The number of the open transaction `tk` (listed in `ids`, its flow's), opening one if
    /// there is none.
    fn find_or_open(&mut self, ids: &mut OpenIds, tk: (FlowKey, u16)) -> u64 {
        if let Some(&n) = ids.by_id.get(&tk.1)
            && self.is_open(n)
        {
            return n;
        }
        let n = self.base + self.slots.len() as u64;
        self.slots.push_back(Some(DnsTxn {
            key: tk,
            packets: Few::default(),
            names: Few::default(),
            addrs: Vec::new(),
            answered: false,
        }));
        self.live += 1;
        ids.by_id.insert(tk.1, n);
        if ids.by_id.len() >= ids.prune_at {
            ids.by_id.retain(|_, n| self.is_open(*n));
            ids.prune_at = (2 * ids.by_id.len()).max(16);
        }
        n
    }

    fn close(&mut self, n: u64) -> Option<DnsTxn> {
        let i = usize::try_from(n.checked_sub(self.base)?).ok()?;
        let t = self.slots.get_mut(i)?.take()?;
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
    pub(super) fn udp_packet(&mut self, key: FlowKey, side: Side, d: &Decoded<'_>, meta: &RecordMeta) -> Decision {
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
            self.last_flow_dropped = !flow.counted_kept;
            return Decision::Now(Verdict::Drop);
        }
        flow.proto = Proto::Dns;
        if flow.why.is_empty() {
            flow.why = "lookup of another name";
        }
        let conv = flow.conv;
        // A plain query needs no strings unless something reads its name as text (events for
        // diagnose, --host patterns).
        let lean = !self.ev.on && !self.opts.select.has_hosts();
        if lean && let Some(q) = dns::query(d.payload) {
            let n = self.dns.find_or_open(&mut flow.dns_ids, (key, q.id));
            let txn = self.dns.get_mut(n).expect("transaction open");
            txn.names.push(q.name_key);
            let matched = txn.names_a_kept_host(&self.kept_names, &self.kept_addrs);
            return self.dns_decided(key, n, matched, false, meta.number);
        }
        let Some(msg) = dns::parse(d.payload) else {
            self.last_flow_dropped = !flow.counted_kept;
            return Decision::Now(Verdict::Drop);
        };
        let failure = msg.is_failure();
        let selected = msg.names.iter().any(|n| self.opts.select.host_matches(n));
        let n = self.dns.find_or_open(&mut flow.dns_ids, (key, msg.id));
        let txn = self.dns.get_mut(n).expect("transaction open");
        for name in &msg.names {
            txn.names.push(name_key(name));
        }
        txn.addrs.extend(msg.addrs.iter().copied());
        txn.answered |= msg.response;
        let matched = failure || selected || txn.names_a_kept_host(&self.kept_names, &self.kept_addrs);
        if self.ev.on {
            self.ev.push(conv, key, side, Event::Dns(Box::new(msg)));
        }
        self.dns_decided(key, n, matched, failure, meta.number)
    }

    /// Keeps the transaction's packets now when its lookup matters; otherwise the packet waits.
    fn dns_decided(&mut self, key: FlowKey, n: u64, matched: bool, failure: bool, packet: u64) -> Decision {
        if matched {
            if let Some(f) = self.flows.get_mut(&key) {
                f.why = if failure { "failed lookup" } else { "lookup of a kept host" };
            }
            self.count_dns_kept(key);
            let txn = self.dns.close(n).expect("transaction open");
            for p in txn.packets.iter() {
                self.resolved.push((p, Verdict::Keep));
            }
            self.last_flow_dropped = false;
            return Decision::Now(Verdict::Keep);
        }
        self.dns.get_mut(n).expect("transaction open").packets.push(packet);
        self.last_flow_dropped = false;
        Decision::Wait(WaitOn::Dns(n))
    }

    pub(super) fn count_dns_kept(&mut self, key: FlowKey) {
        if let Some(f) = self.flows.get_mut(&key)
            && !f.counted_kept
        {
            if matches!(f.why, "" | "lookup of another name") {
                f.why = "lookup of a kept host";
            }
            f.counted_kept = true;
            self.stats.flows_kept += 1;
        }
    }

    pub(super) fn resolve_dns_matches(&mut self) {
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
                for p in txn.packets.iter() {
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
        t.packets.remove(packet);
        let (answered, key) = (t.answered, t.key.0);
        if t.packets.is_empty() {
            self.dns.close(n);
        }
        if answered {
            return Verdict::Drop;
        }
        if let Some(f) = self.flows.get_mut(&key)
            && matches!(f.why, "" | "lookup of another name")
        {
            f.why = "unanswered lookup";
        }
        self.count_dns_kept(key);
        Verdict::Keep
    }
}
