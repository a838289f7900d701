//! A channel whose peer messages are the fuzzer's input; everything sent is discarded.

use protocols::channel::Channel;
use protocols::error::ChannelError;

pub struct ReplayChannel<'a> {
    data: &'a [u8],
}

impl<'a> ReplayChannel<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ReplayChannel { data }
    }
}

impl Channel for ReplayChannel<'_> {
    fn send(&mut self, _bytes: &[u8]) -> Result<(), ChannelError> {
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if buf.len() > self.data.len() {
            let wanted = buf.len() - self.data.len();
            self.data = &[];
            return Err(ChannelError::PeerClosed { wanted });
        }
        let (head, rest) = self.data.split_at(buf.len());
        buf.copy_from_slice(head);
        self.data = rest;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}
