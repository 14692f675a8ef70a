//! The TCP endpoint: `--output tcp:ADDR:PORT`. Listens (loopback unless `--allow-remote`), serves one
//! reader at a time, and turns away a second one with a log line.

use std::io;
use std::net::{SocketAddr, TcpListener};

use log::{debug, info, warn};

/// Kernel send buffer for a reader's socket (Linux doubles it): about 1 s at 4 Mbit/s.
const SEND_BUFFER: usize = 256 * 1024;

use crate::exit::{Exit, fail};
use crate::sink::{Conn, Endpoint};

pub struct Tcp {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Tcp {
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Tcp> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| fail(Exit::CantCreate, format!("--output tcp:{addr}: cannot listen: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| fail(Exit::CantCreate, format!("tcp:{addr}: {e}")))?;
        let addr = listener.local_addr().unwrap_or(addr);
        info!("tcp:{addr}: listening for one reader at a time");
        Ok(Tcp { listener, addr })
    }
}

impl Endpoint for Tcp {
    fn try_attach(&mut self) -> anyhow::Result<Option<Box<dyn Conn>>> {
        match self.listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(true).map_err(|e| fail(Exit::Io, format!("tcp reader {peer}: {e}")))?;
                let _ = stream.set_nodelay(true);
                // A small kernel send buffer keeps a slow reader's backlog in our queue, where the
                // --max-lag policy sees it, instead of seconds of stream hidden in the socket.
                if let Err(e) = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER) {
                    debug!("SO_SNDBUF: {e}");
                }
                info!("tcp:{}: reader {peer} connected", self.addr);
                Ok(Some(Box::new(stream)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                warn!("tcp:{}: accept failed: {e}", self.addr);
                Ok(None)
            }
        }
    }

    fn reject_extra(&mut self) {
        while let Ok((stream, peer)) = self.listener.accept() {
            warn!("tcp:{}: rejected a second reader from {peer}: one reader at a time", self.addr);
            drop(stream);
        }
    }

    fn describe(&self) -> String {
        format!("tcp:{}", self.addr)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
}
