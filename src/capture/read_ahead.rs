//! Input read on a thread of its own. Reading a file from the page cache is the kernel's copy
//! page by page, with a lookup of each page: on a capture that is mostly kept bulk, a quarter
//! to a third of a `flows` or `diagnose` went there, on the one core the pass runs on. Read in
//! 1 MiB blocks on the other core (and decompressed there, for gzip), the blocks are parsed
//! where they lie (`Reader::fill`): a record cut by a block's end is moved into the free room
//! before the next block's bytes, so the pass copies only those few bytes, not the stream.
//!
//! At most four blocks exist (one being read, two waiting, one being parsed), so memory stays
//! bounded however far ahead the thread could read; the thread ends with its reader. A read
//! error is handed over in its place in the stream, after the bytes before it.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

const BLOCK_BYTES: usize = 1 << 20;
/// Free room before each block's bytes, for the part of a record the last block ended in.
pub const HEADROOM: usize = 64 << 10;

pub struct ReadAhead {
    blocks: Receiver<io::Result<Vec<u8>>>,
    /// Parsed blocks, back to the thread to be filled again.
    returned: Sender<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    pub fn new(mut src: Box<dyn Read + Send>) -> ReadAhead {
        let (send, blocks) = sync_channel::<io::Result<Vec<u8>>>(2);
        let (returned, to_fill) = channel::<Vec<u8>>();
        let thread = std::thread::Builder::new()
            .name("input".into())
            .spawn(move || read_blocks(&mut *src, &send, &to_fill))
            .expect("spawning the input thread");
        ReadAhead { blocks, returned, thread: Some(thread) }
    }

    /// The next block: its bytes from `HEADROOM` on (never none); None at the end of the input
    /// (and after an error: the thread ends once it has handed one over).
    pub fn next_block(&self) -> io::Result<Option<Vec<u8>>> {
        match self.blocks.recv() {
            Ok(block) => block.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A block parsed to its end, to be filled again.
    pub fn give_back(&self, block: Vec<u8>) {
        if block.capacity() > 0 {
            let _ = self.returned.send(block);
        }
    }
}

impl Drop for ReadAhead {
    /// Stops the thread and waits for it, so that none outlives its reader: with the blocks
    /// no longer taken, its next hand-over fails and it ends (a file's read always returns).
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.blocks, sync_channel(0).1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fills blocks until the input ends, fails, or nobody reads any more (the receiver is gone).
fn read_blocks(src: &mut dyn Read, send: &SyncSender<io::Result<Vec<u8>>>, to_fill: &Receiver<Vec<u8>>) {
    loop {
        let mut block = to_fill.try_recv().unwrap_or_default();
        block.resize(HEADROOM + BLOCK_BYTES, 0);
        let mut n = HEADROOM;
        let failed = loop {
            if n == block.len() {
                break None;
            }
            match src.read(&mut block[n..]) {
                Ok(0) => break None,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        block.truncate(n);
        let full = n == HEADROOM + BLOCK_BYTES;
        if n > HEADROOM && send.send(Ok(block)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = send.send(Err(e));
            return;
        }
        if !full {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte arrives, in order, in blocks with room before them.
    #[test]
    fn bytes_arrive_whole_and_in_order() {
        let data: Vec<u8> = (0..5 * BLOCK_BYTES / 2 + 17).map(|i| (i * 7 + i / 300) as u8).collect();
        let r = ReadAhead::new(Box::new(io::Cursor::new(data.clone())));
        let mut got = Vec::new();
        while let Some(block) = r.next_block().unwrap() {
            assert!(block.len() > HEADROOM);
            got.extend_from_slice(&block[HEADROOM..]);
            r.give_back(block);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        assert!(r.next_block().unwrap().is_none(), "stays at its end");
    }

    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    /// A read error comes after the bytes read before it, not instead of them.
    #[test]
    fn an_error_comes_in_its_place() {
        let r = ReadAhead::new(Box::new(FailsAfter(BLOCK_BYTES + 5)));
        let mut got = 0;
        let e = loop {
            match r.next_block() {
                Ok(None) => panic!("ended without the error"),
                Ok(Some(block)) => got += block.len() - HEADROOM,
                Err(e) => break e,
            }
        };
        assert_eq!(got, BLOCK_BYTES + 5);
        assert_eq!(e.to_string(), "disk gone");
    }
}
